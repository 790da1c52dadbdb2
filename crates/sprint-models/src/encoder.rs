//! The pieces of the post-LayerNorm text encoders shared by BERT and ALBERT: the input
//! embeddings, the encoder layer, the run over the layers and the sentence pooling.

use candle_core::{DType, Device, Tensor};

use crate::activation::Activation;
use crate::attention::Attention;
use crate::error::{CandleContext, Result};
use crate::mha::{Projections, SelfAttention};
use crate::nn::{Embedding, LayerNorm, Linear, l2_normalize, mean_pool};
use crate::record::{Recorder, RunRecord};
use crate::tokenizer::TokenBatch;
use crate::weights::WeightMap;

/// BERT-style input embeddings: word + absolute position + token type (type 0 everywhere),
/// then LayerNorm, each `dim` wide (BERT's hidden size, ALBERT's embedding size).
#[derive(Clone, Debug)]
pub struct TokenEmbeddings {
    word: Embedding,
    position: Embedding,
    token_type: Embedding,
    norm: LayerNorm,
}

impl TokenEmbeddings {
    /// Loads `embeddings.{word,position,token_type}_embeddings` (`vocab`, `positions` and
    /// `types` rows of `dim`) and `embeddings.LayerNorm` (epsilon `eps`).
    pub fn load(
        w: &WeightMap,
        vocab: usize,
        positions: usize,
        types: usize,
        dim: usize,
        eps: f64,
    ) -> Result<Self> {
        Ok(Self {
            word: Embedding::load(w, "embeddings.word_embeddings", vocab, dim)?,
            position: Embedding::load(w, "embeddings.position_embeddings", positions, dim)?,
            token_type: Embedding::load(w, "embeddings.token_type_embeddings", types, dim)?,
            norm: LayerNorm::load(w, "embeddings.LayerNorm", dim, eps)?,
        })
    }

    /// Embeds `batch` into `[batch, seq, dim]`; an error if it is longer than the position
    /// table.
    pub fn forward(&self, batch: &TokenBatch) -> Result<Tensor> {
        self.norm.forward(&self.sum(batch)?)
    }

    /// The sum of the word, position and type embeddings of `batch` before the norm,
    /// `[batch, seq, dim]`.
    pub fn sum(&self, batch: &TokenBatch) -> Result<Tensor> {
        batch.check_len(self.position.rows())?;
        let dev = Device::Cpu;
        let ids = batch.ids_tensor(&dev)?;
        let pos = batch.positions_tensor(&dev)?;
        let types = Tensor::zeros(batch.seq_len(), DType::U32, &dev).op("token types")?;
        let extra =
            (self.position.forward(&pos)? + self.token_type.forward(&types)?).op("embeddings")?;
        let x = self
            .word
            .forward(&ids)?
            .broadcast_add(&extra)
            .op("embeddings")?;
        Ok(x)
    }

    /// The norm after the sum (`embeddings.LayerNorm`).
    pub fn norm(&self) -> &LayerNorm {
        &self.norm
    }
}

/// `x1 = LN(x + Attn(x))`, `out = LN(x1 + W2 act(W1 x1))`.
#[derive(Clone, Debug)]
pub struct PostLnLayer {
    /// Self-attention (no RoPE).
    pub attention: SelfAttention,
    /// Norm after the attention residual.
    pub attention_norm: LayerNorm,
    /// Feed-forward expansion.
    pub ffn_in: Linear,
    /// Feed-forward projection back to the hidden size.
    pub ffn_out: Linear,
    /// Norm after the feed-forward residual.
    pub output_norm: LayerNorm,
    /// Feed-forward activation.
    pub act: Activation,
}

/// Where a checkpoint stores the weights of a [`PostLnLayer`]: names after the layer's
/// prefix, each a linear (`.weight`, `.bias`) or a LayerNorm.
#[derive(Clone, Copy, Debug)]
pub struct PostLnNames {
    /// Query projection.
    pub query: &'static str,
    /// Key projection.
    pub key: &'static str,
    /// Value projection.
    pub value: &'static str,
    /// Attention output projection.
    pub attention_out: &'static str,
    /// Norm after the attention residual.
    pub attention_norm: &'static str,
    /// Feed-forward expansion.
    pub ffn_in: &'static str,
    /// Feed-forward projection back to the hidden size.
    pub ffn_out: &'static str,
    /// Norm after the feed-forward residual.
    pub output_norm: &'static str,
}

/// The sizes of a [`PostLnLayer`]: `hidden` elements in `heads` heads, `intermediate`
/// feed-forward elements, LayerNorm epsilon `eps`.
#[derive(Clone, Copy, Debug)]
pub struct PostLnDims {
    /// Hidden size.
    pub hidden: usize,
    /// Attention heads (dividing `hidden`).
    pub heads: usize,
    /// Feed-forward size.
    pub intermediate: usize,
    /// LayerNorm epsilon.
    pub eps: f64,
}

impl PostLnLayer {
    /// Loads the layer stored under `{prefix}.{name}` for the names in `names` (every linear
    /// with a bias), with sizes `dims` and feed-forward activation `act`.
    pub fn load(
        w: &WeightMap,
        prefix: &str,
        names: &PostLnNames,
        dims: PostLnDims,
        act: Activation,
    ) -> Result<Self> {
        let (h, heads) = (dims.hidden, dims.heads);
        let name = |n: &str| format!("{prefix}.{n}");
        let lin = |n: &str, i, o| Linear::load(w, &name(n), i, o, true);
        let norm = |n: &str| LayerNorm::load(w, &name(n), h, dims.eps);
        Ok(Self {
            attention: SelfAttention::new(
                Projections {
                    q: lin(names.query, h, h)?,
                    k: lin(names.key, h, h)?,
                    v: lin(names.value, h, h)?,
                    o: lin(names.attention_out, h, h)?,
                },
                heads,
                heads,
                h / heads,
                None,
            )?,
            attention_norm: norm(names.attention_norm)?,
            ffn_in: lin(names.ffn_in, h, dims.intermediate)?,
            ffn_out: lin(names.ffn_out, dims.intermediate, h)?,
            output_norm: norm(names.output_norm)?,
            act,
        })
    }

    /// Applies the layer to `x` `[batch, seq, hidden]` as attention layer `layer`.
    pub fn forward(
        &self,
        x: &Tensor,
        layer: usize,
        valid: &[Vec<bool>],
        attn: &dyn Attention,
        rec: &mut Recorder,
    ) -> Result<Tensor> {
        let a = self.attention.forward(x, layer, valid, false, attn, rec)?;
        let x1 = self.attention_norm.forward_residual(x, &a)?;
        let h = self.ffn_in.forward_act(&x1, Some(self.act))?;
        let h = self.ffn_out.forward(&h)?;
        self.output_norm.forward_residual(&x1, &h)
    }
}

/// Runs hidden states `x` `[batch, seq, hidden]` of `batch` through `layers` in order, the
/// `i`-th applied as attention layer `i` of `count`, recording (with head traces if `trace`)
/// under `workload`. Returns the final hidden states and the record.
pub fn run_layers<'a>(
    mut x: Tensor,
    layers: impl IntoIterator<Item = &'a PostLnLayer>,
    count: usize,
    batch: &TokenBatch,
    attn: &dyn Attention,
    trace: bool,
    workload: &str,
) -> Result<(Tensor, RunRecord)> {
    let mut rec = Recorder::new(batch.batch_size(), count, trace, workload);
    for (l, layer) in layers.into_iter().enumerate() {
        x = layer.forward(&x, l, &batch.valid, attn, &mut rec)?;
    }
    Ok((x, rec.finish()))
}

/// Sentence embeddings `[batch, hidden]` from an encoder's output: the mean of the real
/// tokens' final hidden states (`valid`), L2-normalised if `normalize`; the record passes
/// through.
pub fn pool_sentences(
    (hidden, rec): (Tensor, RunRecord),
    valid: &[Vec<bool>],
    normalize: bool,
) -> Result<(Tensor, RunRecord)> {
    let e = mean_pool(&hidden, valid)?;
    let e = if normalize { l2_normalize(&e)? } else { e };
    Ok((e, rec))
}
