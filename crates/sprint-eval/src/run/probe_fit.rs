//! How the linear probe of a probe task is fitted ([`ProbeFit`]): an option of the
//! evaluation and a field of its report (a leaf of `run`, used by both).

/// Which embeddings the linear probe of a probe task is fitted on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ProbeFit {
    /// One probe, fitted on the dense embeddings of the train split and frozen: every
    /// variant is scored by the classifier of the dense model (the default).
    #[default]
    Dense,
    /// Each variant's probe is fitted on that variant's own embeddings of the train split:
    /// the classifier is trained for the model it classifies, as when a model is fine-tuned
    /// with pruning in the loop. The dense row is the same in both modes, so it is the
    /// reference of the same recipe without pruning.
    PerVariant,
}

impl ProbeFit {
    /// The command-line name: `dense` or `per-variant`.
    pub fn name(self) -> &'static str {
        match self {
            ProbeFit::Dense => "dense",
            ProbeFit::PerVariant => "per-variant",
        }
    }

    /// Parses [`ProbeFit::name`].
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "dense" => Some(ProbeFit::Dense),
            "per-variant" => Some(ProbeFit::PerVariant),
            _ => None,
        }
    }
}
