//! A reference run: an earlier `sprint eval --json` report on the same data whose dense
//! row every row of this run is compared with, item by item. Made for fine-tuned models:
//! the honest dense reference of a recipe fine-tuned with pruning is the same recipe
//! without pruning, a different weights file, so a different run.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::report::EvalReport;
use super::report::ReferenceSummary;
use crate::error::{EvalError, Result};
use crate::paired::paired_accuracy_delta;
use crate::tasks::{Task, TaskKind};

/// The dense row of an earlier evaluation and what identifies its data.
#[derive(Clone, Debug)]
pub struct ReferenceRun {
    /// The report file it was read from.
    pub file: PathBuf,
    id: RunIdentity,
    dense_metric: f64,
    dense_correct: Option<Vec<bool>>,
}

/// What identifies the data of an [`EvalReport`] (its fields of the same names).
#[derive(Clone, Debug, Deserialize)]
struct RunIdentity {
    model: String,
    task: String,
    seed: u64,
    items: usize,
    seq_len: usize,
    split: String,
    #[serde(default)]
    weights: Option<PathBuf>,
}

/// The fields of an [`EvalReport`] a reference needs (serde ignores the rest).
#[derive(Deserialize)]
struct ReportFile {
    #[serde(flatten)]
    id: RunIdentity,
    rows: Vec<RowFile>,
}

#[derive(Deserialize)]
struct RowFile {
    variant: String,
    metric: f64,
    #[serde(default)]
    item_correct: Option<Vec<bool>>,
}

impl ReferenceRun {
    /// Reads the report `path` (`sprint eval --json` output) and keeps its dense row.
    /// Errors name the file and the field: not JSON, a missing field, no dense row, or
    /// (accuracy tasks) a dense row without per-item results or of the wrong length.
    pub fn read(path: &Path) -> Result<Self> {
        let text = crate::error::read_text(path)?;
        let bad = |what: String| {
            EvalError::Input(format!(
                "{}: not a usable `sprint eval --json` report: {what}",
                path.display()
            ))
        };
        let r: ReportFile = serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
        let dense = r
            .rows
            .iter()
            .find(|row| row.variant == "dense")
            .ok_or_else(|| bad("field `rows` has no `dense` row".into()))?;
        if !dense.metric.is_finite() {
            return Err(bad(format!(
                "the dense row's field `metric` is {}",
                dense.metric
            )));
        }
        let accuracy_task = Task::parse(&r.id.task)
            .map_err(|_| bad(format!("field `task` is `{}`, not a known task", r.id.task)))?
            .kind()
            != TaskKind::Perplexity;
        if accuracy_task && dense.item_correct.is_none() {
            return Err(bad(
                "the dense row has no field `item_correct` (a report of an older sprint?): \
                 run `sprint eval --json-out` for the reference again"
                    .into(),
            ));
        }
        if let Some(c) = &dense.item_correct
            && c.len() != r.id.items
        {
            return Err(bad(format!(
                "the dense row's field `item_correct` has {} entries for {} items",
                c.len(),
                r.id.items
            )));
        }
        Ok(Self {
            file: path.to_path_buf(),
            dense_metric: dense.metric,
            dense_correct: dense.item_correct.clone(),
            id: r.id,
        })
    }

    fn differs(&self, field: &str, theirs: &str, ours: &str) -> EvalError {
        EvalError::Input(format!(
            "{}: field `{field}` is `{theirs}`, this run's is `{ours}`: a reference must \
             evaluate the same items of the same model and task",
            self.file.display()
        ))
    }

    /// Checks, before anything runs, that this run can evaluate the reference's data: the
    /// same base model (any weights), task, seed and sequence length.
    pub(super) fn check_before(
        &self,
        model: &str,
        task: &str,
        seed: u64,
        seq_len: usize,
    ) -> Result<()> {
        // A fine-tuned reference (or run) is the same base model with other weights.
        if base_model(&self.id.model) != base_model(model) {
            return Err(self.differs("model", &self.id.model, model));
        }
        if self.id.task != task {
            return Err(self.differs("task", &self.id.task, task));
        }
        if self.id.seed != seed {
            return Err(self.differs("seed", &self.id.seed.to_string(), &seed.to_string()));
        }
        if self.id.seq_len != seq_len {
            return Err(self.differs(
                "seq_len",
                &self.id.seq_len.to_string(),
                &seq_len.to_string(),
            ));
        }
        Ok(())
    }

    /// Checks that `report` evaluated the reference's data (model, task, seed, length,
    /// items, split) and appends to its rows' `vs_references` and its `references`.
    pub(super) fn attach(&self, report: &mut EvalReport) -> Result<()> {
        let differs =
            |field: &str, theirs: String, ours: String| self.differs(field, &theirs, &ours);
        self.check_before(&report.model, &report.task, report.seed, report.seq_len)?;
        if self.id.items != report.items {
            return Err(differs(
                "items",
                self.id.items.to_string(),
                report.items.to_string(),
            ));
        }
        if self.id.split != report.split {
            return Err(differs(
                "split",
                self.id.split.clone(),
                report.split.clone(),
            ));
        }
        for row in &mut report.rows {
            if let (Some(d), Some(c)) = (&self.dense_correct, &row.item_correct) {
                row.vs_references.push(paired_accuracy_delta(d, c)?);
            }
        }
        report.references.push(ReferenceSummary {
            file: self.file.clone(),
            dense_metric: self.dense_metric,
            weights: self.id.weights.clone(),
        });
        Ok(())
    }
}

/// The base model of a report's model name: `NAME` of `NAME+weights:PATH`
/// ([`sprint_models::LoadedModel::with_weights`]).
fn base_model(name: &str) -> &str {
    name.split_once("+weights:").map_or(name, |(base, _)| base)
}

#[cfg(test)]
mod tests {
    #[test]
    fn base_model_drops_the_weights_file() {
        assert_eq!(
            super::base_model("minilm+weights:a/b.safetensors"),
            "minilm"
        );
        assert_eq!(super::base_model("minilm"), "minilm");
    }
}
