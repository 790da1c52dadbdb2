//! Reading Hugging Face checkpoint folders (`config.json` + `model.safetensors`) and the
//! config checks the architectures share.

use std::path::{Path, PathBuf};

use crate::activation::Activation;
use crate::error::{ModelError, Result};
use crate::weights::WeightMap;

/// Reads and parses a `config.json` into `T`.
pub fn read_config<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let text = std::fs::read_to_string(path).map_err(|source| ModelError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    serde_json::from_str(&text).map_err(|e| ModelError::config(path, e.to_string()))
}

/// Reads a checkpoint folder: the parsed `config.json`, its path (for errors) and the
/// weights of `model.safetensors`.
pub fn read_checkpoint<T: serde::de::DeserializeOwned>(
    dir: &Path,
) -> Result<(T, PathBuf, WeightMap)> {
    let cfg_path = dir.join("config.json");
    let cfg = read_config(&cfg_path)?;
    let w = WeightMap::from_safetensors(&dir.join("model.safetensors"))?;
    Ok((cfg, cfg_path, w))
}

/// Parses the activation `name` given by config field `field`; the error names `path`.
pub fn parse_activation(path: &Path, field: &str, name: &str) -> Result<Activation> {
    Activation::parse(name)
        .ok_or_else(|| ModelError::config(path, format!("{field} `{name}` is not supported")))
}

/// Checks that `hidden` elements (config field `hidden_field`) split into `heads` (field
/// `heads_field`, at least one) heads of equal width; the error names `path`.
pub fn check_heads(
    path: &Path,
    (hidden_field, hidden): (&str, usize),
    (heads_field, heads): (&str, usize),
) -> Result<()> {
    if heads == 0 || !hidden.is_multiple_of(heads) {
        return Err(ModelError::config(
            path,
            format!("{hidden_field} {hidden} is not a multiple of {heads_field} {heads}"),
        ));
    }
    Ok(())
}

/// Checks the fields BERT, ALBERT and ViT configs share: the feed-forward activation
/// `hidden_act` and `hidden_size` elements split into `num_attention_heads` heads; the error
/// names `path`. Returns the activation.
pub fn check_encoder_fields(
    path: &Path,
    hidden_act: &str,
    hidden_size: usize,
    num_attention_heads: usize,
) -> Result<Activation> {
    let act = parse_activation(path, "hidden_act", hidden_act)?;
    check_heads(
        path,
        ("hidden_size", hidden_size),
        ("num_attention_heads", num_attention_heads),
    )?;
    Ok(act)
}
