//! The decode section: a growing KV cache written into the crossbars and ReRAM.

use sprint_report::plot::Stacked;
use sprint_report::{Cell, Column, Plot, Section, Table};

use super::measures::pct;
use crate::results::DecodeResult;

/// The decode section (beyond the paper): S-Baseline against S-SPRINT with a growing KV
/// cache, and the lifetime of a ReRAM cell.
pub(super) fn decode_section(d: &DecodeResult) -> Section {
    let mut s = Section::new(
        "decode",
        "Decode with a growing KV cache (beyond the paper)",
    );
    s.paragraph(format!("{}. Each new token's K is written into the crossbars and its V into ReRAM; the table gives time, energy with the ReRAM write share, and the lifetime of a cell.", d.label));
    let mut t = Table::new(
        "decode",
        "Decode: S-Baseline against S-SPRINT",
        vec![
            Column::text("design"),
            Column::unit("tokens per second per sequence", "tokens/s"),
            Column::unit("speedup", "x"),
            Column::unit("energy", "uJ"),
            Column::unit("energy reduction", "x"),
            Column::unit("ReRAM write share", "%"),
            Column::unit("ReRAM read share", "%"),
            Column::unit("write stall", "% of cycles"),
            Column::unit("cell lifetime at the simulated rate", "days"),
        ],
    );
    for r in &d.rows {
        t.push(vec![
            Cell::text(&r.design),
            Cell::num(r.tokens_per_s, 1),
            Cell::num(r.speedup, 2),
            Cell::num(r.energy_pj * 1e-6, 1),
            Cell::num(r.energy_reduction, 2),
            pct(r.write_energy_share),
            pct(r.read_energy_share),
            Cell::num(
                100.0 * r.write_stall_cycles as f64 / r.cycles.max(1) as f64,
                2,
            ),
            Cell::num(r.lifetime_s_at_simulated_rate / 86400.0, 2),
        ]);
    }
    t.note(format!(
        "Endurance {:e} writes per cell; at the stated {} tokens/s per sequence a cell lasts {:.1} days.",
        d.endurance_writes,
        d.token_rate_per_s,
        d.lifetime_s_at_stated_rate / 86400.0
    ));
    s.table(t);
    s.plot(Plot::Stacked(Stacked {
        id: "decode-energy".into(),
        title: "Decode energy by kind".into(),
        x_label: "design".into(),
        y_label: "energy (uJ)".into(),
        categories: d.rows.iter().map(|r| r.design.clone()).collect(),
        components: vec![
            (
                "ReRAM write".into(),
                d.rows
                    .iter()
                    .map(|r| r.energy_pj * r.write_energy_share * 1e-6)
                    .collect(),
            ),
            (
                "ReRAM read".into(),
                d.rows
                    .iter()
                    .map(|r| r.energy_pj * r.read_energy_share * 1e-6)
                    .collect(),
            ),
            (
                "on chip and other".into(),
                d.rows
                    .iter()
                    .map(|r| {
                        r.energy_pj * (1.0 - r.write_energy_share - r.read_energy_share) * 1e-6
                    })
                    .collect(),
            ),
        ],
    }));
    s
}
