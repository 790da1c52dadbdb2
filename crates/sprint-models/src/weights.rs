//! Named f32 tensors read from one weights file, with shape checks whose errors name the
//! file and the tensor.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};

use crate::error::{CandleContext, ModelError, Result};

/// The tensors of one checkpoint file, converted to f32 on the CPU.
#[derive(Clone, Debug)]
pub struct WeightMap {
    path: PathBuf,
    tensors: HashMap<String, Tensor>,
    prefix: String,
}

impl WeightMap {
    /// Wraps tensors that came from `path` (used in error messages).
    pub fn new(path: impl Into<PathBuf>, tensors: HashMap<String, Tensor>) -> Self {
        Self {
            path: path.into(),
            tensors,
            prefix: String::new(),
        }
    }

    /// Reads a safetensors file; every tensor is converted to f32.
    pub fn from_safetensors(path: &Path) -> Result<Self> {
        let data = std::fs::read(path).map_err(|source| ModelError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_buffer(path, &data)
    }

    /// Parses the bytes `data` of the safetensors file `path` (named in errors); every
    /// tensor is converted to f32.
    pub fn from_buffer(path: &Path, data: &[u8]) -> Result<Self> {
        let raw = candle_core::safetensors::load_buffer(data, &Device::Cpu).map_err(|e| {
            ModelError::Weights {
                path: path.to_path_buf(),
                message: e.to_string(),
            }
        })?;
        let mut tensors = HashMap::with_capacity(raw.len());
        for (name, t) in raw {
            let t = if t.dtype() == DType::F32 {
                t
            } else {
                t.to_dtype(DType::F32).map_err(|e| ModelError::Weights {
                    path: path.to_path_buf(),
                    message: format!("tensor `{name}`: cannot convert to f32: {e}"),
                })?
            };
            tensors.insert(name, t);
        }
        Ok(Self::new(path, tensors))
    }

    /// The file the tensors came from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Names of all tensors (unprefixed, as stored).
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.tensors.keys().map(String::as_str)
    }

    /// True when a tensor of that full name is stored.
    pub fn contains(&self, full_name: &str) -> bool {
        self.tensors.contains_key(full_name)
    }

    /// Shape of the tensor stored under `full_name` (prefix not applied), if present.
    pub fn dims_of(&self, full_name: &str) -> Option<Vec<usize>> {
        self.tensors.get(full_name).map(|t| t.dims().to_vec())
    }

    /// The prefix prepended to the names asked for (`bert.`, or empty).
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Replaces the stored tensor `full_name` (prefix not applied) by `t`, which must have
    /// the stored shape; `source` names the file `t` came from in errors.
    pub fn replace(&mut self, full_name: &str, t: Tensor, source: &Path) -> Result<()> {
        let Some(old) = self.tensors.get_mut(full_name) else {
            return Err(ModelError::Weights {
                path: source.to_path_buf(),
                message: format!(
                    "tensor `{full_name}` is not a tensor of the base model {}",
                    self.path.display()
                ),
            });
        };
        if old.dims() != t.dims() {
            return Err(ModelError::Weights {
                path: source.to_path_buf(),
                message: format!(
                    "tensor `{full_name}` has shape {:?}; the base model {} stores {:?}",
                    t.dims(),
                    self.path.display(),
                    old.dims()
                ),
            });
        }
        *old = t;
        Ok(())
    }

    /// The same tensors, with `prefix` prepended to every name asked for afterwards
    /// (e.g. `bert.` for checkpoints saved from a task model).
    pub fn with_prefix(mut self, prefix: &str) -> Self {
        self.prefix = prefix.to_string();
        self
    }

    /// Looks names up under `prefix` if the file stores `{prefix}{probe}` (e.g. `bert.` when
    /// `bert.embeddings.word_embeddings.weight` is there), else as they are.
    pub fn with_prefix_if_stored(self, prefix: &str, probe: &str) -> Self {
        if self.contains(&format!("{prefix}{probe}")) {
            self.with_prefix(prefix)
        } else {
            self
        }
    }

    /// Tensor `name` (after the prefix), checked to have shape `shape`.
    pub fn get(&self, name: &str, shape: &[usize]) -> Result<Tensor> {
        let full = format!("{}{name}", self.prefix);
        let t = self
            .tensors
            .get(&full)
            .ok_or_else(|| ModelError::MissingTensor {
                path: self.path.clone(),
                tensor: full.clone(),
            })?;
        if t.dims() != shape {
            return Err(ModelError::TensorShape {
                path: self.path.clone(),
                tensor: full,
                expected: format!("{shape:?}"),
                actual: format!("{:?}", t.dims()),
            });
        }
        Ok(t.clone())
    }

    /// Tensor `name` if present (shape-checked), `None` if absent.
    pub fn get_opt(&self, name: &str, shape: &[usize]) -> Result<Option<Tensor>> {
        let full = format!("{}{name}", self.prefix);
        if self.tensors.contains_key(&full) {
            self.get(name, shape).map(Some)
        } else {
            Ok(None)
        }
    }

    /// Tensor `name` with `shape`, made contiguous (for weights used transposed in matmuls).
    pub fn get_contiguous(&self, name: &str, shape: &[usize]) -> Result<Tensor> {
        self.get(name, shape)?.contiguous().op(name)
    }
}
