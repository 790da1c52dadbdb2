//! Small random-weight checkpoints in Hugging Face layout (`config.json` +
//! `model.safetensors`) for the architectures with no reachable pretrained weights (GPT-2,
//! ALBERT, ViT; BERT too). Deterministic for a seed; they load through the normal loaders.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{Device, Tensor};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;
use serde::Serialize;

use crate::albert::AlbertConfig;
use crate::bert::BertConfig;
use crate::error::{CandleContext, ModelError, Result};
use crate::gpt2::Gpt2Config;
use crate::vit::VitConfig;

/// How a generated tensor is initialised.
#[derive(Clone, Copy, Debug)]
enum Init {
    /// `N(0, std^2)`.
    Normal(f64),
    /// LayerNorm gain: `1 + N(0, 0.1^2)`.
    Gain,
}

/// Standard deviation of generated weight matrices and embeddings (large enough that
/// attention is far from uniform in a small model).
pub const WEIGHT_STD: f64 = 0.2;

/// Standard deviation of generated biases and LayerNorm offsets.
pub const BIAS_STD: f64 = 0.1;

/// Named tensors drawn in a fixed order from one seeded stream.
struct Generator {
    rng: ChaCha8Rng,
    tensors: HashMap<String, Tensor>,
}

impl Generator {
    fn new(seed: u64) -> Self {
        Self {
            rng: ChaCha8Rng::seed_from_u64(seed),
            tensors: HashMap::new(),
        }
    }

    fn add(&mut self, name: &str, shape: &[usize], init: Init) -> Result<()> {
        let n: usize = shape.iter().product();
        let data: Vec<f32> = (0..n)
            .map(|_| {
                let z: f64 = self.rng.sample(StandardNormal);
                match init {
                    Init::Normal(s) => (z * s) as f32,
                    Init::Gain => (1.0 + 0.1 * z) as f32,
                }
            })
            .collect();
        let t = Tensor::from_vec(data, shape, &Device::Cpu).op("generate")?;
        self.tensors.insert(name.to_string(), t);
        Ok(())
    }

    fn linear(&mut self, name: &str, out_dim: usize, in_dim: usize) -> Result<()> {
        self.add(
            &format!("{name}.weight"),
            &[out_dim, in_dim],
            Init::Normal(WEIGHT_STD),
        )?;
        self.add(&format!("{name}.bias"), &[out_dim], Init::Normal(BIAS_STD))
    }

    /// GPT-2 `Conv1D`: weight stored `[in, out]`.
    fn conv1d(&mut self, name: &str, in_dim: usize, out_dim: usize) -> Result<()> {
        self.add(
            &format!("{name}.weight"),
            &[in_dim, out_dim],
            Init::Normal(WEIGHT_STD),
        )?;
        self.add(&format!("{name}.bias"), &[out_dim], Init::Normal(BIAS_STD))
    }

    fn norm(&mut self, name: &str, dim: usize) -> Result<()> {
        self.add(&format!("{name}.weight"), &[dim], Init::Gain)?;
        self.add(&format!("{name}.bias"), &[dim], Init::Normal(BIAS_STD))
    }

    fn embedding(&mut self, name: &str, rows: usize, dim: usize) -> Result<()> {
        self.add(
            &format!("{name}.weight"),
            &[rows, dim],
            Init::Normal(WEIGHT_STD),
        )
    }
}

/// Random GPT-2 weights (`transformer.`-less names, no `lm_head`: tied).
pub fn generate_gpt2(cfg: &Gpt2Config, seed: u64) -> Result<HashMap<String, Tensor>> {
    let mut g = Generator::new(seed);
    let h = cfg.n_embd;
    g.embedding("wte", cfg.vocab_size, h)?;
    g.embedding("wpe", cfg.n_positions, h)?;
    for i in 0..cfg.n_layer {
        let p = format!("h.{i}");
        g.norm(&format!("{p}.ln_1"), h)?;
        g.conv1d(&format!("{p}.attn.c_attn"), h, 3 * h)?;
        g.conv1d(&format!("{p}.attn.c_proj"), h, h)?;
        g.norm(&format!("{p}.ln_2"), h)?;
        g.conv1d(&format!("{p}.mlp.c_fc"), h, cfg.inner())?;
        g.conv1d(&format!("{p}.mlp.c_proj"), cfg.inner(), h)?;
    }
    g.norm("ln_f", h)?;
    Ok(g.tensors)
}

/// Random ALBERT weights under the `albert.` prefix (as saved by the task models).
pub fn generate_albert(cfg: &AlbertConfig, seed: u64) -> Result<HashMap<String, Tensor>> {
    let mut g = Generator::new(seed);
    let (e, h, f) = (cfg.embedding_size, cfg.hidden_size, cfg.intermediate_size);
    g.embedding("albert.embeddings.word_embeddings", cfg.vocab_size, e)?;
    g.embedding(
        "albert.embeddings.position_embeddings",
        cfg.max_position_embeddings,
        e,
    )?;
    g.embedding(
        "albert.embeddings.token_type_embeddings",
        cfg.type_vocab_size,
        e,
    )?;
    g.norm("albert.embeddings.LayerNorm", e)?;
    g.linear("albert.encoder.embedding_hidden_mapping_in", h, e)?;
    for grp in 0..cfg.num_hidden_groups {
        for i in 0..cfg.inner_group_num {
            let p = format!("albert.encoder.albert_layer_groups.{grp}.albert_layers.{i}");
            for n in ["query", "key", "value", "dense"] {
                g.linear(&format!("{p}.attention.{n}"), h, h)?;
            }
            g.norm(&format!("{p}.attention.LayerNorm"), h)?;
            g.linear(&format!("{p}.ffn"), f, h)?;
            g.linear(&format!("{p}.ffn_output"), h, f)?;
            g.norm(&format!("{p}.full_layer_layer_norm"), h)?;
        }
    }
    Ok(g.tensors)
}

/// Random BERT weights (no prefix).
pub fn generate_bert(cfg: &BertConfig, seed: u64) -> Result<HashMap<String, Tensor>> {
    let mut g = Generator::new(seed);
    let (h, f) = (cfg.hidden_size, cfg.intermediate_size);
    g.embedding("embeddings.word_embeddings", cfg.vocab_size, h)?;
    g.embedding(
        "embeddings.position_embeddings",
        cfg.max_position_embeddings,
        h,
    )?;
    g.embedding("embeddings.token_type_embeddings", cfg.type_vocab_size, h)?;
    g.norm("embeddings.LayerNorm", h)?;
    for i in 0..cfg.num_hidden_layers {
        let p = format!("encoder.layer.{i}");
        for n in ["query", "key", "value"] {
            g.linear(&format!("{p}.attention.self.{n}"), h, h)?;
        }
        g.linear(&format!("{p}.attention.output.dense"), h, h)?;
        g.norm(&format!("{p}.attention.output.LayerNorm"), h)?;
        g.linear(&format!("{p}.intermediate.dense"), f, h)?;
        g.linear(&format!("{p}.output.dense"), h, f)?;
        g.norm(&format!("{p}.output.LayerNorm"), h)?;
    }
    Ok(g.tensors)
}

/// Random ViT-for-classification weights (`vit.` prefix, `classifier` head of
/// `num_labels` classes).
pub fn generate_vit(
    cfg: &VitConfig,
    num_labels: usize,
    seed: u64,
) -> Result<HashMap<String, Tensor>> {
    let mut g = Generator::new(seed);
    let (h, f, p, c) = (
        cfg.hidden_size,
        cfg.intermediate_size,
        cfg.patch_size,
        cfg.num_channels,
    );
    g.add(
        "vit.embeddings.cls_token",
        &[1, 1, h],
        Init::Normal(WEIGHT_STD),
    )?;
    g.add(
        "vit.embeddings.position_embeddings",
        &[1, cfg.num_patches() + 1, h],
        Init::Normal(WEIGHT_STD),
    )?;
    g.add(
        "vit.embeddings.patch_embeddings.projection.weight",
        &[h, c, p, p],
        Init::Normal(WEIGHT_STD),
    )?;
    g.add(
        "vit.embeddings.patch_embeddings.projection.bias",
        &[h],
        Init::Normal(BIAS_STD),
    )?;
    for i in 0..cfg.num_hidden_layers {
        let l = format!("vit.encoder.layer.{i}");
        g.norm(&format!("{l}.layernorm_before"), h)?;
        for n in ["query", "key", "value"] {
            g.linear(&format!("{l}.attention.attention.{n}"), h, h)?;
        }
        g.linear(&format!("{l}.attention.output.dense"), h, h)?;
        g.norm(&format!("{l}.layernorm_after"), h)?;
        g.linear(&format!("{l}.intermediate.dense"), f, h)?;
        g.linear(&format!("{l}.output.dense"), h, f)?;
    }
    g.norm("vit.layernorm", h)?;
    g.linear("classifier", num_labels, h)?;
    Ok(g.tensors)
}

/// Writes `config.json` (from `config`, with `model_type` set) and `model.safetensors` into
/// `dir` (created if needed).
pub fn save_checkpoint(
    dir: &Path,
    config: &impl Serialize,
    model_type: &str,
    tensors: &HashMap<String, Tensor>,
) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|source| ModelError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let mut json =
        serde_json::to_value(config).map_err(|e| ModelError::config(dir, e.to_string()))?;
    if let Some(obj) = json.as_object_mut() {
        obj.insert("model_type".into(), model_type.into());
    }
    let cfg_path = dir.join("config.json");
    let text = serde_json::to_string_pretty(&json)
        .map_err(|e| ModelError::config(&cfg_path, e.to_string()))?;
    std::fs::write(&cfg_path, text).map_err(|source| ModelError::Io {
        path: cfg_path.clone(),
        source,
    })?;
    let st_path = dir.join("model.safetensors");
    candle_core::safetensors::save(tensors, &st_path).map_err(|e| ModelError::Weights {
        path: st_path,
        message: e.to_string(),
    })
}
