//! The report of an evaluation: its types ([`EvalReport`] with one [`VariantResult`] row
//! per variant, [`ThresholdReport`], [`ProbeReport`]); `ctx` assembles them from a task's
//! results.

use std::path::PathBuf;

use serde::Serialize;

use crate::metrics::Perplexity;
use crate::paired::PairedDelta;
use crate::tasks::TaskKind;

/// The thresholds used and where they came from.
#[derive(Clone, Debug, Serialize)]
pub struct ThresholdReport {
    /// `calibrated`, `file` or `config`.
    pub source: String,
    /// How they were obtained (the calibration method, or the file's `[meta] method`).
    pub method: String,
    /// Target keep fraction of a calibration.
    pub target_keep: Option<f64>,
    /// The calibration data.
    pub split: Option<String>,
    /// Thresholds `Th` (logit units) per layer: the per-layer value, or the mean over heads.
    pub per_layer: Vec<f32>,
}

/// The linear probe of a probe task.
#[derive(Clone, Debug, Serialize)]
pub struct ProbeReport {
    /// Training documents.
    pub train_documents: usize,
    /// Accuracy of the dense probe on the training documents; `None` when no row is scored
    /// with the dense probe (each variant fits its own and dense is not evaluated), so it
    /// is not fitted.
    pub train_accuracy: Option<f64>,
    /// Which embeddings the probe is fitted on.
    pub fit: super::probe_fit::ProbeFit,
    /// With [`super::probe_fit::ProbeFit::PerVariant`]: each non-dense variant's probe accuracy on its
    /// own training embeddings, in variant order (empty otherwise).
    pub variant_train_accuracy: Vec<(String, f64)>,
    /// Classes.
    pub classes: Vec<String>,
}

/// One variant's result.
#[derive(Clone, Debug, Serialize)]
pub struct VariantResult {
    /// Variant name.
    pub variant: String,
    /// Metric (accuracy as a fraction, or perplexity).
    pub metric: f64,
    /// `metric - metric(dense)`, when dense ran.
    pub delta: Option<f64>,
    /// Fraction of visible (query, key) pairs whose key was kept (moved on chip).
    pub kept_fraction: f64,
    /// Fraction of visible pairs that entered the softmax.
    pub softmax_fraction: f64,
    /// Visible (query, key) pairs over all layers and heads.
    pub visible_pairs: u64,
    /// Comparator false-prune rate: pairs exact pruning at the same `Th` keeps that the
    /// in-memory comparator pruned, over the pairs exact pruning keeps (SPRINT variants).
    pub false_prune_rate: Option<f64>,
    /// Comparator false-keep rate: pairs kept in memory that exact pruning drops, over the
    /// visible pairs exact pruning drops (SPRINT variants).
    pub false_keep_rate: Option<f64>,
    /// Datapath statistics summed over layers and heads (audit counts, saturations).
    pub datapath: sprint_core::trace::HeadStats,
    /// Keys newly fetched by the locality engine over visible pairs: the share of the
    /// sequence fetched per query, weighted by the keys each query sees (the paper: ~2.1 %).
    pub new_fetch_share: f64,
    /// Kept pairs.
    pub kept_pairs: u64,
    /// Wall time of the evaluated forwards (tokenisation included), seconds.
    pub seconds: f64,
    /// Items per second.
    pub items_per_second: f64,
    /// Tokens per second.
    pub tokens_per_second: f64,
    /// Scored tokens and summed NLL (perplexity tasks).
    pub perplexity: Option<Perplexity>,
    /// Where the trace was written.
    pub trace: Option<PathBuf>,
    /// Accuracy tasks: whether each evaluated item was classified right, in the split's
    /// item order (the same order in every run with the same data, length and seed).
    pub item_correct: Option<Vec<bool>>,
    /// Accuracy tasks, when dense ran: this row against the dense row, item by item.
    pub vs_dense: Option<PairedDelta>,
    /// This row against the dense row on the same items (when dense ran): class-posterior
    /// KL and flips, embedding cosine, perplexity change with its block-bootstrap interval.
    pub fidelity_vs_dense: Option<crate::fidelity::Fidelity>,
    /// What the pass kept per item (posteriors, embeddings, NLL blocks), to compare it with
    /// another evaluation's rows (in memory only).
    #[serde(skip)]
    pub outputs: crate::fidelity::ItemOutputs,
    /// Accuracy tasks with reference reports (`EvalOptions::references`): this row against
    /// each reference run's dense row, item by item, in the references' order.
    pub vs_references: Vec<PairedDelta>,
}

/// The result of one evaluation.
#[derive(Clone, Debug, Serialize)]
pub struct EvalReport {
    /// Model name.
    pub model: String,
    /// Task name.
    pub task: String,
    /// What the task measures.
    pub kind: TaskKind,
    /// `accuracy` or `perplexity`.
    pub metric: String,
    /// Whether larger is better.
    pub higher_is_better: bool,
    /// Evaluated items.
    pub items: usize,
    /// Their unit (`documents`, `windows`, `sentences`).
    pub item_name: String,
    /// Evaluated tokens (per variant).
    pub tokens: u64,
    /// Tokens per sequence (truncation or window length).
    pub seq_len: usize,
    /// Seed of splits and noise.
    pub seed: u64,
    /// Which data were evaluated.
    pub split: String,
    /// The fine-tuned weights file overlaid on the model, if any (`EvalOptions::weights`).
    pub weights: Option<PathBuf>,
    /// Thresholds of the non-dense variants (absent when only dense ran).
    pub thresholds: Option<ThresholdReport>,
    /// The probe (probe tasks).
    pub probe: Option<ProbeReport>,
    /// One row per variant, in the requested order.
    pub rows: Vec<VariantResult>,
    /// The reference runs the rows' `vs_references` compare with
    /// (`EvalOptions::references`), in order.
    pub references: Vec<ReferenceSummary>,
    /// The peer knobs calibrated to `EvalOptions::peer_keep`, in words (`None` when not
    /// asked).
    pub peer_calibration: Option<String>,
    /// The same knobs as values (`None` when not asked).
    pub peer_knobs: Option<crate::peer_calibrate::PeerKnobs>,
}

/// Which run a report's `vs_reference` columns compare with.
#[derive(Clone, Debug, Serialize)]
pub struct ReferenceSummary {
    /// The reference report's file.
    pub file: PathBuf,
    /// Its dense row's accuracy (fraction).
    pub dense_metric: f64,
    /// Its fine-tuned weights file, when it names one.
    pub weights: Option<PathBuf>,
}
