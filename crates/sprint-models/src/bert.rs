//! BERT encoder (Hugging Face layout, with or without the `bert.` prefix), e.g.
//! all-MiniLM-L6-v2, with mean pooling for sentence embeddings.

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
use crate::record::RunRecord;
use crate::tokenizer::TokenBatch;
use crate::weights::WeightMap;

fn default_gelu() -> String {
    "gelu".into()
}
fn default_type_vocab() -> usize {
    2
}
fn default_bert_eps() -> f64 {
    1e-12
}

/// The fields of a BERT `config.json` this crate uses (others are ignored).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BertConfig {
    /// Vocabulary size.
    pub vocab_size: usize,
    /// Hidden size.
    pub hidden_size: usize,
    /// Encoder layers.
    pub num_hidden_layers: usize,
    /// Attention heads.
    pub num_attention_heads: usize,
    /// Feed-forward size.
    pub intermediate_size: usize,
    /// Feed-forward activation (default `gelu`, exact).
    #[serde(default = "default_gelu")]
    pub hidden_act: String,
    /// Position embeddings (longest input).
    pub max_position_embeddings: usize,
    /// Token type embeddings (default 2).
    #[serde(default = "default_type_vocab")]
    pub type_vocab_size: usize,
    /// LayerNorm epsilon (default 1e-12).
    #[serde(default = "default_bert_eps")]
    pub layer_norm_eps: f64,
    /// Only `absolute` is supported.
    #[serde(default)]
    pub position_embedding_type: Option<String>,
    /// `bert`.
    #[serde(default)]
    pub model_type: Option<String>,
}

impl BertConfig {
    /// Checks the values; `path` names the file in errors. Returns the activation.
    pub fn check(&self, path: &Path) -> Result<Activation> {
        let act = check_encoder_fields(
            path,
            &self.hidden_act,
            self.hidden_size,
            self.num_attention_heads,
        )?;
        if let Some(p) = &self.position_embedding_type
            && p != "absolute"
        {
            return Err(ModelError::config(
                path,
                format!("position_embedding_type `{p}` is not supported (only absolute)"),
            ));
        }
        Ok(act)
    }
}

/// A BERT encoder.
#[derive(Clone, Debug)]
pub struct BertModel {
    cfg: BertConfig,
    prefix: String,
    embeddings: TokenEmbeddings,
    layers: Vec<PostLnLayer>,
}

/// Where a BERT layer (`encoder.layer.{i}`) stores its weights.
pub const LAYER_NAMES: PostLnNames = PostLnNames {
    query: "attention.self.query",
    key: "attention.self.key",
    value: "attention.self.value",
    attention_out: "attention.output.dense",
    attention_norm: "attention.output.LayerNorm",
    ffn_in: "intermediate.dense",
    ffn_out: "output.dense",
    output_norm: "output.LayerNorm",
};

impl BertModel {
    /// Loads `config.json` and `model.safetensors` from a folder.
    pub fn load_dir(dir: &Path) -> Result<Self> {
        let (cfg, cfg_path, w) = read_checkpoint(dir)?;
        Self::from_weights(cfg, &cfg_path, w)
    }

    /// Builds the model from a parsed config (`cfg_path` for errors) and its weights; names
    /// may carry a `bert.` prefix.
    pub fn from_weights(cfg: BertConfig, cfg_path: &Path, w: WeightMap) -> Result<Self> {
        let act = cfg.check(cfg_path)?;
        let w = w.with_prefix_if_stored("bert.", "embeddings.word_embeddings.weight");
        let prefix = w.prefix().to_string();
        let dims = PostLnDims {
            hidden: cfg.hidden_size,
            heads: cfg.num_attention_heads,
            intermediate: cfg.intermediate_size,
            eps: cfg.layer_norm_eps,
        };
        let layers = (0..cfg.num_hidden_layers)
            .map(|i| PostLnLayer::load(&w, &format!("encoder.layer.{i}"), &LAYER_NAMES, dims, act))
            .collect::<Result<_>>()?;
        Ok(Self {
            embeddings: TokenEmbeddings::load(
                &w,
                cfg.vocab_size,
                cfg.max_position_embeddings,
                cfg.type_vocab_size,
                cfg.hidden_size,
                cfg.layer_norm_eps,
            )?,
            layers,
            cfg,
            prefix,
        })
    }

    /// The prefix of the names in its weights file (`bert.` or empty).
    pub fn weight_prefix(&self) -> &str {
        &self.prefix
    }

    /// The input embeddings.
    pub fn embeddings(&self) -> &TokenEmbeddings {
        &self.embeddings
    }

    /// The encoder layers, in order.
    pub fn layers(&self) -> &[PostLnLayer] {
        &self.layers
    }

    /// The configuration.
    pub fn config(&self) -> &BertConfig {
        &self.cfg
    }

    /// Attention geometry (for thresholds).
    pub fn geometry(&self) -> AttentionGeometry {
        let c = &self.cfg;
        AttentionGeometry::multi_head(
            c.num_hidden_layers,
            c.hidden_size,
            c.num_attention_heads,
            false,
        )
    }

    /// Final hidden states `[batch, seq, hidden]` (token type 0 everywhere). Collects head
    /// traces if `trace`.
    pub fn forward(
        &self,
        batch: &TokenBatch,
        attn: &dyn Attention,
        trace: bool,
    ) -> Result<(Tensor, RunRecord)> {
        let x = self.embeddings.forward(batch)?;
        let layers = &self.layers;
        run_layers(x, layers, layers.len(), batch, attn, trace, "bert")
    }

    /// Sentence embeddings `[batch, hidden]`: mean of the real tokens' final hidden states,
    /// L2-normalised if `normalize` (sentence-transformers all-MiniLM-L6-v2 normalises).
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
