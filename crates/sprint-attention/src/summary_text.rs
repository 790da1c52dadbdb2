//! `sprint attend`'s terminal summary of a [`RunSummary`] (the CLI prints it).

use comfy_table::Table;
use sprint_core::config::AttentionConfig;

use crate::summary::RunSummary;

/// `sprint attend`'s summary of a run as a two-column table: variant, shape, kept and
/// softmax fractions (%), bytes fetched and reused (KiB), reuse, per-layer comparator audit
/// and saturations, pass time (ms) and the error against dense attention.
pub fn summary_text(s: &RunSummary, cfg: &AttentionConfig) -> String {
    let mut t = Table::new();
    t.set_header(vec!["statistic", "value"]);
    let pct = |x: f64| format!("{:.2} %", 100.0 * x);
    let kib = |b: u64| format!("{:.1} KiB", b as f64 / 1024.0);
    t.add_row(vec![
        "variant".into(),
        format!("{} ({:?} recompute)", s.variant, cfg.recompute),
    ]);
    t.add_row(vec![
        "shape".into(),
        format!(
            "{} layer(s) x {} heads, {} queries x {} keys, d = {}",
            s.layers, s.heads, s.n_queries, s.n_keys, s.head_dim
        ),
    ]);
    t.add_row(vec![
        "kept fraction (moved on chip)".into(),
        pct(s.kept_fraction),
    ]);
    t.add_row(vec![
        "softmax fraction (after recheck)".into(),
        pct(s.softmax_fraction),
    ]);
    let f = &s.fetched_bytes;
    t.add_row(vec![
        "fetched from memory".into(),
        format!(
            "{} (K_MSB {}, K_LSB {}, V {}, Q {}, index {})",
            kib(f.total()),
            kib(f.k_msb),
            kib(f.k_lsb),
            kib(f.v),
            kib(f.q),
            kib(f.index)
        ),
    ]);
    t.add_row(vec!["reused on chip".into(), kib(s.reused_bytes.total())]);
    t.add_row(vec![
        "key reuse ratio (reused / kept)".into(),
        pct(s.key_reuse_ratio),
    ]);
    t.add_row(vec![
        "keys streamed (buffer full)".into(),
        s.streamed_keys.to_string(),
    ]);
    t.add_row(vec![
        format!("newly fetched per query ({} locality)", s.locality_policy),
        format!(
            "{} of the visible keys (paper: about 2.1 %)",
            pct(s.new_fetch_share)
        ),
    ]);
    for l in &s.per_layer {
        let st = &l.stats;
        if st.audited == 1 {
            t.add_row(vec![
                format!("layer {} comparator vs exact pruning", l.layer),
                format!(
                    "false-prune {} ({} of {} pairs), false-keep {}",
                    pct(l.false_prune_rate),
                    st.false_pruned,
                    st.exact_kept,
                    pct(l.false_keep_rate)
                ),
            ]);
        }
        if st.score_saturated + st.output_saturated > 0 {
            t.add_row(vec![
                format!("layer {} saturations", l.layer),
                format!(
                    "{} score codes, {} output elements",
                    st.score_saturated, st.output_saturated
                ),
            ]);
        }
    }
    if let Some(sec) = s.pass_seconds {
        t.add_row(vec![
            "attention time (median pass)".into(),
            format!("{:.1} ms", 1e3 * sec),
        ]);
    }
    let error = match &s.error_vs_dense {
        Some(e) => format!(
            "max abs {:.3e}, relative {:.3e}, cosine {:.6}",
            e.max_abs, e.relative, e.cosine
        ),
        None => "not computed (--compare-dense)".into(),
    };
    t.add_row(vec!["error vs dense f32".into(), error]);
    format!("{t}\n")
}
