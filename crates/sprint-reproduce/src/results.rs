//! The result of every stage, as cached (serde both ways) and as the report reads it.

use serde::{Deserialize, Serialize};
use sprint_eval::fidelity::Fidelity;
use sprint_sim::paper::OurModel;

use crate::mode::Plan;

/// One attention variant's accuracy on a task.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VariantRow {
    /// Variant name (`dense`, `runtime-pruning`, `sprint-no-recompute`, `sprint`).
    pub variant: String,
    /// Accuracy as a fraction, or perplexity.
    pub metric: f64,
    /// `metric - dense`.
    pub delta: Option<f64>,
    /// Accuracy tasks: 95 % paired-bootstrap interval of `delta` over the evaluated items
    /// (fractions; `sprint_eval::paired`).
    #[serde(default)]
    pub delta_ci95: Option<(f64, f64)>,
    /// Fraction of visible (query, key) pairs whose key was moved on chip.
    pub kept_fraction: f64,
    /// Fraction of visible pairs in the softmax.
    pub softmax_fraction: f64,
    /// Share of the visible keys newly fetched per query by the locality engine.
    pub new_fetch_share: f64,
    /// Comparator false-prune rate against exact pruning (SPRINT variants).
    pub false_prune_rate: Option<f64>,
    /// Continuous fidelity to the dense row on the same items (posterior KL and flips,
    /// embedding cosine; perplexity change with its block-bootstrap interval).
    #[serde(default)]
    pub fidelity: Option<Fidelity>,
}

/// The four variants on one model and task (Fig 9).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct AccuracyResult {
    /// Model name.
    pub model: String,
    /// Task name.
    pub task: String,
    /// `accuracy` or `perplexity`.
    pub metric: String,
    /// Evaluated items and their unit.
    pub items: String,
    /// Tokens per sequence.
    pub seq_len: usize,
    /// The evaluated data.
    pub split: String,
    /// How the thresholds were obtained.
    pub thresholds: String,
    /// One row per variant, dense first.
    pub rows: Vec<VariantRow>,
    /// File name (in the cache's artefacts) of the SPRINT trace of the first sequence.
    pub sprint_trace: Option<String>,
    /// File name (in the cache's artefacts) of the calibrated thresholds, when saved.
    #[serde(default)]
    pub thresholds_file: Option<String>,
}

impl AccuracyResult {
    /// The row of `variant`.
    pub fn row(&self, variant: &str) -> Option<&VariantRow> {
        self.rows.iter().find(|r| r.variant == variant)
    }
}

/// One row of a fine-tuned stage.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FinetunedRow {
    /// What the row is (the no-pruning twin's dense model, the pruned recipe's dense or
    /// SPRINT row).
    pub run: String,
    /// Accuracy as a fraction, or perplexity.
    pub metric: f64,
    /// Fraction of visible pairs in the softmax.
    pub softmax_fraction: f64,
    /// Against the no-pruning twin's dense row: accuracy points, or perplexity change (%).
    pub change_vs_twin: f64,
    /// Accuracy tasks: against the twin's dense row, item by item.
    pub vs_twin: Option<sprint_eval::paired::PairedDelta>,
    /// Continuous fidelity to the twin's dense row on the same items (classification:
    /// posterior KL and flips; perplexity: change with its block-bootstrap interval).
    #[serde(default)]
    pub fidelity_vs_twin: Option<Fidelity>,
}

/// SPRINT fine-tuned with its learned thresholds against the same recipe without pruning
/// (the paper's method).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct FinetunedResult {
    /// Model name.
    pub model: String,
    /// Task name.
    pub task: String,
    /// `accuracy` or `perplexity`.
    pub metric: String,
    /// Evaluated items and their unit.
    pub items: String,
    /// Tokens per evaluated sequence.
    pub seq_len: usize,
    /// The evaluated data.
    pub split: String,
    /// The training recipe in words (the thresholds file's `method`).
    pub recipe: String,
    /// Wall time of the two training runs, seconds.
    pub learn_seconds: f64,
    /// The twin's dense row, then the pruned recipe's dense and SPRINT rows.
    pub rows: Vec<FinetunedRow>,
}

impl FinetunedResult {
    /// The pruned recipe's SPRINT row.
    pub fn sprint(&self) -> Option<&FinetunedRow> {
        self.rows.last()
    }
}

/// One point of a sweep.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SweepPoint {
    /// Series (variant, or variant / method).
    pub series: String,
    /// The swept value (bits, kept percent, noise preset index).
    pub x: f64,
    /// Label of the swept value (e.g. `typical`).
    pub x_label: String,
    /// Accuracy as a fraction, or perplexity.
    pub metric: f64,
    /// Fraction of visible pairs moved on chip.
    pub kept_fraction: f64,
    /// Fraction of visible pairs in the softmax.
    pub softmax_fraction: f64,
    /// Accuracy tasks: 95 % paired-bootstrap interval of `metric - dense` (fractions).
    #[serde(default)]
    pub delta_ci95: Option<(f64, f64)>,
    /// Continuous fidelity to the dense run on the same items.
    #[serde(default)]
    pub fidelity: Option<Fidelity>,
    /// Continuous fidelity to the sweep's reference point of the same series on the same
    /// items (precision: the most key bits; noise: ideal), which isolates the swept
    /// effect from the pruning every point shares.
    #[serde(default)]
    pub vs_reference: Option<Fidelity>,
}

/// A sweep of one model and task.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CurveResult {
    /// Model name.
    pub model: String,
    /// Task name.
    pub task: String,
    /// `accuracy` or `perplexity`.
    pub metric: String,
    /// The dense model's metric.
    pub dense: f64,
    /// Label of the reference point of `vs_reference` (e.g. `6 bits`), if any.
    #[serde(default)]
    pub reference: Option<String>,
    /// The evaluated data.
    pub split: String,
    /// Points.
    pub points: Vec<SweepPoint>,
}

/// One design's simulated totals.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DesignSummary {
    /// Preset key.
    pub key: String,
    /// Display name.
    pub name: String,
    /// Cycles.
    pub cycles: u64,
    /// Seconds at the design's clock.
    pub seconds: f64,
    /// Energy by component (Fig 12a categories plus leakage), pJ.
    pub energy_pj: Vec<(String, f64)>,
    /// Energy of Fig 12a's categories (leakage excluded), pJ.
    pub fig12a_energy_pj: f64,
    /// Total energy, pJ.
    pub energy_total_pj: f64,
    /// K and V bytes moved from ReRAM.
    pub kv_bytes: u64,
}

impl DesignSummary {
    /// The summary of a simulator report.
    pub fn of(r: &sprint_sim::report::DesignReport) -> Self {
        Self {
            key: r.key.clone(),
            name: r.name.clone(),
            cycles: r.totals.cycles,
            seconds: r.seconds,
            energy_pj: r
                .energy
                .parts()
                .iter()
                .map(|(k, v)| (k.to_string(), *v))
                .collect(),
            fig12a_energy_pj: r.energy.fig12a_total(),
            energy_total_pj: r.energy.total(),
            kv_bytes: r.totals.moved.kv(),
        }
    }
}

/// The simulator against the paper's figures in one configuration.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SimPaperResult {
    /// `sourced-default` or `paper-inferred`.
    pub calibration: String,
    /// Energy table.
    pub energy_table: String,
    /// Where the synthetic kept sets' statistics come from.
    pub stats_source: String,
    /// Our numbers per paper workload.
    pub ours: Vec<(String, OurModel)>,
    /// S-Baseline, Pruning and S-SPRINT per workload (Fig 12a's bars).
    pub fig12a: Vec<(String, Vec<DesignSummary>)>,
}

/// S/M/L SPRINT against the same-size baseline on one real trace.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TraceSimResult {
    /// What the trace is (model, task, variant, shape).
    pub label: String,
    /// Tokens of the traced sequence.
    pub tokens: usize,
    /// S, M, L baseline and SPRINT designs, in that order (baseline, SPRINT per size).
    pub designs: Vec<DesignSummary>,
}

/// Decode with a growing KV cache on SmolLM2 shapes.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct DecodeResult {
    /// The decode configuration in words.
    pub label: String,
    /// One row per design.
    pub rows: Vec<sprint_sim::decode::DecodeSummary>,
    /// Endurance of a cell, writes.
    pub endurance_writes: f64,
    /// Stated token rate per sequence, tokens/s.
    pub token_rate_per_s: f64,
    /// Cell lifetime at the stated token rate, seconds.
    pub lifetime_s_at_stated_rate: f64,
}

/// Every stage's result.
#[derive(Clone, Debug)]
pub struct Results {
    /// The plan that produced them.
    pub plan: Plan,
    /// The four variants per model and task.
    pub accuracy: Vec<AccuracyResult>,
    /// SPRINT fine-tuned with its thresholds against its no-pruning twin, per model.
    pub finetuned: Vec<FinetunedResult>,
    /// Accuracy against the key bits in the crossbar.
    pub precision: CurveResult,
    /// SmolLM2 perplexity against the key bits in the crossbar (none: not run).
    pub precision_ppl: Option<CurveResult>,
    /// Accuracy against the analog non-ideality presets.
    pub noise: CurveResult,
    /// Accuracy against the kept fraction.
    pub sparsity: CurveResult,
    /// The simulator against the paper, per configuration.
    pub sim_paper: Vec<SimPaperResult>,
    /// The simulator on real traces.
    pub traces: Vec<TraceSimResult>,
    /// Decode with a growing KV cache.
    pub decode: DecodeResult,
    /// SPRINT and its peers at matched keys in the softmax: one curve per model (series =
    /// design, x = the kept fraction each was calibrated to).
    pub peers: Vec<CurveResult>,
    /// SPRINT and its peers as designs (the stage `sim-peers`; none: not run).
    pub sim_peers: Option<sprint_sim::peers::PeerComparison>,
}
