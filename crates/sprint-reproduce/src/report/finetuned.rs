//! The report's section and verdict row for the fine-tuned accuracy stage
//! ([`crate::finetuned`]): SPRINT with the paper's method against the same recipe without
//! pruning, item by item.

use sprint_report::{Cell, Column, Section, Table};

use crate::results::FinetunedResult;

/// The verdict's measure: SPRINT's accuracy loss (points) against the no-pruning twin.
pub(super) fn loss_points(f: &FinetunedResult) -> Option<f64> {
    f.sprint()?.vs_twin.as_ref().map(|d| -100.0 * d.delta)
}

/// The verdict row's measure name.
pub(super) fn measure(f: &FinetunedResult) -> String {
    format!(
        "SPRINT accuracy loss, fine-tuned on the labels, vs the same recipe without pruning ({} {})",
        f.model, f.task
    )
}

/// The section: one table (twin, pruned recipe's dense, SPRINT) with the paired deltas.
pub(super) fn section(f: &FinetunedResult) -> Section {
    let mut s = Section::new(
        "accuracy-finetuned",
        "Accuracy with fine-tuning (the paper's method)",
    );
    s.paragraph("The paper reports SPRINT's accuracy after fine-tuning the model with its learned thresholds. Here the per-head thresholds are learned with the norms and biases fine-tuned on the labels, against SPRINT's datapath; the reference is the same recipe without pruning (its no-pruning twin), so gains from in-domain fine-tuning are not credited to pruning. Every variant's probe is fitted on its own embeddings of the train split; each row is compared with the twin document by document (docs/thresholds.md, \"Trained on the labels\").");
    let mut t = Table::new(
        &format!("accuracy-finetuned-{}-{}", f.model, f.task),
        &format!(
            "{} on {}, fine-tuned on the labels, keep target {}: {}",
            f.model, f.task, f.keep, f.items
        ),
        vec![
            Column::text("run"),
            Column::unit("accuracy", "%"),
            Column::unit("softmax", "%"),
            Column::unit("vs no-pruning twin", "points"),
            Column::unit("95 % low", "points"),
            Column::unit("95 % high", "points"),
            Column::unit("gained", "documents"),
            Column::unit("lost", "documents"),
            Column::text("McNemar p"),
        ],
    );
    for r in &f.rows {
        let d = r.vs_twin.as_ref();
        t.push(vec![
            Cell::text(&r.run),
            Cell::num(100.0 * r.accuracy, 2),
            Cell::num(100.0 * r.softmax_fraction, 2),
            Cell::opt(d.map(|d| 100.0 * d.delta), 2),
            Cell::opt(d.map(|d| 100.0 * d.ci95.0), 2),
            Cell::opt(d.map(|d| 100.0 * d.ci95.1), 2),
            Cell::opt(d.map(|d| d.gained as f64), 0),
            Cell::opt(d.map(|d| d.lost as f64), 0),
            Cell::opt(d.map(|d| d.mcnemar_p), 3),
        ]);
    }
    t.note(format!("Data: {}", f.split));
    t.note(format!("Recipe: {}", f.recipe));
    t.note(format!(
        "Training: the recipe and its twin, {:.0} s together.",
        f.learn_seconds
    ));
    t.note("Interval: 2.5 % and 97.5 % percentiles of the delta over 10 000 paired bootstrap resamples of the evaluated documents; McNemar: exact two-sided test on the documents the two runs classify differently (docs/evaluation.md).");
    s.table(t);
    s
}
