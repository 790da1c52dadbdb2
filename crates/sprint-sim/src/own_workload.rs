//! A peer at its published configuration on its own published workload, beside its Table III
//! row (issue #26). Table III's numbers were measured by each design's authors on their own
//! workloads; where a design's workload is public, running our model of the design on it
//! compares like with like. Today: SpAtten on its GPT-2-medium generation workload
//! (mit-han-lab/spatten's workload file, read into `configs/decode/spatten-gpt2-medium.toml`
//! and `configs/workload-stats/spatten-gpt2-medium.toml`), simulated by [`crate::decode`].

use serde::{Deserialize, Serialize};

use crate::decode::{DecodeFile, run_decode};
use crate::energy::EnergyTable;
use crate::error::{Result, SimError};
use crate::peer_rows::{
    MODEL_PROCESS_NM, PeerRow, PublishedRow, Table3Row, executed_gops_per_s,
    gops_per_j_without_memory,
};
use crate::presets::load_design;
use crate::process::{ScalingFile, factors};
use crate::report::build;
use crate::wstats::StatsFile;

/// SpAtten's generation workload: GPT-2-medium shapes and steps.
pub const SPATTEN_DECODE: &str = include_str!("../configs/decode/spatten-gpt2-medium.toml");

/// Which keys and values SpAtten fetches on that workload, per layer.
pub const SPATTEN_STATS: &str = include_str!("../configs/workload-stats/spatten-gpt2-medium.toml");

/// One design on its own published workload beside its Table III row.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct OwnWorkloadRow {
    /// The workload in words, with its source.
    pub workload: String,
    /// Our model at the published configuration on it (one workload: its speedup, energy
    /// reduction and data-movement fields are 0, there being no baseline run) beside the
    /// Table III row.
    pub row: PublishedRow,
}

/// SpAtten (`spatten-published`, with `sets` applied) on its GPT-2-medium generation
/// workload, beside Table III's SpAtten row (on the caller's rayon pool).
pub fn spatten_own_workload(
    sets: &[String],
    table: &EnergyTable,
    table3: &[Table3Row],
    scaling: &ScalingFile,
) -> Result<OwnWorkloadRow> {
    let design = load_design("spatten-published", sets)?;
    let file = DecodeFile::from_toml_str(SPATTEN_DECODE, "decode spatten-gpt2-medium")?;
    let stats = StatsFile::from_toml_str(SPATTEN_STATS, "workload-stats spatten-gpt2-medium")?;
    let st = stats.resolve("GPT-2-medium");
    let out = run_decode(std::slice::from_ref(&design), &file, &st)?;
    let totals = [out[0].with_stalls()];
    let reports = build(std::slice::from_ref(&design), table, &totals)?;
    let r = &reports[0];
    let published = table3
        .iter()
        .find(|t| t.design == "SpAtten")
        .ok_or_else(|| SimError::config("paper-results.toml", "no table3.SpAtten row"))?;
    let scaled = if (published.process_nm - MODEL_PROCESS_NM).abs() > 1e-9 {
        Some(factors(scaling, published.process_nm, MODEL_PROCESS_NM)?)
    } else {
        None
    };
    Ok(OwnWorkloadRow {
        workload: format!("{}: {}", file.description, stats.source),
        row: PublishedRow {
            ours: PeerRow {
                key: r.key.clone(),
                name: r.name.clone(),
                gops_per_s: r.gops_per_s,
                executed_gops_per_s: executed_gops_per_s(r),
                gops_per_j: r.gops_per_j,
                gops_per_j_without_memory: gops_per_j_without_memory(r),
                ..PeerRow::default()
            },
            published: published.clone(),
            scaled,
        },
    })
}
