//! `sprint simulate`'s terminal and JSON reports (the paper comparison is in
//! [`crate::paper_tables`]): designs side by side, the decode run, the `--fit-paper`
//! outcome. The CLI only prints what these return.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::path::Path;

use comfy_table::Table;
use serde_json::{Value, json};

use crate::decode::{DecodeFile, DecodeSummary, lifetime_s_at_stated_rate};
use crate::fit::FitOutcome;
use crate::report::DesignReport;

/// An energy in pJ with an engineering prefix (pJ, nJ, uJ, mJ, J), 3 decimals.
pub fn energy_text(pj: f64) -> String {
    let a = pj.abs();
    if a >= 1e12 {
        format!("{:.3} J", pj * 1e-12)
    } else if a >= 1e9 {
        format!("{:.3} mJ", pj * 1e-9)
    } else if a >= 1e6 {
        format!("{:.3} uJ", pj * 1e-6)
    } else if a >= 1e3 {
        format!("{:.3} nJ", pj * 1e-3)
    } else {
        format!("{pj:.3} pJ")
    }
}

/// A byte count with a binary prefix (B, KiB, MiB, GiB).
pub fn bytes_text(b: u64) -> String {
    let x = b as f64;
    if x >= 1073741824.0 {
        format!("{:.2} GiB", x / 1073741824.0)
    } else if x >= 1048576.0 {
        format!("{:.2} MiB", x / 1048576.0)
    } else if x >= 1024.0 {
        format!("{:.1} KiB", x / 1024.0)
    } else {
        format!("{b} B")
    }
}

/// A duration in seconds as days, 1 decimal.
pub fn days_text(seconds: f64) -> String {
    format!("{:.1} days", seconds / 86400.0)
}

/// `x` with `digits` decimals and `suffix`, or "n/a" when not finite (a ratio against a
/// design that did nothing).
fn ratio_text(x: f64, suffix: &str, digits: usize) -> String {
    if x.is_finite() {
        format!("{x:.digits$}{suffix}")
    } else {
        "n/a".to_string()
    }
}

/// A table with one row per statistic and one column per design.
struct ByDesign {
    table: Table,
    designs: usize,
}

impl ByDesign {
    fn new(names: impl Iterator<Item = String>) -> Self {
        let mut table = Table::new();
        let mut header = vec!["statistic".to_string()];
        header.extend(names);
        let designs = header.len() - 1;
        table.set_header(header);
        Self { table, designs }
    }

    fn row(&mut self, name: &str, cell: impl Fn(usize) -> String) {
        let mut cells = vec![name.to_string()];
        cells.extend((0..self.designs).map(cell));
        self.table.add_row(cells);
    }
}

/// Designs side by side (`sprint simulate --preset ...`): cycles, time, energy by
/// component, bytes moved by kind, buffer hit rates, utilisation, throughput and the ratios
/// against the first design.
pub fn designs_text(rs: &[DesignReport]) -> String {
    let Some(first) = rs.first() else {
        return String::new();
    };
    let mut t = ByDesign::new(rs.iter().map(|r| r.name.clone()));
    t.row("cycles", |i| rs[i].totals.cycles.to_string());
    t.row("time", |i| {
        format!("{:.3} ms @ {} GHz", rs[i].seconds * 1e3, rs[i].clock_ghz)
    });
    t.row("energy total", |i| energy_text(rs[i].energy.total()));
    for (k, (name, _)) in first.energy.parts().iter().enumerate() {
        t.row(&format!("  {}", name.replace('_', " ")), |i| {
            let v = rs[i].energy.parts()[k].1;
            let pct = 100.0 * v / rs[i].energy.total().max(f64::MIN_POSITIVE);
            format!("{} ({pct:.1}%)", energy_text(v))
        });
    }
    let moved = |i: usize| &rs[i].totals.moved;
    t.row("bytes moved from ReRAM", |i| bytes_text(moved(i).total()));
    t.row("  K_MSB / K_LSB", |i| {
        format!(
            "{} / {}",
            bytes_text(moved(i).k_msb),
            bytes_text(moved(i).k_lsb)
        )
    });
    t.row("  K (whole)", |i| bytes_text(moved(i).k_whole));
    t.row("  V", |i| bytes_text(moved(i).v));
    t.row("  Q / index", |i| {
        format!(
            "{} / {}",
            bytes_text(moved(i).q),
            bytes_text(moved(i).index)
        )
    });
    t.row("K/V written to ReRAM", |i| {
        bytes_text(rs[i].totals.written_bytes)
    });
    t.row("buffer hit rate K / V", |i| {
        format!(
            "{:.1}% / {:.1}%",
            100.0 * rs[i].k_hit_rate,
            100.0 * rs[i].v_hit_rate
        )
    });
    t.row("utilisation QK-PU / V-PU", |i| {
        format!(
            "{:.1}% / {:.1}%",
            100.0 * rs[i].qk_utilisation,
            100.0 * rs[i].v_utilisation
        )
    });
    t.row("effective GOPs/s, GOPs/J", |i| {
        format!("{:.1}, {:.1}", rs[i].gops_per_s, rs[i].gops_per_j)
    });
    let against = &first.name;
    t.row(&format!("speedup vs {against}"), |i| {
        ratio_text(rs[i].speedup, "x", 2)
    });
    t.row(&format!("energy reduction vs {against}"), |i| {
        ratio_text(rs[i].energy_reduction, "x", 2)
    });
    t.row(&format!("data-movement reduction vs {against}"), |i| {
        ratio_text(rs[i].data_movement_reduction_pct, "%", 1)
    });
    format!("{}\n", t.table)
}

/// The decode run (`sprint simulate --decode`): shape, where the kept sets come from, one
/// column per design (time with write stalls, energy and its ReRAM write / read shares,
/// writes, cell lifetime), then the endurance line at the file's stated token rate.
pub fn decode_text(f: &DecodeFile, kept_source: &str, s: &[DecodeSummary]) -> String {
    let mut out = format!(
        "decode: {} ({})\nkept sets: {kept_source}\n",
        f.name,
        f.shape_text()
    );
    let mut t = ByDesign::new(s.iter().map(|d| d.design.clone()));
    t.row("cycles (incl. write stalls)", |i| s[i].cycles.to_string());
    t.row("  write stall cycles", |i| {
        s[i].write_stall_cycles.to_string()
    });
    t.row("tokens per second (per sequence)", |i| {
        format!("{:.1}", s[i].tokens_per_s)
    });
    t.row("speedup vs first", |i| format!("{:.2}x", s[i].speedup));
    t.row("energy total", |i| energy_text(s[i].energy_pj));
    t.row("  ReRAM write (share)", |i| {
        format!(
            "{} ({:.1}%)",
            energy_text(s[i].write_energy_share * s[i].energy_pj),
            100.0 * s[i].write_energy_share
        )
    });
    t.row("  ReRAM read (share)", |i| {
        format!(
            "{} ({:.1}%)",
            energy_text(s[i].read_energy_share * s[i].energy_pj),
            100.0 * s[i].read_energy_share
        )
    });
    t.row("energy reduction vs first", |i| {
        format!("{:.2}x", s[i].energy_reduction)
    });
    t.row("bytes moved from ReRAM", |i| bytes_text(s[i].bytes_moved));
    t.row("ReRAM writes (Q, K, V)", |i| s[i].writes.to_string());
    t.row("writes per cell per sequence", |_| "1".to_string());
    t.row("cell lifetime at the simulated rate", |i| {
        days_text(s[i].lifetime_s_at_simulated_rate)
    });
    let _ = writeln!(out, "{}", t.table);
    let w = &f.write;
    let _ = writeln!(
        out,
        "endurance {:e} writes per cell ({}); at the stated {} tokens/s per sequence ({}): a cell is rewritten every {:.2} s, lifetime {}",
        w.endurance_writes_per_cell.value,
        w.endurance_writes_per_cell.source,
        w.token_rate_per_s.value,
        w.token_rate_per_s.source,
        f64::from(f.shape.new_tokens.value) / w.token_rate_per_s.value,
        days_text(lifetime_s_at_stated_rate(f))
    );
    out
}

/// The decode run as JSON: the decode file, where the kept sets come from, and per design
/// its statistics registry plus the decode figures (`decode.*` keys, units as in
/// [`DecodeSummary`]).
pub fn decode_json(
    f: &DecodeFile,
    kept_source: &str,
    reports: &[DesignReport],
    s: &[DecodeSummary],
) -> Value {
    let lifetime = lifetime_s_at_stated_rate(f);
    let rows: Vec<Value> = reports
        .iter()
        .zip(s)
        .map(|(r, d)| {
            let mut row: BTreeMap<String, Value> = BTreeMap::new();
            row.insert("design".into(), json!(r.key));
            row.insert("stats".into(), json!(r.registry()));
            row.insert(
                "decode.write_stall_cycles".into(),
                json!(d.write_stall_cycles),
            );
            row.insert("decode.writes".into(), json!(d.writes));
            row.insert(
                "decode.tokens_per_s".into(),
                json!(d.tokens_per_s * f64::from(f.shape.batch.value)),
            );
            row.insert(
                "decode.write_energy_share".into(),
                json!(d.write_energy_share),
            );
            row.insert("decode.lifetime_s_at_stated_rate".into(), json!(lifetime));
            json!(row)
        })
        .collect();
    json!({"decode": f, "kept_sets": kept_source, "designs": rows})
}

/// The `--fit-paper` outcome: fitted parameters with their source, the objective and its
/// parts, the objective profile over the baseline query block, errors per model, the
/// parameters found not identifiable, and where the calibration was written (`path`).
pub fn fit_text(o: &FitOutcome, path: &Path) -> String {
    let mut out = format!("fit: {}\n", o.calibration.fit);
    let mut t = Table::new();
    t.set_header(vec!["parameter", "value", "source"]);
    for (k, v) in &o.calibration.params {
        t.add_row(vec![k.clone(), format!("{}", v.value), v.source.clone()]);
    }
    let _ = writeln!(out, "{t}");
    let _ = writeln!(
        out,
        "objective J = {:.3} pp (Fig 10 {:.3} + Fig 12a shares {:.3}); sourced default J = {:.3} pp; {} grid points",
        o.objective_pp, o.fig10_mae_pp, o.share_mae_pp, o.sourced_objective_pp, o.evaluations
    );
    let profile: Vec<String> = o
        .profile
        .iter()
        .map(|(b, j)| format!("{b}: {j:.2}"))
        .collect();
    let _ = writeln!(
        out,
        "{} by baseline query block per CORELET (best other values): {}",
        match o.method {
            crate::fit::FitMethod::Staged => "Mask-only + shares objective",
            crate::fit::FitMethod::Joint => "J",
        },
        profile.join(", ")
    );
    let per_model: Vec<String> = o
        .per_model
        .iter()
        .map(|(m, f, sh)| {
            if sh.is_nan() {
                format!("{m} {f:.1}")
            } else {
                format!("{m} {f:.1} / {sh:.1}")
            }
        })
        .collect();
    let _ = writeln!(
        out,
        "mean |error| per model at the optimum, pp (Fig 10 / shares): {}",
        per_model.join(", ")
    );
    for n in &o.not_identifiable {
        let _ = writeln!(out, "not identifiable: {n}");
    }
    let _ = writeln!(
        out,
        "wrote {}; check out of sample with `sprint simulate --compare-paper --calibration {}`",
        path.display(),
        path.display()
    );
    out
}
