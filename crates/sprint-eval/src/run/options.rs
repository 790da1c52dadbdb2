//! The options of an evaluation: what to evaluate and how ([`EvalOptions`]), where the
//! thresholds come from ([`ThresholdChoice`]), and the fixed split fractions.

use std::path::PathBuf;

use sprint_core::config::{AttentionConfig, Thresholds, Variant};

use super::probe_fit::ProbeFit;
use crate::calibrate::KeepMethod;
use crate::tasks::Task;

/// Fraction of a labelled corpus held out for testing the probe (stratified).
pub const TEST_FRACTION: f64 = 0.2;
/// Fraction of the Pang & Lee sentences used to calibrate (stratified); the rest is scored.
pub const SENTIMENT_CALIB_FRACTION: f64 = 0.1;

/// Where the thresholds of the non-dense variants come from.
#[derive(Clone, Debug, PartialEq)]
pub enum ThresholdChoice {
    /// Calibrate on a split of the task's data (see [`crate::calibrate`]).
    Calibrate {
        /// Target fraction of visible keys kept, in (0, 1].
        keep: f64,
        /// One threshold per head instead of per layer.
        per_head: bool,
        /// Calibration items (documents, windows); `None` = the task's default
        /// (16 documents, 2 windows, 10% of the sentences).
        items: Option<usize>,
        /// Score quantile or softmax mass held at `keep`.
        method: KeepMethod,
    },
    /// Read a thresholds file.
    File(PathBuf),
    /// Use the thresholds of the attention configuration (`[threshold]` section).
    Config,
    /// Use these thresholds (logit units), obtained as `method` says.
    Given {
        /// The thresholds.
        thresholds: Thresholds,
        /// How they were obtained.
        method: String,
    },
}

/// What to evaluate and how.
#[derive(Clone, Debug)]
pub struct EvalOptions {
    /// The task.
    pub task: Task,
    /// Variants, in output order.
    pub variants: Vec<Variant>,
    /// Items evaluated (documents before the split, windows, sentences); `None` = the
    /// task's default ([`Task::default_limit`]); `Some(0)` = everything.
    pub limit: Option<usize>,
    /// Tokens per sequence (truncation for texts, window length for perplexity); `None` =
    /// the task's default ([`Task::default_seq_len`]).
    pub seq_len: Option<usize>,
    /// Seed of the splits and subsets.
    pub seed: u64,
    /// Attention configuration (precisions, noise and its seed, buffers); the variant is
    /// set per run.
    pub attention: AttentionConfig,
    /// Source of the thresholds.
    pub thresholds: ThresholdChoice,
    /// Sequences per forward pass (default 16; perplexity windows always go one by one).
    pub batch_size: usize,
    /// Write the SPRINT trace of the first evaluated sequence of each variant here
    /// (`NAME.VARIANT.EXT` when several variants run).
    pub trace: Option<PathBuf>,
    /// Write calibrated thresholds here.
    pub save_thresholds: Option<PathBuf>,
    /// Write the token ids of the evaluated perplexity windows (JSON) here.
    pub dump_windows: Option<PathBuf>,
    /// A fine-tuned weights file overlaid on the model before anything runs
    /// ([`sprint_models::LoadedModel::with_weights`]); every variant, dense included, and
    /// the probe use the overlaid model.
    pub weights: Option<PathBuf>,
    /// Probe tasks: which embeddings the probe is fitted on.
    pub probe_fit: ProbeFit,
    /// Probe tasks: fit the probe(s) on this many documents of the train split (a seeded
    /// choice; `None` or more than the split: all of it). The test split is unchanged.
    pub probe_train: Option<usize>,
    /// Earlier runs on the same items whose dense rows every row is also compared with, in
    /// order (for a fine-tuned model: the original model, the same recipe without pruning).
    pub references: Vec<super::reference::ReferenceRun>,
    /// Calibrate each peer design's own knob (Sanger's `prob_threshold`) on the calibration
    /// items so that it keeps this fraction of the visible pairs, for comparisons at equal
    /// sparsity; `None`: the published values of `attention.peers`.
    pub peer_keep: Option<f64>,
    /// Perplexity tasks: keep the next-token logits of every scored position in each row's
    /// outputs ([`crate::fidelity::ItemOutputs::next_token`]; positions x vocabulary
    /// floats), to compare later runs with.
    pub keep_next_token: bool,
    /// Perplexity tasks: next-token logits of earlier runs on the same windows; every row
    /// gets its per-token KL divergence from each, in blocks
    /// ([`crate::fidelity::ItemOutputs::kl_blocks`], in this order).
    pub kl_references: Vec<std::sync::Arc<crate::fidelity::NextTokenLogits>>,
}

impl EvalOptions {
    /// Options with the task's defaults: all four variants, calibration at keep 0.25.
    pub fn new(task: Task) -> Self {
        Self {
            task,
            variants: Variant::ALL.to_vec(),
            limit: None,
            seq_len: None,
            seed: 0,
            attention: AttentionConfig::default(),
            thresholds: ThresholdChoice::Calibrate {
                keep: 0.25,
                per_head: false,
                items: None,
                method: KeepMethod::Quantile,
            },
            batch_size: 16,
            trace: None,
            save_thresholds: None,
            dump_windows: None,
            weights: None,
            probe_fit: ProbeFit::Dense,
            probe_train: None,
            references: Vec::new(),
            peer_keep: None,
            keep_next_token: false,
            kl_references: Vec::new(),
        }
    }
}
