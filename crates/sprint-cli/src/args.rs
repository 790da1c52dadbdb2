//! The argument groups the subcommands share (flattened with `#[command(flatten)]`), the help
//! texts of flags that several subcommands declare, and the old spellings of renamed flags.
//!
//! One name per idea: `--per-head`, `--calib-items`, `--calibration` (the calibration method),
//! `--threads`, `--seed`. Old spellings are hidden aliases that still work for one release and
//! print one deprecation note on stderr ([`DEPRECATED`], [`note_deprecated`]).

use std::path::PathBuf;
use std::sync::OnceLock;

use anyhow::{Context, Result, bail};
use sprint_core::config::{AttentionConfig, RecomputeMode};

/// Help of `--seed` wherever it appears.
pub const SEED_HELP: &str =
    "Seed of every random draw (data splits and subsets, item order, noise, synthetic values)";

/// Help of `--model` wherever it appears.
pub const MODEL_HELP: &str = "Model: `minilm`, `smollm2` (from the asset cache), or a path (GGUF file or Hugging Face checkpoint folder)";

/// Help of `--task` wherever it appears.
pub const TASK_HELP: &str = "Task: bbc, spam, austen (MiniLM probes), ppl-austen, ppl-moby, ppl-sotu (decoders), sentiment (decoders; `sprint eval` only)";

/// Help of `--keep` wherever it appears.
pub const KEEP_HELP: &str =
    "Target fraction of the visible (query, key) pairs kept, in (0, 1] (default 0.25)";

/// Help of `--json` wherever it appears.
pub const JSON_HELP: &str = "Print the report as one JSON document instead of text (it holds more: every statistic, each row's per-item results)";

/// Help of `--batch-size` wherever it appears.
pub const BATCH_HELP: &str = "Sequences per forward pass (`sprint thresholds learn`: per training step, default 8 documents or 1 window)";

/// Help of `--variants` wherever it appears.
pub const VARIANTS_HELP: &str = "Comma-separated attention variants, in output order (`sprint sweep-sparsity` runs dense once more, as the reference)";

/// Help of `-o, --output` wherever it appears.
pub const THRESHOLDS_OUT_HELP: &str = "Write the thresholds (TOML, with their provenance) here";

/// `--threads`: the worker threads, validated and started in one place.
#[derive(clap::Args, Clone, Copy, Debug)]
pub struct Threads {
    /// Worker threads (0 = all cores); results are identical for any count.
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
}

impl Threads {
    /// The count asked for, within [`sprint_core::outfile::MAX_THREADS`] (0 = all cores).
    pub fn checked(&self) -> Result<usize> {
        Ok(sprint_core::outfile::check_threads(self.threads)?)
    }
}

/// A pool of `threads` workers (0 = all cores).
pub fn pool_of(threads: usize) -> Result<rayon::ThreadPool> {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .context("cannot start worker threads")
}

/// `--seed` with the default 0.
#[derive(clap::Args, Clone, Copy, Debug)]
pub struct Seed {
    #[arg(long, default_value_t = 0, help = SEED_HELP)]
    pub seed: u64,
}

/// The runtime group: `--threads` and `--seed`.
#[derive(clap::Args, Clone, Copy, Debug)]
pub struct Runtime {
    #[command(flatten)]
    pub threads: Threads,
    #[command(flatten)]
    pub seed: Seed,
}

impl Runtime {
    /// The seed.
    pub fn seed(&self) -> u64 {
        self.seed.seed
    }
}

/// `--recompute`: how the exact scores of the kept keys are recomputed.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Recompute {
    // The datapath's fixed-point arithmetic.
    FixedPoint,
    // f32 arithmetic.
    Float,
}

impl From<Recompute> for RecomputeMode {
    fn from(r: Recompute) -> Self {
        match r {
            Recompute::FixedPoint => RecomputeMode::FixedPoint,
            Recompute::Float => RecomputeMode::Float,
        }
    }
}

/// Overrides of the attention configuration: `--recompute` and `--set`.
#[derive(clap::Args, Clone, Debug)]
pub struct AttentionOverrides {
    /// Override the recompute mode (how the exact scores of the kept keys are computed).
    #[arg(long, value_enum, value_name = "MODE")]
    pub recompute: Option<Recompute>,
    /// Override any attention-config key: `--set quant.query_dac_bits=3`,
    /// `--set noise.preset=typical` (repeatable; applied last, after the other overrides).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub sets: Vec<String>,
}

impl AttentionOverrides {
    /// `--recompute` on `cfg`; `before_sets` (the command's own overrides, such as the seed)
    /// next, then every `--set`.
    pub fn apply(
        &self,
        mut cfg: AttentionConfig,
        before_sets: impl FnOnce(&mut AttentionConfig),
    ) -> Result<AttentionConfig> {
        if let Some(r) = self.recompute {
            cfg.recompute = r.into();
        }
        before_sets(&mut cfg);
        if !self.sets.is_empty() {
            cfg = cfg.with_overrides(&self.sets)?;
        }
        Ok(cfg)
    }
}

/// The attention group: `--config` and its overrides.
#[derive(clap::Args, Clone, Debug)]
pub struct Attention {
    /// Attention configuration (TOML: variant, thresholds, precisions, recompute mode,
    /// noise, buffers; docs/configuration.md); defaults when omitted. `sprint eval` uses
    /// its thresholds if it sets any and neither --thresholds nor --keep is given.
    #[arg(long)]
    pub config: Option<PathBuf>,
    #[command(flatten)]
    pub overrides: AttentionOverrides,
}

impl Attention {
    /// The `--config` file, or the defaults.
    pub fn base(&self) -> Result<AttentionConfig> {
        match &self.config {
            Some(p) => crate::io::read_attention_config(p),
            None => Ok(AttentionConfig::default()),
        }
    }
}

/// `--per-head`: one threshold per head, or (`--per-head=false`) one per layer.
#[derive(clap::Args, Clone, Copy, Debug)]
pub struct PerHead {
    /// One threshold per head instead of one per layer; `--per-head=false`: one per layer.
    /// Default: per layer, except `sprint thresholds learn` (per head).
    #[arg(
        long,
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        value_name = "BOOL"
    )]
    pub per_head: Option<bool>,
}

impl PerHead {
    /// Per head or not, `default` when the flag is absent.
    pub fn or(&self, default: bool) -> bool {
        self.per_head.unwrap_or(default)
    }
}

/// `--calib-items`: the calibration items.
#[derive(clap::Args, Clone, Copy, Debug)]
pub struct CalibItems {
    /// Calibration items: train-split documents or windows (0 = all, not in `sprint eval`).
    /// Default: `sprint eval` 16 documents, 2 windows or 10% of the sentences; elsewhere
    /// 256 documents or 32 windows, the items `sprint thresholds learn` trains on.
    #[arg(long = "calib-items", aliases = ["calib", "items"], value_name = "N")]
    pub calib_items: Option<usize>,
}

/// The calibration group: method, items and per-head.
#[derive(clap::Args, Clone, Debug)]
pub struct Calibration {
    /// Calibration method (default quantile): `quantile` (the score quantile that keeps the
    /// target fraction of the visible pairs) or `mass` (thresholds that keep a share of each
    /// query row's dense softmax mass; docs/thresholds.md).
    #[arg(long, alias = "method", value_name = "quantile|mass")]
    pub calibration: Option<String>,
    #[command(flatten)]
    pub items: CalibItems,
    #[command(flatten)]
    pub per_head: PerHead,
}

impl Calibration {
    /// Whether the method is `mass` (`quantile` when not given); anything else is refused
    /// with `error`, given the spelling the user typed and the value.
    pub fn is_mass(&self, error: impl Fn(&str, &str) -> String) -> Result<bool> {
        match self.calibration.as_deref().unwrap_or("quantile") {
            "quantile" => Ok(false),
            "mass" => Ok(true),
            other => bail!("{}", error(given_as("--calibration"), other)),
        }
    }
}

/// Old spellings still accepted (one release), by subcommand path: (path, old, new). The
/// calibration group's aliases are accepted wherever it is flattened. `--per-layer` is not an
/// alias (its meaning is the inverse): it is a hidden flag of `sprint thresholds learn`, the
/// same as `--per-head=false`.
pub const DEPRECATED: &[(&[&str], &str, &str)] = &[
    (&["eval"], "--calib", "--calib-items"),
    (&["eval"], "--items", "--calib-items"),
    (&["eval"], "--method", "--calibration"),
    (&["thresholds", "calibrate"], "--calib", "--calib-items"),
    (&["thresholds", "calibrate"], "--items", "--calib-items"),
    (&["thresholds", "calibrate"], "--method", "--calibration"),
    (&["sweep-sparsity"], "--calib", "--calib-items"),
    (&["sweep-sparsity"], "--items", "--calib-items"),
    (&["thresholds", "learn"], "--per-layer", "--per-head=false"),
];

/// The old spellings found on the command line, with their new names.
static USED: OnceLock<Vec<(&'static str, &'static str)>> = OnceLock::new();

/// Prints one note on stderr for each old spelling in `args` (the command line without the
/// program name), before the arguments are parsed, and remembers them for [`given_as`].
pub fn note_deprecated(args: &[String]) {
    let path: Vec<&str> = args
        .iter()
        .take_while(|a| !a.starts_with('-'))
        .map(String::as_str)
        .collect();
    let mut used: Vec<(&str, &str)> = Vec::new();
    for (cmd, old, new) in DEPRECATED {
        if !path.starts_with(cmd) {
            continue;
        }
        let given = args
            .iter()
            .skip(cmd.len())
            .take_while(|a| *a != "--")
            .any(|a| a == old || a.strip_prefix(old).is_some_and(|r| r.starts_with('=')));
        if given {
            eprintln!("note: `{old}` is deprecated; use `{new}`");
            used.push((old, new));
        }
    }
    let _ = USED.set(used);
}

/// The spelling the user typed for the flag `new`: its old spelling when that was used,
/// else `new` (error messages name the flag as typed).
pub fn given_as(new: &'static str) -> &'static str {
    USED.get()
        .and_then(|u| u.iter().find(|(_, n)| *n == new))
        .map_or(new, |(old, _)| old)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_old_spelling_names_a_known_subcommand() {
        for (cmd, old, new) in DEPRECATED {
            assert!(!cmd.is_empty() && old.starts_with("--") && new.starts_with("--"));
        }
    }
}
