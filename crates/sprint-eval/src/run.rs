//! The evaluation driver: loads the task's data, calibrates thresholds (or reads them),
//! runs every requested attention variant and collects one [`EvalReport`] in the layout of
//! the paper's Fig 9 (metric per variant, kept fraction, delta vs dense).

use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::Tensor;
use serde::Serialize;
use sprint_assets::Cache;
use sprint_assets::data;
use sprint_core::config::{AttentionConfig, ThresholdFile, Thresholds, Variant};
use sprint_models::attention::{Attention, backend};
use sprint_models::model::Model;
use sprint_models::{KeepStats, LoadedModel, RunRecord, SequenceTrace, TokenBatch};

use crate::calibrate::{
    CalibratingAttention, CalibrationMeta, ScoreStats, method_description, threshold_file,
    write_threshold_file,
};
use crate::error::{CandleOp, EvalError, Result};
use crate::logreg::{LogRegOptions, LogisticRegression};
use crate::metrics::{Perplexity, accuracy, token_nll};
use crate::tasks::{
    SENTIMENT_NEGATIVE, SENTIMENT_POSITIVE, Task, TaskKind, labeled_corpus, perplexity_text,
    sentiment_prompt, subset, windows,
};

/// Probes fitted in this process, by model, task, document limit, length and seed.
static PROBES: std::sync::LazyLock<
    std::sync::Mutex<std::collections::HashMap<String, (LogisticRegression, f64)>>,
> = std::sync::LazyLock::new(Default::default);

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
            },
            batch_size: 16,
            trace: None,
            save_thresholds: None,
            dump_windows: None,
        }
    }
}

/// Receives progress: a stage with its length, then increments.
pub trait Progress {
    /// A new stage of `len` units of `what` begins.
    fn stage(&self, what: &str, len: u64);
    /// `n` units of the current stage are done.
    fn inc(&self, n: u64);
}

/// Progress that goes nowhere.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoProgress;

impl Progress for NoProgress {
    fn stage(&self, _what: &str, _len: u64) {}
    fn inc(&self, _n: u64) {}
}

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
    /// Training documents (dense embeddings).
    pub train_documents: usize,
    /// Accuracy on the training documents.
    pub train_accuracy: f64,
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
    /// Thresholds of the non-dense variants (absent when only dense ran).
    pub thresholds: Option<ThresholdReport>,
    /// The probe (probe tasks).
    pub probe: Option<ProbeReport>,
    /// One row per variant, in the requested order.
    pub rows: Vec<VariantResult>,
}

/// What a pass of the model over the evaluated items returns (its wall time is measured
/// by [`Ctx::rows`] around the pass).
struct PassResult {
    /// The task's metric (accuracy as a fraction, or perplexity).
    metric: f64,
    /// Scored tokens and summed NLL (perplexity tasks).
    perplexity: Option<Perplexity>,
    /// What the pass's forwards recorded.
    totals: PassTotals,
}

/// What the forwards of one pass recorded, summed over its batches: (query, key) pair
/// counts, real tokens, and the SPRINT trace of the first sequence of the first forward.
#[derive(Default)]
struct PassTotals {
    /// Visible, kept and softmax pair counts, in pairs, over all layers and heads.
    stats: KeepStats,
    /// Real (unpadded) tokens fed to the model.
    tokens: u64,
    /// Trace of the first sequence of the first forward, when it was asked for.
    trace: Option<SequenceTrace>,
    /// Whether the first forward records a trace.
    trace_first: bool,
    /// Forwards added so far.
    forwards: usize,
}

impl PassTotals {
    /// Empty totals; `trace_first` asks for the trace of the first forward.
    fn new(trace_first: bool) -> Self {
        Self {
            trace_first,
            ..Self::default()
        }
    }

    /// Whether the next forward must record a trace (only the first, when asked for).
    fn wants_trace(&self) -> bool {
        self.trace_first && self.forwards == 0
    }

    /// Adds the record `rec` of one forward over `batch`: its counts, its real tokens, and
    /// the trace of its first sequence when that forward was the traced one.
    fn add(&mut self, batch: &TokenBatch, rec: RunRecord) {
        self.tokens += batch.lengths.iter().map(|&l| l as u64).sum::<u64>();
        self.stats += rec.totals();
        if self.wants_trace() {
            self.trace = rec.sequences.into_iter().next().and_then(|s| s.trace);
        }
        self.forwards += 1;
    }
}

fn ensure_encoder(model: &LoadedModel, task: Task) -> Result<()> {
    match model.model {
        Model::Bert(_) | Model::Albert(_) => Ok(()),
        _ => Err(EvalError::TaskModel {
            task: task.name().into(),
            needs: "a text encoder (BERT, ALBERT)",
            model: model.name.clone(),
            is: format!("a {} model", model.model.architecture().name()),
        }),
    }
}

fn ensure_decoder(model: &LoadedModel, task: Task) -> Result<()> {
    match model.model {
        Model::Llama(_) | Model::Gpt2(_) => Ok(()),
        _ => Err(EvalError::TaskModel {
            task: task.name().into(),
            needs: "a decoder (Llama, GPT-2)",
            model: model.name.clone(),
            is: format!("a {} model", model.model.architecture().name()),
        }),
    }
}

/// Final hidden states, then logits only of the positions `pos[b]` of each sequence:
/// returns `[b][positions][vocab]` as vectors, in chunks of `chunk` positions.
fn decoder_logits(
    model: &Model,
    batch: &TokenBatch,
    attn: &dyn Attention,
    trace: bool,
    positions: &[Vec<usize>],
    mut sink: impl FnMut(usize, usize, &[f32]) -> Result<()>,
) -> Result<RunRecord> {
    const CHUNK: usize = 256;
    match model {
        Model::Llama(m) => {
            let (h, rec) = m.forward_hidden(batch, attn, trace)?;
            for (b, pos) in positions.iter().enumerate() {
                let hb = h.get(b).op("hidden states")?;
                for chunk in pos.chunks(CHUNK) {
                    let idx = Tensor::from_vec(
                        chunk.iter().map(|&p| p as u32).collect::<Vec<_>>(),
                        chunk.len(),
                        hb.device(),
                    )
                    .op("positions")?;
                    let sel = hb.index_select(&idx, 0).op("select positions")?;
                    let logits = m.logits(&sel)?.to_vec2::<f32>().op("logits")?;
                    for (p, row) in chunk.iter().zip(&logits) {
                        sink(b, *p, row)?;
                    }
                }
            }
            Ok(rec)
        }
        other => {
            let (logits, rec) = other.logits(batch, attn, trace)?;
            for (b, pos) in positions.iter().enumerate() {
                let lb = logits.get(b).op("logits")?;
                for &p in pos {
                    let row = lb.get(p).and_then(|r| r.to_vec1::<f32>()).op("logits")?;
                    sink(b, p, &row)?;
                }
            }
            Ok(rec)
        }
    }
}

/// Embeddings (one row of model-width floats per text) of `texts` with `attn`, truncated
/// to `seq_len` tokens, `batch_size` texts per forward, with what the forwards recorded
/// (the first forward traced when `trace_first`); progress advances by one per text.
fn embed_all(
    model: &LoadedModel,
    texts: &[&str],
    seq_len: usize,
    batch_size: usize,
    attn: &dyn Attention,
    trace_first: bool,
    progress: &dyn Progress,
) -> Result<(Vec<Vec<f32>>, PassTotals)> {
    let mut rows = Vec::with_capacity(texts.len());
    let mut totals = PassTotals::new(trace_first);
    for chunk in texts.chunks(batch_size.max(1)) {
        let batch = model.encode_batch(chunk, Some(seq_len))?;
        let (e, rec) = model
            .model
            .embed(&batch, attn, totals.wants_trace(), true)?;
        totals.add(&batch, rec);
        rows.extend(e.to_vec2::<f32>().op("embeddings")?);
        progress.inc(chunk.len() as u64);
    }
    Ok((rows, totals))
}

/// Per-layer thresholds `Th` (logit units) of `th`: each layer's value, or the mean over
/// its heads.
fn per_layer(th: &Thresholds) -> Vec<f32> {
    th.values
        .iter()
        .map(|r| r.iter().sum::<f32>() / r.len().max(1) as f32)
        .collect()
}

fn resolve_given(
    choice: &ThresholdChoice,
    opts: &EvalOptions,
    layers: usize,
    heads: usize,
) -> Result<Option<(Thresholds, ThresholdReport)>> {
    match choice {
        ThresholdChoice::File(path) => {
            let f = ThresholdFile::read(path)?;
            let th = f.resolve(layers, heads, &path.display().to_string())?;
            let report = ThresholdReport {
                source: format!("file {}", path.display()),
                method: f
                    .meta
                    .get("method")
                    .cloned()
                    .unwrap_or_else(|| "not stated in the file".into()),
                target_keep: f.meta.get("target_keep").and_then(|s| s.parse().ok()),
                split: f.meta.get("split").cloned(),
                per_layer: per_layer(&th),
            };
            Ok(Some((th, report)))
        }
        ThresholdChoice::Config => {
            let th = opts.attention.thresholds(layers, heads)?;
            let report = ThresholdReport {
                source: "config".into(),
                method: "given in the attention configuration".into(),
                target_keep: None,
                split: None,
                per_layer: per_layer(&th),
            };
            Ok(Some((th, report)))
        }
        ThresholdChoice::Given { thresholds, method } => {
            if thresholds.values.len() != layers
                || thresholds.values.iter().any(|r| r.len() != heads)
            {
                return Err(EvalError::Input(format!(
                    "given thresholds are not {layers} layers x {heads} heads"
                )));
            }
            let report = ThresholdReport {
                source: "given".into(),
                method: method.clone(),
                target_keep: None,
                split: None,
                per_layer: per_layer(thresholds),
            };
            Ok(Some((thresholds.clone(), report)))
        }
        ThresholdChoice::Calibrate { .. } => Ok(None),
    }
}

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

fn make_backend(
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

fn check_variants(opts: &EvalOptions) -> Result<()> {
    if opts.variants.is_empty() {
        return Err(EvalError::Input("no variant to evaluate".into()));
    }
    for (i, v) in opts.variants.iter().enumerate() {
        if opts.variants[..i].contains(v) {
            return Err(EvalError::Input(format!(
                "variant `{}` listed twice",
                v.name()
            )));
        }
    }
    Ok(())
}

/// Runs the evaluation of `opts` on `model`.
pub fn evaluate(
    model: &LoadedModel,
    cache: &Cache,
    opts: &EvalOptions,
    progress: &dyn Progress,
) -> Result<EvalReport> {
    check_variants(opts)?;
    if opts.batch_size == 0 {
        return Err(EvalError::Input("batch size must be at least 1".into()));
    }
    match opts.task.kind() {
        TaskKind::Probe => ensure_encoder(model, opts.task)?,
        _ => ensure_decoder(model, opts.task)?,
    }
    let g = model.model.geometry();
    sprint_core::shape_check::check_config_fits(&opts.attention, g.heads, g.kv_heads, g.head_dim)?;
    let seq_len = opts.seq_len.unwrap_or(opts.task.default_seq_len());
    if seq_len < 2 {
        return Err(EvalError::Input(format!(
            "--seq-len must be at least 2, got {seq_len}"
        )));
    }
    let limit = match opts.limit {
        Some(0) => None,
        Some(n) => Some(n),
        None => opts.task.default_limit(),
    };
    let geo = model.model.geometry();
    let needs_th = opts.variants.iter().any(|&v| v != Variant::Dense);
    let given = if needs_th {
        resolve_given(&opts.thresholds, opts, geo.layers, geo.heads)?
    } else {
        None
    };
    let ctx = Ctx {
        model,
        opts,
        seq_len,
        limit,
        needs_th,
        given,
        progress,
    };
    match opts.task.kind() {
        TaskKind::Probe => ctx.probe(cache),
        TaskKind::Perplexity => ctx.perplexity(cache),
        TaskKind::ZeroShot => ctx.zero_shot(cache),
    }
}

struct Ctx<'a> {
    model: &'a LoadedModel,
    opts: &'a EvalOptions,
    seq_len: usize,
    limit: Option<usize>,
    needs_th: bool,
    given: Option<(Thresholds, ThresholdReport)>,
    progress: &'a dyn Progress,
}

impl Ctx<'_> {
    fn calib_choice(&self) -> Option<(f64, bool, Option<usize>)> {
        match (&self.opts.thresholds, self.needs_th, &self.given) {
            (
                ThresholdChoice::Calibrate {
                    keep,
                    per_head,
                    items,
                },
                true,
                None,
            ) => Some((*keep, *per_head, *items)),
            _ => None,
        }
    }

    fn calibrator(&self) -> CalibratingAttention {
        let g = self.model.model.geometry();
        CalibratingAttention::new(self.opts.attention.clone(), g.layers, g.heads)
    }

    /// The thresholds (logit units) of the non-dense variants and their report. When the
    /// options ask for a calibration, `calibrate(items)` (`items`: the requested number of
    /// calibration items, if any) returns the score statistics and a description of the
    /// calibration data; the thresholds are their quantiles at the target keep fraction,
    /// written to `--save-thresholds` when asked. Otherwise the given ones (file or
    /// configuration), or none when only dense runs.
    fn thresholds(
        &self,
        calibrate: impl FnOnce(Option<usize>) -> Result<(ScoreStats, String)>,
    ) -> Result<(Option<Thresholds>, Option<ThresholdReport>)> {
        let Some((keep, per_head, items)) = self.calib_choice() else {
            return Ok(self.given.clone().unzip());
        };
        let (stats, split) = calibrate(items)?;
        let th = stats.thresholds(keep, per_head)?;
        let meta = CalibrationMeta {
            target_keep: keep,
            per_head,
            model: self.model.name.clone(),
            task: self.opts.task.name().into(),
            split: split.clone(),
            seed: self.opts.seed,
            scores: stats.total(),
        };
        if let Some(p) = &self.opts.save_thresholds {
            write_threshold_file(p, &threshold_file(&th, &meta))?;
        }
        let report = ThresholdReport {
            source: "calibrated".into(),
            method: method_description(per_head),
            target_keep: Some(keep),
            split: Some(split),
            per_layer: per_layer(&th),
        };
        Ok((Some(th), Some(report)))
    }

    /// Runs every variant through `pass` (given the variant's attention backend and whether
    /// to trace) and builds the rows: the pass's metric and pair counts, its wall time in
    /// seconds with the item and token rates derived from it, and the trace written to its
    /// file. Returns the rows, with their delta vs dense when dense ran, and the tokens of
    /// one pass.
    fn rows(
        &self,
        th: &Option<Thresholds>,
        items: usize,
        mut pass: impl FnMut(&dyn Attention, bool) -> Result<PassResult>,
    ) -> Result<(Vec<VariantResult>, u64)> {
        let g = self.model.model.geometry();
        let several = self.opts.variants.len() > 1;
        let mut rows: Vec<VariantResult> = Vec::new();
        let mut tokens = 0;
        // All traces or none: each is written to a registered temporary file (removed on
        // error or signal) and renamed into place only once every variant has run.
        let mut staged: Vec<(sprint_core::outfile::PendingFile, PathBuf)> = Vec::new();
        for &v in &self.opts.variants {
            let attn = make_backend(self.opts, v, th, g.layers, g.heads)?;
            self.progress.stage(
                &format!("{} {}", v.name(), self.opts.task.item_name()),
                items as u64,
            );
            let t0 = Instant::now();
            let r = pass(attn.as_ref(), self.opts.trace.is_some())?;
            let seconds = t0.elapsed().as_secs_f64();
            let PassTotals {
                stats,
                tokens: pass_tokens,
                trace,
                ..
            } = r.totals;
            tokens = pass_tokens;
            let trace = match (&self.opts.trace, trace) {
                (Some(base), Some(mut t)) => {
                    let p = trace_path(base, v, several);
                    t.header.workload = format!("{} {}", self.model.name, self.opts.task.name());
                    t.header.provenance = Some(sprint_attention::summary::provenance(
                        attn.config(),
                        th.as_ref(),
                    ));
                    let tmp = sprint_core::outfile::PendingFile::new(&p);
                    t.write(tmp.path()).map_err(|e| {
                        EvalError::Input(
                            e.to_string().replace(
                                &tmp.path().display().to_string(),
                                &p.display().to_string(),
                            ),
                        )
                    })?;
                    staged.push((tmp, p.clone()));
                    Some(p)
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
            });
        }
        for (tmp, p) in staged {
            tmp.persist(&p)?;
        }
        if let Some(d) = rows.iter().find(|r| r.variant == "dense").map(|r| r.metric) {
            for r in &mut rows {
                r.delta = Some(r.metric - d);
            }
        }
        Ok((rows, tokens))
    }

    /// Runs the token sequences `seqs` through the decoder with `attn`, `batch_size`
    /// sequences per forward (padded with the tokenizer's pad id), adding what the
    /// forwards record to `totals` (which decides whether the first is traced). For each
    /// sequence `i` of `len` tokens and each position `p` of `positions(len)`,
    /// `sink(i, p, row)` receives the next-token logits at `p` (one value per vocabulary
    /// entry, logit units). Progress advances by one per sequence.
    fn decode_all<S: AsRef<[u32]>>(
        &self,
        seqs: &[S],
        batch_size: usize,
        attn: &dyn Attention,
        totals: &mut PassTotals,
        positions: impl Fn(usize) -> Vec<usize>,
        mut sink: impl FnMut(usize, usize, &[f32]) -> Result<()>,
    ) -> Result<()> {
        let pad = self.model.tokenizer()?.pad_id();
        for (c, chunk) in seqs.chunks(batch_size).enumerate() {
            let ids = chunk.iter().map(|s| s.as_ref().to_vec()).collect();
            let batch = TokenBatch::from_sequences(ids, pad)?;
            let pos: Vec<Vec<usize>> = batch.lengths.iter().map(|&l| positions(l)).collect();
            let first = c * batch_size;
            let rec = decoder_logits(
                &self.model.model,
                &batch,
                attn,
                totals.wants_trace(),
                &pos,
                |b, p, row| sink(first + b, p, row),
            )?;
            totals.add(&batch, rec);
            self.progress.inc(chunk.len() as u64);
        }
        Ok(())
    }

    fn report(
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
            thresholds,
            probe,
            rows,
        }
    }

    fn probe(&self, cache: &Cache) -> Result<EvalReport> {
        let corpus = labeled_corpus(self.opts.task, cache)?;
        let chosen = subset(corpus.docs.len(), self.limit, self.opts.seed);
        let labels: Vec<usize> = chosen.iter().map(|&i| corpus.docs[i].label).collect();
        let sp = data::stratified_split(&labels, TEST_FRACTION, self.opts.seed)?;
        if sp.train.is_empty() || sp.test.is_empty() {
            return Err(EvalError::Input(format!(
                "{} documents are too few for a train/test split",
                chosen.len()
            )));
        }
        let text = |i: usize| corpus.docs[chosen[i]].text.as_str();
        let train_texts: Vec<&str> = sp.train.iter().map(|&i| text(i)).collect();
        let train_labels: Vec<usize> = sp.train.iter().map(|&i| labels[i]).collect();
        let test_texts: Vec<&str> = sp.test.iter().map(|&i| text(i)).collect();
        let test_labels: Vec<usize> = sp.test.iter().map(|&i| labels[i]).collect();
        let bs = self.opts.batch_size;

        // Probe on dense embeddings of the train split (fitted once per model, task, data
        // and seed in a process: a sweep evaluates many thresholds with the same probe).
        let key = format!(
            "{}|{}|{:?}|{}|{}",
            self.model.name,
            self.opts.task.name(),
            self.limit,
            self.seq_len,
            self.opts.seed
        );
        let cached = PROBES
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
            .cloned();
        let (clf, train_acc) = match cached {
            Some(c) => c,
            None => {
                self.progress
                    .stage("dense train documents", train_texts.len() as u64);
                let dense = make_backend(self.opts, Variant::Dense, &None, 1, 1)?;
                let (train_x, _) = embed_all(
                    self.model,
                    &train_texts,
                    self.seq_len,
                    bs,
                    dense.as_ref(),
                    false,
                    self.progress,
                )?;
                let classes = corpus.labels.len();
                let clf = LogisticRegression::fit(
                    &train_x,
                    &train_labels,
                    classes,
                    &LogRegOptions::default(),
                )?;
                let train_acc = accuracy(&clf.predict(&train_x)?, &train_labels);
                PROBES
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(key, (clf.clone(), train_acc));
                (clf, train_acc)
            }
        };

        // Thresholds.
        let (th, th_report) = self.thresholds(|items| {
            let n = items.unwrap_or(16).min(sp.train.len()).max(1);
            let mut order = data::permutation(sp.train.len(), self.opts.seed ^ 0xca11_b000);
            order.truncate(n);
            order.sort_unstable();
            let texts: Vec<&str> = order.iter().map(|&j| train_texts[j]).collect();
            self.progress.stage("calibration documents", n as u64);
            let cal = self.calibrator();
            embed_all(
                self.model,
                &texts,
                self.seq_len,
                bs,
                &cal,
                false,
                self.progress,
            )?;
            let split = format!(
                "{n} documents of the train split (seeded choice, seed {})",
                self.opts.seed
            );
            Ok((cal.into_stats(), split))
        })?;

        let (rows, tokens) = self.rows(&th, test_texts.len(), |attn, trace| {
            let (x, totals) = embed_all(
                self.model,
                &test_texts,
                self.seq_len,
                bs,
                attn,
                trace,
                self.progress,
            )?;
            let pred = clf.predict(&x)?;
            Ok(PassResult {
                metric: accuracy(&pred, &test_labels),
                perplexity: None,
                totals,
            })
        })?;
        let split = format!(
            "stratified {:.0}% test split of {} documents (seed {}), {} train / {} test, first {} tokens",
            TEST_FRACTION * 100.0,
            chosen.len(),
            self.opts.seed,
            sp.train.len(),
            sp.test.len(),
            self.seq_len
        );
        let probe = ProbeReport {
            train_documents: sp.train.len(),
            train_accuracy: train_acc,
            classes: corpus.labels.clone(),
        };
        Ok(self.report(
            test_texts.len(),
            tokens,
            split,
            th_report,
            Some(probe),
            rows,
        ))
    }

    fn perplexity(&self, cache: &Cache) -> Result<EvalReport> {
        let text = perplexity_text(self.opts.task, cache)?;
        let tok = self.model.tokenizer()?;
        self.progress.stage("tokenising", 1);
        let ids = tok.encode_plain(&text)?;
        self.progress.inc(1);
        let all = windows(&ids, self.seq_len);
        if all.is_empty() {
            return Err(EvalError::Input(format!(
                "the text has {} tokens, fewer than one window of {}",
                ids.len(),
                self.seq_len
            )));
        }
        let n_eval = self.limit.map_or(all.len(), |l| l.min(all.len()));
        let eval: Vec<&[u32]> = all[..n_eval].to_vec();
        if let Some(p) = &self.opts.dump_windows {
            let json = serde_json::json!({
                "task": self.opts.task.name(),
                "seq_len": self.seq_len,
                "windowing": WINDOWING,
                "windows": eval,
            });
            sprint_core::outfile::write_atomic::<EvalError>(p, |w| {
                use std::io::Write;
                w.write_all(json.to_string().as_bytes())
                    .map_err(|source| EvalError::Io {
                        path: p.clone(),
                        source,
                    })
            })?;
        }
        let (th, th_report) = self.thresholds(|items| {
            let rest = all.len() - n_eval;
            if rest == 0 {
                return Err(EvalError::Input(format!(
                    "all {} windows are evaluated: none is left to calibrate on (use --limit or --thresholds)",
                    all.len()
                )));
            }
            let n = items.unwrap_or(2).min(rest).max(1);
            let mut order = data::permutation(rest, self.opts.seed ^ 0xca11_b000);
            order.truncate(n);
            order.sort_unstable();
            self.progress.stage("calibration windows", n as u64);
            let cal = self.calibrator();
            for &j in &order {
                let batch =
                    TokenBatch::from_sequences(vec![all[n_eval + j].to_vec()], tok.pad_id())?;
                self.model.model.logits_hidden_only(&batch, &cal)?;
                self.progress.inc(1);
            }
            let split = format!(
                "{n} windows chosen with seed {} among the {rest} windows after the evaluated ones",
                self.opts.seed
            );
            Ok((cal.into_stats(), split))
        })?;
        let (rows, tokens) = self.rows(&th, eval.len(), |attn, trace| {
            let mut ppl = Perplexity::default();
            let mut totals = PassTotals::new(trace);
            self.decode_all(
                &eval,
                1,
                attn,
                &mut totals,
                |len| (0..len - 1).collect(),
                |w, p, row| {
                    ppl.add(token_nll(row, eval[w][p + 1] as usize));
                    Ok(())
                },
            )?;
            Ok(PassResult {
                metric: ppl.perplexity(),
                perplexity: Some(ppl),
                totals,
            })
        })?;
        let split = format!(
            "first {n_eval} of {} non-overlapping {}-token windows ({} tokens in all); {WINDOWING}",
            all.len(),
            self.seq_len,
            ids.len()
        );
        Ok(self.report(eval.len(), tokens, split, th_report, None, rows))
    }

    fn zero_shot(&self, cache: &Cache) -> Result<EvalReport> {
        let corpus = labeled_corpus(self.opts.task, cache)?;
        let tok = self.model.tokenizer()?;
        let first_id = |s: &str| -> Result<usize> {
            tok.encode_plain(s)?
                .first()
                .map(|&i| i as usize)
                .ok_or_else(|| EvalError::Input(format!("`{s}` has no token")))
        };
        let neg = first_id(SENTIMENT_NEGATIVE)?;
        let pos = first_id(SENTIMENT_POSITIVE)?;
        let chosen = subset(corpus.docs.len(), self.limit, self.opts.seed);
        let labels: Vec<usize> = chosen.iter().map(|&i| corpus.docs[i].label).collect();
        let sp = data::stratified_split(&labels, SENTIMENT_CALIB_FRACTION, self.opts.seed)?;
        let prompts: Vec<String> = chosen
            .iter()
            .map(|&i| sentiment_prompt(&corpus.docs[i].text))
            .collect();
        let encode = |idx: &[usize]| -> Result<Vec<Vec<u32>>> {
            idx.iter()
                .map(|&i| Ok(tok.encode(&prompts[i], Some(self.seq_len))?))
                .collect()
        };
        // Calibration sentences (never scored): label-free decision bias from the dense
        // model, and the score statistics for the thresholds.
        let mut cal_idx = sp.test.clone();
        if let Some((_, _, Some(n))) = self.calib_choice() {
            cal_idx.truncate(n.max(1));
        }
        if cal_idx.is_empty() {
            return Err(EvalError::Input("no sentence left to calibrate on".into()));
        }
        self.progress
            .stage("calibration sentences", cal_idx.len() as u64);
        let cal = self.calibrator();
        let mut margins = Vec::with_capacity(cal_idx.len());
        self.decode_all(
            &encode(&cal_idx)?,
            self.opts.batch_size,
            &cal,
            &mut PassTotals::new(false),
            |len| vec![len - 1],
            |_, _, row| {
                margins.push(row[pos] as f64 - row[neg] as f64);
                Ok(())
            },
        )?;
        margins.sort_by(f64::total_cmp);
        let bias = median_sorted(&margins);
        let cal_split = format!(
            "{} sentences (stratified {:.0}% split, seed {}), not scored",
            cal_idx.len(),
            SENTIMENT_CALIB_FRACTION * 100.0,
            self.opts.seed
        );
        let (th, th_report) = self.thresholds(|_| Ok((cal.into_stats(), cal_split.clone())))?;
        let eval_idx = sp.train.clone();
        let eval_ids = encode(&eval_idx)?;
        let eval_labels: Vec<usize> = eval_idx.iter().map(|&i| labels[i]).collect();
        let (rows, tokens) = self.rows(&th, eval_idx.len(), |attn, trace| {
            let mut pred = vec![0usize; eval_ids.len()];
            let mut totals = PassTotals::new(trace);
            self.decode_all(
                &eval_ids,
                self.opts.batch_size,
                attn,
                &mut totals,
                |len| vec![len - 1],
                |i, _, row| {
                    pred[i] = usize::from(row[pos] as f64 - row[neg] as f64 > bias);
                    Ok(())
                },
            )?;
            Ok(PassResult {
                metric: accuracy(&pred, &eval_labels),
                perplexity: None,
                totals,
            })
        })?;
        let split = format!(
            "{} of {} sentences scored (stratified, seed {}); positive iff logit(`{SENTIMENT_POSITIVE}`) - logit(`{SENTIMENT_NEGATIVE}`) as next token after a chat prompt exceeds {bias:.3}, the label-free median of that margin over the dense model on {cal_split}",
            eval_idx.len(),
            chosen.len(),
            self.opts.seed
        );
        Ok(self.report(eval_idx.len(), tokens, split, th_report, None, rows))
    }
}

/// Median of a sorted slice (0 when empty).
fn median_sorted(xs: &[f64]) -> f64 {
    match xs.len() {
        0 => 0.0,
        n if n % 2 == 1 => xs[n / 2],
        n => 0.5 * (xs[n / 2 - 1] + xs[n / 2]),
    }
}

/// The perplexity windowing, stated in every report.
pub const WINDOWING: &str = "the text is tokenised once without BOS; each window is an independent sequence of exactly seq_len ids (no BOS prepended, the shorter tail is dropped); tokens 2..seq_len of each window are scored from their prefix inside the window; perplexity = exp(total NLL / scored tokens)";

/// Runs a decoder's forward pass for its side effects on the attention backend (the
/// calibration scores), without computing logits.
trait HiddenOnly {
    fn logits_hidden_only(&self, batch: &TokenBatch, attn: &dyn Attention) -> Result<()>;
}

impl HiddenOnly for Model {
    fn logits_hidden_only(&self, batch: &TokenBatch, attn: &dyn Attention) -> Result<()> {
        match self {
            Model::Llama(m) => {
                m.forward_hidden(batch, attn, false)?;
            }
            other => {
                other.logits(batch, attn, false)?;
            }
        }
        Ok(())
    }
}
