//! BERT encoder (Hugging Face layout, with or without the `bert.` prefix), e.g.
//! all-MiniLM-L6-v2, with mean pooling for sentence embeddings.

use std::path::Path;

use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::attention::Attention;
use crate::encoder::PostLnLayer;
use crate::error::{CandleContext, ModelError, Result};
use crate::mha::{Projections, SelfAttention};
use crate::model::AttentionGeometry;
use crate::nn::{Activation, Embedding, LayerNorm, Linear, l2_normalize, mean_pool};
use crate::record::{Recorder, RunRecord};
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
                format!(
                    "hidden_size {} is not a multiple of num_attention_heads {}",
                    self.hidden_size, self.num_attention_heads
                ),
            ));
        }
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

/// Reads and parses a `config.json` into `T`.
pub fn read_config<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let text = std::fs::read_to_string(path).map_err(|source| ModelError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    serde_json::from_str(&text).map_err(|e| ModelError::config(path, e.to_string()))
}

/// A BERT encoder.
#[derive(Clone, Debug)]
pub struct BertModel {
    cfg: BertConfig,
    word: Embedding,
    position: Embedding,
    token_type: Embedding,
    embed_norm: LayerNorm,
    layers: Vec<PostLnLayer>,
}

/// Loads one post-LN BERT layer named `{p}.attention.self.query` etc.
fn load_layer(w: &WeightMap, p: &str, cfg: &BertConfig, act: Activation) -> Result<PostLnLayer> {
    let h = cfg.hidden_size;
    let lin = |n: &str, i, o| Linear::load(w, &format!("{p}.{n}"), i, o, true);
    Ok(PostLnLayer {
        attention: SelfAttention::new(
            Projections {
                q: lin("attention.self.query", h, h)?,
                k: lin("attention.self.key", h, h)?,
                v: lin("attention.self.value", h, h)?,
                o: lin("attention.output.dense", h, h)?,
            },
            cfg.num_attention_heads,
            cfg.num_attention_heads,
            h / cfg.num_attention_heads,
            None,
        )?,
        attention_norm: LayerNorm::load(
            w,
            &format!("{p}.attention.output.LayerNorm"),
            h,
            cfg.layer_norm_eps,
        )?,
        ffn_in: lin("intermediate.dense", h, cfg.intermediate_size)?,
        ffn_out: lin("output.dense", cfg.intermediate_size, h)?,
        output_norm: LayerNorm::load(w, &format!("{p}.output.LayerNorm"), h, cfg.layer_norm_eps)?,
        act,
    })
}

impl BertModel {
    /// Loads `config.json` and `model.safetensors` from a folder.
    pub fn load_dir(dir: &Path) -> Result<Self> {
        let cfg_path = dir.join("config.json");
        let cfg: BertConfig = read_config(&cfg_path)?;
        let w = WeightMap::from_safetensors(&dir.join("model.safetensors"))?;
        Self::from_weights(cfg, &cfg_path, w)
    }

    /// Builds the model from a parsed config (`cfg_path` for errors) and its weights; names
    /// may carry a `bert.` prefix.
    pub fn from_weights(cfg: BertConfig, cfg_path: &Path, w: WeightMap) -> Result<Self> {
        let act = cfg.check(cfg_path)?;
        let w = if w.contains("bert.embeddings.word_embeddings.weight") {
            w.with_prefix("bert.")
        } else {
            w
        };
        let h = cfg.hidden_size;
        let layers = (0..cfg.num_hidden_layers)
            .map(|i| load_layer(&w, &format!("encoder.layer.{i}"), &cfg, act))
            .collect::<Result<_>>()?;
        Ok(Self {
            word: Embedding::load(&w, "embeddings.word_embeddings", cfg.vocab_size, h)?,
            position: Embedding::load(
                &w,
                "embeddings.position_embeddings",
                cfg.max_position_embeddings,
                h,
            )?,
            token_type: Embedding::load(
                &w,
                "embeddings.token_type_embeddings",
                cfg.type_vocab_size,
                h,
            )?,
            embed_norm: LayerNorm::load(&w, "embeddings.LayerNorm", h, cfg.layer_norm_eps)?,
            layers,
            cfg,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &BertConfig {
        &self.cfg
    }

    /// Attention geometry (for thresholds).
    pub fn geometry(&self) -> AttentionGeometry {
        let heads = self.cfg.num_attention_heads;
        AttentionGeometry {
            layers: self.cfg.num_hidden_layers,
            heads,
            kv_heads: heads,
            head_dim: self.cfg.hidden_size / heads,
            causal: false,
        }
    }

    /// Final hidden states `[batch, seq, hidden]` (token type 0 everywhere). Collects head
    /// traces if `trace`.
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
        let mut x = self.embed_norm.forward(&x)?;
        let mut rec = Recorder::new(
            batch.batch_size(),
            self.cfg.num_hidden_layers,
            trace,
            "bert",
        );
        for (l, layer) in self.layers.iter().enumerate() {
            x = layer.forward(&x, l, &batch.valid, attn, &mut rec)?;
        }
        Ok((x, rec.finish()))
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
        let (h, rec) = self.forward(batch, attn, trace)?;
        let e = mean_pool(&h, &batch.valid)?;
        let e = if normalize { l2_normalize(&e)? } else { e };
        Ok((e, rec))
    }
}
