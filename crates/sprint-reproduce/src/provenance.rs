//! Provenance of a report: tool version and commit, the executable's sha256, plan and
//! seed, thread count, the sha256 of every embedded configuration and of every pinned
//! asset, and the wall time of every stage (as computed, also when read from the cache).

use serde::{Deserialize, Serialize};
use sprint_assets::{Asset, Cache};

use crate::cache::sha256_hex;
use crate::mode::Plan;

/// One stage of a run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StageRecord {
    /// Stage name.
    pub stage: String,
    /// Content key of its inputs (hex sha256).
    pub key: String,
    /// Wall time of its computation, seconds (the original one when cached).
    pub seconds: f64,
    /// Whether this run read it from the cache.
    pub cached: bool,
}

/// Everything a reader needs to rerun the report.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Provenance {
    /// `sprint` version.
    pub version: String,
    /// Commit the tool was built from (`-dirty` with uncommitted changes).
    pub commit: String,
    /// sha256 of the executable (the cache keys' tool identity).
    pub tool_sha256: String,
    /// The plan (sizes, seed).
    pub plan: Plan,
    /// Worker threads (results do not depend on them).
    pub threads: usize,
    /// Embedded configuration files and their sha256.
    pub configs: Vec<(String, String)>,
    /// Pinned assets: id, package, sha256 of the package, present in the cache.
    pub assets: Vec<(String, String, String, bool)>,
    /// Stages.
    pub stages: Vec<StageRecord>,
}

impl Provenance {
    /// Collects the provenance of a run.
    pub fn collect(
        plan: &Plan,
        tool_sha256: &str,
        threads: usize,
        assets: &Cache,
        stages: &[StageRecord],
    ) -> Self {
        let mut configs: Vec<(String, String)> = Vec::new();
        let mut add = |name: &str, text: &str| {
            configs.push((name.to_string(), sha256_hex(text.as_bytes())));
        };
        add(
            "configs/paper-results.toml",
            sprint_sim::paper::PAPER_RESULTS,
        );
        add(
            "configs/presets/paper-inferred.toml",
            sprint_sim::calibration::PAPER_INFERRED,
        );
        for (name, text) in sprint_sim::presets::PRESETS {
            add(&format!("configs/presets/{name}.toml"), text);
        }
        for (name, text) in sprint_sim::presets::ENERGY_TABLES {
            add(&format!("configs/energy/{name}.toml"), text);
        }
        add(
            "configs/workload-stats/default.toml",
            sprint_sim::wstats::DEFAULT_STATS,
        );
        add("configs/decode/smollm2.toml", sprint_sim::decode::SMOLLM2);
        add(
            "configs/thresholds/minilm-bbc-learned-keep0.25.toml",
            crate::stages::MINILM_BBC_THRESHOLDS,
        );
        let assets = Asset::ALL
            .iter()
            .map(|&a| {
                let p = a.package();
                (
                    a.id().to_string(),
                    format!("{} {}", p.name, p.version),
                    p.sha256.to_string(),
                    assets.is_present(a),
                )
            })
            .collect();
        Self {
            version: env!("CARGO_PKG_VERSION").to_string(),
            commit: env!("SPRINT_GIT_COMMIT").to_string(),
            tool_sha256: tool_sha256.to_string(),
            plan: plan.clone(),
            threads,
            configs,
            assets,
            stages: stages.to_vec(),
        }
    }
}
