//! `sprint_attn.Trace`: an attention trace in memory.

use std::io::Cursor;
use std::path::PathBuf;

use numpy::ndarray::{Array, IxDyn};
use numpy::{IntoPyArray, PyArrayDyn};
use pyo3::exceptions::PyIndexError;
use pyo3::prelude::*;
use pyo3::types::PyDict;
use serde_json::Value as Json;
use sprint_core::trace::{HeadTrace, KindTotals, TraceHeader, TraceReader, TraceWriter};
use sprint_sim::wstats::measure;

use crate::conversions::{json_to_py, to_py};
use crate::error::err;

/// An attention trace in memory: the header and one block per (layer, query head), with the
/// kept set of every query. File format: docs/trace-format.md.
#[pyclass(name = "Trace", module = "sprint_attn", frozen)]
pub struct PyTrace {
    pub(crate) header: TraceHeader,
    pub(crate) heads: Vec<HeadTrace>,
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

    pub(crate) fn encode(&self) -> PyResult<Vec<u8>> {
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
