//! `sprint attend`: SPRINT attention on user tensors.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use comfy_table::Table;
use sprint_attention::summary::{RunSummary, error_stats, provenance, trace_header};
use sprint_attention::{dense, run_layer};
use sprint_core::config::{AttentionConfig, RecomputeMode, Variant};

use crate::io::{load_input, npy_bytes, safetensors_bytes, write_atomic};

/// Arguments of `sprint attend`.
#[derive(clap::Args)]
pub struct Args {
    /// Q/K/V: a .safetensors file with tensors q, k, v (and optional valid), or a folder
    /// with q.npy, k.npy, v.npy (and optional valid.npy). Shapes [heads, seq, head_dim]
    /// or [layers, heads, seq, head_dim].
    #[arg(long)]
    input: PathBuf,
    /// Attention configuration (TOML); defaults when omitted. See docs/configuration.md.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Output tensor file: .safetensors (tensor `out`) or .npy.
    #[arg(long)]
    out: PathBuf,
    /// Also write the attention trace (format: docs/trace-format.md).
    #[arg(long)]
    trace: Option<PathBuf>,
    /// Override the config's variant: dense, runtime-pruning, sprint-no-recompute, sprint.
    #[arg(long)]
    variant: Option<String>,
    /// Override the threshold Th of every layer and head (logit units).
    #[arg(long, allow_hyphen_values = true)]
    threshold: Option<f32>,
    /// Override the recompute mode: fixed-point or float.
    #[arg(long)]
    recompute: Option<String>,
    /// Override the noise seed.
    #[arg(long)]
    seed: Option<u64>,
    /// Override any attention-config key: `--set quant.query_dac_bits=3`,
    /// `--set noise.preset=typical` (repeatable; applied after the other overrides).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    sets: Vec<String>,
    /// Time the attention itself: run every layer this many more times after the first and
    /// report the median wall time of one pass over all layers (file I/O and the dense
    /// reference excluded).
    #[arg(long, default_value_t = 0)]
    repeat: usize,
    /// Worker threads (0 = all cores). Results do not depend on it.
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// Print the summary as one JSON document.
    #[arg(long)]
    json: bool,
}

fn load_config(a: &Args) -> Result<AttentionConfig> {
    let mut cfg = match &a.config {
        Some(p) => AttentionConfig::from_file(p)?,
        None => AttentionConfig::default(),
    };
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
    if let Some(r) = &a.recompute {
        cfg.recompute = match r.as_str() {
            "fixed-point" => RecomputeMode::FixedPoint,
            "float" => RecomputeMode::Float,
            other => bail!("--recompute must be fixed-point or float, got `{other}`"),
        };
    }
    if let Some(s) = a.seed {
        cfg.seed = s;
    }
    if !a.sets.is_empty() {
        cfg = cfg.with_overrides(&a.sets)?;
    }
    Ok(cfg)
}

/// Runs `sprint attend`.
pub fn run(a: Args) -> Result<()> {
    let cfg = load_config(&a)?;
    let out_is_npy = a.out.extension().is_some_and(|e| e == "npy");
    if !out_is_npy && a.out.extension().is_none_or(|e| e != "safetensors") {
        bail!(
            "--out {}: use a .safetensors or .npy file name",
            a.out.display()
        );
    }
    let loaded = load_input(&a.input)?;
    let shape = loaded.layers[0].validate()?;
    for (l, layer) in loaded.layers.iter().enumerate() {
        if layer.validate()? != shape {
            bail!(
                "{}: layer {l} has a different shape than layer 0",
                a.input.display()
            );
        }
    }
    let n_layers = loaded.layers.len();
    let thresholds = cfg.thresholds(n_layers, shape.heads)?;
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(a.threads)
        .build()
        .context("cannot start worker threads")?;

    let progress = crate::progress::bar(n_layers as u64, "layers");
    let (runs, reference) = pool.install(|| -> Result<_> {
        let mut runs = Vec::with_capacity(n_layers);
        let mut reference = Vec::new();
        for (l, input) in loaded.layers.iter().enumerate() {
            runs.push(run_layer(&cfg, l, &thresholds.values[l], input)?);
            reference.extend(dense::attention(input, cfg.causal)?.data);
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
    summary.error_vs_dense = Some(error_stats(&output, &reference));
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
    if let Some(trace) = &a.trace {
        let mut header = trace_header(&cfg, &shape, n_layers, &a.input.display().to_string());
        header.provenance = Some(provenance(&cfg, Some(&thresholds)));
        let heads: Vec<_> = runs.iter().flat_map(|r| r.heads.iter()).collect();
        sprint_core::trace::write_trace(trace, &header, heads)?;
    }
    write_atomic(&a.out, |f| Ok(f.write_all(&bytes)?))?;

    if a.json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        print_summary(&summary, &cfg);
    }
    Ok(())
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

fn print_summary(s: &RunSummary, cfg: &AttentionConfig) {
    let mut t = Table::new();
    t.set_header(vec!["statistic", "value"]);
    let pct = |x: f64| format!("{:.2} %", 100.0 * x);
    let kib = |b: u64| format!("{:.1} KiB", b as f64 / 1024.0);
    t.add_row(vec![
        "variant".into(),
        format!("{} ({:?} recompute)", s.variant, cfg.recompute),
    ]);
    t.add_row(vec![
        "shape".into(),
        format!(
            "{} layer(s) x {} heads, {} queries x {} keys, d = {}",
            s.layers, s.heads, s.n_queries, s.n_keys, s.head_dim
        ),
    ]);
    t.add_row(vec![
        "kept fraction (moved on chip)".into(),
        pct(s.kept_fraction),
    ]);
    t.add_row(vec![
        "softmax fraction (after recheck)".into(),
        pct(s.softmax_fraction),
    ]);
    let f = &s.fetched_bytes;
    t.add_row(vec![
        "fetched from memory".into(),
        format!(
            "{} (K_MSB {}, K_LSB {}, V {}, Q {}, index {})",
            kib(f.total()),
            kib(f.k_msb),
            kib(f.k_lsb),
            kib(f.v),
            kib(f.q),
            kib(f.index)
        ),
    ]);
    t.add_row(vec!["reused on chip".into(), kib(s.reused_bytes.total())]);
    t.add_row(vec![
        "key reuse ratio (reused / kept)".into(),
        pct(s.key_reuse_ratio),
    ]);
    t.add_row(vec![
        "keys streamed (buffer full)".into(),
        s.streamed_keys.to_string(),
    ]);
    t.add_row(vec![
        format!("newly fetched per query ({} locality)", s.locality_policy),
        format!(
            "{} of the visible keys (paper: about 2.1 %)",
            pct(s.new_fetch_share)
        ),
    ]);
    for l in &s.per_layer {
        let st = &l.stats;
        if st.audited == 1 {
            t.add_row(vec![
                format!("layer {} comparator vs exact pruning", l.layer),
                format!(
                    "false-prune {} ({} of {} pairs), false-keep {}",
                    pct(l.false_prune_rate),
                    st.false_pruned,
                    st.exact_kept,
                    pct(l.false_keep_rate)
                ),
            ]);
        }
        if st.score_saturated + st.output_saturated > 0 {
            t.add_row(vec![
                format!("layer {} saturations", l.layer),
                format!(
                    "{} score codes, {} output elements",
                    st.score_saturated, st.output_saturated
                ),
            ]);
        }
    }
    if let Some(sec) = s.pass_seconds {
        t.add_row(vec![
            "attention time (median pass)".into(),
            format!("{:.1} ms", 1e3 * sec),
        ]);
    }
    if let Some(e) = &s.error_vs_dense {
        t.add_row(vec![
            "error vs dense f32".into(),
            format!(
                "max abs {:.3e}, relative {:.3e}, cosine {:.6}",
                e.max_abs, e.relative, e.cosine
            ),
        ]);
    }
    println!("{t}");
}
