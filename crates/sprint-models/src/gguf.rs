//! GGUF files through candle's reader: typed metadata access, and every tensor dequantised
//! to f32.

use std::collections::HashMap;
use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};

use candle_core::Device;
use candle_core::quantized::gguf_file::{Content, Value};

use crate::error::{ModelError, Result};
use crate::weights::WeightMap;

/// An open GGUF file: its metadata and tensor directory.
#[derive(Debug)]
pub struct GgufFile {
    path: PathBuf,
    content: Content,
}

impl GgufFile {
    /// Reads the header, metadata and tensor directory of `path`.
    pub fn open(path: &Path) -> Result<Self> {
        let file = File::open(path).map_err(|source| ModelError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let content =
            Content::read(&mut BufReader::new(file)).map_err(|e| ModelError::Weights {
                path: path.to_path_buf(),
                message: format!("not a readable GGUF file: {e}"),
            })?;
        Ok(Self {
            path: path.to_path_buf(),
            content,
        })
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// candle's parsed content (metadata and tensor directory).
    pub fn content(&self) -> &Content {
        &self.content
    }

    fn meta(&self, key: &str) -> Result<&Value> {
        self.content.metadata.get(key).ok_or_else(|| {
            ModelError::config(&self.path, format!("GGUF metadata `{key}` is missing"))
        })
    }

    fn bad(&self, key: &str, want: &str, e: impl std::fmt::Display) -> ModelError {
        ModelError::config(
            &self.path,
            format!("GGUF metadata `{key}` is not {want}: {e}"),
        )
    }

    /// A string value.
    pub fn meta_str(&self, key: &str) -> Result<String> {
        self.meta(key)?
            .to_string()
            .cloned()
            .map_err(|e| self.bad(key, "a string", e))
    }

    /// An unsigned integer value (any integer width).
    pub fn meta_u32(&self, key: &str) -> Result<u32> {
        let v = self.meta(key)?;
        match v {
            Value::U8(x) => Ok(u32::from(*x)),
            Value::U16(x) => Ok(u32::from(*x)),
            Value::U32(x) => Ok(*x),
            Value::U64(x) => u32::try_from(*x).map_err(|e| self.bad(key, "a u32", e)),
            Value::I32(x) => u32::try_from(*x).map_err(|e| self.bad(key, "a u32", e)),
            Value::I64(x) => u32::try_from(*x).map_err(|e| self.bad(key, "a u32", e)),
            other => Err(self.bad(key, "an integer", format!("{other:?}"))),
        }
    }

    /// A float value (f32 or f64).
    pub fn meta_f32(&self, key: &str) -> Result<f32> {
        match self.meta(key)? {
            Value::F32(x) => Ok(*x),
            Value::F64(x) => Ok(*x as f32),
            other => Err(self.bad(key, "a float", format!("{other:?}"))),
        }
    }

    /// A boolean value.
    pub fn meta_bool(&self, key: &str) -> Result<bool> {
        self.meta(key)?
            .to_bool()
            .map_err(|e| self.bad(key, "a boolean", e))
    }

    /// An array of strings.
    pub fn meta_strings(&self, key: &str) -> Result<Vec<String>> {
        let arr = self
            .meta(key)?
            .to_vec()
            .map_err(|e| self.bad(key, "an array", e))?;
        arr.iter()
            .map(|v| {
                v.to_string()
                    .cloned()
                    .map_err(|e| self.bad(key, "an array of strings", e))
            })
            .collect()
    }

    /// An array of integers.
    pub fn meta_u32s(&self, key: &str) -> Result<Vec<u32>> {
        let arr = self
            .meta(key)?
            .to_vec()
            .map_err(|e| self.bad(key, "an array", e))?;
        arr.iter()
            .map(|v| match v {
                Value::U32(x) => Ok(*x),
                Value::I32(x) => u32::try_from(*x).map_err(|e| self.bad(key, "u32s", e)),
                Value::U8(x) => Ok(u32::from(*x)),
                Value::I8(x) => u32::try_from(*x).map_err(|e| self.bad(key, "u32s", e)),
                other => Err(self.bad(key, "an array of integers", format!("{other:?}"))),
            })
            .collect()
    }

    /// Every tensor, dequantised to f32, under its GGUF name (shapes as candle reports
    /// them: GGML's dimension order reversed, so a linear weight is `[out, in]`).
    pub fn dequantize_all(&self) -> Result<WeightMap> {
        let file = File::open(&self.path).map_err(|source| ModelError::Io {
            path: self.path.clone(),
            source,
        })?;
        let mut reader = BufReader::new(file);
        let mut names: Vec<&String> = self.content.tensor_infos.keys().collect();
        names.sort();
        let mut tensors = HashMap::with_capacity(names.len());
        for name in names {
            let q = self
                .content
                .tensor(&mut reader, name, &Device::Cpu)
                .and_then(|q| q.dequantize(&Device::Cpu))
                .map_err(|e| ModelError::Weights {
                    path: self.path.clone(),
                    message: format!("tensor `{name}`: {e}"),
                })?;
            tensors.insert(name.clone(), q);
        }
        Ok(WeightMap::new(&self.path, tensors))
    }
}
