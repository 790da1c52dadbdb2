//! Accuracy of real transformers under SPRINT attention, the way the paper's Fig 9 reports
//! it: the same task evaluated with each attention variant (dense, runtime pruning, SPRINT
//! without recompute, SPRINT), with the fraction of keys kept and the delta vs dense.
//!
//! - [`tasks`]: BBC News / SpamAssassin / Austen attribution (MiniLM embeddings + a linear
//!   probe trained on dense embeddings, then frozen), SmolLM2 perplexity on Austen, Moby
//!   Dick and SOTU windows, SmolLM2 zero-shot sentiment on Pang & Lee.
//! - [`metrics`]: accuracy and perplexity; [`logreg`]: the deterministic linear probe;
//!   [`paired`]: paired differences of two accuracy runs with their bootstrap interval;
//!   [`fidelity`]: continuous measures against a reference run (posterior KL, flips,
//!   embedding cosine, perplexity change with a block-bootstrap interval).
//! - [`calibrate`]: thresholds from score quantiles on a calibration split, written to and
//!   read from thresholds files with their provenance.
//! - [`learn`]: learned thresholds; [`finetune`]: fine-tuning norms and biases beside them.
//! - [`run`]: the driver behind `sprint eval`; [`report_text`]: its terminal report.
//! - [`sweep`]: accuracy against kept fraction, as a table and a plot (report layer).
//! - [`memo`]: dense passes, calibrations, probes and variant passes kept within a process
//!   and reused bit-identical when another evaluation repeats them.

pub mod calibrate;
pub mod error;
pub mod fidelity;
pub mod finetune;
pub mod grad_checkpoint;
pub mod histogram;
pub mod learn;
pub mod logreg;
pub mod memo;
pub mod metrics;
pub mod paired;
pub mod peer_calibrate;
pub mod probe_loss;
pub mod report_text;
pub mod run;
pub mod sweep;
pub mod tasks;

pub use error::{EvalError, Result};
pub use run::{EvalOptions, EvalReport, NoProgress, Progress, ThresholdChoice, evaluate};
pub use tasks::Task;
