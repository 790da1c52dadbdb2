//! ALBERT encoder (Hugging Face layout, with or without the `albert.` prefix): factorised
//! embeddings projected to the hidden size, and layer groups shared across depth.

use std::path::Path;

use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::attention::Attention;
use crate::bert::read_config;
use crate::encoder::PostLnLayer;
use crate::error::{CandleContext, ModelError, Result};
use crate::mha::{Projections, SelfAttention};
use crate::model::AttentionGeometry;
use crate::nn::{Activation, Embedding, LayerNorm, Linear, l2_normalize, mean_pool};
use crate::record::{Recorder, RunRecord};
use crate::tokenizer::TokenBatch;
use crate::weights::WeightMap;

fn one() -> usize {
    1
}
fn two() -> usize {
    2
}
fn gelu_new() -> String {
    "gelu_new".into()
}
fn eps() -> f64 {
    1e-12
}

/// The fields of an ALBERT `config.json` this crate uses.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AlbertConfig {
    /// Vocabulary size.
    pub vocab_size: usize,
    /// Embedding size `E` (factorised embeddings, projected to `hidden_size`).
    pub embedding_size: usize,
    /// Hidden size.
    pub hidden_size: usize,
    /// Layer applications (depth).
    pub num_hidden_layers: usize,
    /// Groups of shared layers (default 1: one group serves every depth).
    #[serde(default = "one")]
    pub num_hidden_groups: usize,
    /// Layers inside a group, applied in turn at every depth (default 1).
    #[serde(default = "one")]
    pub inner_group_num: usize,
    /// Attention heads.
    pub num_attention_heads: usize,
    /// Feed-forward size.
    pub intermediate_size: usize,
    /// Feed-forward activation (default `gelu_new`).
    #[serde(default = "gelu_new")]
    pub hidden_act: String,
    /// Position embeddings.
    pub max_position_embeddings: usize,
    /// Token type embeddings (default 2).
    #[serde(default = "two")]
    pub type_vocab_size: usize,
    /// LayerNorm epsilon (default 1e-12).
    #[serde(default = "eps")]
    pub layer_norm_eps: f64,
    /// `albert`.
    #[serde(default)]
    pub model_type: Option<String>,
}

impl AlbertConfig {
    /// Checks the values; returns the activation.
    pub fn check(&self, path: &Path) -> Result<Activation> {
        let act = Activation::parse(&self.hidden_act).ok_or_else(|| {
            ModelError::config(
                path,
                format!("hidden_act `{}` is not supported", self.hidden_act),
            )
        })?;
        if self.num_attention_heads == 0
            || !self.hidden_size.is_multiple_of(self.num_attention_heads)
        {
            return Err(ModelError::config(
                path,
                "hidden_size is not a multiple of num_attention_heads",
            ));
        }
        if self.num_hidden_groups == 0
            || self.inner_group_num == 0
            || !self
                .num_hidden_layers
                .is_multiple_of(self.num_hidden_groups)
        {
            return Err(ModelError::config(
                path,
                format!(
                    "num_hidden_layers {} must be a multiple of num_hidden_groups {} (and both, and inner_group_num, > 0)",
                    self.num_hidden_layers, self.num_hidden_groups
                ),
            ));
        }
        Ok(act)
    }
}

/// An ALBERT encoder.
#[derive(Clone, Debug)]
pub struct AlbertModel {
    cfg: AlbertConfig,
    word: Embedding,
    position: Embedding,
    token_type: Embedding,
    embed_norm: LayerNorm,
    mapping: Linear,
    groups: Vec<Vec<PostLnLayer>>,
}

fn load_layer(w: &WeightMap, p: &str, cfg: &AlbertConfig, act: Activation) -> Result<PostLnLayer> {
    let h = cfg.hidden_size;
    let lin = |n: &str, i, o| Linear::load(w, &format!("{p}.{n}"), i, o, true);
    Ok(PostLnLayer {
        attention: SelfAttention::new(
            Projections {
                q: lin("attention.query", h, h)?,
                k: lin("attention.key", h, h)?,
                v: lin("attention.value", h, h)?,
                o: lin("attention.dense", h, h)?,
            },
            cfg.num_attention_heads,
            cfg.num_attention_heads,
            h / cfg.num_attention_heads,
            None,
        )?,
        attention_norm: LayerNorm::load(
            w,
            &format!("{p}.attention.LayerNorm"),
            h,
            cfg.layer_norm_eps,
        )?,
        ffn_in: lin("ffn", h, cfg.intermediate_size)?,
        ffn_out: lin("ffn_output", cfg.intermediate_size, h)?,
        output_norm: LayerNorm::load(
            w,
            &format!("{p}.full_layer_layer_norm"),
            h,
            cfg.layer_norm_eps,
        )?,
        act,
    })
}

impl AlbertModel {
    /// Loads `config.json` and `model.safetensors` from a folder.
    pub fn load_dir(dir: &Path) -> Result<Self> {
        let cfg_path = dir.join("config.json");
        let cfg: AlbertConfig = read_config(&cfg_path)?;
        let w = WeightMap::from_safetensors(&dir.join("model.safetensors"))?;
        Self::from_weights(cfg, &cfg_path, w)
    }

    /// Builds the model from a parsed config and its weights; names may carry an `albert.`
    /// prefix.
    pub fn from_weights(cfg: AlbertConfig, cfg_path: &Path, w: WeightMap) -> Result<Self> {
        let act = cfg.check(cfg_path)?;
        let w = if w.contains("albert.embeddings.word_embeddings.weight") {
            w.with_prefix("albert.")
        } else {
            w
        };
        let (e, h) = (cfg.embedding_size, cfg.hidden_size);
        let groups = (0..cfg.num_hidden_groups)
            .map(|g| {
                (0..cfg.inner_group_num)
                    .map(|i| {
                        load_layer(
                            &w,
                            &format!("encoder.albert_layer_groups.{g}.albert_layers.{i}"),
                            &cfg,
                            act,
                        )
                    })
                    .collect::<Result<Vec<_>>>()
            })
            .collect::<Result<_>>()?;
        Ok(Self {
            word: Embedding::load(&w, "embeddings.word_embeddings", cfg.vocab_size, e)?,
            position: Embedding::load(
                &w,
                "embeddings.position_embeddings",
                cfg.max_position_embeddings,
                e,
            )?,
            token_type: Embedding::load(
                &w,
                "embeddings.token_type_embeddings",
                cfg.type_vocab_size,
                e,
            )?,
            embed_norm: LayerNorm::load(&w, "embeddings.LayerNorm", e, cfg.layer_norm_eps)?,
            mapping: Linear::load(&w, "encoder.embedding_hidden_mapping_in", e, h, true)?,
            groups,
            cfg,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &AlbertConfig {
        &self.cfg
    }

    /// Attention geometry: every application of a shared layer is its own attention layer
    /// (`num_hidden_layers * inner_group_num` of them), so each may have its own thresholds.
    pub fn geometry(&self) -> AttentionGeometry {
        let heads = self.cfg.num_attention_heads;
        AttentionGeometry {
            layers: self.cfg.num_hidden_layers * self.cfg.inner_group_num,
            heads,
            kv_heads: heads,
            head_dim: self.cfg.hidden_size / heads,
            causal: false,
        }
    }

    /// Final hidden states `[batch, seq, hidden]` (token type 0 everywhere).
    pub fn forward(
        &self,
        batch: &TokenBatch,
        attn: &dyn Attention,
        trace: bool,
    ) -> Result<(Tensor, RunRecord)> {
        let s = batch.seq_len();
        if s > self.cfg.max_position_embeddings {
            return Err(ModelError::Input(format!(
                "{s} tokens exceed the model's {} positions",
                self.cfg.max_position_embeddings
            )));
        }
        let dev = Device::Cpu;
        let ids = batch.ids_tensor(&dev)?;
        let pos = Tensor::arange(0u32, s as u32, &dev).op("positions")?;
        let types = Tensor::zeros(s, candle_core::DType::U32, &dev).op("token types")?;
        let extra =
            (self.position.forward(&pos)? + self.token_type.forward(&types)?).op("embeddings")?;
        let x = self
            .word
            .forward(&ids)?
            .broadcast_add(&extra)
            .op("embeddings")?;
        let x = self.embed_norm.forward(&x)?;
        let mut x = self.mapping.forward(&x)?;
        let geo = self.geometry();
        let mut rec = Recorder::new(batch.batch_size(), geo.layers, trace, "albert");
        let per_group = self.cfg.num_hidden_layers / self.cfg.num_hidden_groups;
        for depth in 0..self.cfg.num_hidden_layers {
            let group = &self.groups[depth / per_group];
            for (i, layer) in group.iter().enumerate() {
                let index = depth * self.cfg.inner_group_num + i;
                x = layer.forward(&x, index, &batch.valid, attn, &mut rec)?;
            }
        }
        Ok((x, rec.finish()))
    }

    /// Sentence embeddings `[batch, hidden]` by mean pooling, L2-normalised if `normalize`.
    pub fn embed(
        &self,
        batch: &TokenBatch,
        attn: &dyn Attention,
        trace: bool,
        normalize: bool,
    ) -> Result<(Tensor, RunRecord)> {
        let (h, rec) = self.forward(batch, attn, trace)?;
        let e = mean_pool(&h, &batch.valid)?;
        let e = if normalize { l2_normalize(&e)? } else { e };
        Ok((e, rec))
    }
}
