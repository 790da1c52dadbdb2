//! The paper's numbers the report sets ours against (configs/paper-results.toml), and the
//! ratio of ours to them.

use sprint_sim::paper::{Comparison, PaperResults};

use crate::error::{ReproduceError, Result};
use crate::results::SimPaperResult;

/// The paper's results (configs/paper-results.toml), a failure to read them being the
/// report stage's.
pub(super) fn paper_results() -> Result<PaperResults> {
    PaperResults::load().map_err(|e| ReproduceError::stage("report", e))
}

/// The paper's Fig 9 numbers: model -> [baseline, runtime pruning, no recompute, SPRINT].
pub(super) fn paper_accuracy() -> Result<Vec<(String, [f64; 4])>> {
    let doc: toml::Table = toml::from_str(sprint_sim::paper::PAPER_RESULTS)
        .map_err(|e| ReproduceError::Usage(format!("configs/paper-results.toml: {e}")))?;
    let acc = doc
        .get("accuracy")
        .and_then(|v| v.as_table())
        .ok_or_else(|| ReproduceError::Usage("configs/paper-results.toml: no [accuracy]".into()))?;
    let mut out = Vec::new();
    for (k, v) in acc {
        if let Some(a) = v.as_array() {
            let xs: Vec<f64> = a
                .iter()
                .filter_map(|x| x.as_float().or_else(|| x.as_integer().map(|i| i as f64)))
                .collect();
            if xs.len() == 4 {
                out.push((k.clone(), [xs[0], xs[1], xs[2], xs[3]]));
            }
        }
    }
    Ok(out)
}

/// The paper's headline number `key` (`[headline]` of configs/paper-results.toml).
pub(super) fn headline(key: &str) -> Result<f64> {
    let doc: toml::Table = toml::from_str(sprint_sim::paper::PAPER_RESULTS)
        .map_err(|e| ReproduceError::Usage(format!("configs/paper-results.toml: {e}")))?;
    doc.get("headline")
        .and_then(|h| h.get(key))
        .and_then(|v| v.as_float())
        .ok_or_else(|| ReproduceError::Usage(format!("configs/paper-results.toml: headline.{key}")))
}

/// The simulator's comparison of `s` with the paper, as `sprint_sim::paper` builds it.
pub(super) fn comparison(s: &SimPaperResult, paper: &PaperResults) -> Comparison {
    Comparison {
        paper: paper.clone(),
        ours: s.ours.clone(),
        energy_table: s.energy_table.clone(),
        stats_source: s.stats_source.clone(),
        calibration: s.calibration.clone(),
    }
}

/// Ours over the paper's value; `None` when the paper's is 0 or ours is not finite.
pub(super) fn ratio(ours: f64, paper: f64) -> Option<f64> {
    (paper != 0.0 && ours.is_finite()).then(|| ours / paper)
}
