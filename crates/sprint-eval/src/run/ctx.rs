//! The context of one evaluation ([`Ctx`]): the model, the options and what the parts of
//! `run` share while a task runs, and the assembly of the report from a task's results.
//! A leaf of `run`: it uses the options, progress and report types, and no other part of
//! `run` (every task driver uses it).

use std::cell::RefCell;
use std::path::PathBuf;

use sprint_core::config::Thresholds;
use sprint_core::outfile::PendingFile;
use sprint_models::LoadedModel;

use super::options::EvalOptions;
use super::progress::Progress;
use super::report::{EvalReport, ProbeReport, ThresholdReport, VariantResult};
use crate::tasks::TaskKind;

/// What the parts of one evaluation share: the model and options, the checked sequence
/// length and document limit, the given thresholds, the progress, and the outputs and
/// peer calibration gathered while the task runs.
pub(super) struct Ctx<'a> {
    /// The model evaluated (with its fine-tuned weights, if any).
    pub(super) model: &'a LoadedModel,
    /// The evaluation's options.
    pub(super) opts: &'a EvalOptions,
    /// Tokens per sequence (the option, or the task's default).
    pub(super) seq_len: usize,
    /// Documents before the split (`None`: all).
    pub(super) limit: Option<usize>,
    /// Whether a variant needs thresholds (any but dense).
    pub(super) needs_th: bool,
    /// Thresholds given by a file or the configuration (logit units), with their report;
    /// `None`: calibrated on the task's data.
    pub(super) given: Option<(Thresholds, ThresholdReport)>,
    /// Where progress goes.
    pub(super) progress: &'a dyn Progress,
    /// Output files written to temporary paths, renamed into place when the whole
    /// evaluation has succeeded.
    pub(super) staged: RefCell<Vec<(PendingFile, PathBuf)>>,
    /// The peers' knobs calibrated to [`EvalOptions::peer_keep`] (with the calibration
    /// items).
    pub(super) peer_knobs: RefCell<Option<crate::peer_calibrate::PeerKnobs>>,
}

impl Ctx<'_> {
    /// The report of the task's results: `items` scored (`tokens` tokens) on `split`, with
    /// its thresholds, probe and rows.
    pub(super) fn report(
        &self,
        items: usize,
        tokens: u64,
        split: String,
        thresholds: Option<ThresholdReport>,
        probe: Option<ProbeReport>,
        rows: Vec<VariantResult>,
    ) -> EvalReport {
        let task = self.opts.task;
        EvalReport {
            model: self.model.name.clone(),
            task: task.name().into(),
            kind: task.kind(),
            metric: task.metric_name().into(),
            higher_is_better: task.kind() != TaskKind::Perplexity,
            items,
            item_name: task.item_name().into(),
            tokens,
            seq_len: self.seq_len,
            seed: self.opts.seed,
            split,
            weights: self.opts.weights.clone(),
            thresholds,
            probe,
            rows,
            references: Vec::new(),
            peer_calibration: None,
            peer_knobs: None,
        }
    }
}
