//! Fine-tuned weights files: a safetensors file holding only the tensors a fine-tuning run
//! changed, named as in the base model's own weights file, with metadata saying which base
//! model they go on (its asset id and the sha256 of its weights file), how they were
//! obtained and which thresholds file they go with.
//!
//! [`FineTunedWeights::apply`] overlays them on the base model's tensors after checking the
//! base sha256 and that every tensor exists in the base with the same shape; errors name
//! the weights file and the tensor.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};

use crate::error::{ModelError, Result};
use crate::weights::WeightMap;

/// Value of the metadata key `format` of a fine-tuned weights file.
pub const FORMAT: &str = "sprint-finetuned-weights/1";

/// Metadata key holding the lower-case hex sha256 of the base model's weights file.
pub const BASE_SHA256: &str = "base_sha256";

/// The tensors of a fine-tuned weights file and its metadata.
#[derive(Clone, Debug)]
pub struct FineTunedWeights {
    /// Tensors (f32) by their name in the base model's weights file, in name order.
    pub tensors: BTreeMap<String, Tensor>,
    /// Metadata (`format`, `base_sha256`, `base_model`, `base_asset`, the recipe, the
    /// thresholds file).
    pub meta: BTreeMap<String, String>,
}

/// Lower-case hex sha256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl FineTunedWeights {
    /// Reads a fine-tuned weights file; errors name the file and the field or tensor.
    pub fn read(path: &Path) -> Result<Self> {
        let data = std::fs::read(path).map_err(|source| ModelError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let bad = |message: String| ModelError::Weights {
            path: path.to_path_buf(),
            message,
        };
        let (_, header) = safetensors::SafeTensors::read_metadata(&data)
            .map_err(|e| bad(format!("not a safetensors file: {e}")))?;
        let meta: BTreeMap<String, String> = header
            .metadata()
            .as_ref()
            .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default();
        match meta.get("format") {
            Some(f) if f == FORMAT => {}
            Some(f) => {
                return Err(bad(format!(
                    "metadata field `format` is `{f}`, expected `{FORMAT}`"
                )));
            }
            None => {
                return Err(bad(format!(
                    "metadata field `format` is missing (not a fine-tuned weights file of format `{FORMAT}`)"
                )));
            }
        }
        match meta.get(BASE_SHA256) {
            Some(s) if s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit()) => {}
            Some(s) => {
                return Err(bad(format!(
                    "metadata field `{BASE_SHA256}` is `{s}`, not a hex sha256"
                )));
            }
            None => return Err(bad(format!("metadata field `{BASE_SHA256}` is missing"))),
        }
        let raw = candle_core::safetensors::load_buffer(&data, &Device::Cpu)
            .map_err(|e| bad(e.to_string()))?;
        let mut tensors = BTreeMap::new();
        for (name, t) in raw {
            if t.dtype() != DType::F32 {
                return Err(bad(format!(
                    "tensor `{name}` is {:?}, expected f32",
                    t.dtype()
                )));
            }
            let finite = t
                .flatten_all()
                .and_then(|x| x.to_vec1::<f32>())
                .map_err(|e| bad(format!("tensor `{name}`: {e}")))?
                .iter()
                .all(|x| x.is_finite());
            if !finite {
                return Err(bad(format!("tensor `{name}` holds a non-finite value")));
            }
            tensors.insert(name, t);
        }
        if tensors.is_empty() {
            return Err(bad("holds no tensor".into()));
        }
        Ok(Self { tensors, meta })
    }

    /// Writes the file (safetensors with the metadata, `format` set) atomically.
    pub fn write(&self, path: &Path) -> Result<()> {
        let mut meta: HashMap<String, String> = self
            .meta
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        meta.insert("format".into(), FORMAT.into());
        let bytes = safetensors::serialize(self.tensors.iter(), Some(meta)).map_err(|e| {
            ModelError::Weights {
                path: path.to_path_buf(),
                message: format!("cannot serialise: {e}"),
            }
        })?;
        sprint_core::outfile::write_atomic::<ModelError>(path, |w| {
            use std::io::Write;
            w.write_all(&bytes).map_err(|source| ModelError::Io {
                path: path.to_path_buf(),
                source,
            })
        })
    }

    /// The sha256 of the base model's weights file these tensors go on.
    pub fn base_sha256(&self) -> &str {
        self.meta.get(BASE_SHA256).map_or("", String::as_str)
    }

    /// Overlays the tensors on `base`, whose file has sha256 `base_sha256`; `path` is this
    /// file (named in errors). Checks the sha256 first, then that every tensor exists in
    /// the base with the same shape; on error `base` is unchanged.
    pub fn apply(&self, path: &Path, base: &mut WeightMap, base_sha256: &str) -> Result<()> {
        let bad = |message: String| ModelError::Weights {
            path: path.to_path_buf(),
            message,
        };
        if self.base_sha256() != base_sha256 {
            return Err(bad(format!(
                "made for a base model whose weights file has sha256 {}, but {} has sha256 {base_sha256}",
                self.base_sha256(),
                base.path().display()
            )));
        }
        for (name, t) in &self.tensors {
            match base.dims_of(name) {
                None => {
                    return Err(bad(format!(
                        "tensor `{name}` is not a tensor of the base model {}",
                        base.path().display()
                    )));
                }
                Some(d) if d != t.dims() => {
                    return Err(bad(format!(
                        "tensor `{name}` has shape {:?}; the base model {} stores {d:?}",
                        t.dims(),
                        base.path().display()
                    )));
                }
                Some(_) => {}
            }
        }
        for (name, t) in &self.tensors {
            base.replace(name, t.clone(), path)?;
        }
        Ok(())
    }
}

/// Where a loaded model's weights came from, for fine-tuned weights files.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BaseWeights {
    /// The weights file (`model.safetensors` of a checkpoint folder, or a GGUF file).
    pub file: PathBuf,
    /// The asset id when the model was loaded by name (`minilm`), else `None`.
    pub asset: Option<String>,
}

impl BaseWeights {
    /// Lower-case hex sha256 of the weights file.
    pub fn sha256(&self) -> Result<String> {
        let data = std::fs::read(&self.file).map_err(|source| ModelError::Io {
            path: self.file.clone(),
            source,
        })?;
        Ok(sha256_hex(&data))
    }
}
