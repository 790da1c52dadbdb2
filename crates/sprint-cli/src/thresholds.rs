//! `sprint thresholds`: learn thresholds (model frozen, or with its norms and biases
//! fine-tuned, then also writing a weights file `sprint eval --weights` accepts) or
//! calibrate them, writing a thresholds file `sprint eval --thresholds` and `sprint attend`
//! accept (docs/thresholds.md).

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use indicatif::ProgressBar;
use sprint_eval::Task;
use sprint_eval::finetune::Finetune;
use sprint_eval::learn::{CheckpointPlan, LearnOptions, LearnProgress, learn};

/// Arguments of `sprint thresholds`.
#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

// Parsed once per process; the size of the larger variant costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(clap::Subcommand)]
enum Command {
    /// Learn thresholds by gradient descent through a soft mask (model frozen).
    Learn(LearnArgs),
    /// Calibrate thresholds on the training items: score quantile or softmax mass.
    Calibrate(CalibrateArgs),
}

/// Arguments of `sprint thresholds learn`.
#[derive(clap::Args)]
#[command(allow_negative_numbers = true)]
pub struct LearnArgs {
    #[arg(long, help = crate::args::MODEL_HELP)]
    model: String,
    #[arg(long, help = crate::args::TASK_HELP)]
    task: String,
    #[arg(long, short, help = crate::args::THRESHOLDS_OUT_HELP)]
    output: PathBuf,
    #[arg(long, help = crate::args::KEEP_HELP)]
    keep: Option<f64>,
    #[command(flatten)]
    per_head: crate::args::PerHead,
    /// One threshold per layer instead of per head: the same as `--per-head=false`
    /// (deprecated spelling, kept for one release).
    #[arg(long, hide = true, conflicts_with = "per_head")]
    per_layer: bool,
    /// Training items: train-split documents or windows (0 = all); default 256 documents
    /// or 32 windows.
    #[arg(long)]
    items: Option<usize>,
    /// Tokens per training sequence (default 256 for documents, 512 for windows).
    #[arg(long)]
    seq_len: Option<usize>,
    /// Probe tasks: documents before the train/test split, as `sprint eval --limit`
    /// (0 = all).
    #[arg(long, default_value_t = 0)]
    limit: usize,
    /// Perplexity tasks: evaluation windows reserved at the start of the text.
    #[arg(long, default_value_t = 8)]
    eval_windows: usize,
    /// Perplexity tasks: their length in tokens.
    #[arg(long, default_value_t = 1024)]
    eval_seq_len: usize,
    /// Passes over the training items.
    #[arg(long, default_value_t = 2)]
    epochs: usize,
    #[arg(long, help = crate::args::BATCH_HELP)]
    batch_size: Option<usize>,
    /// Adam learning rate (logits per step).
    #[arg(long, default_value_t = 0.05)]
    lr: f64,
    /// Initial temperature of the soft mask (logits).
    #[arg(long, default_value_t = 0.5)]
    t_start: f64,
    /// Final temperature (logits).
    #[arg(long, default_value_t = 0.02)]
    t_end: f64,
    /// Weight of the kept-fraction regulariser `(kept - keep)^2`.
    #[arg(long, default_value_t = 200.0)]
    weight: f64,
    /// Start per-head thresholds from per-head quantiles instead of their layer's quantile.
    #[arg(long)]
    init_per_head: bool,
    /// Start from the thresholds that keep this share of each layer's softmax mass on the
    /// training items (each head's with --init-per-head), e.g. 0.995; the kept-fraction
    /// target is then the fraction they keep there (their sparsity is held; excludes --keep).
    #[arg(long, value_name = "SHARE", conflicts_with = "keep")]
    init_mass: Option<f64>,
    /// Train against SPRINT's datapath: the soft mask follows the in-memory comparator's
    /// approximate score and the recheck, so the thresholds are learned in the
    /// comparator's terms and --keep applies to the keys that reach the softmax.
    #[arg(long)]
    datapath: bool,
    /// Override a key of the training datapath's attention configuration (as `sprint
    /// eval --set`; repeatable; needs --datapath): `--datapath-set noise.preset=typical`
    /// for noise-aware training (a new chip drawn every step).
    #[arg(long = "datapath-set", value_name = "KEY=VALUE", requires = "datapath")]
    datapath_sets: Vec<String>,
    /// What trains beside the thresholds: `none` (model frozen) or `norms-biases` (the
    /// LayerNorm gains and biases and the linear layers' biases of BERT encoders, e.g.
    /// minilm; the RMS-norm gains of Llama decoders, e.g. smollm2, which have no biases).
    /// Writes a weights file of the changed tensors.
    #[arg(long, default_value = "none")]
    finetune: String,
    /// Adam learning rate of the fine-tuned tensors (per step; LayerNorm gains are
    /// dimensionless, biases in the units of their layer's output).
    #[arg(long, default_value_t = sprint_eval::learn::DEFAULT_FT_LR)]
    ft_lr: f64,
    /// Fine-tuning without pruning: no soft mask (thresholds not trained), the dense
    /// reference of the recipe. Needs --finetune.
    #[arg(long)]
    no_prune: bool,
    /// Task loss of probe tasks (bbc, spam, austen): `embedding` (1 - cos to the dense
    /// sentence embedding; labels unused) or `classification` (the labels' cross-entropy,
    /// nats, under a linear probe fitted on the training documents' dense embeddings and
    /// frozen: training on the task, as the paper's fine-tuning does).
    #[arg(long, default_value = "embedding")]
    task_loss: String,
    /// Write the fine-tuned weights (safetensors) here; default: the --output path with
    /// the extension `weights.safetensors`.
    #[arg(long)]
    weights_out: Option<PathBuf>,
    /// Checkpoint file (JSON), written every --checkpoint-every steps and at the end.
    #[arg(long)]
    checkpoint: Option<PathBuf>,
    /// Steps between checkpoints.
    #[arg(long, default_value_t = 10)]
    checkpoint_every: usize,
    /// Resume from --checkpoint when it exists (the options must match).
    #[arg(long, requires = "checkpoint")]
    resume: bool,
    /// Gradient checkpointing, memory against time: `on` keeps only each layer's input
    /// (bytes: hidden size x tokens x 4) and recomputes the layers one at a time in the
    /// backward, holding one layer's autograd tape instead of all of them (SmolLM2, the
    /// 512-token --full recipe with --datapath: 3.1 GB peak resident instead of 13.1 GB;
    /// docs/limits.md), for one more forward of the layers per step (about a third more
    /// arithmetic per step); `off` keeps the whole tape; `auto` is on when the layers' tape
    /// is estimated above 3 GiB (the report prints the estimate, GB). The learned
    /// thresholds, weights and losses are the same bits either way.
    #[arg(long, default_value = "auto", value_name = "auto|on|off")]
    grad_checkpoint: String,
    /// Stop after this many steps in all (the checkpoint lets a later run resume).
    #[arg(long, hide = true)]
    stop_after: Option<usize>,
    #[command(flatten)]
    runtime: crate::args::Runtime,
    #[arg(long, help = crate::args::JSON_HELP)]
    json: bool,
}

struct Bar(ProgressBar);

impl LearnProgress for Bar {
    fn stage(&self, what: &str, len: u64) {
        self.0.reset();
        self.0.set_length(len);
        crate::progress::set_title(&self.0, what);
        self.0.set_message("");
    }
    fn inc(&self, status: Option<&str>) {
        if let Some(s) = status {
            self.0.set_message(s.to_string());
            // Without a terminal the bar is hidden: one line per step instead.
            if self.0.is_hidden() {
                eprintln!(
                    "step {}/{} {s} ({:.0} s)",
                    self.0.position() + 1,
                    self.0.length().unwrap_or(0),
                    self.0.elapsed().as_secs_f64()
                );
            }
        }
        self.0.inc(1);
    }
}

/// Runs `sprint thresholds`.
pub fn run(a: Args) -> Result<()> {
    match a.command {
        Command::Learn(l) => run_learn(l),
        Command::Calibrate(c) => run_calibrate(c),
    }
}

fn run_learn(a: LearnArgs) -> Result<()> {
    let threads = a.runtime.threads.checked()?;
    let per_head = !a.per_layer && a.per_head.or(true);
    if !per_head && a.init_per_head {
        bail!(
            "--init-per-head starts per-head thresholds; {} learns one per layer",
            if a.per_layer {
                "--per-layer"
            } else {
                "--per-head=false"
            }
        );
    }
    if a.eval_seq_len == 0 {
        bail!("--eval-seq-len must be at least 1 token");
    }
    let task = Task::parse(&a.task)?;
    let o = learn_options(&a, task, per_head)?;
    if o.finetune == Finetune::None && a.weights_out.is_some() {
        bail!("--weights-out needs --finetune norms-biases");
    }
    let weights_out = (o.finetune != Finetune::None).then(|| {
        a.weights_out
            .clone()
            .unwrap_or_else(|| a.output.with_extension("weights.safetensors"))
    });
    if a.stop_after.is_some() && a.checkpoint.is_none() {
        bail!("--stop-after needs --checkpoint");
    }
    let model_path = std::path::Path::new(&a.model);
    let assets = crate::io::asset_cache_root();
    let mut inputs: Vec<(&str, &std::path::Path)> = vec![("the asset cache", assets.as_path())];
    if model_path.exists() {
        inputs.push(("--model", model_path));
    }
    let mut outputs: Vec<(&str, &std::path::Path)> = vec![("--output", a.output.as_path())];
    if let Some(c) = &a.checkpoint {
        outputs.push(("--checkpoint", c.as_path()));
    }
    if let Some(w) = &weights_out {
        outputs.push(("--weights-out", w.as_path()));
    }
    sprint_core::outfile::check_outputs(&inputs, &outputs)?;
    let plan = CheckpointPlan {
        path: a.checkpoint.clone(),
        every: a.checkpoint_every,
        resume: a.resume,
        stop_after: a.stop_after,
        grad_checkpoint: a
            .grad_checkpoint
            .parse()
            .map_err(|e: String| anyhow::anyhow!("--grad-checkpoint: {e}"))?,
    };
    let cache = sprint_assets::Cache::from_env();
    let pool = crate::args::pool_of(threads)?;
    let bar = crate::progress::bar(0, "");
    let (mut file, report, weights) = pool.install(|| -> Result<_> {
        crate::progress::set_title(&bar, &format!("loading {}", a.model));
        let model = sprint_models::load(&a.model, &cache)
            .with_context(|| format!("cannot load model `{}`", a.model))?;
        let sprint_eval::learn::Learned {
            file,
            report,
            weights,
            ..
        } = learn(&model, &cache, task, &o, &plan, &Bar(bar.clone()))?;
        Ok((file, report, weights))
    })?;
    bar.finish_and_clear();
    if report.finished {
        if let (Some(mut w), Some(path)) = (weights, &weights_out) {
            w.meta
                .insert("thresholds_file".into(), a.output.display().to_string());
            w.write(path)?;
            file.meta
                .insert("weights_file".into(), path.display().to_string());
        }
        sprint_eval::calibrate::write_threshold_file(&a.output, &file)?;
    }
    if a.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!(
            "{}",
            sprint_eval::report_text::learn_text(&report, &a.output, weights_out.as_deref())
        );
    }
    Ok(())
}

/// The learning options of `a` for `task` (`per_head`: thresholds per head, else per layer),
/// checked as far as they can be before the model is loaded.
fn learn_options(a: &LearnArgs, task: Task, per_head: bool) -> Result<LearnOptions> {
    let mut o = LearnOptions::new(task);
    o.keep = a.keep.unwrap_or(0.25);
    o.per_head = per_head;
    if let Some(n) = a.items {
        o.items = n;
    }
    if let Some(s) = a.seq_len {
        o.seq_len = s;
    }
    if let Some(b) = a.batch_size {
        o.batch_size = b;
    }
    o.limit = a.limit;
    o.eval_windows = a.eval_windows;
    o.eval_seq_len = a.eval_seq_len;
    sprint_eval::learn::reserved_tokens(&o)?;
    o.epochs = a.epochs;
    o.lr = a.lr;
    o.t_start = a.t_start;
    o.t_end = a.t_end;
    o.weight = a.weight;
    o.seed = a.runtime.seed();
    o.init_per_head = a.init_per_head;
    o.init_mass = a.init_mass;
    o.datapath = a.datapath;
    o.datapath_sets = a.datapath_sets.clone();
    o.finetune = a
        .finetune
        .parse()
        .map_err(|e: String| anyhow::anyhow!("--finetune: {e}"))?;
    o.ft_lr = a.ft_lr;
    o.prune = !a.no_prune;
    o.task_loss = a
        .task_loss
        .parse()
        .map_err(|e: String| anyhow::anyhow!("--task-loss: {e}"))?;
    o.datapath_config()?;
    Ok(o)
}

/// Arguments of `sprint thresholds calibrate`.
#[derive(clap::Args)]
#[command(allow_negative_numbers = true)]
pub struct CalibrateArgs {
    #[arg(long, help = crate::args::MODEL_HELP)]
    model: String,
    #[arg(long, help = crate::args::TASK_HELP)]
    task: String,
    #[arg(long, short, help = crate::args::THRESHOLDS_OUT_HELP)]
    output: PathBuf,
    /// The target, in (0, 1]: the fraction of the visible pairs kept (`--calibration
    /// quantile`), or the share of each row's dense softmax mass kept on average (`mass`).
    #[arg(long)]
    target: f64,
    // Method (`--calibration`), items and per-head.
    #[command(flatten)]
    calibration: crate::args::Calibration,
    /// Tokens per sequence (default 256 for documents, 512 for windows).
    #[arg(long)]
    seq_len: Option<usize>,
    /// Probe tasks: documents before the train/test split (0 = all).
    #[arg(long, default_value_t = 0)]
    limit: usize,
    /// Perplexity tasks: evaluation windows reserved at the start of the text.
    #[arg(long, default_value_t = 8)]
    eval_windows: usize,
    /// Perplexity tasks: their length in tokens.
    #[arg(long, default_value_t = 1024)]
    eval_seq_len: usize,
    #[command(flatten)]
    runtime: crate::args::Runtime,
}

fn run_calibrate(a: CalibrateArgs) -> Result<()> {
    let threads = a.runtime.threads.checked()?;
    if a.eval_seq_len == 0 {
        bail!("--eval-seq-len must be at least 1 token");
    }
    let task = Task::parse(&a.task)?;
    let mass = a
        .calibration
        .is_mass(|flag, other| format!("{flag} must be quantile or mass, got `{other}`"))?;
    let method = if mass { "mass" } else { "quantile" };
    let per_head = a.calibration.per_head.or(false);
    let seed = a.runtime.seed();
    if !(a.target > 0.0 && a.target <= 1.0) {
        bail!("--target must be in (0, 1], got {}", a.target);
    }
    let mut o = LearnOptions::new(task);
    if let Some(n) = a.calibration.items.calib_items {
        o.items = n;
    }
    if let Some(s) = a.seq_len {
        o.seq_len = s;
    }
    o.limit = a.limit;
    o.eval_windows = a.eval_windows;
    o.eval_seq_len = a.eval_seq_len;
    sprint_eval::learn::reserved_tokens(&o)?;
    o.seed = seed;
    let model_path = std::path::Path::new(&a.model);
    let assets = crate::io::asset_cache_root();
    let mut inputs: Vec<(&str, &std::path::Path)> = vec![("the asset cache", assets.as_path())];
    if model_path.exists() {
        inputs.push(("--model", model_path));
    }
    sprint_core::outfile::check_outputs(&inputs, &[("--output", a.output.as_path())])?;
    let cache = sprint_assets::Cache::from_env();
    let pool = crate::args::pool_of(threads)?;
    let bar = crate::progress::bar(0, "");
    let (file, kept, split) = pool.install(|| -> Result<_> {
        let model = sprint_models::load(&a.model, &cache)
            .with_context(|| format!("cannot load model `{}`", a.model))?;
        let (seqs, split) = sprint_eval::learn::training_items(&model, &cache, task, &o)?;
        let progress = Bar(bar.clone());
        progress.stage("calibration items", seqs.len() as u64);
        let stats = sprint_eval::learn::score_stats(&model, &seqs, &progress)?;
        let th = if mass {
            stats.mass_thresholds(a.target, per_head)?
        } else {
            stats.thresholds(a.target, per_head)?
        };
        let kept = stats.kept_fraction(&th);
        let meta = sprint_eval::calibrate::CalibrationMeta {
            target_keep: if mass { kept } else { a.target },
            per_head,
            model: model.name.clone(),
            task: task.name().into(),
            split: split.clone(),
            seed,
            scores: stats.total(),
        };
        let mut file = sprint_eval::calibrate::threshold_file(&th, &meta);
        if mass {
            file.meta.insert(
                "method".into(),
                format!(
                    "per-{} softmax-mass calibration: the smallest score Th such that the pairs with dense scores >= Th carry on average {} of each query row's dense softmax mass",
                    if per_head { "head" } else { "layer" },
                    a.target
                ),
            );
            file.meta.insert("target_mass".into(), a.target.to_string());
        }
        file.meta.insert("calibration_kept".into(), format!("{kept:.6}"));
        Ok((file, kept, split))
    })?;
    bar.finish_and_clear();
    sprint_eval::calibrate::write_threshold_file(&a.output, &file)?;
    print!(
        "{}",
        sprint_eval::report_text::calibration_text(method, &split, kept, &a.output)
    );
    Ok(())
}
