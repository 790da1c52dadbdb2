//! `sprint reproduce`: the paper's evaluation in one run.
//!
//! A run is a fixed list of [`stages`] (accuracy of the four attention variants on the real
//! models, the precision, sparsity and noise sweeps, the simulator against the paper's
//! figures in both configurations, the simulator on the real traces, decode). Each stage's
//! result is cached under a content hash of everything it depends on ([`cache`]), so an
//! interrupted run redoes only what is missing and gives identical results. The results are
//! turned into a report document ([`report`]: verdict first, then one section per figure,
//! provenance last) by the report layer (`sprint-report`).

pub mod cache;
pub mod error;
pub mod finetuned;
pub mod grid;
pub mod mode;
pub mod peers_stage;
pub mod provenance;
pub mod report;
pub mod results;
pub mod run;
pub mod sim_peers;
pub mod stages;

pub use error::{ReproduceError, Result};
pub use mode::{Mode, Plan};
pub use run::{Outcome, Progress, reproduce, reproduce_shard};
