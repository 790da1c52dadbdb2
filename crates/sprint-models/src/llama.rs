//! Llama-family decoder (e.g. SmolLM2) loaded from a GGUF file: RMSNorm, grouped-query
//! attention, rotary embedding in GGML's interleaved layout (the q/k weights as stored in the
//! GGUF), SwiGLU feed-forward, tied or separate output matrix. Every tensor is dequantised
//! to f32. The forward is over the full sequence and returns every position's logits.

use std::path::Path;

use candle_core::{Device, Tensor};

use crate::activation::Activation;
use crate::attention::Attention;
use crate::error::{CandleContext, ModelError, Result};
use crate::geometry::AttentionGeometry;
use crate::gguf::GgufFile;
use crate::mha::{Projections, Rope, SelfAttention};
use crate::nn::{Embedding, Linear, RmsNorm};
use crate::record::{Recorder, RunRecord};
use crate::tokenizer::TokenBatch;
use crate::weights::WeightMap;

/// Hyper-parameters read from the GGUF metadata (`llama.*` keys).
#[derive(Clone, Debug, PartialEq)]
pub struct LlamaConfig {
    /// Vocabulary size (rows of `token_embd`).
    pub vocab_size: usize,
    /// Hidden size (`llama.embedding_length`).
    pub hidden_size: usize,
    /// Feed-forward size (`llama.feed_forward_length`).
    pub intermediate_size: usize,
    /// Blocks (`llama.block_count`).
    pub num_layers: usize,
    /// Query heads (`llama.attention.head_count`).
    pub num_heads: usize,
    /// Key/value heads (`llama.attention.head_count_kv`).
    pub num_kv_heads: usize,
    /// RoPE frequency base (`llama.rope.freq_base`, default 10000).
    pub rope_base: f32,
    /// RMSNorm epsilon (`llama.attention.layer_norm_rms_epsilon`).
    pub rms_eps: f64,
    /// Trained context length (`llama.context_length`).
    pub context_length: usize,
}

impl LlamaConfig {
    /// Reads the `llama.*` metadata of `file`.
    pub fn from_gguf(file: &GgufFile) -> Result<Self> {
        let arch = file.meta_str("general.architecture")?;
        if arch != "llama" {
            return Err(ModelError::config(
                file.path(),
                format!("general.architecture is `{arch}`; only `llama` is supported"),
            ));
        }
        let u = |k: &str| file.meta_u32(k).map(|x| x as usize);
        let num_heads = u("llama.attention.head_count")?;
        let hidden_size = u("llama.embedding_length")?;
        let num_kv_heads = u("llama.attention.head_count_kv").unwrap_or(num_heads);
        let vocab_size = match file.content().tensor_infos.get("token_embd.weight") {
            Some(t) if t.shape.rank() == 2 => t.shape.dims()[0],
            _ => {
                return Err(ModelError::MissingTensor {
                    path: file.path().to_path_buf(),
                    tensor: "token_embd.weight".into(),
                });
            }
        };
        let cfg = Self {
            vocab_size,
            hidden_size,
            intermediate_size: u("llama.feed_forward_length")?,
            num_layers: u("llama.block_count")?,
            num_heads,
            num_kv_heads,
            rope_base: file.meta_f32("llama.rope.freq_base").unwrap_or(10_000.0),
            rms_eps: f64::from(file.meta_f32("llama.attention.layer_norm_rms_epsilon")?),
            context_length: u("llama.context_length")?,
        };
        if num_heads == 0
            || num_kv_heads == 0
            || !hidden_size.is_multiple_of(num_heads)
            || !num_heads.is_multiple_of(num_kv_heads)
        {
            return Err(ModelError::config(
                file.path(),
                format!(
                    "unsupported head layout: hidden {hidden_size}, {num_heads} heads, {num_kv_heads} kv heads"
                ),
            ));
        }
        if let Ok(rd) = u("llama.rope.dimension_count")
            && rd != cfg.head_dim()
        {
            return Err(ModelError::config(
                file.path(),
                format!(
                    "partial rotary embedding ({rd} of {} dims) is not supported",
                    cfg.head_dim()
                ),
            ));
        }
        Ok(cfg)
    }

    /// Elements per head.
    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_heads
    }
}

#[derive(Clone, Debug)]
pub(crate) struct Block {
    pub(crate) attn_norm: RmsNorm,
    pub(crate) attn: SelfAttention,
    pub(crate) ffn_norm: RmsNorm,
    pub(crate) gate: Linear,
    pub(crate) up: Linear,
    pub(crate) down: Linear,
}

/// A Llama-family language model.
#[derive(Clone, Debug)]
pub struct LlamaModel {
    cfg: LlamaConfig,
    embed: Embedding,
    blocks: Vec<Block>,
    norm: RmsNorm,
    output: Linear,
}

impl LlamaModel {
    /// Opens a GGUF file and loads the model (every tensor dequantised to f32).
    pub fn load_gguf(path: &Path) -> Result<Self> {
        let file = GgufFile::open(path)?;
        Self::from_gguf(&file)
    }

    /// Loads the model from an open GGUF file.
    pub fn from_gguf(file: &GgufFile) -> Result<Self> {
        let cfg = LlamaConfig::from_gguf(file)?;
        let w = file.dequantize_all()?;
        Self::from_weights(cfg, &w)
    }

    /// Builds the model from GGUF-named f32 weights.
    pub fn from_weights(cfg: LlamaConfig, w: &WeightMap) -> Result<Self> {
        let (h, d) = (cfg.hidden_size, cfg.head_dim());
        let kv = cfg.num_kv_heads * d;
        let f = cfg.intermediate_size;
        let norm =
            |name: &str| -> Result<RmsNorm> { Ok(RmsNorm::new(w.get(name, &[h])?, cfg.rms_eps)) };
        let lin = |name: &str, i, o| Linear::load(w, name, i, o, false);
        let blocks = (0..cfg.num_layers)
            .map(|i| {
                let p = format!("blk.{i}");
                Ok(Block {
                    attn_norm: norm(&format!("{p}.attn_norm.weight"))?,
                    attn: SelfAttention::new(
                        Projections {
                            q: lin(&format!("{p}.attn_q"), h, h)?,
                            k: lin(&format!("{p}.attn_k"), h, kv)?,
                            v: lin(&format!("{p}.attn_v"), h, kv)?,
                            o: lin(&format!("{p}.attn_output"), h, h)?,
                        },
                        cfg.num_heads,
                        cfg.num_kv_heads,
                        d,
                        Some(Rope::new(cfg.rope_base, d)),
                    )?,
                    ffn_norm: norm(&format!("{p}.ffn_norm.weight"))?,
                    gate: lin(&format!("{p}.ffn_gate"), h, f)?,
                    up: lin(&format!("{p}.ffn_up"), h, f)?,
                    down: lin(&format!("{p}.ffn_down"), f, h)?,
                })
            })
            .collect::<Result<_>>()?;
        let embed = Embedding::load(w, "token_embd", cfg.vocab_size, h)?;
        let output =
            Linear::output_head(w.get_opt("output.weight", &[cfg.vocab_size, h])?, &embed)?;
        Ok(Self {
            norm: norm("output_norm.weight")?,
            embed,
            blocks,
            output,
            cfg,
        })
    }

    /// Token embeddings, blocks, final norm and output head (for the soft forward).
    pub(crate) fn parts(&self) -> (&Embedding, &[Block], &RmsNorm, &Linear) {
        (&self.embed, &self.blocks, &self.norm, &self.output)
    }

    /// The configuration.
    pub fn config(&self) -> &LlamaConfig {
        &self.cfg
    }

    /// Attention geometry.
    pub fn geometry(&self) -> AttentionGeometry {
        AttentionGeometry {
            layers: self.cfg.num_layers,
            heads: self.cfg.num_heads,
            kv_heads: self.cfg.num_kv_heads,
            head_dim: self.cfg.head_dim(),
            causal: true,
        }
    }

    /// Final normalised hidden states `[batch, seq, hidden]` (causal; sequences
    /// right-padded, positions `0..seq`).
    pub fn forward_hidden(
        &self,
        batch: &TokenBatch,
        attn: &dyn Attention,
        trace: bool,
    ) -> Result<(Tensor, RunRecord)> {
        batch.check_len(self.cfg.context_length)?;
        let ids = batch.ids_tensor(&Device::Cpu)?;
        let mut x = self.embed.forward(&ids)?;
        let mut rec = Recorder::new(batch.batch_size(), self.cfg.num_layers, trace, "llama");
        for (l, b) in self.blocks.iter().enumerate() {
            let a = b.attn.forward(
                &b.attn_norm.forward(&x)?,
                l,
                &batch.valid,
                true,
                attn,
                &mut rec,
            )?;
            x = (x + a).op("residual")?;
            let hn = b.ffn_norm.forward(&x)?;
            let g = b.gate.forward_act(&hn, Some(Activation::Silu))?;
            let m = b.down.forward(&(g * b.up.forward(&hn)?).op("swiglu")?)?;
            x = (x + m).op("residual")?;
        }
        Ok((self.norm.forward(&x)?, rec.finish()))
    }

    /// Logits `[batch, seq, vocab]` of every position.
    pub fn forward(
        &self,
        batch: &TokenBatch,
        attn: &dyn Attention,
        trace: bool,
    ) -> Result<(Tensor, RunRecord)> {
        let (h, rec) = self.forward_hidden(batch, attn, trace)?;
        Ok((self.logits(&h)?, rec))
    }

    /// Logits of hidden states `[..., hidden]` (e.g. of selected positions only).
    pub fn logits(&self, hidden: &Tensor) -> Result<Tensor> {
        self.output.forward(hidden)
    }
}
