//! The report of a run, built from the stage results: the verdict first (ours / paper /
//! ratio for the headline measures, then the largest deviations with their documented
//! causes), one section per figure with its tables and plots, provenance last. Every paper
//! number is read from configs/paper-results.toml; every cause from configs/report/causes.toml.
//!
//! One module a job, leaves first: `causes` and `paper` (the paper's numbers) and
//! `measures` (losses, intervals, cells) depend on no other; `verdict` and `deviations`
//! build the verdict; `curves` and `fig5` serve `sweeps`; `accuracy`, `finetuned`, `sweeps`,
//! `sim`, `decode`, `peers` and `provenance` are one section each; this module puts them in order.

use sprint_report::{Document, Section};

use accuracy::accuracy_section;
use decode::decode_section;
use deviations::deviations;
use measures::is_classification;
use provenance::provenance_section;
use sim::sim_sections;
use sweeps::sweeps_sections;

use crate::error::Result;
use crate::mode::Mode;
use crate::provenance::Provenance;

mod accuracy;
mod causes;
mod curves;
mod decode;
mod deviations;
mod fig5;
mod finetuned;
mod measures;
mod paper;
mod peers;
mod peers_hw;
mod provenance;
mod sim;
mod sweeps;
mod verdict;

pub use crate::results::Results;
pub use causes::CAUSES;
pub use peers_hw::peers_hardware_section;
pub use verdict::{Position, paper_position, verdict_table};

/// The resolution the run's sizes gave, in numbers: per task, what one item is worth and
/// the width of SPRINT's interval against the size of its effect.
fn resolution(r: &Results) -> String {
    let mut parts = Vec::new();
    for a in &r.accuracy {
        let Some(s) = a.row("sprint") else { continue };
        if is_classification(a) {
            let n = s.fidelity.as_ref().map_or(0, |f| f.items);
            let w = s.delta_ci95.map(|(lo, hi)| 100.0 * (hi - lo));
            parts.push(format!(
                "{} {}: {} (one document {:.2} points); SPRINT's loss {:.2} points, its 95 % interval {} points wide",
                a.model,
                a.task,
                a.items,
                if n > 0 { 100.0 / n as f64 } else { f64::NAN },
                -100.0 * s.delta.unwrap_or(f64::NAN),
                w.map_or_else(|| "(none)".to_string(), |w| format!("{w:.2}"))
            ));
        } else if let Some(f) = &s.fidelity
            && let (Some(c), Some((lo, hi))) = (f.ppl_change_pct, f.ppl_change_ci95)
        {
            parts.push(format!(
                "{} {}: {} of {} tokens ({} blocks); SPRINT's perplexity change {c:+.2} %, its 95 % interval {:.2} % wide",
                a.model,
                a.task,
                a.items,
                a.seq_len,
                f.blocks.unwrap_or(0),
                hi - lo
            ));
        }
    }
    for f in &r.finetuned {
        if let (Some(v), Some((lo, hi))) = (finetuned::verdict_value(f), finetuned::verdict_ci(f)) {
            parts.push(format!(
                "{} {} fine-tuned: {}; SPRINT against its twin {v:.2} {}, its 95 % interval {:.2} wide",
                f.model,
                f.task,
                f.items,
                if f.metric == "accuracy" { "points" } else { "%" },
                hi - lo
            ));
        }
    }
    format!("Resolution of this run: {}.", parts.join("; "))
}

/// The whole report.
pub fn document(r: &Results, p: &Provenance) -> Result<Document> {
    let mut v = Section::new("verdict", "Verdict");
    v.paragraph(format!(
        "sprint {} reproduction of SPRINT (MICRO 2022): {} run ({}). Ratios are ours / paper; the simulator is shown in two configurations, the sourced default and the labelled paper-inferred one.",
        p.version,
        match r.plan.mode {
            Mode::Quick => "quick",
            Mode::Full => "full",
        },
        match r.plan.mode {
            Mode::Quick => "real subsets sized for resolution: every sampled number carries its 95 % interval",
            Mode::Full => "the full data sets",
        }
    ));
    v.paragraph(resolution(r));
    v.table(verdict_table(r)?);
    v.paragraph("Largest deviations, with their documented causes: only the rows whose 95 % interval excludes the paper's value (a row whose interval holds it is consistent with the paper, whatever its ratio), and the simulator's rows, which are deterministic (no sampling interval) and listed when ours / paper is outside 0.8-1.25; the largest of each measure family and configuration:");
    v.list(deviations(r)?);
    let mut sections = vec![v, accuracy_section(r)?];
    sections.push(finetuned::section(&r.plan, &r.finetuned));
    sections.extend(sweeps_sections(r));
    sections.extend(peers::peers_section(r));
    sections.extend(sim_sections(r)?);
    if let Some(c) = &r.sim_peers {
        sections.push(peers_hardware_section(c)?);
    }
    sections.push(decode_section(&r.decode));
    sections.push(provenance_section(p));
    Ok(Document {
        title: "SPRINT reproduction report".into(),
        sections,
    })
}
