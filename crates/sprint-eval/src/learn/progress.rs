//! How a training run reports its progress ([`LearnProgress`]), and [`NoLearnProgress`].

/// Receives training progress.
pub trait LearnProgress {
    /// A stage of `len` units (`what`) begins (data preparation, calibration, training).
    fn stage(&self, what: &str, len: u64);
    /// One unit done; during training `status` says the loss, kept fraction and `T`.
    fn inc(&self, status: Option<&str>);
}

/// Progress that goes nowhere.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoLearnProgress;

impl LearnProgress for NoLearnProgress {
    fn stage(&self, _what: &str, _len: u64) {}
    fn inc(&self, _status: Option<&str>) {}
}
