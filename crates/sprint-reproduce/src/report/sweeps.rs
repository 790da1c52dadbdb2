//! The sweep sections: precision of the in-memory score (Fig 5), accuracy against kept
//! keys, and accuracy against analog non-idealities.

use sprint_report::plot::{BarSeries, Bars, Lines};
use sprint_report::{Plot, Section};

use super::curves::{continuous_plot, curve_lines, curve_table};
use super::fig5::{fig5_shape, fig5_shape_kl, token_kl_plot};
use crate::results::{CurveResult, Results};

/// The sweep sections, in order: precision, sparsity, noise.
pub(super) fn sweeps_sections(r: &Results) -> Vec<Section> {
    vec![precision_section(r), sparsity_section(r), noise_section(r)]
}

/// The y axis of a curve's metric.
fn metric_axis(c: &CurveResult) -> String {
    if c.metric == "accuracy" {
        "accuracy (%)".to_string()
    } else {
        "perplexity".to_string()
    }
}

/// Accuracy (and SmolLM2's perplexity) against the key bits in the crossbar (Fig 5).
fn precision_section(r: &Results) -> Section {
    let mut p = Section::new("precision", "Precision of the in-memory score (Fig 5)");
    p.paragraph("SPRINT and SPRINT without recompute with K_MSB = 1..6 key bits in the crossbar (the rest recomputed from K_LSB on chip), at fixed thresholds. The paper: accuracy collapses at 1-2 bits, is close at 3 and flat from 4 upward (Fig 5; its numbers are not printed, so no paper line is drawn).");
    p.table(curve_table(
        "precision",
        "Accuracy against key bits in the crossbar",
        "K_MSB bits",
        &r.precision,
    ));
    let (lines, refs) = curve_lines(&r.precision, |x| x.x);
    p.plot(Plot::Lines(Lines {
        id: "fig5-precision".into(),
        title: "Accuracy against the in-memory key precision (Fig 5)".into(),
        x_label: "key bits in the crossbar (K_MSB)".into(),
        y_label: metric_axis(&r.precision),
        lines,
        references: refs,
    }));
    let kl_shape = fig5_shape_kl(&r.precision);
    if !kl_shape.is_empty() {
        p.paragraph(kl_shape);
    }
    p.plot(continuous_plot(
        "fig5-precision-kl",
        "Class-posterior KL from dense against the in-memory key precision (Fig 5, BBC)",
        "key bits in the crossbar (K_MSB)",
        &r.precision,
        |x| x.x,
    ));
    if let Some(c) = &r.precision_ppl {
        p.table(curve_table(
            "precision-smollm2",
            "Perplexity against key bits in the crossbar (SmolLM2)",
            "K_MSB bits",
            c,
        ));
        p.plot(continuous_plot(
            "fig5-precision-smollm2",
            "SmolLM2 perplexity against the in-memory key precision (Fig 5)",
            "key bits in the crossbar (K_MSB)",
            c,
            |x| x.x,
        ));
        if let Some(kl) = token_kl_plot(c) {
            p.plot(kl);
        }
        let shape = fig5_shape(c);
        if !shape.is_empty() {
            p.paragraph(shape);
        }
    }
    p
}

/// Accuracy against the share of keys in the softmax, per calibration and variant.
fn sparsity_section(r: &Results) -> Section {
    let mut k = Section::new("sparsity", "Accuracy against kept keys");
    k.paragraph("Per-layer quantile calibration at several kept fractions, and the learned per-head thresholds, for runtime pruning, SPRINT without recompute and SPRINT; x is the share of visible keys that enter the softmax. Beyond the paper, which shows one operating point per model.");
    k.table(curve_table(
        "sparsity",
        "Accuracy against keys in the softmax",
        "thresholds",
        &r.sparsity,
    ));
    let (lines, refs) = curve_lines(&r.sparsity, |x| x.x);
    k.plot(Plot::Lines(Lines {
        id: "accuracy-vs-kept".into(),
        title: "Accuracy against keys in the softmax".into(),
        x_label: "keys in the softmax (% of visible)".into(),
        y_label: metric_axis(&r.sparsity),
        lines,
        references: refs,
    }));
    k.plot(continuous_plot(
        "kl-vs-kept",
        "Class-posterior KL from dense against keys in the softmax",
        "keys in the softmax (% of visible)",
        &r.sparsity,
        |x| x.x,
    ));
    k
}

/// Accuracy against the non-ideality presets.
fn noise_section(r: &Results) -> Section {
    let mut n = Section::new("noise", "Accuracy against analog non-idealities");
    n.paragraph("The non-ideality presets of docs/non-idealities.md (ideal, typical, pessimistic: conductance variation, read noise, comparator offset, stuck cells, finite on/off ratio, IR drop), at fixed thresholds. Beyond the paper, which assumes ideal crossbars.");
    n.table(curve_table(
        "noise",
        "Accuracy against the non-ideality preset",
        "preset",
        &r.noise,
    ));
    let presets: Vec<String> = {
        let mut v: Vec<String> = Vec::new();
        for q in &r.noise.points {
            if !v.contains(&q.x_label) {
                v.push(q.x_label.clone());
            }
        }
        v
    };
    let scale = if r.noise.metric == "accuracy" {
        100.0
    } else {
        1.0
    };
    let mut series: Vec<BarSeries> = Vec::new();
    for q in &r.noise.points {
        if !series.iter().any(|s| s.name == q.series) {
            series.push(BarSeries {
                name: q.series.clone(),
                values: presets
                    .iter()
                    .map(|pz| {
                        r.noise
                            .points
                            .iter()
                            .find(|z| z.series == q.series && &z.x_label == pz)
                            .map(|z| scale * z.metric)
                    })
                    .collect(),
                paper: false,
            });
        }
    }
    series.push(BarSeries {
        name: "dense".into(),
        values: presets
            .iter()
            .map(|_| Some(scale * r.noise.dense))
            .collect(),
        paper: false,
    });
    n.plot(continuous_plot(
        "kl-vs-noise",
        "Class-posterior KL from dense against the non-ideality preset (0 ideal, 1 typical, 2 pessimistic)",
        "non-ideality preset (index)",
        &r.noise,
        |x| x.x,
    ));
    n.plot(Plot::Bars(Bars {
        id: "accuracy-vs-noise".into(),
        title: "Accuracy under analog non-idealities".into(),
        x_label: "non-ideality preset".into(),
        y_label: metric_axis(&r.noise),
        categories: presets,
        series,
    }));
    n
}
