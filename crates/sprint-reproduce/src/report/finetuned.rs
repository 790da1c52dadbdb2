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

/// The verdict's 95 % interval of [`verdict_value`]: the negated paired interval against
/// the twin (accuracy, points), or the block-bootstrap interval of the perplexity change (%).
pub(super) fn verdict_ci(f: &FinetunedResult) -> Option<(f64, f64)> {
    let s = f.sprint()?;
    if f.metric == "accuracy" {
        s.vs_twin.as_ref().map(|d| super::measures::loss_ci(d.ci95))
    } else {
        s.fidelity_vs_twin.as_ref().and_then(|x| x.ppl_change_ci95)
    }
}

/// The continuous measures of SPRINT's row against the twin, in words.
pub(super) fn continuous(f: &FinetunedResult) -> String {
    f.sprint()
        .map(|s| super::measures::fidelity_words(s.fidelity_vs_twin.as_ref()))
        .unwrap_or_default()
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
            Column::unit("posterior KL vs twin", "nats"),
            Column::unit("flips vs twin", "documents"),
        ]);
    } else {
        columns.extend([
            Column::unit("95 % low", "%"),
            Column::unit("95 % high", "%"),
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
                Cell::opt(r.fidelity_vs_twin.as_ref().and_then(|f| f.kl_mean), 4),
                Cell::opt(
                    r.fidelity_vs_twin
                        .as_ref()
                        .and_then(|f| f.flips)
                        .map(|n| n as f64),
                    0,
                ),
            ]);
        } else {
            let ci = r.fidelity_vs_twin.as_ref().and_then(|f| f.ppl_change_ci95);
            cells.extend([Cell::opt(ci.map(|c| c.0), 2), Cell::opt(ci.map(|c| c.1), 2)]);
        }
        t.push(cells);
    }
    t.note(format!("Data: {}", f.split));
    t.note(format!("Recipe: {}", f.recipe));
    t.note(format!(
        "Training: the recipe and its twin, {:.0} s together.",
        f.learn_seconds
    ));
    if !accuracy {
        t.note(format!("Interval: 2.5 % and 97.5 % percentiles of the perplexity change against the twin over {} paired block-bootstrap resamples of blocks of {} scored tokens (sprint_eval::fidelity).", sprint_eval::fidelity::RESAMPLES, sprint_eval::fidelity::BLOCK_TOKENS));
    }
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
    match (&plan.smollm2_finetune, plan.mode) {
        (None, _) => {
            s.paragraph("SmolLM2: not run in this mode (training the recipe and its twin takes about an hour on 2 cores); `sprint reproduce --full` runs it.");
        }
        (Some(fp), crate::mode::Mode::Quick) => {
            s.paragraph(format!("SmolLM2 in --quick: a short recipe that fits the quick budget, {} training windows of {} tokens for {} epoch(s) from the softmax-mass calibration at {}, and its no-pruning twin trained the same way; evaluated on {} held-out windows of {} tokens. Its limits: the RMS-norm gains move little in so few steps, so the row measures SPRINT at the learned per-head thresholds against the same short recipe without pruning, not the documented 64-window recipe (docs/thresholds.md: +1.75 % at 31.2 % in the softmax), which `sprint reproduce --full` runs.", fp.items, fp.seq_len, fp.epochs, fp.init_mass.map_or_else(|| "-".to_string(), |m| m.to_string()), fp.eval_items, fp.eval_seq_len));
        }
        _ => {}
    }
    s
}
