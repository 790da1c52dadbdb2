//! The documented causes of the deviations from the paper, by measure family
//! (configs/report/causes.toml).

use serde::Deserialize;

use crate::error::{ReproduceError, Result};

/// Documented causes of deviations, by measure family.
pub const CAUSES: &str = include_str!("../../configs/report/causes.toml");

#[derive(Deserialize)]
struct Cause {
    cause: String,
    doc: String,
}

/// The documented cause of a deviation in `family`, with the document that explains it
/// (empty when none is documented).
pub(super) fn cause(family: &str) -> Result<String> {
    let all: std::collections::BTreeMap<String, Cause> = toml::from_str(CAUSES)
        .map_err(|e| ReproduceError::Usage(format!("configs/report/causes.toml: {e}")))?;
    Ok(all
        .get(family)
        .map_or_else(String::new, |c| format!("{} (see {})", c.cause, c.doc)))
}
