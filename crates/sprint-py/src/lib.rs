//! Python bindings of sprint, imported as `sprint_attn._native` and wrapped by the pure-Python
//! package `sprint_attn` (crates/sprint-py/python). The Rust crates do all the work: the
//! configuration is parsed and validated by `sprint_core::config::AttentionConfig` (the same
//! code path as `sprint attend --config FILE`), attention runs in
//! `sprint_attention::run_layer`, traces are read and written by `sprint_core::trace`, and
//! simulations go through `sprint_sim::simulate` like `sprint simulate --json`. Long
//! computations release the GIL.
//!
//! Units follow the Rust crates: thresholds in logit units (`q . k / sqrt(d)`), noise sigmas
//! as fractions of the crossbar full scale, buffers and moved data in bytes, energy in pJ,
//! time in cycles and seconds.

use std::fmt::Display;
use std::io::{BufReader, Cursor};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use numpy::ndarray::{Array, IxDyn};
use numpy::{IntoPyArray, PyArrayDyn, PyReadonlyArrayDyn, PyUntypedArrayMethods};
use pyo3::create_exception;
use pyo3::exceptions::{PyIndexError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyFloat, PyInt, PyList, PyString, PyTuple};
use serde_json::Value as Json;
use sprint_attention::summary::{RunSummary, error_stats, kind_bytes, provenance, trace_header};
use sprint_attention::{AttentionInput, LayerShape, Tensor3, dense, run_layer};
use sprint_core::config::{AttentionConfig, Thresholds};
use sprint_core::trace::{HeadTrace, KindTotals, TraceHeader, TraceReader, TraceWriter};
use sprint_sim::presets::{load_design, load_energy, preset_names};
use sprint_sim::simulate::{json_document, simulate as run_simulation, split_sets};
use sprint_sim::workload::{model_workload, workload_names};
use sprint_sim::wstats::{StatsFile, measure};
use toml::Value as Toml;

create_exception!(
    sprint_attn,
    SprintError,
    PyValueError,
    "An error reported by the Rust core (bad configuration key or value, bad shape, bad trace \
     file, unknown preset). The message is the Rust one and names the key or tensor."
);

fn err(e: impl Display) -> PyErr {
    SprintError::new_err(e.to_string())
}

// ---------------------------------------------------------------------------------------
// Conversions between Python objects, TOML values and JSON values.

/// Converts a Python value (dict, list, tuple, str, bool, int, float; `None` entries of a
/// dict are dropped) into a TOML value. `path` names the place in error messages.
fn py_to_toml(obj: &Bound<'_, PyAny>, path: &str) -> PyResult<Option<Toml>> {
    if obj.is_none() {
        return Ok(None);
    }
    if obj.is_instance_of::<PyBool>() {
        return Ok(Some(Toml::Boolean(obj.extract()?)));
    }
    if obj.is_instance_of::<PyInt>() {
        let v: i64 = obj
            .extract()
            .map_err(|_| err(format!("{path}: integer out of range")))?;
        return Ok(Some(Toml::Integer(v)));
    }
    if obj.is_instance_of::<PyFloat>() {
        return Ok(Some(Toml::Float(obj.extract()?)));
    }
    if obj.is_instance_of::<PyString>() {
        return Ok(Some(Toml::String(obj.extract()?)));
    }
    if let Ok(d) = obj.cast::<PyDict>() {
        return Ok(Some(Toml::Table(dict_to_table(d, path)?)));
    }
    if obj.is_instance_of::<PyList>() || obj.is_instance_of::<PyTuple>() {
        let mut out = Vec::new();
        for (i, item) in obj.try_iter()?.enumerate() {
            let item = item?;
            match py_to_toml(&item, &format!("{path}[{i}]"))? {
                Some(v) => out.push(v),
                None => return Err(err(format!("{path}[{i}]: None is not a value"))),
            }
        }
        return Ok(Some(Toml::Array(out)));
    }
    Err(err(format!(
        "{path}: unsupported value of type {} (use dict, list, str, bool, int or float)",
        obj.get_type().name()?
    )))
}

fn dict_to_table(d: &Bound<'_, PyDict>, path: &str) -> PyResult<toml::Table> {
    let mut t = toml::Table::new();
    for (k, v) in d.iter() {
        let key: String = k
            .extract()
            .map_err(|_| err(format!("{path}: keys must be strings")))?;
        let here = if path.is_empty() {
            key.clone()
        } else {
            format!("{path}.{key}")
        };
        if let Some(v) = py_to_toml(&v, &here)? {
            t.insert(key, v);
        }
    }
    Ok(t)
}

/// Merges the Python dict `over` into `base`: a dict merges into an existing table key by
/// key, `None` removes the key (back to its default), anything else replaces.
fn merge(base: &mut toml::Table, over: &Bound<'_, PyDict>, path: &str) -> PyResult<()> {
    for (k, v) in over.iter() {
        let key: String = k
            .extract()
            .map_err(|_| err(format!("{path}: keys must be strings")))?;
        let here = if path.is_empty() {
            key.clone()
        } else {
            format!("{path}.{key}")
        };
        if v.is_none() {
            base.remove(&key);
            continue;
        }
        if let (Some(Toml::Table(b)), Ok(d)) = (base.get_mut(&key), v.cast::<PyDict>()) {
            merge(b, d, &here)?;
            continue;
        }
        if let Some(x) = py_to_toml(&v, &here)? {
            base.insert(key, x);
        }
    }
    Ok(())
}

/// Turns keyword overrides into `key=value` assignments for
/// `AttentionConfig::with_overrides` (the code behind `sprint attend --set`, which knows
/// that `noise.preset` resets the noise table): a dict descends into a section that exists
/// in `base`, any other value is written as TOML; `None` leaves go to `removals`.
fn flatten(
    base: Option<&toml::Table>,
    over: &Bound<'_, PyDict>,
    prefix: &str,
    sets: &mut Vec<String>,
    removals: &mut Vec<String>,
) -> PyResult<()> {
    for (k, v) in over.iter() {
        let key: String = k
            .extract()
            .map_err(|_| err(format!("{prefix}: keys must be strings")))?;
        let here = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        if v.is_none() {
            removals.push(here);
            continue;
        }
        if let (Ok(d), Some(Toml::Table(sub))) =
            (v.cast::<PyDict>(), base.and_then(|b| b.get(&key)))
        {
            flatten(Some(sub), d, &here, sets, removals)?;
            continue;
        }
        if let Some(x) = py_to_toml(&v, &here)? {
            sets.push(format!("{here}={x}"));
        }
    }
    Ok(())
}

/// Removes the dotted `key` from `t` (if present).
fn remove_dotted(t: &mut toml::Table, key: &str) {
    match key.split_once('.') {
        None => {
            t.remove(key);
        }
        Some((head, rest)) => {
            if let Some(Toml::Table(sub)) = t.get_mut(head) {
                remove_dotted(sub, rest);
            }
        }
    }
}

fn toml_to_py(py: Python<'_>, v: &Toml) -> PyResult<Py<PyAny>> {
    Ok(match v {
        Toml::String(s) => s.into_pyobject(py)?.into_any().unbind(),
        Toml::Integer(i) => i.into_pyobject(py)?.into_any().unbind(),
        Toml::Float(f) => f.into_pyobject(py)?.into_any().unbind(),
        Toml::Boolean(b) => PyBool::new(py, *b).to_owned().into_any().unbind(),
        Toml::Datetime(d) => d.to_string().into_pyobject(py)?.into_any().unbind(),
        Toml::Array(a) => {
            let items = a
                .iter()
                .map(|x| toml_to_py(py, x))
                .collect::<PyResult<Vec<_>>>()?;
            PyList::new(py, items)?.into_any().unbind()
        }
        Toml::Table(t) => {
            let d = PyDict::new(py);
            for (k, x) in t {
                d.set_item(k, toml_to_py(py, x)?)?;
            }
            d.into_any().unbind()
        }
    })
}

fn json_to_py(py: Python<'_>, v: &Json) -> PyResult<Py<PyAny>> {
    Ok(match v {
        Json::Null => py.None(),
        Json::Bool(b) => PyBool::new(py, *b).to_owned().into_any().unbind(),
        Json::Number(n) => {
            if let Some(i) = n.as_u64() {
                i.into_pyobject(py)?.into_any().unbind()
            } else if let Some(i) = n.as_i64() {
                i.into_pyobject(py)?.into_any().unbind()
            } else {
                n.as_f64()
                    .unwrap_or(f64::NAN)
                    .into_pyobject(py)?
                    .into_any()
                    .unbind()
            }
        }
        Json::String(s) => s.into_pyobject(py)?.into_any().unbind(),
        Json::Array(a) => {
            let items = a
                .iter()
                .map(|x| json_to_py(py, x))
                .collect::<PyResult<Vec<_>>>()?;
            PyList::new(py, items)?.into_any().unbind()
        }
        Json::Object(o) => {
            let d = PyDict::new(py);
            for (k, x) in o {
                d.set_item(k, json_to_py(py, x)?)?;
            }
            d.into_any().unbind()
        }
    })
}

fn to_py<T: serde::Serialize>(py: Python<'_>, x: &T) -> PyResult<Py<PyAny>> {
    json_to_py(py, &serde_json::to_value(x).map_err(err)?)
}

// ---------------------------------------------------------------------------------------
// Config

/// The attention configuration (`sprint_core::config::AttentionConfig`), validated by the
/// Rust core. Keys, defaults and units: docs/configuration.md.
#[pyclass(name = "Config", module = "sprint_attn", frozen)]
#[derive(Clone)]
pub struct PyConfig {
    inner: AttentionConfig,
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
    /// design: `sanger`, `leopard`).
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

// ---------------------------------------------------------------------------------------
// Trace

/// An attention trace in memory: the header and one block per (layer, query head), with the
/// kept set of every query. File format: docs/trace-format.md.
#[pyclass(name = "Trace", module = "sprint_attn", frozen)]
pub struct PyTrace {
    header: TraceHeader,
    heads: Vec<HeadTrace>,
}

impl PyTrace {
    fn find(&self, layer: u32, head: u32) -> PyResult<&HeadTrace> {
        self.heads
            .iter()
            .find(|h| h.layer == layer && h.head == head)
            .ok_or_else(|| {
                PyIndexError::new_err(format!(
                    "no block for layer {layer} head {head} (trace has {} layers x {} heads)",
                    self.header.layers, self.header.heads
                ))
            })
    }

    fn encode(&self) -> PyResult<Vec<u8>> {
        let mut w = TraceWriter::new(Vec::new(), &self.header).map_err(err)?;
        for h in &self.heads {
            w.write_head(h).map_err(err)?;
        }
        w.finish().map_err(err)
    }

    fn query_index(&self, query: i64) -> PyResult<usize> {
        let n = i64::from(self.header.n_queries);
        let q = if query < 0 { query + n } else { query };
        if !(0..n).contains(&q) {
            return Err(PyIndexError::new_err(format!(
                "query {query} out of range for {n} queries"
            )));
        }
        Ok(q as usize)
    }
}

/// Two bool arrays (query and key validity).
type BoolPair<'py> = (Bound<'py, PyArrayDyn<bool>>, Bound<'py, PyArrayDyn<bool>>);

#[pymethods]
impl PyTrace {
    /// Reads and validates a trace file.
    #[staticmethod]
    fn open(py: Python<'_>, path: PathBuf) -> PyResult<Self> {
        let (header, heads) = py
            .detach(|| sprint_core::trace::read_trace(&path))
            .map_err(err)?;
        Ok(Self { header, heads })
    }

    /// Writes the trace to `path` atomically (validated block by block).
    fn write(&self, py: Python<'_>, path: PathBuf) -> PyResult<()> {
        py.detach(|| sprint_core::trace::write_trace(&path, &self.header, &self.heads))
            .map_err(err)
    }

    /// Joins single- or multi-layer traces of the same shape into one trace whose layers
    /// are theirs in order (e.g. the per-layer traces of a model, for `simulate`).
    #[staticmethod]
    #[pyo3(signature = (traces, workload=None))]
    fn concat(traces: Vec<PyRef<'_, PyTrace>>, workload: Option<String>) -> PyResult<Self> {
        let Some(first) = traces.first() else {
            return Err(err("concat needs at least one trace"));
        };
        let mut header = first.header.clone();
        let mut heads = Vec::new();
        let mut layers = 0u32;
        for (i, t) in traces.iter().enumerate() {
            let mut h = t.header.clone();
            h.layers = header.layers;
            h.workload.clone_from(&header.workload);
            if h != header {
                return Err(err(format!(
                    "trace {i} differs from trace 0 in shape, variant or buffers"
                )));
            }
            for b in &t.heads {
                let mut b = b.clone();
                b.layer += layers;
                heads.push(b);
            }
            layers += t.header.layers;
        }
        header.layers = layers;
        if let Some(w) = workload {
            header.workload = w;
        }
        let out = Self { header, heads };
        for b in &out.heads {
            b.validate(&out.header).map_err(err)?;
        }
        Ok(out)
    }

    /// The header (producer, workload, variant, shape, bytes per vector, buffers, and any
    /// provenance fields) as a dict.
    #[getter]
    fn header(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        to_py(py, &self.header)
    }

    /// Layers in the trace.
    #[getter]
    fn layers(&self) -> u32 {
        self.header.layers
    }

    /// Query heads per layer.
    #[getter]
    fn heads(&self) -> u32 {
        self.header.heads
    }

    /// Queries per head.
    #[getter]
    fn n_queries(&self) -> u32 {
        self.header.n_queries
    }

    /// Keys per head.
    #[getter]
    fn n_keys(&self) -> u32 {
        self.header.n_keys
    }

    /// Elements per vector.
    #[getter]
    fn head_dim(&self) -> u32 {
        self.header.head_dim
    }

    /// Variant that produced the trace.
    #[getter]
    fn variant(&self) -> String {
        self.header.variant.clone()
    }

    /// Workload named in the header.
    #[getter]
    fn workload(&self) -> String {
        self.header.workload.clone()
    }

    /// The (layer, head) of every block, in file order.
    fn blocks(&self) -> Vec<(u32, u32)> {
        self.heads.iter().map(|h| (h.layer, h.head)).collect()
    }

    /// Kept (moved on chip) key indices of one query, ascending, as an int64 array.
    fn kept<'py>(
        &self,
        py: Python<'py>,
        layer: u32,
        head: u32,
        query: i64,
    ) -> PyResult<Bound<'py, PyArrayDyn<i64>>> {
        let h = self.find(layer, head)?;
        let q = self.query_index(query)?;
        let v: Vec<i64> = h.masks.row_ones(q).map(|j| j as i64).collect();
        let n = v.len();
        Ok(Array::from_shape_vec(IxDyn(&[n]), v)
            .map_err(err)?
            .into_pyarray(py))
    }

    /// Kept sets of every query of one head: a list of int64 arrays.
    fn kept_sets<'py>(
        &self,
        py: Python<'py>,
        layer: u32,
        head: u32,
    ) -> PyResult<Vec<Bound<'py, PyArrayDyn<i64>>>> {
        let h = self.find(layer, head)?;
        (0..h.masks.rows())
            .map(|q| {
                let v: Vec<i64> = h.masks.row_ones(q).map(|j| j as i64).collect();
                let n = v.len();
                Ok(Array::from_shape_vec(IxDyn(&[n]), v)
                    .map_err(err)?
                    .into_pyarray(py))
            })
            .collect()
    }

    /// The kept mask of one head, bool `[n_queries, n_keys]`.
    fn mask<'py>(
        &self,
        py: Python<'py>,
        layer: u32,
        head: u32,
    ) -> PyResult<Bound<'py, PyArrayDyn<bool>>> {
        let h = self.find(layer, head)?;
        let (r, c) = (h.masks.rows(), h.masks.cols());
        let mut v = vec![false; r * c];
        for q in 0..r {
            for j in h.masks.row_ones(q) {
                v[q * c + j] = true;
            }
        }
        Ok(Array::from_shape_vec(IxDyn(&[r, c]), v)
            .map_err(err)?
            .into_pyarray(py))
    }

    /// Real (non-padding) queries and keys of one head: two bool arrays.
    fn valid<'py>(&self, py: Python<'py>, layer: u32, head: u32) -> PyResult<BoolPair<'py>> {
        let h = self.find(layer, head)?;
        let bits = |b: &sprint_core::bits::BitVec| -> Vec<bool> {
            (0..b.len()).map(|i| b.get(i)).collect()
        };
        let (q, k) = (bits(&h.query_valid), bits(&h.key_valid));
        let (nq, nk) = (q.len(), k.len());
        Ok((
            Array::from_shape_vec(IxDyn(&[nq]), q)
                .map_err(err)?
                .into_pyarray(py),
            Array::from_shape_vec(IxDyn(&[nk]), k)
                .map_err(err)?
                .into_pyarray(py),
        ))
    }

    /// Per-query locality-engine counts of one head (keys, not bytes): a dict of uint32
    /// arrays `kept`, `softmax_kept`, `k_fetched`, `k_reused`, `k_streamed`, `v_fetched`,
    /// `v_reused`, `v_streamed`.
    fn records<'py>(&self, py: Python<'py>, layer: u32, head: u32) -> PyResult<Bound<'py, PyDict>> {
        let h = self.find(layer, head)?;
        let d = PyDict::new(py);
        type Get = fn(&sprint_core::trace::QueryRecord) -> u32;
        let fields: [(&str, Get); 8] = [
            ("kept", |r| r.kept),
            ("softmax_kept", |r| r.softmax_kept),
            ("k_fetched", |r| r.k_fetched),
            ("k_reused", |r| r.k_reused),
            ("k_streamed", |r| r.k_streamed),
            ("v_fetched", |r| r.v_fetched),
            ("v_reused", |r| r.v_reused),
            ("v_streamed", |r| r.v_streamed),
        ];
        for (name, get) in fields {
            let v: Vec<u32> = h.records.iter().map(get).collect();
            let n = v.len();
            d.set_item(
                name,
                Array::from_shape_vec(IxDyn(&[n]), v)
                    .map_err(err)?
                    .into_pyarray(py),
            )?;
        }
        Ok(d)
    }

    /// Statistics of the whole trace: summed counts (`kept_pairs`, `softmax_pairs`,
    /// `k_reused`, `k_streamed`, `valid_queries`), bytes fetched from and reused on chip by
    /// kind (`fetched_bytes`, `reused_bytes`, bytes), and the workload statistics the
    /// simulator measures (`keep_rate_per_layer`, `softmax_fraction` = softmax keys / kept
    /// keys, `query_overlap`, `padding_fraction`).
    fn stats(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        let bytes = self.encode()?;
        let (fetched, reused, counts, measured) = py.detach(|| {
            let (mut fetched, mut reused) = (KindTotals::default(), KindTotals::default());
            let mut counts = [0u64; 5];
            for h in &self.heads {
                fetched += h.bytes_by_kind(&self.header.bytes);
                reused += h.reused_bytes_by_kind(&self.header.bytes);
                counts[4] += h.query_valid.count_ones() as u64;
                for r in &h.records {
                    counts[0] += u64::from(r.kept);
                    counts[1] += u64::from(r.softmax_kept);
                    counts[2] += u64::from(r.k_reused);
                    counts[3] += u64::from(r.k_streamed);
                }
            }
            let measured = TraceReader::new(Cursor::new(bytes))
                .map_err(|e| e.to_string())
                .and_then(|r| measure(r).map_err(|e| e.to_string()));
            (fetched, reused, counts, measured)
        });
        let measured = measured.map_err(err)?;
        let mut doc = serde_json::Map::new();
        for (k, v) in [
            "kept_pairs",
            "softmax_pairs",
            "k_reused",
            "k_streamed",
            "valid_queries",
        ]
        .iter()
        .zip(counts)
        {
            doc.insert((*k).into(), Json::from(v));
        }
        doc.insert(
            "fetched_bytes".into(),
            serde_json::to_value(fetched).map_err(err)?,
        );
        doc.insert(
            "reused_bytes".into(),
            serde_json::to_value(reused).map_err(err)?,
        );
        if let Json::Object(m) = serde_json::to_value(&measured).map_err(err)? {
            for (k, v) in m {
                doc.entry(k).or_insert(v);
            }
        }
        json_to_py(py, &Json::Object(doc))
    }

    fn __len__(&self) -> usize {
        self.heads.len()
    }

    fn __repr__(&self) -> String {
        let h = &self.header;
        format!(
            "Trace(workload={:?}, variant={:?}, layers={}, heads={}, kv_heads={}, n_queries={}, n_keys={}, head_dim={})",
            h.workload, h.variant, h.layers, h.heads, h.kv_heads, h.n_queries, h.n_keys, h.head_dim
        )
    }
}

// ---------------------------------------------------------------------------------------
// attend

/// The elements of `a` in logical (C) order: one copy, a plain `memcpy` when `a` is
/// C-contiguous.
fn to_vec(a: &PyReadonlyArrayDyn<'_, f32>) -> Vec<f32> {
    if a.is_c_contiguous()
        && let Ok(s) = a.as_slice()
    {
        return s.to_vec();
    }
    a.as_array().iter().copied().collect()
}

fn to_mask(a: &PyReadonlyArrayDyn<'_, bool>, name: &str) -> PyResult<Vec<bool>> {
    if a.ndim() != 1 {
        return Err(err(format!(
            "{name} must be 1-D [seq], got shape {:?}",
            a.shape()
        )));
    }
    Ok(a.as_array().iter().copied().collect())
}

/// Splits a `[heads, seq, d]` or `[layers, heads, seq, d]` array into per-layer tensors.
fn split_layers(name: &str, shape: &[usize], data: Vec<f32>) -> PyResult<Vec<Tensor3>> {
    let (layers, dims) = match shape {
        [h, s, d] => (1, [*h, *s, *d]),
        [l, h, s, d] => (*l, [*h, *s, *d]),
        other => {
            return Err(err(format!(
                "tensor `{name}` must be [heads, seq, head_dim] or [layers, heads, seq, head_dim], got shape {other:?}"
            )));
        }
    };
    if layers == 0 {
        return Err(err(format!("tensor `{name}` has 0 layers")));
    }
    let per = dims.iter().product::<usize>();
    let mut out = Vec::with_capacity(layers);
    if layers == 1 {
        out.push(Tensor3::new(dims, data).map_err(err)?);
    } else {
        for l in 0..layers {
            out.push(Tensor3::new(dims, data[l * per..(l + 1) * per].to_vec()).map_err(err)?);
        }
    }
    Ok(out)
}

/// Everything one `attend` call computes.
struct Attended {
    output: Vec<f32>,
    summary: RunSummary,
    header: TraceHeader,
    heads: Vec<HeadTrace>,
}

/// The computation of `sprint attend` (crates/sprint-cli/src/attend.rs) on inputs in memory.
/// `first_layer` numbers the layers for the noise streams and thresholds; the trace numbers
/// them from 0.
fn attend_inputs(
    cfg: &AttentionConfig,
    layers: &[AttentionInput],
    thresholds: Option<Vec<Vec<f32>>>,
    first_layer: usize,
    num_layers: Option<usize>,
    compare_dense: bool,
    workload: &str,
) -> Result<Attended, String> {
    let shape: LayerShape = layers[0].validate().map_err(|e| e.to_string())?;
    for (l, layer) in layers.iter().enumerate() {
        if layer.validate().map_err(|e| e.to_string())? != shape {
            return Err(format!("layer {l} has a different shape than layer 0"));
        }
    }
    let n_layers = layers.len();
    let rows: Vec<Vec<f32>> = match thresholds {
        Some(t) => t,
        None => {
            let total = num_layers.unwrap_or(first_layer + n_layers);
            if first_layer + n_layers > total {
                return Err(format!(
                    "layers {first_layer}..{} do not fit in num_layers = {total}",
                    first_layer + n_layers
                ));
            }
            let all = cfg
                .thresholds(total, shape.heads)
                .map_err(|e| e.to_string())?;
            all.values[first_layer..first_layer + n_layers].to_vec()
        }
    };
    let mut runs = Vec::with_capacity(n_layers);
    let mut reference = Vec::new();
    for (l, input) in layers.iter().enumerate() {
        runs.push(run_layer(cfg, first_layer + l, &rows[l], input).map_err(|e| e.to_string())?);
        if compare_dense {
            reference.extend(
                dense::attention(input, cfg.causal)
                    .map_err(|e| e.to_string())?
                    .data,
            );
        }
    }
    let mut output = Vec::with_capacity(n_layers * runs[0].output.data.len());
    for r in &runs {
        output.extend_from_slice(&r.output.data);
    }
    let mut summary = RunSummary::new(cfg, &shape, &runs);
    if compare_dense {
        summary.error_vs_dense = Some(error_stats(&output, &reference));
    }
    let mut header = trace_header(cfg, &shape, n_layers, workload);
    // As `sprint attend --trace`: the config and the thresholds of these layers.
    header.provenance = Some(provenance(
        cfg,
        Some(&Thresholds {
            values: rows.clone(),
        }),
    ));
    let mut heads = Vec::with_capacity(n_layers * shape.heads);
    for r in runs {
        for mut h in r.heads {
            h.layer -= first_layer as u32;
            heads.push(h);
        }
    }
    Ok(Attended {
        output,
        summary,
        header,
        heads,
    })
}

/// SPRINT attention on float32 arrays `q` `[heads, n_queries, d]` (or with a leading
/// layers axis), `k`, `v` `[kv_heads, n_keys, d]`. See `sprint_attn.attend`.
#[pyfunction]
#[pyo3(signature = (q, k, v, config=None, valid=None, query_valid=None, key_valid=None,
    causal=None, thresholds=None, layer=0, num_layers=None, compare_dense=false,
    workload="python".to_string()))]
#[allow(clippy::too_many_arguments, clippy::type_complexity)]
fn attend<'py>(
    py: Python<'py>,
    q: PyReadonlyArrayDyn<'py, f32>,
    k: PyReadonlyArrayDyn<'py, f32>,
    v: PyReadonlyArrayDyn<'py, f32>,
    config: Option<PyRef<'py, PyConfig>>,
    valid: Option<PyReadonlyArrayDyn<'py, bool>>,
    query_valid: Option<PyReadonlyArrayDyn<'py, bool>>,
    key_valid: Option<PyReadonlyArrayDyn<'py, bool>>,
    causal: Option<bool>,
    thresholds: Option<PyReadonlyArrayDyn<'py, f32>>,
    layer: usize,
    num_layers: Option<usize>,
    compare_dense: bool,
    workload: String,
) -> PyResult<(Bound<'py, PyArrayDyn<f32>>, Py<PyAny>, PyTrace)> {
    let mut cfg = config.map(|c| c.inner.clone()).unwrap_or_default();
    if let Some(c) = causal {
        cfg.causal = c;
    }
    let out_shape: Vec<usize> = q.shape().to_vec();
    let qs = split_layers("q", q.shape(), to_vec(&q))?;
    let ks = split_layers("k", k.shape(), to_vec(&k))?;
    let vs = split_layers("v", v.shape(), to_vec(&v))?;
    if qs.len() != ks.len() || qs.len() != vs.len() {
        return Err(err(format!(
            "q, k, v have different layer counts ({}, {}, {})",
            qs.len(),
            ks.len(),
            vs.len()
        )));
    }
    if valid.is_some() && (query_valid.is_some() || key_valid.is_some()) {
        return Err(err("give valid, or query_valid / key_valid, not both"));
    }
    let (qv, kv) = match &valid {
        Some(m) => {
            let m = to_mask(m, "valid")?;
            (Some(m.clone()), Some(m))
        }
        None => (
            query_valid
                .as_ref()
                .map(|m| to_mask(m, "query_valid"))
                .transpose()?,
            key_valid
                .as_ref()
                .map(|m| to_mask(m, "key_valid"))
                .transpose()?,
        ),
    };
    let heads = qs[0].heads();
    let n_layers = qs.len();
    let rows = match &thresholds {
        None => None,
        Some(t) => {
            let vals: Vec<f32> = t.as_array().iter().copied().collect();
            let rows: Vec<Vec<f32>> = match t.shape() {
                [] => vec![vec![vals[0]; heads]; n_layers],
                [h] if *h == heads => vec![vals; n_layers],
                [l, h] if *l == n_layers && *h == heads => {
                    vals.chunks(heads).map(<[f32]>::to_vec).collect()
                }
                other => {
                    return Err(err(format!(
                        "thresholds must be a scalar, [heads] = [{heads}] or [layers, heads] = [{n_layers}, {heads}], got shape {other:?}"
                    )));
                }
            };
            if let Some(x) = rows
                .iter()
                .flatten()
                .find(|x| x.is_nan() || **x == f32::INFINITY)
            {
                return Err(err(format!("thresholds: {x} is not a number or -inf")));
            }
            Some(rows)
        }
    };
    let inputs: Vec<AttentionInput> = qs
        .into_iter()
        .zip(ks)
        .zip(vs)
        .map(|((q, k), v)| {
            let mut input = AttentionInput::new(q, k, v);
            input.query_valid.clone_from(&qv);
            input.key_valid.clone_from(&kv);
            input
        })
        .collect();
    let started = Instant::now();
    let done = py
        .detach(|| {
            attend_inputs(
                &cfg,
                &inputs,
                rows,
                layer,
                num_layers,
                compare_dense,
                &workload,
            )
        })
        .map_err(err)?;
    LAST_COMPUTE_NANOS.store(started.elapsed().as_nanos() as u64, Ordering::Relaxed);
    let mut dims = out_shape;
    if let Some(d) = dims.last_mut() {
        *d = done.summary.head_dim;
    }
    let out = Array::from_shape_vec(IxDyn(&dims), done.output)
        .map_err(err)?
        .into_pyarray(py);
    let summary = to_py(py, &done.summary)?;
    Ok((
        out,
        summary,
        PyTrace {
            header: done.header,
            heads: done.heads,
        },
    ))
}

// ---------------------------------------------------------------------------------------
// simulate

/// Runs `sprint simulate --json` on a trace (in memory or a file) or a paper workload and
/// returns the JSON document as a dict. See `sprint_attn.simulate`.
#[pyfunction]
#[pyo3(signature = (presets, trace=None, trace_path=None, workload=None, sets=Vec::new(),
    energy="default".to_string(), stats=None, seq_len=None, padding=None))]
#[allow(clippy::too_many_arguments)]
fn simulate(
    py: Python<'_>,
    presets: Vec<String>,
    trace: Option<PyRef<'_, PyTrace>>,
    trace_path: Option<PathBuf>,
    workload: Option<String>,
    sets: Vec<String>,
    energy: String,
    stats: Option<PathBuf>,
    seq_len: Option<u32>,
    padding: Option<f64>,
) -> PyResult<Py<PyAny>> {
    if presets.is_empty() {
        return Err(err(format!(
            "give at least one preset ({})",
            preset_names().join(", ")
        )));
    }
    let (hw_sets, energy_sets) = split_sets(&sets);
    let table = load_energy(&energy, &energy_sets).map_err(err)?;
    let stats = match &stats {
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .map_err(|e| err(format!("cannot read {}: {e}", p.display())))?;
            StatsFile::from_toml_str(&text, &p.display().to_string()).map_err(err)?
        }
        None => StatsFile::default_stats(),
    };
    let designs = presets
        .iter()
        .map(|p| load_design(p, &hw_sets))
        .collect::<sprint_sim::Result<Vec<_>>>()
        .map_err(err)?;
    let mut workload = match &workload {
        Some(w) => Some(model_workload(w).map_err(err)?),
        None => None,
    };
    if let Some(w) = &mut workload {
        if let Some(n) = seq_len {
            w.seq_len = n;
        }
        if let Some(p) = padding {
            w.padding_fraction = p;
        }
        w.validate().map_err(err)?;
    }
    let started = Instant::now();
    let doc = match (trace, trace_path) {
        (Some(_), Some(_)) => return Err(err("give a trace or a trace path, not both")),
        (Some(t), None) => {
            let bytes = t.encode()?;
            let name = format!("<memory: {}>", t.header.workload);
            py.detach(|| -> Result<_, String> {
                let reader = TraceReader::new(Cursor::new(bytes)).map_err(|e| e.to_string())?;
                let o = run_simulation(
                    &designs,
                    &table,
                    &stats,
                    Some((name.as_str(), reader)),
                    workload.as_ref(),
                )
                .map_err(|e| e.to_string())?;
                Ok(json_document(&o, &designs, &table))
            })
        }
        (None, Some(path)) => py.detach(|| -> Result<_, String> {
            let f = std::fs::File::open(&path)
                .map_err(|e| format!("cannot open trace {}: {e}", path.display()))?;
            let reader = TraceReader::new(BufReader::new(f))
                .map_err(|e| format!("{}: {e}", path.display()))?;
            let name = path.display().to_string();
            let o = run_simulation(
                &designs,
                &table,
                &stats,
                Some((name.as_str(), reader)),
                workload.as_ref(),
            )
            .map_err(|e| e.to_string())?;
            Ok(json_document(&o, &designs, &table))
        }),
        (None, None) => py.detach(|| -> Result<_, String> {
            let o =
                run_simulation::<std::io::Empty>(&designs, &table, &stats, None, workload.as_ref())
                    .map_err(|e| e.to_string())?;
            Ok(json_document(&o, &designs, &table))
        }),
    };
    let mut doc = doc.map_err(err)?;
    doc.insert(
        "wall_seconds".into(),
        Json::from(started.elapsed().as_secs_f64()),
    );
    json_to_py(py, &Json::Object(doc))
}

/// Wall time of the Rust computation (GIL released) of the last `attend` call, ns.
static LAST_COMPUTE_NANOS: AtomicU64 = AtomicU64::new(0);

/// Benchmark helper: wall time, in seconds, of the Rust computation inside the last
/// `attend` call (everything between receiving the converted inputs and building the
/// Python results), so that `call time - this` is what the binding itself costs.
#[pyfunction]
fn _last_compute_seconds() -> f64 {
    LAST_COMPUTE_NANOS.load(Ordering::Relaxed) as f64 * 1e-9
}

/// Benchmark helper: runs the Rust computation behind `attend` (the same function, on
/// inputs already in Rust memory, without any Python conversion) `repeats` times on
/// `[heads, seq, d]` float32 arrays and returns the wall time of each run in seconds.
/// Used to measure the overhead of the Python binding (docs/python.md).
#[pyfunction]
#[pyo3(signature = (q, k, v, config=None, repeats=1))]
fn _rust_attend_seconds(
    py: Python<'_>,
    q: PyReadonlyArrayDyn<'_, f32>,
    k: PyReadonlyArrayDyn<'_, f32>,
    v: PyReadonlyArrayDyn<'_, f32>,
    config: Option<PyRef<'_, PyConfig>>,
    repeats: usize,
) -> PyResult<Vec<f64>> {
    let cfg = config.map(|c| c.inner.clone()).unwrap_or_default();
    let input = AttentionInput::new(
        split_layers("q", q.shape(), to_vec(&q))?.remove(0),
        split_layers("k", k.shape(), to_vec(&k))?.remove(0),
        split_layers("v", v.shape(), to_vec(&v))?.remove(0),
    );
    let inputs = [input];
    py.detach(|| {
        (0..repeats)
            .map(|_| {
                let t = Instant::now();
                let done = attend_inputs(&cfg, &inputs, None, 0, None, false, "bench")?;
                std::hint::black_box(&done.output);
                Ok(t.elapsed().as_secs_f64())
            })
            .collect::<Result<Vec<f64>, String>>()
    })
    .map_err(err)
}

/// Built-in hardware preset names.
#[pyfunction]
fn presets() -> Vec<&'static str> {
    preset_names()
}

/// Paper workload names.
#[pyfunction]
fn workloads() -> Vec<&'static str> {
    workload_names()
}

/// Bytes per vector of each kind for head dimension `head_dim` (8-bit Q/K/V, K split 4 + 4
/// bits) and `index_bytes` bytes of key index: a dict `k_msb`, `k_lsb`, `v`, `q`, `index`.
#[pyfunction]
fn vector_bytes(py: Python<'_>, head_dim: usize, index_bytes: u32) -> PyResult<Py<PyAny>> {
    to_py(py, &kind_bytes(head_dim, index_bytes))
}

/// The native module `sprint_attn._native`.
#[pymodule]
#[pyo3(name = "_native")]
fn native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("SprintError", m.py().get_type::<SprintError>())?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add_class::<PyConfig>()?;
    m.add_class::<PyTrace>()?;
    m.add_function(wrap_pyfunction!(attend, m)?)?;
    m.add_function(wrap_pyfunction!(simulate, m)?)?;
    m.add_function(wrap_pyfunction!(presets, m)?)?;
    m.add_function(wrap_pyfunction!(workloads, m)?)?;
    m.add_function(wrap_pyfunction!(vector_bytes, m)?)?;
    m.add_function(wrap_pyfunction!(_rust_attend_seconds, m)?)?;
    m.add_function(wrap_pyfunction!(_last_compute_seconds, m)?)?;
    Ok(())
}
