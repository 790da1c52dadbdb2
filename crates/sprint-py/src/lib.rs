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

use pyo3::prelude::*;
use sprint_attention::summary::kind_bytes;
use sprint_sim::presets::preset_names;
use sprint_sim::workload::workload_names;

mod attend;
mod config;
mod conversions;
mod error;
mod simulate;
mod trace;

pub use config::PyConfig;
use conversions::to_py;
pub use error::SprintError;
pub use trace::PyTrace;

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
    m.add_function(wrap_pyfunction!(attend::attend, m)?)?;
    m.add_function(wrap_pyfunction!(simulate::simulate, m)?)?;
    m.add_function(wrap_pyfunction!(presets, m)?)?;
    m.add_function(wrap_pyfunction!(workloads, m)?)?;
    m.add_function(wrap_pyfunction!(vector_bytes, m)?)?;
    m.add_function(wrap_pyfunction!(attend::_rust_attend_seconds, m)?)?;
    m.add_function(wrap_pyfunction!(attend::_last_compute_seconds, m)?)?;
    Ok(())
}
