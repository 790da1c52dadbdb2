//! `sprint_attn.Config`: the attention configuration, validated by the Rust core.

use std::path::PathBuf;

use pyo3::prelude::*;
use pyo3::types::PyDict;
use sprint_core::config::AttentionConfig;
use toml::Value as Toml;

use crate::conversions::{flatten, merge, remove_dotted, toml_to_py};
use crate::error::err;

/// The attention configuration (`sprint_core::config::AttentionConfig`), validated by the
/// Rust core. Keys, defaults and units: docs/configuration.md.
#[pyclass(name = "Config", module = "sprint_attn", frozen)]
#[derive(Clone)]
pub struct PyConfig {
    pub(crate) inner: AttentionConfig,
}

impl PyConfig {
    fn table(&self) -> PyResult<toml::Table> {
        match Toml::try_from(&self.inner).map_err(err)? {
            Toml::Table(t) => Ok(t),
            _ => Err(err("config did not serialise to a table")),
        }
    }

    fn from_table(t: &toml::Table, origin: &str) -> PyResult<Self> {
        let text = toml::to_string(t).map_err(err)?;
        let inner = AttentionConfig::from_toml_str(&text, origin).map_err(err)?;
        Ok(Self { inner })
    }
}

#[pymethods]
impl PyConfig {
    /// Builds a configuration from a mapping (the TOML document as nested dicts, read like a
    /// TOML file) and keyword overrides of top-level keys, applied like `sprint attend --set`
    /// (a dict value sets keys of that section, `None` removes a key, `noise={"preset": ..}`
    /// starts the noise table from that preset).
    #[new]
    #[pyo3(signature = (mapping=None, **overrides))]
    fn new(
        mapping: Option<&Bound<'_, PyDict>>,
        overrides: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<Self> {
        let mut t = toml::Table::new();
        if let Some(m) = mapping {
            merge(&mut t, m, "")?;
        }
        let cfg = Self::from_table(&t, "dict")?;
        match overrides {
            Some(o) if !o.is_empty() => cfg.replace(Some(o)),
            _ => Ok(cfg),
        }
    }

    /// Parses TOML text (same parser and checks as `sprint attend --config`).
    #[staticmethod]
    #[pyo3(signature = (text, origin="config"))]
    fn from_toml(text: &str, origin: &str) -> PyResult<Self> {
        let inner = AttentionConfig::from_toml_str(text, origin).map_err(err)?;
        Ok(Self { inner })
    }

    /// Reads a TOML file (a relative `threshold.file` is taken relative to it), then applies
    /// keyword overrides.
    #[staticmethod]
    #[pyo3(signature = (path, **overrides))]
    fn from_file(path: PathBuf, overrides: Option<&Bound<'_, PyDict>>) -> PyResult<Self> {
        let cfg = Self {
            inner: AttentionConfig::from_file(&path).map_err(err)?,
        };
        match overrides {
            Some(o) if !o.is_empty() => cfg.replace(Some(o)),
            _ => Ok(cfg),
        }
    }

    /// A copy with keyword overrides applied like `sprint attend --set` (a dict value sets
    /// keys of that section, `None` removes a key back to its default).
    #[pyo3(signature = (**overrides))]
    fn replace(&self, overrides: Option<&Bound<'_, PyDict>>) -> PyResult<Self> {
        let Some(o) = overrides else {
            return Ok(self.clone());
        };
        let mut t = self.table()?;
        let (mut sets, mut removals) = (Vec::new(), Vec::new());
        flatten(Some(&t), o, "", &mut sets, &mut removals)?;
        let base = if removals.is_empty() {
            self.clone()
        } else {
            for key in &removals {
                remove_dotted(&mut t, key);
            }
            Self::from_table(&t, "dict")?
        };
        let inner = base.inner.with_overrides(&sets).map_err(err)?;
        Ok(Self { inner })
    }

    /// Every key as nested dicts (floats may be `-inf`).
    fn to_dict(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        toml_to_py(py, &Toml::Table(self.table()?))
    }

    /// The configuration as TOML text, readable by `sprint attend --config`.
    fn to_toml(&self) -> PyResult<String> {
        toml::to_string(&self.inner).map_err(err)
    }

    /// Resolved thresholds `Th`, logit units, as a list of `layers` lists of `heads` floats.
    fn thresholds(&self, layers: usize, heads: usize) -> PyResult<Vec<Vec<f32>>> {
        Ok(self.inner.thresholds(layers, heads).map_err(err)?.values)
    }

    /// Variant name (`dense`, `runtime-pruning`, `sprint-no-recompute`, `sprint`, or a peer
    /// design: `sanger`, `leopard`, `a3`, `energon`, `spatten`).
    #[getter]
    fn variant(&self) -> &'static str {
        self.inner.variant.name()
    }

    /// Causal masking.
    #[getter]
    fn causal(&self) -> bool {
        self.inner.causal
    }

    /// Noise seed.
    #[getter]
    fn seed(&self) -> u64 {
        self.inner.seed
    }

    fn __eq__(&self, other: &Bound<'_, PyAny>) -> bool {
        other
            .cast::<PyConfig>()
            .is_ok_and(|o| o.get().inner == self.inner)
    }

    fn __repr__(&self) -> String {
        format!(
            "Config(variant={:?}, causal={}, recompute={:?}, threshold={})",
            self.inner.variant.name(),
            self.inner.causal,
            self.inner.recompute,
            self.inner.threshold.value
        )
    }
}
