//! Threshold calibration until learned thresholds exist: run the dense model on a
//! calibration split, collect the exact scores `q . k / sqrt(d)` (logit units) of every
//! visible (query, key) pair of every layer and head in fine histograms, and pick per layer
//! (or per head) the score quantile above which a target fraction of keys lies.
//!
//! The histograms have bins of 1/128 logit over [-64, 64) (scores outside fall into the end
//! bins); the threshold is interpolated linearly inside its bin, so it is exact to well
//! below the 1/128-logit step of the exact-score datapath.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Mutex;

use candle_core::Tensor;
use sprint_core::config::{AttentionConfig, ThresholdFile, Thresholds, Variant};
use sprint_models::attention::{Attention, AttentionCall, DenseAttention};
use sprint_models::record::Recorder;

use sprint_core::peers::PeerConfig;

use crate::error::{CandleOp, EvalError, Result};
use crate::peer_calibrate::{PeerSet, PeerStats};

pub use crate::histogram::{
    HIST_BINS, HIST_BINS_PER_LOGIT, HIST_MIN, MassHistogram, ScoreHistogram,
};

/// Per-(layer, head) score histograms and softmax-mass histograms.
#[derive(Clone, Debug, PartialEq)]
pub struct ScoreStats {
    /// `hist[layer][head]`.
    pub hist: Vec<Vec<ScoreHistogram>>,
    /// `mass[layer][head]`.
    pub mass: Vec<Vec<MassHistogram>>,
    /// Sanger's predicted probabilities of every visible pair, as `ln p` (all layers and
    /// heads: its threshold is one number), when the calibration collects them.
    pub sanger_ln_prob: ScoreHistogram,
    /// A3's, Energon's and SpAtten's statistics, when the calibration collects them.
    pub peers: PeerStats,
}

impl ScoreStats {
    /// Empty statistics for `layers` x `heads`.
    pub fn new(layers: usize, heads: usize) -> Self {
        Self {
            hist: vec![vec![ScoreHistogram::new(); heads]; layers],
            mass: vec![vec![MassHistogram::new(); heads]; layers],
            sanger_ln_prob: ScoreHistogram::new(),
            peers: PeerStats::default(),
        }
    }

    /// Sanger's `prob_threshold` that keeps a fraction `keep` of the visible pairs of the
    /// calibration data (its predicted probability above the threshold); `None` when no
    /// predicted probability was collected.
    pub fn sanger_threshold_for_keep(&self, keep: f64) -> Result<Option<f32>> {
        if self.sanger_ln_prob.total() == 0 {
            return Ok(None);
        }
        Ok(Some(self.sanger_ln_prob.threshold_for_keep(keep)?.exp()))
    }

    /// Thresholds keeping on average a share `mass` of each row's dense softmax mass, per
    /// layer (heads pooled) or per head.
    pub fn mass_thresholds(&self, mass: f64, per_head: bool) -> Result<Thresholds> {
        let mut values = Vec::with_capacity(self.mass.len());
        for layer in &self.mass {
            if per_head {
                values.push(
                    layer
                        .iter()
                        .map(|h| h.threshold_for_mass(mass))
                        .collect::<Result<Vec<_>>>()?,
                );
            } else {
                let mut pooled = MassHistogram::new();
                layer.iter().for_each(|h| pooled.merge(h));
                values.push(vec![pooled.threshold_for_mass(mass)?; layer.len()]);
            }
        }
        Ok(Thresholds { values })
    }

    /// Mass-calibrated thresholds (as [`Self::mass_thresholds`]) at the smallest softmax
    /// mass whose thresholds keep at least a fraction `keep` of all visible pairs, and that
    /// mass: the mass calibration held at a kept fraction, so it can be compared with the
    /// quantile at the same sparsity. Bisection over the mass (the kept fraction does not
    /// decrease with it) to within 1e-9 of the mass.
    pub fn mass_thresholds_at_keep(&self, keep: f64, per_head: bool) -> Result<(Thresholds, f64)> {
        if !(keep.is_finite() && keep > 0.0 && keep <= 1.0) {
            return Err(EvalError::Input(format!(
                "target kept fraction must be in (0, 1], got {keep}"
            )));
        }
        let (mut lo, mut hi) = (0.0f64, 1.0f64);
        while hi - lo > 1e-9 {
            let mid = 0.5 * (lo + hi);
            if self.kept_fraction(&self.mass_thresholds(mid, per_head)?) >= keep {
                hi = mid;
            } else {
                lo = mid;
            }
        }
        Ok((self.mass_thresholds(hi, per_head)?, hi))
    }

    /// Fraction of all visible pairs (every layer and head) with scores `>= Th`.
    pub fn kept_fraction(&self, th: &Thresholds) -> f64 {
        let (mut kept, mut total) = (0.0, 0.0);
        for (l, layer) in self.hist.iter().enumerate() {
            for (h, hist) in layer.iter().enumerate() {
                let n = hist.total() as f64;
                kept += hist.fraction_at_or_above(th.values[l][h]) * n;
                total += n;
            }
        }
        kept / total.max(1.0)
    }

    /// Scores collected in all.
    pub fn total(&self) -> u64 {
        self.hist.iter().flatten().map(ScoreHistogram::total).sum()
    }

    /// Thresholds keeping `keep` of each layer's scores (all heads pooled), or of each
    /// head's scores when `per_head`.
    pub fn thresholds(&self, keep: f64, per_head: bool) -> Result<Thresholds> {
        let mut values = Vec::with_capacity(self.hist.len());
        for layer in &self.hist {
            if per_head {
                values.push(
                    layer
                        .iter()
                        .map(|h| h.threshold_for_keep(keep))
                        .collect::<Result<Vec<_>>>()?,
                );
            } else {
                let mut pooled = ScoreHistogram::new();
                layer.iter().for_each(|h| pooled.merge(h));
                values.push(vec![pooled.threshold_for_keep(keep)?; layer.len()]);
            }
        }
        Ok(Thresholds { values })
    }
}

/// A dense attention backend that also records the exact scores of every visible pair in
/// [`ScoreStats`]. The model output is the dense output.
#[derive(Debug)]
pub struct CalibratingAttention {
    dense: DenseAttention,
    stats: Mutex<ScoreStats>,
    /// Also collect the statistics of these peers (with these parameters).
    peers: Option<(PeerConfig, PeerSet)>,
}

/// Query rows scored at once per head (bounds the score block to `rows x seq` floats).
const CALIB_ROWS: usize = 512;

impl CalibratingAttention {
    /// A calibrating backend for a model of `layers` x `heads` query heads.
    pub fn new(cfg: AttentionConfig, layers: usize, heads: usize) -> Self {
        Self {
            dense: DenseAttention::new(cfg),
            stats: Mutex::new(ScoreStats::new(layers, heads)),
            peers: None,
        }
    }

    /// Also collects Sanger's predicted probabilities with `cfg`'s parameters (for
    /// [`ScoreStats::sanger_threshold_for_keep`]).
    pub fn with_sanger(self, cfg: sprint_core::peers::SangerConfig) -> Self {
        let peers = PeerConfig {
            sanger: cfg,
            ..PeerConfig::default()
        };
        let set = PeerSet {
            sanger: true,
            ..PeerSet::default()
        };
        self.with_peers(peers, set)
    }

    /// Also collects the statistics of the peers in `set` with `cfg`'s parameters (for
    /// [`ScoreStats::sanger_threshold_for_keep`] and [`PeerStats`]'s calibrations).
    pub fn with_peers(mut self, cfg: PeerConfig, set: PeerSet) -> Self {
        self.peers = Some((cfg, set));
        self
    }

    /// The peers' statistics of the call's sequences into the statistics.
    fn record_peers(&self, call: &AttentionCall, cfg: &PeerConfig, set: PeerSet) -> Result<()> {
        use sprint_attention::peers::{a3, energon, sanger};
        let err = |e: sprint_attention::AttentionError| EvalError::Input(e.to_string());
        let mut hist = ScoreHistogram::new();
        let mut peers = PeerStats {
            energon_rounds: cfg.energon.round_key_bits.len(),
            spatten_causal: call.causal,
            ..PeerStats::default()
        };
        for (bi, valid) in call.valid.iter().enumerate() {
            let input = sequence_input(call, bi, valid)?;
            if set.sanger {
                sanger::predicted_probabilities(&cfg.sanger, call.causal, &input, &mut |p| {
                    hist.add(p.ln())
                })
                .map_err(err)?;
            }
            if set.a3 {
                let (margins, visible) =
                    a3::candidate_margins(&cfg.a3, call.causal, &input).map_err(err)?;
                margins.iter().for_each(|&m| peers.a3_margins.add(m));
                peers.a3_visible += visible;
            }
            if set.energon {
                let stride = crate::peer_calibrate::ENERGON_ROW_STRIDE;
                energon::round_scores(&cfg.energon, call.causal, &input, stride, &mut |r| {
                    peers.energon_rows.push(r.concat())
                })
                .map_err(err)?;
            }
            if set.spatten && call.layer == 0 {
                peers
                    .spatten_tokens
                    .push(valid.iter().filter(|&&v| v).count());
            }
        }
        let mut stats = self.stats.lock().unwrap_or_else(|e| e.into_inner());
        stats.sanger_ln_prob.merge(&hist);
        stats.peers.merge(peers);
        Ok(())
    }

    /// The statistics collected so far.
    pub fn into_stats(self) -> ScoreStats {
        self.stats.into_inner().unwrap_or_else(|e| e.into_inner())
    }

    fn record(&self, call: &AttentionCall) -> Result<()> {
        use rayon::prelude::*;
        let (b, heads, seq, d) = call.q.dims4().op("calibration q shape")?;
        let kv_heads = call.k.dim(1).op("calibration k shape")?;
        let group = heads / kv_heads.max(1);
        let scale = 1.0 / (d as f64).sqrt();
        let mut stats = self.stats.lock().unwrap_or_else(|e| e.into_inner());
        if call.layer >= stats.hist.len() || stats.hist[call.layer].len() != heads {
            return Err(EvalError::Input(format!(
                "calibration: layer {} with {heads} heads outside the model geometry",
                call.layer
            )));
        }
        let ScoreStats { hist, mass, .. } = &mut *stats;
        // Heads in parallel, each over the sequences in order: every histogram receives
        // its scores in the same order whatever the thread count.
        hist[call.layer]
            .par_iter_mut()
            .zip(mass[call.layer].par_iter_mut())
            .enumerate()
            .try_for_each(|(h, (hist, mass))| -> Result<()> {
                let mut vis_scores: Vec<f32> = Vec::with_capacity(seq);
                let mut probs: Vec<f64> = Vec::with_capacity(seq);
                for (bi, valid) in call.valid.iter().enumerate().take(b) {
                    let q = call.q.get(bi).and_then(|x| x.get(h)).op("calibration")?;
                    let kt = call
                        .k
                        .get(bi)
                        .and_then(|k| k.get(h / group))
                        .and_then(|k| k.t())
                        .and_then(|k| k.contiguous())
                        .op("calibration")?;
                    let mut start = 0;
                    while start < seq {
                        let len = CALIB_ROWS.min(seq - start);
                        let s: Tensor = q
                            .narrow(0, start, len)
                            .and_then(|x| x.matmul(&kt))
                            .and_then(|x| x * scale)
                            .op("calibration scores")?;
                        let rows = s.to_vec2::<f32>().op("calibration scores")?;
                        for (r, row) in rows.iter().enumerate() {
                            let i = start + r;
                            if !valid[i] {
                                continue;
                            }
                            let limit = if call.causal { i + 1 } else { seq };
                            vis_scores.clear();
                            for (j, &x) in row.iter().enumerate().take(limit) {
                                if valid[j] {
                                    hist.add(x);
                                    vis_scores.push(x);
                                }
                            }
                            let m = vis_scores.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                            probs.clear();
                            probs.extend(vis_scores.iter().map(|&x| f64::from(x - m).exp()));
                            let z: f64 = probs.iter().sum();
                            probs.iter_mut().for_each(|p| *p /= z);
                            mass.add_row(&vis_scores, &probs);
                        }
                        start += len;
                    }
                }
                Ok(())
            })
    }
}

impl Attention for CalibratingAttention {
    fn variant(&self) -> Variant {
        Variant::Dense
    }

    fn config(&self) -> &AttentionConfig {
        self.dense.config()
    }

    fn attend(
        &self,
        call: &AttentionCall,
        rec: &mut Recorder,
    ) -> sprint_models::Result<candle_core::Tensor> {
        self.record(call)
            .map_err(|e| sprint_models::ModelError::Input(e.to_string()))?;
        if let Some((cfg, set)) = &self.peers {
            self.record_peers(call, cfg, *set)
                .map_err(|e| sprint_models::ModelError::Input(e.to_string()))?;
        }
        self.dense.attend(call, rec)
    }
}

/// Sequence `bi` of an attention call as the functional model's input, with its padding
/// masks when it has padding.
fn sequence_input(
    call: &AttentionCall,
    bi: usize,
    valid: &[bool],
) -> Result<sprint_attention::AttentionInput> {
    use sprint_attention::{AttentionInput, Tensor3};
    let tensor3 = |t: &Tensor| -> Result<Tensor3> {
        let x = t.get(bi).op("calibration")?;
        let (a, b, c) = x.dims3().op("calibration")?;
        let data = x
            .flatten_all()
            .and_then(|f| f.to_vec1::<f32>())
            .op("calibration")?;
        Tensor3::new([a, b, c], data).map_err(|e| EvalError::Input(e.to_string()))
    };
    let mut input = AttentionInput::new(tensor3(call.q)?, tensor3(call.k)?, tensor3(call.v)?);
    if valid.iter().any(|&x| !x) {
        input.query_valid = Some(valid.to_vec());
        input.key_valid = Some(valid.to_vec());
    }
    Ok(input)
}

/// How a set of thresholds was obtained, written as the `[meta]` table of a thresholds file.
#[derive(Clone, Debug, PartialEq)]
pub struct CalibrationMeta {
    /// Target fraction of visible keys kept.
    pub target_keep: f64,
    /// Per head (true) or per layer (false).
    pub per_head: bool,
    /// Model name.
    pub model: String,
    /// Task name.
    pub task: String,
    /// Which data the scores came from (e.g. `16 documents of the train split`).
    pub split: String,
    /// Seed of the split.
    pub seed: u64,
    /// Scores collected.
    pub scores: u64,
}

/// How a calibration at a target kept fraction places its thresholds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum KeepMethod {
    /// One score quantile per layer (or head): every layer keeps the target fraction.
    #[default]
    Quantile,
    /// The softmax-mass calibration at the one mass share that keeps the target fraction
    /// over all layers ([`ScoreStats::mass_thresholds_at_keep`]): each layer keeps the keys
    /// that carry that share of its softmax mass, so peaked layers keep fewer keys and flat
    /// ones more (docs/thresholds.md: the better of the two on SmolLM2 at equal sparsity).
    Mass,
}

impl std::str::FromStr for KeepMethod {
    type Err = EvalError;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "quantile" => Ok(KeepMethod::Quantile),
            "mass" => Ok(KeepMethod::Mass),
            other => Err(EvalError::Input(format!(
                "unknown calibration method `{other}` (expected quantile or mass)"
            ))),
        }
    }
}

/// One-line description of the calibration method, for outputs and files.
pub fn method_description(per_head: bool) -> String {
    format!(
        "per-{} quantile of the exact dense scores q.k/sqrt(d) of all visible (query, key) pairs",
        if per_head { "head" } else { "layer" }
    )
}

/// One-line description of a calibration at a target kept fraction: by softmax mass when
/// `mass` gives the share it settled on ([`KeepMethod::Mass`]), else by score quantile.
pub fn keep_method_description(per_head: bool, mass: Option<f64>) -> String {
    match mass {
        Some(m) => format!(
            "per-{} softmax-mass calibration held at the target kept fraction: the smallest score Th such that the pairs with dense scores >= Th carry on average {m:.6} of each query row's dense softmax mass, the share at which the calibration items keep the target",
            if per_head { "head" } else { "layer" }
        ),
        None => method_description(per_head),
    }
}

/// A thresholds file of calibrated thresholds with provenance in `[meta]`.
pub fn threshold_file(th: &Thresholds, meta: &CalibrationMeta) -> ThresholdFile {
    let mut m = BTreeMap::new();
    m.insert("method".into(), method_description(meta.per_head));
    m.insert("target_keep".into(), format!("{}", meta.target_keep));
    m.insert("model".into(), meta.model.clone());
    m.insert("task".into(), meta.task.clone());
    m.insert("split".into(), meta.split.clone());
    m.insert("seed".into(), meta.seed.to_string());
    m.insert("scores".into(), meta.scores.to_string());
    m.insert(
        "units".into(),
        "logits (softmax input q.k/sqrt(d))".to_string(),
    );
    let (per_layer, per_head) = if meta.per_head {
        (None, Some(th.values.clone()))
    } else {
        (
            Some(th.values.iter().map(|r| r[0]).collect::<Vec<_>>()),
            None,
        )
    };
    ThresholdFile {
        per_layer,
        per_head,
        meta: m,
    }
}

/// Writes a thresholds file (TOML) atomically.
pub fn write_threshold_file(path: &Path, file: &ThresholdFile) -> Result<()> {
    let text = toml::to_string(file)
        .map_err(|e| EvalError::Input(format!("cannot serialise thresholds: {e}")))?;
    sprint_core::outfile::write_atomic::<EvalError>(path, |w| {
        use std::io::Write;
        w.write_all(text.as_bytes())
            .map_err(|source| EvalError::Io {
                path: path.to_path_buf(),
                source,
            })
    })
}
