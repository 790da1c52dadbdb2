//! Progress reporting: the [`Progress`] trait an evaluation reports its stages to, and
//! [`NoProgress`], which discards them.

/// Receives progress: a stage with its length, then increments.
pub trait Progress {
    /// A new stage of `len` units of `what` begins.
    fn stage(&self, what: &str, len: u64);
    /// `n` units of the current stage are done.
    fn inc(&self, n: u64);
}

/// Progress that goes nowhere.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoProgress;

impl Progress for NoProgress {
    fn stage(&self, _what: &str, _len: u64) {}
    fn inc(&self, _n: u64) {}
}
