//! A configuration value with its provenance: every number in a preset or energy table is
//! written as `name_unit = { value = ..., source = "..." }`.

use serde::{Deserialize, Serialize};

/// A value and where it comes from (an `energy-timing.md` row id, a paper section, or
/// `"[D] ..."` for a documented default of this project).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sourced<T> {
    /// The value, in the unit named by its key.
    pub value: T,
    /// Provenance of the value.
    pub source: String,
}

impl<T: Copy> Sourced<T> {
    /// The value.
    pub fn get(&self) -> T {
        self.value
    }
}

impl<T> Sourced<T> {
    /// A value with its source.
    pub fn new(value: T, source: impl Into<String>) -> Self {
        Self {
            value,
            source: source.into(),
        }
    }
}
