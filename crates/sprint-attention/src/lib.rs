//! Functional, bit-level model of SPRINT attention (MICRO 2022): 8-bit quantisation, the
//! in-memory approximate score of every key on `K_MSB`, the 1-bit comparator with optional
//! analog noise, exact digital recompute of the kept keys, the fixed-point softmax, and the
//! locality engine that reuses keys already on chip. [`run_layer`] computes one layer for any
//! of the four variants and returns the output with its [`sprint_core::trace::HeadTrace`]s.

pub(crate) mod block;
mod block_scores;
mod compact;
pub mod comparator;
pub mod decision;
pub mod dense;
pub mod engine;
pub mod error;
pub mod gemm;
mod head;
mod int8_gemm;
mod isa;
pub mod kernels;
pub mod layer;
pub use sprint_core::locality;
pub mod noise;
pub mod peers;
pub mod quant;
mod simd;
pub mod softmax;
pub mod summary;
pub mod summary_text;
pub mod synth;
pub mod tensor;
mod vnni;
pub mod vpu;

pub use engine::{HeadCounts, LayerRun};
pub use error::{AttentionError, Result};
pub use isa::SIMD_CAP_ENV;
pub use layer::{Detail, LayerConsts, run_layer, run_layer_with};
pub use tensor::{AttentionInput, LayerShape, Tensor3};
