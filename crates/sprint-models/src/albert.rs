//! ALBERT encoder (Hugging Face layout, with or without the `albert.` prefix): factorised
//! embeddings projected to the hidden size, and layer groups shared across depth.

use std::path::Path;

use candle_core::Tensor;
use serde::{Deserialize, Serialize};

use crate::activation::Activation;
use crate::attention::Attention;
use crate::config::{check_encoder_fields, read_checkpoint};
use crate::encoder::{
    PostLnDims, PostLnLayer, PostLnNames, TokenEmbeddings, pool_sentences, run_layers,
};
use crate::error::{ModelError, Result};
use crate::geometry::AttentionGeometry;
use crate::nn::Linear;
use crate::record::RunRecord;
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
        let act = check_encoder_fields(
            path,
            &self.hidden_act,
            self.hidden_size,
            self.num_attention_heads,
        )?;
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
    embeddings: TokenEmbeddings,
    mapping: Linear,
    groups: Vec<Vec<PostLnLayer>>,
}

/// Where an ALBERT shared layer (`encoder.albert_layer_groups.{g}.albert_layers.{i}`)
/// stores its weights.
const LAYER_NAMES: PostLnNames = PostLnNames {
    query: "attention.query",
    key: "attention.key",
    value: "attention.value",
    attention_out: "attention.dense",
    attention_norm: "attention.LayerNorm",
    ffn_in: "ffn",
    ffn_out: "ffn_output",
    output_norm: "full_layer_layer_norm",
};

impl AlbertModel {
    /// Loads `config.json` and `model.safetensors` from a folder.
    pub fn load_dir(dir: &Path) -> Result<Self> {
        let (cfg, cfg_path, w) = read_checkpoint(dir)?;
        Self::from_weights(cfg, &cfg_path, w)
    }

    /// Builds the model from a parsed config and its weights; names may carry an `albert.`
    /// prefix.
    pub fn from_weights(cfg: AlbertConfig, cfg_path: &Path, w: WeightMap) -> Result<Self> {
        let act = cfg.check(cfg_path)?;
        let w = w.with_prefix_if_stored("albert.", "embeddings.word_embeddings.weight");
        let (e, h) = (cfg.embedding_size, cfg.hidden_size);
        let dims = PostLnDims {
            hidden: h,
            heads: cfg.num_attention_heads,
            intermediate: cfg.intermediate_size,
            eps: cfg.layer_norm_eps,
        };
        let groups = (0..cfg.num_hidden_groups)
            .map(|g| {
                (0..cfg.inner_group_num)
                    .map(|i| {
                        PostLnLayer::load(
                            &w,
                            &format!("encoder.albert_layer_groups.{g}.albert_layers.{i}"),
                            &LAYER_NAMES,
                            dims,
                            act,
                        )
                    })
                    .collect::<Result<Vec<_>>>()
            })
            .collect::<Result<_>>()?;
        Ok(Self {
            embeddings: TokenEmbeddings::load(
                &w,
                cfg.vocab_size,
                cfg.max_position_embeddings,
                cfg.type_vocab_size,
                e,
                cfg.layer_norm_eps,
            )?,
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
        let c = &self.cfg;
        AttentionGeometry::multi_head(
            c.num_hidden_layers * c.inner_group_num,
            c.hidden_size,
            c.num_attention_heads,
            false,
        )
    }

    /// Final hidden states `[batch, seq, hidden]` (token type 0 everywhere).
    pub fn forward(
        &self,
        batch: &TokenBatch,
        attn: &dyn Attention,
        trace: bool,
    ) -> Result<(Tensor, RunRecord)> {
        let x = self.mapping.forward(&self.embeddings.forward(batch)?)?;
        let per_group = self.cfg.num_hidden_layers / self.cfg.num_hidden_groups;
        // Depth `d` applies group `d / per_group`, each of its layers in turn.
        let layers = (0..self.cfg.num_hidden_layers).flat_map(|d| &self.groups[d / per_group]);
        let count = self.geometry().layers;
        run_layers(x, layers, count, batch, attn, trace, "albert")
    }

    /// Sentence embeddings `[batch, hidden]` by mean pooling, L2-normalised if `normalize`.
    pub fn embed(
        &self,
        batch: &TokenBatch,
        attn: &dyn Attention,
        trace: bool,
        normalize: bool,
    ) -> Result<(Tensor, RunRecord)> {
        pool_sentences(self.forward(batch, attn, trace)?, &batch.valid, normalize)
    }
}
