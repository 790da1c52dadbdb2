//! How much data a run evaluates: `quick` (real subsets sized so that every headline has an
//! interval narrower than its effect, the README's main job, minutes on 2 cores) or `full`
//! (the full data sets).

use serde::{Deserialize, Serialize};

/// Size of a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Small real subsets (minutes).
    Quick,
    /// The full data sets (hours on 2 cores).
    Full,
}

/// The recipe sizes of a fine-tuned stage (norms and biases fine-tuned with the learned
/// thresholds, against SPRINT's datapath; docs/thresholds.md). The defaults are the
/// recipes measured there: MiniLM BBC "Trained on the labels" (keep 0.24: at 0.25 the
/// recipe kept 25.29 % of the keys in the softmax on the full test split, at 0.24 24.21 %),
/// SmolLM2 Austen on 64 windows from the mass calibration at 0.985.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FinetunePlan {
    /// Training items: documents of the train split, or windows after the held-out ones.
    pub items: usize,
    /// Passes over them.
    pub epochs: usize,
    /// Tokens per training sequence.
    pub seq_len: usize,
    /// Target kept fraction of training (without `init_mass`).
    pub keep: f64,
    /// Start from the mass calibration keeping this share of the softmax mass and hold its
    /// kept fraction (instead of `keep`).
    pub init_mass: Option<f64>,
    /// Evaluation: documents drawn before the train/test split (0 = all), or held-out
    /// windows.
    pub eval_items: usize,
    /// Evaluation tokens per sequence.
    pub eval_seq_len: usize,
    /// Whether the pruned recipe's dense model is evaluated too (a row beside the twin's
    /// and SPRINT's; `--quick` leaves it out on MiniLM for time).
    #[serde(default = "yes")]
    pub recipe_dense: bool,
}

fn yes() -> bool {
    true
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// GPT-2-L's sequence length in the paper's evaluation, tokens.
fn default_trace_seq_len() -> usize {
    1024
}

/// The sizes of every stage for a mode.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    /// The mode.
    pub mode: Mode,
    /// MiniLM classification tasks evaluated with the four variants.
    pub minilm_tasks: Vec<String>,
    /// Documents drawn per MiniLM task before the train/test split (0 = all).
    pub minilm_limit: usize,
    /// Tokens per MiniLM document.
    pub minilm_seq_len: usize,
    /// MiniLM probes are fitted on this many documents of the train split (a seeded
    /// choice; `None`: all of it). The test split is whole either way.
    #[serde(default)]
    pub probe_train: Option<usize>,
    /// SmolLM2 perplexity windows.
    pub smollm2_windows: usize,
    /// Tokens per SmolLM2 window.
    pub smollm2_seq_len: usize,
    /// Tokens of the SmolLM2 SPRINT trace replayed on the simulator (GPT-2-L's length in
    /// the paper). When it differs from `smollm2_seq_len`, one window of this length is
    /// evaluated with SPRINT at the accuracy stage's calibrated thresholds.
    #[serde(default = "default_trace_seq_len")]
    pub smollm2_trace_seq_len: usize,
    /// Target kept fraction of the calibrated thresholds (the paper's sparsity).
    pub keep: f64,
    /// Key bits in the crossbar swept for the precision figure (Fig 5).
    pub k_msb_bits: Vec<u32>,
    /// Noise presets swept for the accuracy-versus-noise figure.
    pub noise_presets: Vec<String>,
    /// Calibration targets of the accuracy-versus-kept-fraction sweep.
    pub sparsity_targets: Vec<f64>,
    /// Documents drawn for the sweeps (0 = all).
    pub sweep_limit: usize,
    /// SmolLM2 perplexity windows of the precision sweep (0 = not run).
    #[serde(default)]
    pub smollm2_sweep_windows: usize,
    /// The fine-tuned accuracy stage of MiniLM (BBC).
    pub minilm_finetune: FinetunePlan,
    /// The fine-tuned perplexity stage of SmolLM2 (Austen); `None`: not run. `--quick`
    /// trains a short recipe (minutes), `--full` the documented one (about an hour on 2
    /// cores).
    pub smollm2_finetune: Option<FinetunePlan>,
    /// The peers' accuracy stage (`accuracy-peers`): dense, SPRINT's four and the five
    /// peer designs at matched keys in the softmax (`--peer-keep`).
    #[serde(default)]
    pub peers: PeersPlan,
    /// Whether the sparsity and noise sweeps run on the MiniLM lane (after `precision`)
    /// instead of on the SmolLM2 and simulator lane: `--full`, where the lanes' estimated
    /// CPU seconds come out about even that way (docs/reproduce.md, "`--full`: the budget";
    /// `--quick`'s MiniLM lane is the longer without them). Results do not depend on it;
    /// left out of the plan's JSON when false, so the `--quick` plan and its cache keys are
    /// as before.
    #[serde(default, skip_serializing_if = "is_false")]
    pub sweeps_on_minilm_lane: bool,
    /// Seed of every split, subset and noise draw.
    pub seed: u64,
}

/// The sizes of the peers' accuracy stage.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PeersPlan {
    /// The kept fractions (of the visible pairs in the softmax) every design is calibrated
    /// to, in order; the report's table is at the plan's `keep`, which is among them.
    pub keeps: Vec<f64>,
    /// MiniLM BBC documents drawn (20 % of them scored; 0 = all).
    pub minilm_limit: usize,
    /// SmolLM2 Austen perplexity windows.
    pub smollm2_windows: usize,
    /// Tokens per SmolLM2 window.
    pub smollm2_seq_len: usize,
}

impl Plan {
    /// The assets the plan reads.
    pub fn assets(&self) -> Vec<sprint_assets::Asset> {
        use sprint_assets::Asset;
        let mut v = vec![Asset::MiniLm, Asset::SmolLm2, Asset::Bbc, Asset::Austen];
        if self.minilm_tasks.iter().any(|t| t == "spam") {
            v.push(Asset::SpamAssassin);
        }
        v
    }

    /// The plan's sizes in words (printed when a run starts; the resolution they give is in
    /// the report's verdict).
    pub fn describe(&self) -> String {
        let docs = |n: usize| {
            if n == 0 {
                "all documents (the whole 20 % test split)".to_string()
            } else {
                format!("{n} documents drawn (20 % of them scored)")
            }
        };
        let mut s = format!(
            "MiniLM {}: {} of {} tokens, the probe on {}; sweeps on {}; SmolLM2 perplexity: {} windows of {} tokens ({} blocks of {} scored tokens), the precision sweep on {}",
            self.minilm_tasks.join(", "),
            docs(self.minilm_limit),
            self.minilm_seq_len,
            self.probe_train.map_or_else(
                || "the whole train split".to_string(),
                |n| format!("{n} train documents")
            ),
            docs(self.sweep_limit),
            self.smollm2_windows,
            self.smollm2_seq_len,
            self.smollm2_windows
                * (self.smollm2_seq_len - 1).div_ceil(sprint_eval::fidelity::BLOCK_TOKENS),
            sprint_eval::fidelity::BLOCK_TOKENS,
            self.smollm2_sweep_windows,
        );
        let ft = |name: &str, f: &FinetunePlan, unit: &str| {
            format!(
                "; fine-tuned {name}: {} training {unit} of {} tokens x {} epoch(s), evaluated on {}",
                f.items,
                f.seq_len,
                f.epochs,
                if f.eval_items == 0 {
                    "the whole test split".to_string()
                } else {
                    format!("{} {unit}", f.eval_items)
                }
            )
        };
        s.push_str(&ft("MiniLM", &self.minilm_finetune, "documents"));
        if let Some(f) = &self.smollm2_finetune {
            s.push_str(&ft("SmolLM2", f, "windows"));
        }
        if !self.peers.keeps.is_empty() {
            s.push_str(&format!(
                "; the peers at kept fractions {:?}: MiniLM BBC on {}, SmolLM2 on {} windows of {} tokens",
                self.peers.keeps,
                docs(self.peers.minilm_limit),
                self.peers.smollm2_windows,
                self.peers.smollm2_seq_len
            ));
        }
        if self.smollm2_trace_seq_len != self.smollm2_seq_len {
            s.push_str(&format!(
                "; the SmolLM2 trace replayed on the simulator: 1 window of {} tokens at the accuracy stage's thresholds",
                self.smollm2_trace_seq_len
            ));
        }
        s
    }

    /// The precision sweep's points: (label, key bits, the override that sets them) for each
    /// of the plan's `k_msb_bits`.
    pub fn key_bit_points(&self) -> Vec<(String, f64, Vec<String>)> {
        self.k_msb_bits
            .iter()
            .map(|b| {
                (
                    format!("{b} bits"),
                    f64::from(*b),
                    vec![format!("quant.k_msb_bits={b}")],
                )
            })
            .collect()
    }

    /// The plan of `mode` with `seed`.
    pub fn new(mode: Mode, seed: u64) -> Self {
        let quick = mode == Mode::Quick;
        Self {
            mode,
            minilm_tasks: if quick {
                vec!["bbc".into()]
            } else {
                vec!["bbc".into(), "spam".into(), "austen".into()]
            },
            minilm_limit: 0,
            minilm_seq_len: 256,
            probe_train: quick.then_some(400),
            smollm2_windows: 8,
            smollm2_seq_len: if quick { 512 } else { 1024 },
            smollm2_trace_seq_len: default_trace_seq_len(),
            keep: 0.25,
            k_msb_bits: if quick {
                vec![1, 2, 3, 4, 6]
            } else {
                vec![1, 2, 3, 4, 5, 6]
            },
            noise_presets: vec!["ideal".into(), "typical".into(), "pessimistic".into()],
            sparsity_targets: if quick {
                vec![0.15, 0.3]
            } else {
                vec![0.1, 0.15, 0.2, 0.25, 0.3, 0.5]
            },
            sweep_limit: if quick { 300 } else { 0 },
            smollm2_sweep_windows: if quick { 4 } else { 8 },
            minilm_finetune: FinetunePlan {
                items: if quick { 48 } else { 192 },
                epochs: if quick { 1 } else { 2 },
                seq_len: 256,
                keep: 0.24,
                init_mass: None,
                eval_items: 0,
                eval_seq_len: 256,
                recipe_dense: !quick,
            },
            smollm2_finetune: Some(if quick {
                FinetunePlan {
                    items: 4,
                    epochs: 1,
                    seq_len: 256,
                    keep: 0.25,
                    init_mass: Some(0.985),
                    eval_items: 4,
                    eval_seq_len: 512,
                    recipe_dense: true,
                }
            } else {
                FinetunePlan {
                    items: 64,
                    epochs: 2,
                    seq_len: 512,
                    keep: 0.25,
                    init_mass: Some(0.985),
                    eval_items: 4,
                    eval_seq_len: 1024,
                    recipe_dense: true,
                }
            }),
            // --quick: 100 documents (20 scored, judged on posterior KL and flips) and 2
            // windows of 512 tokens (8 blocks) at the plan's kept fraction alone (the three
            // targets 0.1 / 0.25 / 0.5 took 170 s of the 698 s run on 2 idle cores,
            // docs/reproduce.md); --full: every document and 8 windows of 1024, four
            // targets.
            peers: PeersPlan {
                keeps: if quick {
                    vec![0.25]
                } else {
                    vec![0.1, 0.15, 0.25, 0.5]
                },
                minilm_limit: if quick { 100 } else { 0 },
                smollm2_windows: if quick { 2 } else { 8 },
                smollm2_seq_len: if quick { 512 } else { 1024 },
            },
            sweeps_on_minilm_lane: !quick,
            seed,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{Mode, Plan};

    /// `--full` runs the sparsity and noise sweeps on the MiniLM lane; `--quick` keeps them on
    /// the SmolLM2 lane and its plan's JSON (part of every stage's cache key) has no new key,
    /// so the `--quick` cache keys are what they were; a plan written before the key reads
    /// as the SmolLM2 lane.
    #[test]
    fn full_moves_the_bbc_sweeps_and_quick_keeps_its_plan_json() {
        let (q, f) = (Plan::new(Mode::Quick, 0), Plan::new(Mode::Full, 0));
        assert!(f.sweeps_on_minilm_lane && !q.sweeps_on_minilm_lane);
        let qj = serde_json::to_string(&q).unwrap();
        assert!(!qj.contains("sweeps_on_minilm_lane"), "{qj}");
        let fj = serde_json::to_string(&f).unwrap();
        assert!(fj.contains("\"sweeps_on_minilm_lane\":true"), "{fj}");
        let back: Plan = serde_json::from_str(&qj).unwrap();
        assert_eq!(back, q);
    }
}
