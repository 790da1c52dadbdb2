//! From summed counts to the reported statistics of each design: time at the clock, energy
//! by component, bytes moved, hit rates, utilisation, effective throughput, and the ratios
//! against the first design. Statistics are registered by name for `--json`.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::{Value, json};

use crate::config::Design;
use crate::energy::{EnergyBreakdown, EnergyTable, energy};
use crate::error::Result;
use crate::stats::HeadStats;

/// Reported statistics of one design on one workload.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DesignReport {
    /// Preset key.
    pub key: String,
    /// Display name.
    pub name: String,
    /// Summed counts.
    pub totals: HeadStats,
    /// Core clock, GHz.
    pub clock_ghz: f64,
    /// Run time, seconds.
    pub seconds: f64,
    /// Energy by component, pJ.
    pub energy: EnergyBreakdown,
    /// Key-buffer hit rate: reused / (reused + fetched).
    pub k_hit_rate: f64,
    /// Value-buffer hit rate.
    pub v_hit_rate: f64,
    /// QK-PU utilisation: busy cycles / (cycles x CORELETs).
    pub qk_utilisation: f64,
    /// V-PU utilisation.
    pub v_utilisation: f64,
    /// Dense-equivalent GOPs per second.
    pub gops_per_s: f64,
    /// Dense-equivalent GOPs per joule.
    pub gops_per_j: f64,
    /// Speedup over the first design (its cycles / ours).
    pub speedup: f64,
    /// Energy reduction over the first design (its energy / ours).
    pub energy_reduction: f64,
    /// Data-movement reduction over the first design, percent of its K and V bytes moved
    /// (Fig 10's measure).
    pub data_movement_reduction_pct: f64,
}

fn frac(a: u64, b: u64) -> f64 {
    if b == 0 { 0.0 } else { a as f64 / b as f64 }
}

/// Reports for `designs` with summed `totals` (same order), priced with `table`; ratios are
/// against the first design.
pub fn build(
    designs: &[Design],
    table: &EnergyTable,
    totals: &[HeadStats],
) -> Result<Vec<DesignReport>> {
    let mut out: Vec<DesignReport> = Vec::with_capacity(designs.len());
    for (d, t) in designs.iter().zip(totals) {
        let seconds = t.cycles as f64 / (d.core.clock_ghz * 1e9);
        let n = u64::from(d.core.corelets);
        let e = energy(
            table,
            &t.actions,
            d.k_buffer_bytes,
            d.v_buffer_bytes,
            (d.k_buffer_bytes + d.v_buffer_bytes) * n,
            seconds,
        )?;
        let joules = e.total() * 1e-12;
        out.push(DesignReport {
            key: d.key.clone(),
            name: d.name().to_string(),
            totals: *t,
            clock_ghz: d.core.clock_ghz,
            seconds,
            energy: e,
            k_hit_rate: frac(t.k_reused, t.k_reused + t.k_fetched),
            v_hit_rate: frac(t.v_reused, t.v_reused + t.v_fetched),
            qk_utilisation: frac(t.qk_busy_cycles, t.cycles * n),
            v_utilisation: frac(t.v_busy_cycles, t.cycles * n),
            gops_per_s: if seconds > 0.0 {
                t.dense_ops as f64 / seconds / 1e9
            } else {
                0.0
            },
            gops_per_j: if joules > 0.0 {
                t.dense_ops as f64 / joules / 1e9
            } else {
                0.0
            },
            speedup: 1.0,
            energy_reduction: 1.0,
            data_movement_reduction_pct: 0.0,
        });
    }
    if let Some(first) = out.first().cloned() {
        for r in &mut out {
            r.speedup = ratio(first.totals.cycles as f64, r.totals.cycles as f64);
            r.energy_reduction = ratio(first.energy.total(), r.energy.total());
            // Fig 10 compares K and V bytes (queries and indices are not data movement
            // that pruning or reuse can save).
            let (b, o) = (first.totals.moved.kv() as f64, r.totals.moved.kv() as f64);
            r.data_movement_reduction_pct = if b > 0.0 { 100.0 * (1.0 - o / b) } else { 0.0 };
        }
    }
    Ok(out)
}

fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 { a / b } else { f64::INFINITY }
}

impl DesignReport {
    /// Every statistic by dotted name (the `--json` registry).
    pub fn registry(&self) -> BTreeMap<String, Value> {
        let t = &self.totals;
        let mut m = BTreeMap::new();
        let mut put = |k: &str, v: Value| {
            m.insert(k.to_string(), v);
        };
        put("design.key", json!(self.key));
        put("design.name", json!(self.name));
        put("time.cycles", json!(t.cycles));
        put("time.clock_ghz", json!(self.clock_ghz));
        put("time.seconds", json!(self.seconds));
        put("time.scoring_cycles", json!(t.scoring_cycles));
        put("time.core_wait_cycles", json!(t.core_wait_cycles));
        for (k, v) in self.energy.parts() {
            put(&format!("energy_pj.{k}"), json!(v));
        }
        put("energy_pj.total", json!(self.energy.total()));
        put("energy_pj.fig12a_total", json!(self.energy.fig12a_total()));
        let mv = &t.moved;
        put("bytes_moved.k_msb", json!(mv.k_msb));
        put("bytes_moved.k_lsb", json!(mv.k_lsb));
        put("bytes_moved.k_whole", json!(mv.k_whole));
        put("bytes_moved.v", json!(mv.v));
        put("bytes_moved.q", json!(mv.q));
        put("bytes_moved.index", json!(mv.index));
        put("bytes_moved.total", json!(mv.total()));
        put("bytes_written.kv", json!(t.written_bytes));
        put("bytes_written.q", json!(t.written_q_bytes));
        put("buffer.k_hit_rate", json!(self.k_hit_rate));
        put("buffer.v_hit_rate", json!(self.v_hit_rate));
        put("keys.scored", json!(t.keys_scored));
        put("keys.softmax", json!(t.keys_softmax));
        put("keys.k_fetched", json!(t.k_fetched));
        put("keys.k_reused", json!(t.k_reused));
        put("keys.k_streamed", json!(t.k_streamed));
        put("keys.v_fetched", json!(t.v_fetched));
        put("keys.v_reused", json!(t.v_reused));
        put("keys.v_streamed", json!(t.v_streamed));
        put("utilisation.qk_pu", json!(self.qk_utilisation));
        put("utilisation.v_pu", json!(self.v_utilisation));
        put("memory.activations", json!(t.activations));
        put("memory.bursts", json!(t.bursts));
        put("work.heads", json!(t.heads));
        put("work.queries", json!(t.queries));
        put("work.dense_equivalent_ops", json!(t.dense_ops));
        put("work.executed_macs", json!(t.executed_macs));
        put("throughput.gops_per_s", json!(self.gops_per_s));
        put("throughput.gops_per_j", json!(self.gops_per_j));
        put("vs_first.speedup", json!(self.speedup));
        put("vs_first.energy_reduction", json!(self.energy_reduction));
        put(
            "vs_first.data_movement_reduction_pct",
            json!(self.data_movement_reduction_pct),
        );
        // Peer counters, registered only when counted (the other designs' documents stay).
        for (k, v) in [
            ("bytes_moved.k_predictor", mv.k_predictor),
            ("time.predictor_busy_cycles", t.predictor_busy_cycles),
            ("work.predictor_macs", t.predictor_macs),
            ("work.k_bit_planes", t.k_bit_planes),
        ] {
            if v != 0 {
                put(k, json!(v));
            }
        }
        let a = serde_json::to_value(t.actions).expect("counts serialise");
        if let Value::Object(o) = a {
            for (k, v) in o {
                put(&format!("actions.{k}"), v);
            }
        }
        m
    }
}
