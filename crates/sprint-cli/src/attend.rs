//! `sprint attend`: SPRINT attention on user tensors.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Result, bail};
use sprint_attention::summary::{RunSummary, error_stats, provenance, trace_header};
use sprint_attention::summary_text::summary_text;
use sprint_attention::{LayerShape, dense, run_layer};
use sprint_core::config::{AttentionConfig, Variant};
use sprint_core::outfile::PendingFile;

use crate::io::{LoadedInput, load_input, npy_bytes, safetensors_bytes, write_atomic};

/// Arguments of `sprint attend`.
#[derive(clap::Args)]
#[command(allow_negative_numbers = true)]
pub struct Args {
    /// Q/K/V: a .safetensors file with tensors q, k, v (and optional valid), or a folder
    /// with q.npy, k.npy, v.npy (and optional valid.npy). Shapes [heads, seq, head_dim]
    /// or [layers, heads, seq, head_dim].
    #[arg(long)]
    input: PathBuf,
    #[command(flatten)]
    attention: crate::args::Attention,
    /// Output tensor file: .safetensors (tensor `out`) or .npy.
    #[arg(long)]
    out: PathBuf,
    /// Also write the attention trace (format: docs/trace-format.md).
    #[arg(long)]
    trace: Option<PathBuf>,
    /// Override the config's variant: dense, runtime-pruning, sprint-no-recompute, sprint, or a peer design (sanger, leopard, a3, energon; spatten runs only in a model forward, `sprint eval`).
    #[arg(long)]
    variant: Option<String>,
    /// Override the threshold Th of every layer and head (logit units).
    #[arg(long, allow_hyphen_values = true)]
    threshold: Option<f32>,
    // Overrides the seed of the config (the noise seed).
    #[arg(long, help = crate::args::SEED_HELP)]
    seed: Option<u64>,
    /// Time the attention itself: run every layer this many more times after the first and
    /// report the median wall time of one pass over all layers (file I/O and the dense
    /// reference excluded).
    #[arg(long, default_value_t = 0)]
    repeat: usize,
    #[command(flatten)]
    threads: crate::args::Threads,
    #[arg(long, help = crate::args::JSON_HELP)]
    json: bool,
    /// Also run dense f32 attention on the same input and report the output's error
    /// against it (max abs, relative, cosine). Costs one dense pass over every head; off by
    /// default, and the summary then says it was not computed.
    #[arg(long)]
    compare_dense: bool,
}

fn load_config(a: &Args) -> Result<AttentionConfig> {
    let mut cfg = a.attention.base()?;
    if let Some(v) = &a.variant {
        cfg.variant = Variant::parse(v)?;
    }
    if let Some(t) = a.threshold {
        if t.is_nan() || t == f32::INFINITY {
            bail!("--threshold must be a number or -inf, got {t}");
        }
        cfg.threshold.value = t;
        cfg.threshold.per_layer = None;
        cfg.threshold.file = None;
    }
    a.attention.overrides.apply(cfg, |cfg| {
        if let Some(s) = a.seed {
            cfg.seed = s;
        }
    })
}

/// Largest `n_queries x n_keys` of one head that `sprint attend` accepts (query-key pairs):
/// the kept bits of the head being assembled (one per pair, twice while its blocks are
/// copied in), so 2^31 pairs (46341 x 46341; 32768 x 32768 is 2^30) is at most 512 MiB.
/// Scores and probabilities are held per block of queries only. Pairs.
pub const MAX_HEAD_PAIRS: u64 = 1 << 31;

/// Largest `layers x heads x n_queries x n_keys` of one input (query-key pairs): the kept
/// bit of every pair stays in memory for the trace and the summary, 2^31 bits = 256 MiB.
/// Pairs.
pub const MAX_ATTEND_PAIRS: u64 = 1 << 31;

/// Measured working memory of one block of queries in flight, per (query of the block, key)
/// pair: the datapath's approximate and exact scores of its 64-query blocks, the dense
/// reference's scores and probabilities of its blocks of up to 255 queries. Bytes.
pub const BYTES_PER_BLOCK_PAIR: u64 = 10;

/// Most queries of one block in flight: the dense reference's blocks (the datapath's are
/// shorter). Queries.
pub const MAX_BLOCK_QUERIES: u64 = 2 * sprint_attention::dense::DENSE_QUERY_BLOCK as u64 - 1;

/// Memory the blocks computed in parallel may take together; the worker count is lowered
/// (never below 1) so that `workers x min(n_queries, MAX_BLOCK_QUERIES) x n_keys x
/// BYTES_PER_BLOCK_PAIR` stays within it, and an input whose single block exceeds it is
/// refused. Bytes.
pub const ATTEND_WORKING_BYTES: u64 = 1 << 30;

/// Most timed passes `--repeat` may ask for (each is a full run over the input).
pub const MAX_REPEAT: usize = 1000;

/// Runs `sprint attend`.
pub fn run(a: Args) -> Result<()> {
    let threads = a.threads.checked()?;
    if a.repeat > MAX_REPEAT {
        bail!("--repeat {}: at most {MAX_REPEAT} timed passes", a.repeat);
    }
    let cfg = load_config(&a)?;
    let out_is_npy = a.out.extension().is_some_and(|e| e == "npy");
    if !out_is_npy && a.out.extension().is_none_or(|e| e != "safetensors") {
        bail!(
            "--out {}: use a .safetensors or .npy file name",
            a.out.display()
        );
    }
    check_files(&a, &cfg)?;

    let loaded = load_input(&a.input)?;
    let shape = checked_shape(&a.input, &loaded)?;
    let threads = worker_threads(&a.input, &shape, threads)?;
    sprint_core::shape_check::check_config_fits(&cfg, shape.heads, shape.kv_heads, shape.head_dim)?;
    let n_layers = loaded.layers.len();
    let thresholds = cfg.thresholds(n_layers, shape.heads)?;
    let pool = crate::args::pool_of(threads)?;

    let progress = crate::progress::bar(n_layers as u64, "layers");
    let (runs, reference) = pool.install(|| -> Result<_> {
        let mut runs = Vec::with_capacity(n_layers);
        let mut reference = Vec::new();
        for (l, input) in loaded.layers.iter().enumerate() {
            runs.push(run_layer(&cfg, l, &thresholds.values[l], input)?);
            if a.compare_dense {
                reference.extend(dense::attention(input, cfg.causal)?.data);
            }
            progress.inc(1);
        }
        Ok((runs, reference))
    })?;
    progress.finish_and_clear();
    let timing = (a.repeat > 0)
        .then(|| time_passes(&pool, &cfg, &thresholds, &loaded.layers, a.repeat))
        .transpose()?;

    let output: Vec<f32> = runs
        .iter()
        .flat_map(|r| r.output.data.iter().copied())
        .collect();
    let mut summary = RunSummary::new(&cfg, &shape, &runs);
    summary.error_vs_dense = a.compare_dense.then(|| error_stats(&output, &reference));
    summary.pass_seconds = timing;

    let dims = if n_layers == 1 {
        vec![shape.heads, shape.n_queries, shape.head_dim]
    } else {
        vec![n_layers, shape.heads, shape.n_queries, shape.head_dim]
    };
    let bytes = if out_is_npy {
        npy_bytes(&dims, &output)?
    } else {
        safetensors_bytes(&[("out", dims, &output)])?
    };
    // Both outputs or neither: the trace is staged (a registered temporary file, removed
    // on error or signal) and renamed into place only once the output is written.
    let staged = match &a.trace {
        Some(trace) => {
            let mut header = trace_header(&cfg, &shape, n_layers, &a.input.display().to_string());
            header.provenance = Some(provenance(&cfg, Some(&thresholds)));
            let heads: Vec<_> = runs.iter().flat_map(|r| r.heads.iter()).collect();
            let staged = PendingFile::new(trace);
            sprint_core::trace::write_trace(staged.path(), &header, heads).map_err(|e| {
                anyhow::anyhow!(
                    "{}",
                    e.to_string().replace(
                        &staged.path().display().to_string(),
                        &trace.display().to_string()
                    )
                )
            })?;
            Some((staged, trace))
        }
        None => None,
    };
    write_atomic(&a.out, |f| Ok(f.write_all(&bytes)?))?;
    if let Some((staged, trace)) = staged {
        staged.persist(trace)?;
    }

    if a.json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        print!("{}", summary_text(&summary, &cfg));
    }
    Ok(())
}

/// Refuses an output that would overwrite an input (`--input`, `--config`, the threshold
/// file) before anything is computed.
fn check_files(a: &Args, cfg: &AttentionConfig) -> Result<()> {
    let mut inputs: Vec<(&str, &std::path::Path)> = vec![("--input", &a.input)];
    if let Some(c) = &a.attention.config {
        inputs.push(("--config", c));
    }
    if let Some(f) = &cfg.threshold.file {
        inputs.push(("threshold.file", f));
    }
    let mut outputs: Vec<(&str, &std::path::Path)> = vec![("--out", &a.out)];
    if let Some(t) = &a.trace {
        outputs.push(("--trace", t));
    }
    sprint_core::outfile::check_outputs(&inputs, &outputs)?;
    Ok(())
}

/// The shape every layer of `loaded` shares, within the per-head and per-run pair limits
/// (docs/limits.md).
fn checked_shape(input: &Path, loaded: &LoadedInput) -> Result<LayerShape> {
    let Some(first) = loaded.layers.first() else {
        bail!("{}: the input holds 0 layers", input.display());
    };
    let shape = first.validate()?;
    for (l, layer) in loaded.layers.iter().enumerate() {
        if layer.validate()? != shape {
            bail!(
                "{}: layer {l} has a different shape than layer 0",
                input.display()
            );
        }
    }
    let head_pairs = shape.n_queries as u64 * shape.n_keys as u64;
    if head_pairs > MAX_HEAD_PAIRS {
        bail!(
            "{}: {} queries x {} keys = {head_pairs} query-key pairs per head exceeds the limit of {MAX_HEAD_PAIRS} (the kept bits of a head are held for the trace; docs/limits.md)",
            input.display(),
            shape.n_queries,
            shape.n_keys
        );
    }
    let pairs = head_pairs
        .saturating_mul(loaded.layers.len() as u64)
        .saturating_mul(shape.heads as u64);
    if pairs > MAX_ATTEND_PAIRS {
        bail!(
            "{}: {} layer(s) x {} heads x {} queries x {} keys = {pairs} query-key pairs exceeds the limit of {MAX_ATTEND_PAIRS} (one kept bit per pair is held for the trace; split the input into several runs; docs/limits.md)",
            input.display(),
            loaded.layers.len(),
            shape.heads,
            shape.n_queries,
            shape.n_keys
        );
    }
    Ok(shape)
}

/// The worker threads: those asked for (0 = all cores), fewer when the blocks of queries in
/// flight would exceed [`ATTEND_WORKING_BYTES`]; an input whose one block exceeds it is
/// refused.
fn worker_threads(input: &Path, shape: &LayerShape, threads: usize) -> Result<usize> {
    let all_cores = std::thread::available_parallelism().map_or(1, usize::from);
    let wanted = if threads == 0 { all_cores } else { threads };
    let block_bytes = (shape.n_queries as u64).min(MAX_BLOCK_QUERIES)
        * shape.n_keys as u64
        * BYTES_PER_BLOCK_PAIR;
    if block_bytes > ATTEND_WORKING_BYTES {
        bail!(
            "{}: {} keys per query need {block_bytes} bytes per block of queries in flight, over the limit of {ATTEND_WORKING_BYTES} (about {BYTES_PER_BLOCK_PAIR} bytes per key per query of a block; docs/limits.md)",
            input.display(),
            shape.n_keys
        );
    }
    let by_memory = (ATTEND_WORKING_BYTES / block_bytes.max(1)).max(1);
    Ok(wanted.min(usize::try_from(by_memory).unwrap_or(usize::MAX)))
}

/// Median wall time (seconds) of `repeat` passes of `run_layer` over every layer.
fn time_passes(
    pool: &rayon::ThreadPool,
    cfg: &AttentionConfig,
    thresholds: &sprint_core::config::Thresholds,
    layers: &[sprint_attention::AttentionInput],
    repeat: usize,
) -> Result<f64> {
    let mut times = Vec::with_capacity(repeat);
    for _ in 0..repeat {
        let t = std::time::Instant::now();
        pool.install(|| -> Result<()> {
            for (l, input) in layers.iter().enumerate() {
                std::hint::black_box(run_layer(cfg, l, &thresholds.values[l], input)?);
            }
            Ok(())
        })?;
        times.push(t.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    Ok(times[times.len() / 2])
}
