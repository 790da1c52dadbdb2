//! The report's section and verdict rows for the fine-tuned stages ([`crate::finetuned`]):
//! SPRINT with the paper's method against the same recipe without pruning.

use sprint_report::{Cell, Column, Section, Table};

use crate::mode::Plan;
use crate::results::FinetunedResult;

/// The verdict's measure of `f`: SPRINT's accuracy loss (points) or perplexity change (%)
/// against the no-pruning twin.
pub(super) fn verdict_value(f: &FinetunedResult) -> Option<f64> {
    let s = f.sprint()?;
    Some(if f.metric == "accuracy" {
        -s.change_vs_twin
    } else {
        s.change_vs_twin
    })
}

/// The verdict row's measure name.
pub(super) fn measure(f: &FinetunedResult) -> String {
    if f.metric == "accuracy" {
        format!(
            "SPRINT accuracy loss, fine-tuned, vs the same recipe without pruning ({} {})",
            f.model, f.task
        )
    } else {
        format!(
            "SPRINT perplexity change, fine-tuned, vs the same recipe without pruning ({} {}; paper: GPT-2-L)",
            f.model, f.task
        )
    }
}

fn table(f: &FinetunedResult) -> Table {
    let accuracy = f.metric == "accuracy";
    let mut columns = vec![
        Column::text("run"),
        if accuracy {
            Column::unit("accuracy", "%")
        } else {
            Column::text("perplexity")
        },
        Column::unit("softmax", "%"),
        Column::unit("vs no-pruning twin", if accuracy { "points" } else { "%" }),
    ];
    if accuracy {
        columns.extend([
            Column::unit("95 % low", "points"),
            Column::unit("95 % high", "points"),
            Column::unit("gained", "documents"),
            Column::unit("lost", "documents"),
            Column::text("McNemar p"),
        ]);
    }
    let mut t = Table::new(
        &format!("accuracy-finetuned-{}-{}", f.model, f.task),
        &format!(
            "{} on {}, fine-tuned: {} of {} tokens",
            f.model, f.task, f.items, f.seq_len
        ),
        columns,
    );
    for r in &f.rows {
        let mut cells = vec![
            Cell::text(&r.run),
            if accuracy {
                Cell::num(100.0 * r.metric, 2)
            } else {
                Cell::num(r.metric, 3)
            },
            Cell::num(100.0 * r.softmax_fraction, 2),
            Cell::num(r.change_vs_twin, 2),
        ];
        if accuracy {
            let d = r.vs_twin.as_ref();
            cells.extend([
                Cell::opt(d.map(|d| 100.0 * d.ci95.0), 2),
                Cell::opt(d.map(|d| 100.0 * d.ci95.1), 2),
                Cell::opt(d.map(|d| d.gained as f64), 0),
                Cell::opt(d.map(|d| d.lost as f64), 0),
                Cell::opt(d.map(|d| d.mcnemar_p), 3),
            ]);
        }
        t.push(cells);
    }
    t.note(format!("Data: {}", f.split));
    t.note(format!("Recipe: {}", f.recipe));
    t.note(format!(
        "Training: the recipe and its twin, {:.0} s together.",
        f.learn_seconds
    ));
    if accuracy {
        t.note("Interval: 2.5 % and 97.5 % percentiles of the delta over 10 000 paired bootstrap resamples of the evaluated documents; McNemar: exact two-sided test on the documents the two runs classify differently (docs/evaluation.md).");
    }
    t
}

/// The section: one table per fine-tuned stage (twin, pruned recipe's dense, SPRINT).
pub(super) fn section(plan: &Plan, results: &[FinetunedResult]) -> Section {
    let mut s = Section::new(
        "accuracy-finetuned",
        "Accuracy with fine-tuning (the paper's method)",
    );
    s.paragraph("The paper reports SPRINT's accuracy after fine-tuning the model with its learned thresholds. Here the per-head thresholds are learned with the norms and biases fine-tuned against SPRINT's datapath (MiniLM on the labels, SmolLM2 on next-token likelihood); the reference is the same recipe without pruning (its no-pruning twin), so gains from in-domain fine-tuning are not credited to pruning. MiniLM: every variant's probe is fitted on its own embeddings of the train split, and each row is compared with the twin document by document (docs/thresholds.md).");
    for f in results {
        s.table(table(f));
    }
    if plan.smollm2_finetune.is_none() {
        s.paragraph("SmolLM2: not run in this mode (training the recipe and its twin takes about an hour on 2 cores); `sprint reproduce --full` runs it.");
    }
    s
}
