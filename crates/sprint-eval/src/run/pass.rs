//! The batched forwards of a pass over a task's items (embeddings of an encoder, selected
//! next-token logits of a decoder) and what they record: pair counts, real tokens, and the
//! trace of the first sequence.

use candle_core::Tensor;
use sprint_models::attention::Attention;
use sprint_models::model::Model;
use sprint_models::{KeepStats, LoadedModel, RunRecord, SequenceTrace, TokenBatch};

use super::ctx::Ctx;
use super::progress::Progress;
use crate::error::{CandleOp, Result};
use crate::metrics::Perplexity;

/// What a pass of the model over the evaluated items returns (its wall time is measured
/// by [`Ctx::rows`] around the pass).
pub(super) struct PassResult {
    /// The task's metric (accuracy as a fraction, or perplexity).
    pub(super) metric: f64,
    /// Scored tokens and summed NLL (perplexity tasks).
    pub(super) perplexity: Option<Perplexity>,
    /// Accuracy tasks: whether each evaluated item was classified right, in item order.
    pub(super) item_correct: Option<Vec<bool>>,
    /// What the pass keeps per item to be compared with another run (fidelity).
    pub(super) outputs: crate::fidelity::ItemOutputs,
    /// What the pass's forwards recorded.
    pub(super) totals: PassTotals,
}

/// What the forwards of one pass recorded, summed over its batches: (query, key) pair
/// counts, real tokens, and the SPRINT trace of the first sequence of the first forward.
#[derive(Default)]
pub(super) struct PassTotals {
    /// Visible, kept and softmax pair counts, in pairs, over all layers and heads.
    pub(super) stats: KeepStats,
    /// Real (unpadded) tokens fed to the model.
    pub(super) tokens: u64,
    /// Trace of the first sequence of the first forward, when it was asked for.
    pub(super) trace: Option<SequenceTrace>,
    /// Whether the first forward records a trace.
    trace_first: bool,
    /// Forwards added so far.
    forwards: usize,
}

impl PassTotals {
    /// Empty totals; `trace_first` asks for the trace of the first forward.
    pub(super) fn new(trace_first: bool) -> Self {
        Self {
            trace_first,
            ..Self::default()
        }
    }

    /// The totals of a pass computed before (kept in memory): its counts and tokens.
    pub(super) fn reused(stats: KeepStats, tokens: u64) -> Self {
        Self {
            stats,
            tokens,
            ..Self::default()
        }
    }

    /// Whether the next forward must record a trace (only the first, when asked for).
    pub(super) fn wants_trace(&self) -> bool {
        self.trace_first && self.forwards == 0
    }

    /// Adds the record `rec` of one forward over `batch`: its counts, its real tokens, and
    /// the trace of its first sequence when that forward was the traced one.
    pub(super) fn add(&mut self, batch: &TokenBatch, rec: RunRecord) {
        self.tokens += batch.lengths.iter().map(|&l| l as u64).sum::<u64>();
        self.stats += rec.totals();
        if self.wants_trace() {
            self.trace = rec.sequences.into_iter().next().and_then(|s| s.trace);
        }
        self.forwards += 1;
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
pub(super) fn embed_all(
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

impl Ctx<'_> {
    /// Runs the token sequences `seqs` through the decoder with `attn`, `batch_size`
    /// sequences per forward (padded with the tokenizer's pad id), adding what the
    /// forwards record to `totals` (which decides whether the first is traced). For each
    /// sequence `i` of `len` tokens and each position `p` of `positions(len)`,
    /// `sink(i, p, row)` receives the next-token logits at `p` (one value per vocabulary
    /// entry, logit units). Progress advances by one per sequence.
    pub(super) fn decode_all<S: AsRef<[u32]>>(
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
}

/// Runs a decoder's forward pass for its side effects on the attention backend (the
/// calibration scores), without computing logits.
pub(super) trait HiddenOnly {
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
