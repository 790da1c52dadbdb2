//! The variants of an evaluation: the attention backend of each, one pass of the task per
//! variant with its wall time, the [`VariantResult`] rows with their delta vs dense, and
//! the traces, written only once every variant has run.

use std::path::{Path, PathBuf};
use std::time::Instant;

use sprint_core::config::{AttentionConfig, Thresholds, Variant};
use sprint_models::SequenceTrace;
use sprint_models::attention::Attention;
use sprint_models::backend;

use super::ctx::Ctx;
use super::options::EvalOptions;
use super::pass::{PassResult, PassTotals};
use super::report::VariantResult;
use crate::error::{EvalError, Result};

/// Where the trace of `variant` goes when the user asked for `--trace base`: `base` itself
/// with one variant, else `STEM.VARIANT.EXT` next to it.
pub fn trace_path(base: &Path, variant: Variant, several: bool) -> PathBuf {
    if !several {
        return base.to_path_buf();
    }
    let stem = base
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "trace".into());
    let name = match base.extension() {
        Some(ext) => format!("{stem}.{}.{}", variant.name(), ext.to_string_lossy()),
        None => format!("{stem}.{}", variant.name()),
    };
    base.with_file_name(name)
}

pub(super) fn make_backend(
    opts: &EvalOptions,
    variant: Variant,
    th: &Option<Thresholds>,
    geometry_layers: usize,
    heads: usize,
) -> Result<Box<dyn Attention>> {
    let mut cfg = opts.attention.clone();
    cfg.variant = variant;
    let th = th.clone().unwrap_or_else(|| Thresholds {
        values: vec![vec![f32::NEG_INFINITY; heads]; geometry_layers],
    });
    Ok(backend(cfg, th)?)
}

/// Everything that determines the result of a variant's pass without a trace: the model
/// (by name: a weights overlay names its file), the task's items (task, limit, length,
/// seed, batch), the backend (configuration with the variant, and the thresholds of a
/// non-dense variant) and the task's own part (e.g. which probe scores the embeddings).
#[derive(Clone, Debug, PartialEq)]
struct PassKey {
    model: String,
    task: String,
    limit: Option<usize>,
    seq_len: usize,
    seed: u64,
    batch_size: usize,
    probe_train: Option<usize>,
    attention: AttentionConfig,
    thresholds: Option<Thresholds>,
    task_part: String,
}

/// What a memoised pass hands out again: the pass's result without its trace, and its
/// measured wall time.
#[derive(Clone)]
struct PassMemo {
    metric: f64,
    perplexity: Option<crate::metrics::Perplexity>,
    item_correct: Option<Vec<bool>>,
    outputs: crate::fidelity::ItemOutputs,
    stats: sprint_models::KeepStats,
    tokens: u64,
    seconds: f64,
}

/// Passes of this process (a reproduction scores the same variant on the same items in
/// several stages: the sweeps' dense reference, the default precision and noise points).
static PASSES: crate::memo::Memo<PassKey, PassMemo> = crate::memo::Memo::new();

impl Ctx<'_> {
    /// The peer parameters of `v`'s backend when `v` is a peer whose knob was calibrated
    /// (`--peer-keep`); `None` otherwise (the configuration's own).
    fn calibrated_peers(&self, v: Variant) -> Option<sprint_core::peers::PeerConfig> {
        let calibrated = matches!(
            v,
            Variant::Sanger | Variant::A3 | Variant::Energon | Variant::Spatten
        );
        let knobs = self.peer_knobs.borrow();
        match (calibrated, knobs.as_ref()) {
            (true, Some(k)) => Some(k.apply(&self.opts.attention.peers)),
            _ => None,
        }
    }

    fn pass_key(
        &self,
        v: Variant,
        th: &Option<Thresholds>,
        task_part: Option<String>,
    ) -> Option<PassKey> {
        if self.opts.trace.is_some() {
            return None;
        }
        let mut attention = self.opts.attention.clone();
        attention.variant = v;
        // The backend's own configuration: a peer's knob as calibrated, when it was.
        if let Some(peers) = self.calibrated_peers(v) {
            attention.peers = peers;
        }
        Some(PassKey {
            model: self.model.name.clone(),
            task: self.opts.task.name().into(),
            limit: self.limit,
            seq_len: self.seq_len,
            seed: self.opts.seed,
            batch_size: self.opts.batch_size,
            probe_train: self.opts.probe_train,
            attention,
            // Dense attention and SpAtten read no thresholds.
            thresholds: if matches!(v, Variant::Dense | Variant::Spatten) {
                None
            } else {
                th.clone()
            },
            task_part: task_part?,
        })
    }

    /// Runs every variant through `pass` (given the variant's attention backend and whether
    /// to trace) and builds the rows: the pass's metric and pair counts, its wall time in
    /// seconds with the item and token rates derived from it, and the trace written to its
    /// file. Returns the rows, with their delta vs dense when dense ran, and the tokens of
    /// one pass. `memo(variant)` is the task's part of the pass's identity when its result
    /// may be kept and reused within the process (`None`: always run it); a pass with a
    /// trace always runs.
    pub(super) fn rows(
        &self,
        th: &Option<Thresholds>,
        items: usize,
        memo: impl Fn(Variant) -> Option<String>,
        mut pass: impl FnMut(&dyn Attention, bool) -> Result<PassResult>,
    ) -> Result<(Vec<VariantResult>, u64)> {
        let g = self.model.model.geometry();
        let several = self.opts.variants.len() > 1;
        let mut rows: Vec<VariantResult> = Vec::new();
        let mut tokens = 0;
        // All traces or none: each is written to a registered temporary file (removed on
        // error or signal) and renamed into place only once the whole evaluation succeeded.
        for &v in &self.opts.variants {
            let attn = match self.calibrated_peers(v) {
                Some(peers) => {
                    let mut o = self.opts.clone();
                    o.attention.peers = peers;
                    make_backend(&o, v, th, g.layers, g.heads)?
                }
                None => make_backend(self.opts, v, th, g.layers, g.heads)?,
            };
            self.progress.stage(
                &format!("{} {}", v.name(), self.opts.task.item_name()),
                items as u64,
            );
            let key = self.pass_key(v, th, memo(v));
            let (r, seconds) = match key.as_ref().and_then(|k| PASSES.get(k)) {
                Some(m) => {
                    self.progress.inc(items as u64);
                    let r = PassResult {
                        metric: m.metric,
                        perplexity: m.perplexity,
                        item_correct: m.item_correct,
                        outputs: m.outputs,
                        totals: PassTotals::reused(m.stats, m.tokens),
                    };
                    (r, m.seconds)
                }
                None => {
                    let t0 = Instant::now();
                    let r = pass(attn.as_ref(), self.opts.trace.is_some())?;
                    let seconds = t0.elapsed().as_secs_f64();
                    if let Some(k) = key {
                        PASSES.put(
                            k,
                            PassMemo {
                                metric: r.metric,
                                perplexity: r.perplexity,
                                item_correct: r.item_correct.clone(),
                                outputs: r.outputs.clone(),
                                stats: r.totals.stats,
                                tokens: r.totals.tokens,
                                seconds,
                            },
                        );
                    }
                    (r, seconds)
                }
            };
            let PassTotals {
                stats,
                tokens: pass_tokens,
                trace,
                ..
            } = r.totals;
            tokens = pass_tokens;
            let trace = match (&self.opts.trace, trace) {
                (Some(base), Some(t)) => {
                    Some(self.stage_trace(base, v, several, attn.as_ref(), th, t)?)
                }
                _ => None,
            };
            rows.push(VariantResult {
                variant: v.name().into(),
                metric: r.metric,
                delta: None,
                kept_fraction: stats.kept_fraction(),
                softmax_fraction: stats.softmax_fraction(),
                visible_pairs: stats.visible,
                false_prune_rate: (stats.datapath.audited == 1).then(|| {
                    stats.datapath.false_pruned as f64 / stats.datapath.exact_kept.max(1) as f64
                }),
                false_keep_rate: (stats.datapath.audited == 1).then(|| {
                    stats.datapath.false_kept as f64
                        / stats
                            .visible
                            .saturating_sub(stats.datapath.exact_kept)
                            .max(1) as f64
                }),
                datapath: stats.datapath,
                new_fetch_share: stats.k_fetched as f64 / stats.visible.max(1) as f64,
                kept_pairs: stats.kept,
                seconds,
                items_per_second: items as f64 / seconds.max(1e-9),
                tokens_per_second: tokens as f64 / seconds.max(1e-9),
                perplexity: r.perplexity,
                trace,
                item_correct: r.item_correct,
                vs_dense: None,
                fidelity_vs_dense: None,
                outputs: r.outputs,
                vs_references: Vec::new(),
            });
        }
        if let Some(dense) = rows.iter().find(|r| r.variant == "dense").cloned() {
            for r in &mut rows {
                r.delta = Some(r.metric - dense.metric);
                if let (Some(d), Some(c)) = (&dense.item_correct, &r.item_correct) {
                    r.vs_dense = Some(crate::paired::paired_accuracy_delta(d, c)?);
                }
                r.fidelity_vs_dense = Some(crate::fidelity::compare(&dense.outputs, &r.outputs)?);
            }
        }
        Ok((rows, tokens))
    }

    /// Stages the trace `t` of variant `v`'s pass for `trace_path(base, v, several)`: its
    /// workload and provenance set, written to a registered temporary file that is renamed
    /// into place once the whole evaluation succeeded. Returns the final path.
    fn stage_trace(
        &self,
        base: &Path,
        v: Variant,
        several: bool,
        attn: &dyn Attention,
        th: &Option<Thresholds>,
        mut t: SequenceTrace,
    ) -> Result<PathBuf> {
        let p = trace_path(base, v, several);
        t.header.workload = format!("{} {}", self.model.name, self.opts.task.name());
        t.header.provenance = Some(sprint_attention::summary::provenance(
            attn.config(),
            th.as_ref(),
        ));
        let tmp = sprint_core::outfile::PendingFile::new(&p);
        t.write(tmp.path()).map_err(|e| {
            EvalError::Input(
                e.to_string()
                    .replace(&tmp.path().display().to_string(), &p.display().to_string()),
            )
        })?;
        self.staged.borrow_mut().push((tmp, p.clone()));
        Ok(p)
    }
}
