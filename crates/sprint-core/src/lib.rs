//! Shared vocabulary of `sprint`: bit-packed masks, the attention configuration,
//! errors, and the on-disk attention trace format that links the functional model
//! (accuracy side) to the simulator (performance side).

pub mod bits;
pub mod config;
pub mod error;
pub mod fuzz;
pub mod locality;
pub mod outfile;
pub mod peers;
pub mod shape_check;
pub mod trace;
pub mod visibility;

pub use bits::{BitMatrix, BitVec};
pub use config::{AttentionConfig, RecomputeMode, Variant};
pub use error::{CoreError, Result};
