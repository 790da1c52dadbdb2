//! `sprint sweep-sparsity`: the task's metric against the kept fraction for each attention
//! variant and threshold method, as a CSV table and an SVG plot (docs/thresholds.md).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use sprint_core::config::{AttentionConfig, Variant};
use sprint_eval::Task;

use crate::progress::EvalBar;
use sprint_eval::learn::LearnOptions;
use sprint_eval::run::EvalOptions;
use sprint_eval::sweep::{SweepMethod, SweepOptions, SweepReport, sweep};
use sprint_eval::tasks::TaskKind;

/// Arguments of `sprint sweep-sparsity`.
#[derive(clap::Args)]
#[command(allow_negative_numbers = true)]
pub struct Args {
    #[arg(long, help = crate::args::MODEL_HELP)]
    model: String,
    #[arg(long, help = crate::args::TASK_HELP)]
    task: String,
    #[arg(
        long,
        default_value = "runtime-pruning,sprint-no-recompute,sprint",
        help = crate::args::VARIANTS_HELP
    )]
    variants: String,
    /// Comma-separated calibrated methods: quantile, mass (empty for none).
    #[arg(long, default_value = "quantile,mass")]
    methods: String,
    /// Comma-separated targets of the calibrated methods: kept fraction (quantile) or
    /// softmax share (mass).
    #[arg(long, allow_hyphen_values = true, default_value = "0.1,0.2,0.3,0.5")]
    targets: String,
    /// Comma-separated mass targets, when they should differ from --targets.
    #[arg(long, allow_hyphen_values = true)]
    mass_targets: Option<String>,
    /// Thresholds files to add as points, `LABEL=FILE` (repeatable), e.g. learned ones.
    #[arg(long = "file", value_name = "LABEL=FILE")]
    files: Vec<String>,
    #[command(flatten)]
    per_head: crate::args::PerHead,
    /// Evaluated items (as `sprint eval --limit`; 0 = all); default all documents, 4
    /// windows.
    #[arg(long)]
    limit: Option<usize>,
    /// Tokens per evaluated sequence (default 256 for documents, 1024 for windows).
    #[arg(long)]
    seq_len: Option<usize>,
    #[command(flatten)]
    calib_items: crate::args::CalibItems,
    /// Tokens per calibration window (perplexity tasks; default 512).
    #[arg(long)]
    calib_seq_len: Option<usize>,
    #[command(flatten)]
    attention: crate::args::AttentionOverrides,
    #[command(flatten)]
    runtime: crate::args::Runtime,
    #[arg(long, default_value_t = 16, help = crate::args::BATCH_HELP)]
    batch_size: usize,
    /// Write the table here (CSV).
    #[arg(long)]
    csv: PathBuf,
    /// Write the plot here (SVG).
    #[arg(long)]
    svg: PathBuf,
}

fn parse_list(s: &str, what: &str) -> Result<Vec<f64>> {
    if s.split(',').all(|x| x.trim().is_empty()) {
        bail!("{what}: give at least one value in (0, 1]");
    }
    s.split(',')
        .filter(|x| !x.trim().is_empty())
        .map(|x| {
            let v: f64 = x
                .trim()
                .parse()
                .with_context(|| format!("{what}: `{x}` is not a number"))?;
            if !(v > 0.0 && v <= 1.0) {
                bail!("{what}: {v} is not in (0, 1]");
            }
            Ok(v)
        })
        .collect()
}

/// Runs `sprint sweep-sparsity`.
pub fn run(a: Args) -> Result<()> {
    let threads = a.runtime.threads.checked()?;
    let seed = a.runtime.seed();
    let task = Task::parse(&a.task)?;
    let ppl = task.kind() == TaskKind::Perplexity;
    let mut eval = EvalOptions::new(task);
    eval.variants = a
        .variants
        .split(',')
        .map(|v| Variant::parse(v.trim()))
        .collect::<Result<Vec<_>, _>>()?;
    eval.limit = Some(a.limit.unwrap_or(if ppl { 4 } else { 0 }));
    eval.seq_len = Some(a.seq_len.unwrap_or(if ppl { 1024 } else { 256 }));
    eval.seed = seed;
    eval.batch_size = a.batch_size;
    eval.attention = a
        .attention
        .apply(AttentionConfig::default(), |cfg| cfg.seed = seed)?;
    let mut calib = LearnOptions::new(task);
    calib.seed = seed;
    calib.limit = if ppl { 0 } else { a.limit.unwrap_or(0) };
    calib.eval_windows = eval.limit.unwrap_or(0);
    calib.eval_seq_len = eval.seq_len.unwrap_or(1024);
    if let Some(n) = a.calib_items.calib_items {
        calib.items = n;
    }
    if let Some(s) = a.calib_seq_len {
        calib.seq_len = s;
    } else if !ppl {
        calib.seq_len = eval.seq_len.unwrap_or(256);
    }
    let targets = parse_list(&a.targets, "--targets")?;
    let mass_targets = match &a.mass_targets {
        Some(s) => {
            if !a.methods.split(',').any(|m| m.trim() == "mass") {
                bail!("--mass-targets applies to the mass method only; add mass to --methods");
            }
            parse_list(s, "--mass-targets")?
        }
        None => targets.clone(),
    };
    let (methods, files) = sweep_methods(&a)?;
    let assets = crate::io::asset_cache_root();
    let mut inputs: Vec<(&str, &Path)> = files.iter().map(|p| ("--file", p.as_path())).collect();
    inputs.push(("the asset cache", assets.as_path()));
    let model_path = Path::new(&a.model);
    if model_path.exists() {
        inputs.push(("--model", model_path));
    }
    sprint_core::outfile::check_outputs(
        &inputs,
        &[("--csv", a.csv.as_path()), ("--svg", a.svg.as_path())],
    )?;
    let cache = sprint_assets::Cache::from_env();
    let pool = crate::args::pool_of(threads)?;
    let bar = crate::progress::bar(0, "");
    // The mass targets differ from the quantile ones: run mass separately when asked.
    let report = pool.install(|| -> Result<SweepReport> {
        let model = sprint_models::load(&a.model, &cache)
            .with_context(|| format!("cannot load model `{}`", a.model))?;
        let (mass, rest): (Vec<_>, Vec<_>) =
            methods.into_iter().partition(|m| *m == SweepMethod::Mass);
        let mut o = SweepOptions {
            eval,
            calib,
            methods: rest,
            targets,
            per_head: a.per_head.or(false),
        };
        let mut r = sweep(&model, &cache, &o, &EvalBar(bar.clone()))?;
        if !mass.is_empty() {
            o.methods = mass;
            o.targets = mass_targets;
            let m = sweep(&model, &cache, &o, &EvalBar(bar.clone()))?;
            if r.calibration.is_empty() {
                r.calibration = m.calibration;
            }
            r.rows.extend(m.rows);
        }
        Ok(r)
    })?;
    bar.finish_and_clear();
    let table = report.table();
    sprint_report::document::write_text(&a.csv, &table.csv()?)?;
    sprint_report::document::write_text(&a.svg, &report.plot().svg()?)?;
    print!("{}", table.terminal());
    println!("table: {}\nplot: {}", a.csv.display(), a.svg.display());
    Ok(())
}

/// The methods to sweep (`--methods`, then one per `--file LABEL=FILE`) and the threshold
/// files they read; at least one.
fn sweep_methods(a: &Args) -> Result<(Vec<SweepMethod>, Vec<PathBuf>)> {
    let mut methods = Vec::new();
    let mut files: Vec<PathBuf> = Vec::new();
    for m in a
        .methods
        .split(',')
        .map(str::trim)
        .filter(|m| !m.is_empty())
    {
        methods.push(match m {
            "quantile" => SweepMethod::Quantile,
            "mass" => SweepMethod::Mass,
            other => bail!("--methods: `{other}` is not quantile or mass"),
        });
    }
    for f in &a.files {
        let Some((label, path)) = f.split_once('=') else {
            bail!("--file `{f}`: give LABEL=FILE");
        };
        let path = PathBuf::from(path);
        if !path.is_file() {
            bail!("--file {label}: {} does not exist", path.display());
        }
        files.push(path.clone());
        methods.push(SweepMethod::File {
            label: label.to_string(),
            path,
        });
    }
    if methods.is_empty() {
        bail!("nothing to sweep: give --methods or --file");
    }
    Ok((methods, files))
}
