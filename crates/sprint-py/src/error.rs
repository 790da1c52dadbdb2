//! The one Python exception of the bindings, `SprintError`, and the conversion of a Rust
//! error into it.

use std::fmt::Display;

use pyo3::create_exception;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

create_exception!(
    sprint_attn,
    SprintError,
    PyValueError,
    "An error reported by the Rust core (bad configuration key or value, bad shape, bad trace \
     file, unknown preset). The message is the Rust one and names the key or tensor."
);

/// `e` as a [`SprintError`] with its message.
pub(crate) fn err(e: impl Display) -> PyErr {
    SprintError::new_err(e.to_string())
}
