//! Any supported model behind one type, loaded by name (`minilm`, `smollm2`, from the asset
//! cache) or by path (a Hugging Face checkpoint folder or a GGUF file).

use std::path::{Path, PathBuf};

use candle_core::Tensor;
use serde::Deserialize;
use sprint_assets::{Asset, Cache};

use crate::albert::AlbertModel;
use crate::attention::Attention;
use crate::bert::BertModel;
use crate::config::read_config;
use crate::error::{ModelError, Result};
use crate::finetuned::{BaseWeights, FineTunedWeights, sha256_hex};
use crate::geometry::AttentionGeometry;
use crate::gguf::GgufFile;
use crate::gpt2::Gpt2Model;
use crate::llama::{LlamaConfig, LlamaModel};
use crate::record::RunRecord;
use crate::tokenizer::{TextTokenizer, TokenBatch};
use crate::vit::VitModel;
use crate::weights::WeightMap;

/// File name of SmolLM2 inside its asset folder.
pub const SMOLLM2_GGUF: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";

/// The supported architectures.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Architecture {
    /// BERT encoder.
    Bert,
    /// ALBERT encoder (shared layers).
    Albert,
    /// GPT-2 decoder.
    Gpt2,
    /// Llama-family decoder (GGUF).
    Llama,
    /// Vision Transformer.
    Vit,
}

impl Architecture {
    /// Lower-case name (`bert`, `albert`, `gpt2`, `llama`, `vit`).
    pub fn name(self) -> &'static str {
        match self {
            Self::Bert => "bert",
            Self::Albert => "albert",
            Self::Gpt2 => "gpt2",
            Self::Llama => "llama",
            Self::Vit => "vit",
        }
    }
}

/// A loaded model of any supported architecture.
#[derive(Clone, Debug)]
pub enum Model {
    /// BERT encoder.
    Bert(BertModel),
    /// ALBERT encoder.
    Albert(AlbertModel),
    /// GPT-2 decoder.
    Gpt2(Gpt2Model),
    /// Llama-family decoder.
    Llama(LlamaModel),
    /// Vision Transformer.
    Vit(VitModel),
}

impl Model {
    /// The architecture.
    pub fn architecture(&self) -> Architecture {
        match self {
            Self::Bert(_) => Architecture::Bert,
            Self::Albert(_) => Architecture::Albert,
            Self::Gpt2(_) => Architecture::Gpt2,
            Self::Llama(_) => Architecture::Llama,
            Self::Vit(_) => Architecture::Vit,
        }
    }

    /// Attention geometry.
    pub fn geometry(&self) -> AttentionGeometry {
        match self {
            Self::Bert(m) => m.geometry(),
            Self::Albert(m) => m.geometry(),
            Self::Gpt2(m) => m.geometry(),
            Self::Llama(m) => m.geometry(),
            Self::Vit(m) => m.geometry(),
        }
    }

    /// Sentence embeddings `[batch, hidden]` (mean pooling, optionally L2-normalised) of an
    /// encoder; an error for other architectures.
    pub fn embed(
        &self,
        batch: &TokenBatch,
        attn: &dyn Attention,
        trace: bool,
        normalize: bool,
    ) -> Result<(Tensor, RunRecord)> {
        match self {
            Self::Bert(m) => m.embed(batch, attn, trace, normalize),
            Self::Albert(m) => m.embed(batch, attn, trace, normalize),
            _ => Err(ModelError::Input(format!(
                "{} is not a text encoder: it has no sentence embeddings",
                self.architecture().name()
            ))),
        }
    }

    /// Logits `[batch, seq, vocab]` of every position of a decoder; an error for other
    /// architectures.
    pub fn logits(
        &self,
        batch: &TokenBatch,
        attn: &dyn Attention,
        trace: bool,
    ) -> Result<(Tensor, RunRecord)> {
        match self {
            Self::Gpt2(m) => m.forward(batch, attn, trace),
            Self::Llama(m) => m.forward(batch, attn, trace),
            _ => Err(ModelError::Input(format!(
                "{} is not a decoder: it has no next-token logits",
                self.architecture().name()
            ))),
        }
    }
}

/// A model with its tokenizer (if it takes text).
#[derive(Clone, Debug)]
pub struct LoadedModel {
    /// Name it was loaded by (`minilm`, `smollm2`, or the path).
    pub name: String,
    /// The model.
    pub model: Model,
    /// Tokenizer, when the checkpoint ships one.
    pub tokenizer: Option<TextTokenizer>,
    /// The weights file the model was loaded from (`model.safetensors` of a checkpoint
    /// folder, or a GGUF file) and the asset it belongs to: the base of fine-tuned weights
    /// files. `None` when the model was built in memory.
    pub base: Option<BaseWeights>,
}

impl LoadedModel {
    /// The tokenizer, or an error naming the model.
    pub fn tokenizer(&self) -> Result<&TextTokenizer> {
        self.tokenizer.as_ref().ok_or_else(|| {
            ModelError::Input(format!(
                "model `{}` has no tokenizer (no tokenizer.json)",
                self.name
            ))
        })
    }

    /// The same model with the tensors of the fine-tuned weights file `path` overlaid
    /// ([`FineTunedWeights`]): the base weights file is read again, its sha256 checked
    /// against the file's `base_sha256`, every tensor checked to exist with the same shape,
    /// and the model rebuilt. Errors name `path` and the field or tensor. The name becomes
    /// `NAME+weights:PATH`.
    pub fn with_weights(&self, path: &Path) -> Result<LoadedModel> {
        let ft = FineTunedWeights::read(path)?;
        let base = self.base.as_ref().ok_or_else(|| ModelError::Weights {
            path: path.to_path_buf(),
            message: format!(
                "model `{}` was not loaded from a weights file: fine-tuned weights overlay Hugging Face checkpoint folders and GGUF files",
                self.name
            ),
        })?;
        let data = std::fs::read(&base.file).map_err(|source| ModelError::Io {
            path: base.file.clone(),
            source,
        })?;
        let sha = sha256_hex(&data);
        let model = if is_gguf(&base.file) {
            drop(data);
            let file = GgufFile::open(&base.file)?;
            let mut w = file.dequantize_all()?;
            ft.apply(path, &mut w, &sha)?;
            Model::Llama(LlamaModel::from_weights(
                LlamaConfig::from_gguf(&file)?,
                &w,
            )?)
        } else {
            let mut w = WeightMap::from_buffer(&base.file, &data)?;
            ft.apply(path, &mut w, &sha)?;
            let dir = base.file.parent().unwrap_or(Path::new("."));
            load_folder(dir, Some(w))?
        };
        Ok(LoadedModel {
            name: format!("{}+weights:{}", self.name, path.display()),
            model,
            tokenizer: self.tokenizer.clone(),
            base: self.base.clone(),
        })
    }

    /// Tokenises `texts` with the model's special tokens, each cut to `max_len` ids.
    pub fn encode_batch(&self, texts: &[&str], max_len: Option<usize>) -> Result<TokenBatch> {
        self.tokenizer()?.encode_batch(texts, max_len)
    }
}

/// Loads a model by name from the asset cache (`minilm`, `smollm2`) or, for anything
/// else, by path ([`load_path`]).
pub fn load(spec: &str, cache: &Cache) -> Result<LoadedModel> {
    let mut m = match spec {
        "minilm" => load_path(&cache.require(Asset::MiniLm)?)?,
        "smollm2" => load_path(&cache.require_file(Asset::SmolLm2, SMOLLM2_GGUF)?)?,
        other => {
            let p = PathBuf::from(other);
            if !p.exists() {
                return Err(ModelError::UnknownModel {
                    name: other.into(),
                    message: "not a known model name (minilm, smollm2) and no such file or folder"
                        .into(),
                });
            }
            load_path(&p)?
        }
    };
    m.name = spec.to_string();
    if let Some(b) = &mut m.base {
        b.asset = match spec {
            "minilm" => Some(Asset::MiniLm.id().to_string()),
            "smollm2" => Some(Asset::SmolLm2.id().to_string()),
            _ => None,
        };
    }
    Ok(m)
}

fn is_gguf(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "gguf")
}

#[derive(Deserialize)]
struct ModelType {
    model_type: Option<String>,
}

/// Loads a GGUF file (Llama family) or a Hugging Face checkpoint folder (`config.json` with
/// `model_type` bert / albert / gpt2 / vit, `model.safetensors`, optional `tokenizer.json`).
pub fn load_path(path: &Path) -> Result<LoadedModel> {
    let name = path.display().to_string();
    if path.is_file() {
        if is_gguf(path) {
            let file = GgufFile::open(path)?;
            let model = Model::Llama(LlamaModel::from_gguf(&file)?);
            let tokenizer = Some(TextTokenizer::from_gguf(&file)?);
            return Ok(LoadedModel {
                name,
                model,
                tokenizer,
                base: Some(BaseWeights {
                    file: path.to_path_buf(),
                    asset: None,
                }),
            });
        }
        if let Some(dir) = path.parent()
            && path
                .file_name()
                .is_some_and(|n| n == "config.json" || n == "model.safetensors")
        {
            return load_path(dir);
        }
        return Err(ModelError::UnknownModel {
            name,
            message: "expected a .gguf file or a folder with config.json and model.safetensors"
                .into(),
        });
    }
    let model = load_folder(path, None)?;
    let tok_path = path.join("tokenizer.json");
    let tokenizer = if tok_path.is_file() {
        Some(TextTokenizer::from_file(&tok_path)?)
    } else {
        None
    };
    Ok(LoadedModel {
        name,
        model,
        tokenizer,
        base: Some(BaseWeights {
            file: path.join("model.safetensors"),
            asset: None,
        }),
    })
}

/// Builds the model of the checkpoint folder `path` from `weights` (default: its
/// `model.safetensors`).
fn load_folder(path: &Path, weights: Option<WeightMap>) -> Result<Model> {
    let cfg_path = path.join("config.json");
    let mt: ModelType = read_config(&cfg_path)?;
    let kind = mt.model_type.unwrap_or_default();
    let w = || -> Result<WeightMap> {
        match &weights {
            Some(w) => Ok(w.clone()),
            None => WeightMap::from_safetensors(&path.join("model.safetensors")),
        }
    };
    Ok(match kind.as_str() {
        "bert" => Model::Bert(BertModel::from_weights(
            read_config(&cfg_path)?,
            &cfg_path,
            w()?,
        )?),
        "albert" => Model::Albert(AlbertModel::from_weights(
            read_config(&cfg_path)?,
            &cfg_path,
            w()?,
        )?),
        "gpt2" => Model::Gpt2(Gpt2Model::from_weights(
            read_config(&cfg_path)?,
            &cfg_path,
            w()?,
        )?),
        "vit" => Model::Vit(VitModel::from_weights(
            read_config(&cfg_path)?,
            &cfg_path,
            w()?,
        )?),
        other => {
            return Err(ModelError::config(
                &cfg_path,
                format!(
                    "model_type `{other}` is not supported (bert, albert, gpt2, vit; Llama from GGUF)"
                ),
            ));
        }
    })
}
