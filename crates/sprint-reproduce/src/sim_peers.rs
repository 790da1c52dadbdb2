//! The stage `sim-peers`: SPRINT and its peers as simulator designs (`sprint simulate
//! --compare-peers`): the iso table at one technology, one memory and one buffer budget on
//! the paper's workloads, and each design at its published configuration beside its Table
//! III row (docs/simulator.md "The peers as designs").

use sprint_sim::peers::{PeerComparison, compare_peers};
use sprint_sim::presets::load_energy;
use sprint_sim::wstats::StatsFile;

use crate::error::{ReproduceError, Result};

/// Runs `--compare-peers` with the default energy table and the shipped workload
/// statistics, on the caller's rayon pool.
pub fn sim_peers(stage: &str) -> Result<PeerComparison> {
    let err = |e: sprint_sim::SimError| ReproduceError::stage(stage, e);
    let table = load_energy("default", &[]).map_err(err)?;
    let stats = StatsFile::default_stats();
    compare_peers(&[], &table, &stats, |_, _| {}).map_err(err)
}
