//! Cycle-level performance and energy simulator of SPRINT (MICRO 2022) and its baselines.
//!
//! One engine, many designs: a [`config::Design`] (loaded from a preset, see
//! [`presets::load_design`]) says what a design does (skip padding, prune in memory, prune on
//! chip, reuse policy) and what it is built of (CORELETs, buffers, ReRAM channels and
//! timing). Workloads are attention traces (`sprint_core::trace`) or the paper's model
//! shapes driven by synthetic kept sets ([`generate`]) with measured statistics
//! ([`wstats`]). [`run`] simulates every head (in parallel, deterministically) and
//! [`report`] turns the counts into time, energy ([`energy`]) and the comparison with the
//! paper ([`paper`]). What is cycle-exact and what is closed-form: `docs/simulator.md`.

pub mod calibration;
pub mod config;
pub mod decode;
pub mod energy;
pub mod error;
pub mod fit;
pub mod generate;
pub mod head;
pub mod keyset;
pub mod layers;
pub mod memory;
pub mod own_workload;
pub mod paper;
pub mod paper_tables;
pub mod peer_config;
pub mod peer_rows;
pub mod peer_stage;
pub mod peer_traces;
pub mod peers;
pub mod presets;
pub mod process;
pub mod recall;
pub mod report;
pub mod run;
pub mod run_ahead;
pub mod shape;
pub mod simulate;
pub mod sourced;
pub mod stats;
pub mod text;
pub mod workload;
pub mod wstats;

pub use config::Design;
pub use energy::EnergyTable;
pub use error::{Result, SimError};
