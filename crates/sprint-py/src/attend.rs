//! `sprint_attn.attend`: SPRINT attention on NumPy arrays, and the benchmark helpers that
//! time the Rust computation behind it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use numpy::ndarray::{Array, IxDyn};
use numpy::{IntoPyArray, PyArrayDyn, PyReadonlyArrayDyn, PyUntypedArrayMethods};
use pyo3::prelude::*;
use sprint_attention::summary::{RunSummary, error_stats, provenance, trace_header};
use sprint_attention::{AttentionInput, LayerShape, Tensor3, dense, run_layer};
use sprint_core::config::{AttentionConfig, Thresholds};
use sprint_core::trace::{HeadTrace, TraceHeader};

use crate::config::PyConfig;
use crate::conversions::to_py;
use crate::error::err;
use crate::trace::PyTrace;

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
pub(crate) fn attend<'py>(
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
    let (qv, kv) = validity_masks(&valid, &query_valid, &key_valid)?;
    let heads = qs[0].heads();
    let n_layers = qs.len();
    let rows = thresholds
        .as_ref()
        .map(|t| threshold_rows(t, heads, n_layers))
        .transpose()?;
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

/// The query and key validity masks of an `attend` call (`None`: all valid).
type ValidityMasks = (Option<Vec<bool>>, Option<Vec<bool>>);

/// The query and key validity masks of `attend`: `valid` for both, or `query_valid` and
/// `key_valid` each (not both kinds).
fn validity_masks(
    valid: &Option<PyReadonlyArrayDyn<'_, bool>>,
    query_valid: &Option<PyReadonlyArrayDyn<'_, bool>>,
    key_valid: &Option<PyReadonlyArrayDyn<'_, bool>>,
) -> PyResult<ValidityMasks> {
    if valid.is_some() && (query_valid.is_some() || key_valid.is_some()) {
        return Err(err("give valid, or query_valid / key_valid, not both"));
    }
    Ok(match valid {
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
    })
}

/// The per-layer, per-head thresholds of `attend` from a scalar, `[heads]` or `[layers,
/// heads]` array; each a number or -inf.
fn threshold_rows(
    t: &PyReadonlyArrayDyn<'_, f32>,
    heads: usize,
    n_layers: usize,
) -> PyResult<Vec<Vec<f32>>> {
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
    Ok(rows)
}

/// Wall time of the Rust computation (GIL released) of the last `attend` call, ns.
static LAST_COMPUTE_NANOS: AtomicU64 = AtomicU64::new(0);

/// Benchmark helper: wall time, in seconds, of the Rust computation inside the last
/// `attend` call (everything between receiving the converted inputs and building the
/// Python results), so that `call time - this` is what the binding itself costs.
#[pyfunction]
pub(crate) fn _last_compute_seconds() -> f64 {
    LAST_COMPUTE_NANOS.load(Ordering::Relaxed) as f64 * 1e-9
}

/// Benchmark helper: runs the Rust computation behind `attend` (the same function, on
/// inputs already in Rust memory, without any Python conversion) `repeats` times on
/// `[heads, seq, d]` float32 arrays and returns the wall time of each run in seconds.
/// Used to measure the overhead of the Python binding (docs/python.md).
#[pyfunction]
#[pyo3(signature = (q, k, v, config=None, repeats=1))]
pub(crate) fn _rust_attend_seconds(
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
