//! `sprint eval`: accuracy of a real model on a real task with every attention variant,
//! printed in the layout of the paper's Fig 9 (docs/evaluation.md).

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use sprint_core::config::Variant;
use sprint_eval::Task;

use crate::args::given_as;
use crate::progress::EvalBar;
use sprint_eval::run::{
    EvalOptions, EvalReport, ProbeFit, ReferenceRun, ThresholdChoice, evaluate,
};
use sprint_eval::tasks::TaskKind;

/// Arguments of `sprint eval`.
#[derive(clap::Args)]
#[command(allow_negative_numbers = true)]
pub struct Args {
    #[arg(long, help = crate::args::MODEL_HELP)]
    model: String,
    #[arg(long, help = crate::args::TASK_HELP)]
    task: String,
    #[arg(
        long,
        help = crate::args::VARIANTS_HELP,
        default_value = "dense,runtime-pruning,sprint-no-recompute,sprint"
    )]
    variants: String,
    /// Items evaluated: documents (before the split), windows, or sentences; 0 = all.
    /// Default: all documents / sentences, 8 perplexity windows.
    #[arg(long)]
    limit: Option<usize>,
    /// Tokens per sequence: truncation of documents and prompts (default 256), window
    /// length of perplexity (default 512, at most the model's context).
    #[arg(long)]
    seq_len: Option<usize>,
    /// Thresholds file (TOML, per_layer or per_head, logit units); default: calibrate.
    #[arg(long, conflicts_with = "keep")]
    thresholds: Option<PathBuf>,
    /// Fine-tuned weights file (safetensors from `sprint thresholds learn --finetune`)
    /// overlaid on the model after checking its base sha256 and every tensor's name and
    /// shape; every variant, dense included, and the probe run on the overlaid model.
    #[arg(long)]
    weights: Option<PathBuf>,
    /// Probe tasks: fit the linear probe on the dense embeddings of the train split and
    /// score every variant with it (`dense`), or fit each variant's probe on its own
    /// embeddings of the train split (`per-variant`: the classifier trained with pruning in
    /// the loop; one more pass over the train split per non-dense variant).
    #[arg(long, default_value = "dense")]
    probe_fit: String,
    // The calibrated thresholds' target (default 0.25).
    #[arg(long, help = crate::args::KEEP_HELP)]
    keep: Option<f64>,
    /// Compare the peer designs at equal sparsity: calibrate each peer's own knob on the
    /// calibration items to keep this fraction of the visible pairs in the softmax (Sanger's
    /// prob_threshold, A3's post_score_ratio, Energon's alpha shared by its rounds, a scale
    /// on SpAtten's token schedule; LeOPArd runs at SPRINT's thresholds). Default: their
    /// published values, configs/peers/published.toml.
    #[arg(long, allow_negative_numbers = true)]
    peer_keep: Option<f64>,
    // Calibration: how it reaches --keep (`mass`: at the softmax share that keeps it over
    // all layers), its items and per-head.
    #[command(flatten)]
    calibration: crate::args::Calibration,
    /// Write the calibrated thresholds (with their provenance) to this TOML file.
    #[arg(long)]
    save_thresholds: Option<PathBuf>,
    #[command(flatten)]
    attention: crate::args::Attention,
    #[command(flatten)]
    runtime: crate::args::Runtime,
    #[arg(long, default_value_t = 16, help = crate::args::BATCH_HELP)]
    batch_size: usize,
    /// Write the SPRINT trace of the first evaluated sequence (FILE.VARIANT.EXT per variant
    /// when several run).
    #[arg(long)]
    trace: Option<PathBuf>,
    /// Perplexity tasks: write the token ids of the evaluated windows as JSON.
    #[arg(long)]
    dump_windows: Option<PathBuf>,
    /// An earlier `sprint eval --json` report on the same model, task, items, length and
    /// seed (for example the original model, or the dense model with the weights of the
    /// same fine-tuning recipe without pruning): every row is also compared with its dense
    /// row, accuracy rows item by item (bootstrap interval, McNemar test). Repeatable:
    /// `ref 1`, `ref 2`, ... in the order given.
    #[arg(long, value_name = "REPORT.json")]
    reference: Vec<PathBuf>,
    #[arg(long, help = crate::args::JSON_HELP)]
    json: bool,
    /// Also write the JSON report to this file (written whole at the end, or not at all),
    /// for use as a later run's `--reference`.
    #[arg(long, value_name = "FILE")]
    json_out: Option<PathBuf>,
}

fn options(a: &Args) -> Result<EvalOptions> {
    let task = Task::parse(&a.task)?;
    let mut opts = EvalOptions::new(task);
    opts.variants = a
        .variants
        .split(',')
        .map(|v| Variant::parse(v.trim()))
        .collect::<Result<Vec<_>, _>>()?;
    opts.limit = a.limit;
    opts.seq_len = a.seq_len;
    opts.seed = a.runtime.seed();
    opts.batch_size = a.batch_size;
    opts.trace = a.trace.clone();
    opts.save_thresholds = a.save_thresholds.clone();
    opts.dump_windows = a.dump_windows.clone();
    opts.weights = a.weights.clone();
    opts.peer_keep = a.peer_keep;
    opts.references = a
        .reference
        .iter()
        .map(|p| ReferenceRun::read(p))
        .collect::<Result<_, _>>()?;
    opts.probe_fit = ProbeFit::parse(&a.probe_fit).with_context(|| {
        format!(
            "--probe-fit `{}`: expected `dense` or `per-variant`",
            a.probe_fit
        )
    })?;
    if opts.probe_fit == ProbeFit::PerVariant && task.kind() != TaskKind::Probe {
        bail!("--probe-fit applies to the probe tasks (bbc, spam, austen) only");
    }
    if a.dump_windows.is_some() && task.kind() != TaskKind::Perplexity {
        bail!("--dump-windows applies to the perplexity tasks only");
    }
    let seed = a.runtime.seed();
    let cfg = a
        .attention
        .overrides
        .apply(a.attention.base()?, |cfg| cfg.seed = seed)?;
    let c = &a.calibration;
    let config_sets_thresholds = a.attention.config.is_some()
        && (cfg.threshold.file.is_some()
            || cfg.threshold.per_layer.is_some()
            || cfg.threshold.value != f32::NEG_INFINITY);
    opts.thresholds = if let Some(p) = &a.thresholds {
        ThresholdChoice::File(p.clone())
    } else if a.keep.is_none() && config_sets_thresholds {
        ThresholdChoice::Config
    } else {
        ThresholdChoice::Calibrate {
            keep: a.keep.unwrap_or(0.25),
            per_head: c.per_head.or(false),
            items: c.items.calib_items,
            method: c
                .calibration
                .as_deref()
                .unwrap_or("quantile")
                .parse::<sprint_eval::calibrate::KeepMethod>()
                .context(given_as("--calibration"))?,
        }
    };
    if let ThresholdChoice::Calibrate { .. } = opts.thresholds {
        if c.items.calib_items == Some(0) {
            bail!(
                "{} 0: give at least 1 calibration item",
                given_as("--calib-items")
            );
        }
    } else {
        for (given, flag) in [
            (c.per_head.per_head.is_some(), "--per-head"),
            (c.items.calib_items.is_some(), given_as("--calib-items")),
            (c.calibration.is_some(), given_as("--calibration")),
            (a.save_thresholds.is_some(), "--save-thresholds"),
        ] {
            if given {
                bail!(
                    "{flag} applies to calibration only; the thresholds come from {}",
                    if a.thresholds.is_some() {
                        "--thresholds"
                    } else {
                        "--config"
                    }
                );
            }
        }
    }
    if a.batch_size == 0 {
        bail!("--batch-size must be at least 1");
    }
    opts.attention = cfg;
    Ok(opts)
}

/// Runs `sprint eval`.
pub fn run(a: Args) -> Result<()> {
    let threads = a.runtime.threads.checked()?;
    check_paths(&a, None)?;
    let opts = options(&a)?;
    check_paths(&a, opts.attention.threshold.file.as_deref())?;
    let cache = sprint_assets::Cache::from_env();
    let pool = crate::args::pool_of(threads)?;
    let bar = crate::progress::bar(0, "");
    let report = pool.install(|| -> Result<EvalReport> {
        bar.set_message(format!("loading {}", a.model));
        let model = sprint_models::load(&a.model, &cache)
            .with_context(|| format!("cannot load model `{}`", a.model))?;
        Ok(evaluate(&model, &cache, &opts, &EvalBar(bar.clone()))?)
    })?;
    bar.finish_and_clear();
    if let Some(p) = &a.json_out {
        let json = serde_json::to_string_pretty(&report)?;
        crate::io::write_atomic(p, |f| Ok(std::io::Write::write_all(f, json.as_bytes())?))?;
    }
    if a.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", sprint_eval::report_text::eval_text(&report));
    }
    Ok(())
}

/// Checks every output path before the model is loaded: creatable, and distinct from the
/// inputs and from each other (`--trace` expands to one file per variant).
fn check_paths(a: &Args, threshold_file: Option<&std::path::Path>) -> Result<()> {
    let model = std::path::Path::new(&a.model);
    let assets = crate::io::asset_cache_root();
    let mut inputs: Vec<(&str, &std::path::Path)> = vec![("the asset cache", assets.as_path())];
    if model.exists() {
        inputs.push(("--model", model));
    }
    if let Some(p) = &a.thresholds {
        inputs.push(("--thresholds", p));
    }
    if let Some(p) = &a.attention.config {
        inputs.push(("--config", p));
    }
    if let Some(p) = &a.weights {
        inputs.push(("--weights", p));
    }
    for p in &a.reference {
        inputs.push(("--reference", p));
    }
    if let Some(p) = threshold_file {
        inputs.push(("threshold.file", p));
    }
    // Unknown variants are reported by `options`; here only the known ones name files.
    let variants: Vec<Variant> = a
        .variants
        .split(',')
        .filter_map(|v| Variant::parse(v.trim()).ok())
        .collect();
    let traces: Vec<PathBuf> = match &a.trace {
        Some(base) => variants
            .iter()
            .map(|&v| sprint_eval::run::trace_path(base, v, variants.len() > 1))
            .collect(),
        None => Vec::new(),
    };
    let mut outputs: Vec<(&str, &std::path::Path)> =
        traces.iter().map(|p| ("--trace", p.as_path())).collect();
    if let Some(p) = &a.save_thresholds {
        outputs.push(("--save-thresholds", p));
    }
    if let Some(p) = &a.dump_windows {
        outputs.push(("--dump-windows", p));
    }
    if let Some(p) = &a.json_out {
        outputs.push(("--json-out", p));
    }
    sprint_core::outfile::check_outputs(&inputs, &outputs)?;
    Ok(())
}
