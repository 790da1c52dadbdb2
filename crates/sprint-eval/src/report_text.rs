//! `sprint eval`'s terminal report of an [`EvalReport`]: the header lines (data, probe,
//! thresholds), the variants' table (report layer) and the comparator and trace lines.

use sprint_report::{Cell, Column, Table};

use std::fmt::Write;

use crate::learn::LearnReport;
use crate::paired::PairedDelta;
use crate::run::{EvalReport, ProbeFit};

/// The variants of `r` as a table: metric, delta against dense (and against the
/// reference run's dense row, when there is one), kept and softmax shares, throughput.
/// Accuracy deltas are in points; perplexity deltas in perplexity against dense and in
/// percent against the reference.
pub fn variants_table(r: &EvalReport) -> Table {
    let ppl = r.metric == "perplexity";
    let per = format!("{}/s", r.item_name);
    let mut columns = vec![
        Column::text("variant"),
        if ppl {
            Column::text("perplexity")
        } else {
            Column::unit("accuracy", "%")
        },
        Column::text("delta vs dense"),
    ];
    for i in 1..=r.references.len() {
        let name = format!("vs ref {i}");
        columns.push(if ppl {
            Column::unit(&name, "%")
        } else {
            Column::text(&name)
        });
    }
    columns.extend([
        Column::unit("kept keys", "%"),
        Column::unit("softmax keys", "%"),
        Column::text(&per),
        Column::text("tokens/s"),
    ]);
    let mut t = Table::new("eval", &format!("{} on {}", r.model, r.task), columns);
    for row in &r.rows {
        let (m, d) = if ppl {
            (Cell::num(row.metric, 4), Cell::opt(row.delta, 4))
        } else {
            (
                Cell::num(100.0 * row.metric, 2),
                Cell::opt(row.delta.map(|d| 100.0 * d), 2),
            )
        };
        let mut cells = vec![Cell::text(&row.variant), m, d];
        for reference in &r.references {
            cells.push(if ppl {
                Cell::num(100.0 * (row.metric / reference.dense_metric - 1.0), 2)
            } else {
                Cell::num(100.0 * (row.metric - reference.dense_metric), 2)
            });
        }
        cells.extend([
            Cell::num(100.0 * row.kept_fraction, 2),
            Cell::num(100.0 * row.softmax_fraction, 2),
            Cell::num(row.items_per_second, 2),
            Cell::num(row.tokens_per_second, 0),
        ]);
        t.push(cells);
    }
    t
}

/// One line of a paired comparison: the delta in points, its 95 % bootstrap interval, the
/// discordant items and the exact McNemar p-value.
fn paired_line(variant: &str, against: &str, d: &PairedDelta, item_name: &str) -> String {
    format!(
        "{variant} vs {against}: {:+.2} points, 95 % CI [{:+.2}, {:+.2}] (paired bootstrap over {} {item_name}); {} gained, {} lost, McNemar exact p = {:.3}\n",
        100.0 * d.delta,
        100.0 * d.ci95.0,
        100.0 * d.ci95.1,
        d.items,
        d.gained,
        d.lost,
        d.mcnemar_p
    )
}

/// The whole terminal report of `r`.
pub fn eval_text(r: &EvalReport) -> String {
    let mut out = format!(
        "{} on {}: {} {} ({} tokens each), seed {}\ndata: {}\n",
        r.model, r.task, r.items, r.item_name, r.seq_len, r.seed, r.split
    );
    if let Some(p) = &r.probe {
        match p.train_accuracy {
            Some(acc) => out.push_str(&format!(
                "probe: multinomial logistic regression on dense embeddings of {} train documents (train accuracy {:.2} %), {}\n",
                p.train_documents,
                100.0 * acc,
                match p.fit {
                    ProbeFit::Dense => "frozen for every variant",
                    ProbeFit::PerVariant => "for dense; each other variant's probe fitted on its own embeddings of them",
                }
            )),
            None => out.push_str(&format!(
                "probe: multinomial logistic regression, each variant's fitted on its own embeddings of {} train documents (dense not evaluated)\n",
                p.train_documents
            )),
        }
        for (v, acc) in &p.variant_train_accuracy {
            out.push_str(&format!(
                "  {v} probe: train accuracy {:.2} %\n",
                100.0 * acc
            ));
        }
    }
    if let Some(t) = &r.thresholds {
        let keep = t.target_keep.map_or(String::new(), |k| {
            format!(", target keep {:.1} %", 100.0 * k)
        });
        out.push_str(&format!("thresholds: {} ({}{keep})\n", t.source, t.method));
        if let Some(s) = &t.split {
            out.push_str(&format!("  calibrated on {s}\n"));
        }
        let shown: Vec<String> = t.per_layer.iter().map(|x| format!("{x:.2}")).collect();
        out.push_str(&format!(
            "  Th per layer (logits): [{}]\n",
            shown.join(", ")
        ));
    }
    for (i, reference) in r.references.iter().enumerate() {
        out.push_str(&format!(
            "ref {}: the dense row of {}{} ({} {:.4})\n",
            i + 1,
            reference.file.display(),
            reference
                .weights
                .as_ref()
                .map_or(String::new(), |w| format!(", weights {}", w.display())),
            r.metric,
            if r.metric == "perplexity" {
                reference.dense_metric
            } else {
                100.0 * reference.dense_metric
            }
        ));
    }
    let t = variants_table(r);
    let term = t.terminal();
    // The title repeats the first line: print the table only.
    out.push_str(term.split_once('\n').map_or(term.as_str(), |x| x.1));
    for row in r.rows.iter().filter(|row| row.variant != "dense") {
        if let Some(d) = &row.vs_dense {
            out.push_str(&paired_line(&row.variant, "dense", d, &r.item_name));
        }
    }
    for (i, _) in r.references.iter().enumerate() {
        for row in &r.rows {
            if let Some(d) = row.vs_references.get(i) {
                out.push_str(&paired_line(
                    &row.variant,
                    &format!("ref {}", i + 1),
                    d,
                    &r.item_name,
                ));
            }
        }
    }
    out.push_str(&datapath_notes(r));
    for row in &r.rows {
        if let Some(p) = &row.trace {
            out.push_str(&format!("trace of {}: {}\n", row.variant, p.display()));
        }
    }
    out
}

/// One line per variant and datapath fact its run reports: the comparator's errors against
/// exact pruning, the calibrated peer knob, the bit-serial planes processed, SpAtten's head
/// pruning and recomputed rows, saturated codes.
fn datapath_notes(r: &EvalReport) -> String {
    let mut out = String::new();
    for row in &r.rows {
        if let (Some(fp), Some(fk)) = (row.false_prune_rate, row.false_keep_rate) {
            out.push_str(&format!(
                "{}: comparator vs exact pruning at the same thresholds: false-prune {:.2} %, false-keep {:.2} %; newly fetched per query {:.2} % of the visible keys (paper: ~2.1 %)\n",
                row.variant,
                100.0 * fp,
                100.0 * fk,
                100.0 * row.new_fetch_share
            ));
        }
        let dp = &row.datapath;
        let first_peer = r
            .rows
            .iter()
            .find(|x| matches!(x.variant.as_str(), "sanger" | "a3" | "energon" | "spatten"));
        if first_peer.is_some_and(|x| x.variant == row.variant)
            && let Some(c) = &r.peer_calibration
        {
            out.push_str(&format!("{c}\n"));
        }
        if dp.k_bits_processed > 0 {
            out.push_str(&format!(
                "{}: bit-serial key planes processed {:.3} of 8 per visible pair ({:.1} % of the key bits)\n",
                row.variant,
                dp.k_bits_processed as f64 / row.visible_pairs.max(1) as f64,
                100.0 * dp.k_bits_processed as f64 / (8 * row.visible_pairs.max(1)) as f64
            ));
        }
        if dp.cascade_tokens_kept > 0 {
            out.push_str(&format!(
                "{}: cascade head pruning removed {} (layer, head) blocks, summed over sequences; progressive quantisation recomputed {} query rows\n",
                row.variant, dp.cascade_head_pruned, dp.requant_rows
            ));
        }
        if dp.candidate_iterations > 0 {
            out.push_str(&format!(
                "{}: greedy candidate search {:.3} iterations per visible pair (two component products each); candidates {:.1} % of the visible pairs, {:.1} % after the post-scoring cut\n",
                row.variant,
                dp.candidate_iterations as f64 / row.visible_pairs.max(1) as f64,
                100.0 * row.kept_fraction,
                100.0 * row.softmax_fraction
            ));
        }
        let rounds: Vec<String> = dp
            .filter_kept
            .iter()
            .take_while(|&&n| n > 0)
            .map(|&n| {
                format!(
                    "{:.1} %",
                    100.0 * n as f64 / row.visible_pairs.max(1) as f64
                )
            })
            .collect();
        if !rounds.is_empty() {
            out.push_str(&format!(
                "{}: filtering rounds kept {} of the visible pairs\n",
                row.variant,
                rounds.join(", then ")
            ));
        }
        if dp.score_saturated + dp.output_saturated > 0 {
            out.push_str(&format!(
                "{}: saturated {} score codes and {} output elements\n",
                row.variant, dp.score_saturated, dp.output_saturated
            ));
        }
    }
    out
}

/// `sprint thresholds learn`'s report: steps, data, loss, kept fractions (%), thresholds per
/// layer before and after (logits), wall time, whether the steps were gradient-checkpointed
/// (and the layers' estimated tape, GB), where the thresholds were written (`out`)
/// and, with fine-tuning, the weights file (`weights`: tensors changed, largest change).
pub fn learn_text(
    r: &LearnReport,
    out: &std::path::Path,
    weights: Option<&std::path::Path>,
) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "{} on {}: {} steps", r.model, r.task, r.steps);
    let _ = writeln!(s, "data: {}", r.split);
    let _ = writeln!(
        s,
        "loss {:.5} -> {:.5}; soft kept at the last step {:.2} %",
        r.loss_first,
        r.loss_last,
        100.0 * r.kept_last
    );
    let _ = writeln!(
        s,
        "hard kept on the training items: calibrated start {:.2} %, learned {:.2} % (target {:.2} %)",
        100.0 * r.train_kept_initial,
        100.0 * r.train_kept,
        100.0 * r.target_keep
    );
    if let Some(a) = r.probe_train_accuracy {
        let _ = writeln!(
            s,
            "classification loss: its probe classifies {:.2} % of the training documents right on their dense embeddings",
            100.0 * a
        );
    }
    let f = |v: &[f32]| {
        v.iter()
            .map(|x| format!("{x:.2}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let _ = writeln!(
        s,
        "Th per layer (logits), calibrated: [{}]",
        f(&r.initial_per_layer)
    );
    let _ = writeln!(
        s,
        "Th per layer (logits), learned:    [{}]",
        f(&r.learned_per_layer)
    );
    let _ = writeln!(
        s,
        "wall time {:.1} s ({:.1} s training); gradient checkpointing {} (layers' tape estimated at {:.2} GB without it)",
        r.seconds,
        r.train_seconds,
        if r.grad_checkpoint { "on" } else { "off" },
        r.layer_tape_bytes / 1e9
    );
    if r.finished {
        let _ = writeln!(s, "thresholds: {}", out.display());
        if let Some(w) = weights {
            let _ = writeln!(
                s,
                "fine-tuned weights: {} ({} tensors, largest change {:.3e})",
                w.display(),
                r.tuned_tensors,
                r.tuned_max_change
            );
        }
    } else {
        let _ = writeln!(
            s,
            "stopped early: no thresholds file written; resume with --resume"
        );
    }
    s
}

/// `sprint thresholds calibrate`'s report: method, calibration split, kept fraction on it
/// (%) and where the thresholds were written.
pub fn calibration_text(method: &str, split: &str, kept: f64, out: &std::path::Path) -> String {
    format!(
        "{method} calibration on {split}\nkept fraction on the calibration items: {:.2} %\nthresholds: {}\n",
        100.0 * kept,
        out.display()
    )
}
