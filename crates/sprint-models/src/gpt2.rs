//! GPT-2 decoder (Hugging Face layout, with or without the `transformer.` prefix):
//! pre-LayerNorm blocks, `Conv1D` weights stored `[in, out]`, learned positions, tied
//! output embedding. The forward is over the full sequence and returns every position's
//! logits.

use std::path::Path;

use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::activation::Activation;
use crate::attention::Attention;
use crate::config::{check_heads, parse_activation, read_checkpoint};
use crate::error::{CandleContext, Result};
use crate::geometry::AttentionGeometry;
use crate::mha::SelfAttention;
use crate::nn::{Embedding, LayerNorm, Linear};
use crate::record::{Recorder, RunRecord};
use crate::tokenizer::TokenBatch;
use crate::weights::WeightMap;

fn gelu_new() -> String {
    "gelu_new".into()
}
fn eps() -> f64 {
    1e-5
}

/// The fields of a GPT-2 `config.json` this crate uses.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Gpt2Config {
    /// Vocabulary size.
    pub vocab_size: usize,
    /// Positions (longest input).
    pub n_positions: usize,
    /// Hidden size.
    pub n_embd: usize,
    /// Blocks.
    pub n_layer: usize,
    /// Attention heads.
    pub n_head: usize,
    /// Feed-forward size (default `4 * n_embd`).
    #[serde(default)]
    pub n_inner: Option<usize>,
    /// Feed-forward activation (default `gelu_new`).
    #[serde(default = "gelu_new")]
    pub activation_function: String,
    /// LayerNorm epsilon (default 1e-5).
    #[serde(default = "eps")]
    pub layer_norm_epsilon: f64,
    /// `gpt2`.
    #[serde(default)]
    pub model_type: Option<String>,
}

impl Gpt2Config {
    /// Checks the values; returns the activation.
    pub fn check(&self, path: &Path) -> Result<Activation> {
        let act = parse_activation(path, "activation_function", &self.activation_function)?;
        check_heads(path, ("n_embd", self.n_embd), ("n_head", self.n_head))?;
        Ok(act)
    }

    /// Feed-forward size.
    pub fn inner(&self) -> usize {
        self.n_inner.unwrap_or(4 * self.n_embd)
    }
}

#[derive(Clone, Debug)]
struct Block {
    ln_1: LayerNorm,
    attn: SelfAttention,
    ln_2: LayerNorm,
    fc: Linear,
    proj: Linear,
}

/// A GPT-2 language model.
#[derive(Clone, Debug)]
pub struct Gpt2Model {
    cfg: Gpt2Config,
    act: Activation,
    wte: Embedding,
    wpe: Embedding,
    blocks: Vec<Block>,
    ln_f: LayerNorm,
    lm_head: Linear,
}

impl Gpt2Model {
    /// Loads `config.json` and `model.safetensors` from a folder.
    pub fn load_dir(dir: &Path) -> Result<Self> {
        let (cfg, cfg_path, w) = read_checkpoint(dir)?;
        Self::from_weights(cfg, &cfg_path, w)
    }

    /// Builds the model from a parsed config and its weights. Uses `lm_head.weight` when
    /// stored, else the token embedding (tied).
    pub fn from_weights(cfg: Gpt2Config, cfg_path: &Path, w: WeightMap) -> Result<Self> {
        let act = cfg.check(cfg_path)?;
        let lm_head_stored = w.get_opt("lm_head.weight", &[cfg.vocab_size, cfg.n_embd])?;
        let w = w.with_prefix_if_stored("transformer.", "wte.weight");
        let (h, heads) = (cfg.n_embd, cfg.n_head);
        let eps = cfg.layer_norm_epsilon;
        let blocks = (0..cfg.n_layer)
            .map(|i| {
                let p = format!("h.{i}");
                Ok(Block {
                    ln_1: LayerNorm::load(&w, &format!("{p}.ln_1"), h, eps)?,
                    // `c_attn` already stacks Q, K and V (a `Conv1D` of `3h` outputs).
                    attn: SelfAttention::from_fused(
                        Linear::load_conv1d(&w, &format!("{p}.attn.c_attn"), h, 3 * h)?,
                        Linear::load_conv1d(&w, &format!("{p}.attn.c_proj"), h, h)?,
                        [heads, heads],
                        h / heads,
                        None,
                    )?,
                    ln_2: LayerNorm::load(&w, &format!("{p}.ln_2"), h, eps)?,
                    fc: Linear::load_conv1d(&w, &format!("{p}.mlp.c_fc"), h, cfg.inner())?,
                    proj: Linear::load_conv1d(&w, &format!("{p}.mlp.c_proj"), cfg.inner(), h)?,
                })
            })
            .collect::<Result<_>>()?;
        let wte = Embedding::load(&w, "wte", cfg.vocab_size, h)?;
        let lm_head = Linear::output_head(lm_head_stored, &wte)?;
        Ok(Self {
            act,
            wpe: Embedding::load(&w, "wpe", cfg.n_positions, h)?,
            ln_f: LayerNorm::load(&w, "ln_f", h, eps)?,
            wte,
            blocks,
            lm_head,
            cfg,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &Gpt2Config {
        &self.cfg
    }

    /// Attention geometry.
    pub fn geometry(&self) -> AttentionGeometry {
        let c = &self.cfg;
        AttentionGeometry::multi_head(c.n_layer, c.n_embd, c.n_head, true)
    }

    /// Logits `[batch, seq, vocab]` of every position (causal; sequences right-padded).
    pub fn forward(
        &self,
        batch: &TokenBatch,
        attn: &dyn Attention,
        trace: bool,
    ) -> Result<(Tensor, RunRecord)> {
        batch.check_len(self.cfg.n_positions)?;
        let dev = Device::Cpu;
        let ids = batch.ids_tensor(&dev)?;
        let pos = batch.positions_tensor(&dev)?;
        let mut x = self
            .wte
            .forward(&ids)?
            .broadcast_add(&self.wpe.forward(&pos)?)
            .op("embeddings")?;
        let mut rec = Recorder::new(batch.batch_size(), self.cfg.n_layer, trace, "gpt2");
        for (l, b) in self.blocks.iter().enumerate() {
            let a = b
                .attn
                .forward(&b.ln_1.forward(&x)?, l, &batch.valid, true, attn, &mut rec)?;
            x = (x + a).op("residual")?;
            let m = b
                .proj
                .forward(&b.fc.forward_act(&b.ln_2.forward(&x)?, Some(self.act))?)?;
            x = (x + m).op("residual")?;
        }
        let x = self.ln_f.forward(&x)?;
        let logits = self.lm_head.forward(&x)?;
        Ok((logits, rec.finish()))
    }
}
