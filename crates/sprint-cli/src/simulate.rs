//! `sprint simulate`: performance and energy of SPRINT and its baselines on a paper workload
//! or a trace, optionally side by side with the paper.

use std::fs::File;
use std::io::{BufReader, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Result, anyhow, bail};
use serde_json::{Value, json};
use sprint_core::trace::TraceReader;
use sprint_sim::calibration::Calibration;
use sprint_sim::decode::{DecodeFile, DecodeTrace, run_decode, run_decode_trace, summarise};
use sprint_sim::fit::{Space, fit};
use sprint_sim::paper::compare_many;
use sprint_sim::paper_tables::{comparison_text, summaries_text};
use sprint_sim::peer_traces::peer_trace_rows;
use sprint_sim::peers::{compare_peers, peers_text};
use sprint_sim::presets::{load_design, load_energy, preset_names};
use sprint_sim::report::build;
use sprint_sim::run::{run_model, run_trace};
use sprint_sim::simulate::{Outcome, json_document, split_sets, workload_label};
use sprint_sim::text::{decode_json, decode_text, designs_text, fit_text};
use sprint_sim::workload::{model_workload, workload_names};
use sprint_sim::wstats::{StatsFile, measure};

use crate::io::write_atomic;

/// Arguments of `sprint simulate`.
#[derive(clap::Args)]
#[command(allow_negative_numbers = true)]
pub struct Args {
    /// Hardware preset (built-in name or TOML file); repeat to compare designs. Ratios are
    /// against the first. Built-in: s-sprint, m-sprint, l-sprint, s-baseline, m-baseline,
    /// l-baseline, pruning, mask-only, sprint-no-reuse, sanger, leopard, leopard-published.
    #[arg(long = "preset")]
    presets: Vec<String>,
    /// Paper workload: BERT-B, BERT-L, ALBERT-XL, ALBERT-XXL, ViT-B, GPT-2-L, Synth-1, Synth-2.
    #[arg(long)]
    workload: Option<String>,
    /// Replay an attention trace (docs/trace-format.md). With --workload, its shape must agree.
    /// With --decode: a causal trace whose row t gives decode step t's kept sets.
    #[arg(long)]
    trace: Option<PathBuf>,
    /// Override a preset value, e.g. memory.trcd_ns=30 (applies to every preset), or an
    /// energy-table value with the `energy.` prefix, e.g. energy.reram.read_pj_per_bit=1.0.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    sets: Vec<String>,
    /// Energy table: default, optimistic, conservative, or a TOML file [default: default].
    #[arg(long, value_name = "TABLE")]
    energy: Option<String>,
    /// Workload statistics for synthetic kept sets (TOML); the built-in defaults (configs/workload-stats/default.toml) if omitted.
    #[arg(long)]
    stats: Option<PathBuf>,
    /// Override the workload's sequence length (tokens).
    #[arg(long)]
    seq_len: Option<u32>,
    /// Override the workload's padding fraction (0 <= f < 1).
    #[arg(long)]
    padding: Option<f64>,
    #[command(flatten)]
    threads: crate::args::Threads,
    #[arg(long, help = crate::args::JSON_HELP)]
    json: bool,
    /// Run every paper workload and print the comparison with the paper's Figs 10-12.
    #[arg(long)]
    compare_paper: bool,
    /// Run SPRINT, its baselines and the peer designs (Sanger, LeOPArd, A3, SpAtten,
    /// Energon) on every paper workload at one technology, memory and buffer budget, and
    /// each at its published configuration beside Table III.
    #[arg(long)]
    compare_peers: bool,
    /// With --compare-peers: also replay this trace (repeatable) on the design of its
    /// variant (`sprint` on M-SPRINT, `sanger`, `leopard`, `a3`, `spatten`, `energon` on
    /// the peer), beside S-Baseline on the same trace.
    #[arg(long, value_name = "FILE")]
    peer_trace: Vec<PathBuf>,
    /// With --trace: write the trace's workload statistics to this TOML file.
    #[arg(long)]
    measure_stats: Option<PathBuf>,
    /// With --compare-paper: the calibration shown beside the sourced default (a TOML file;
    /// the embedded configs/presets/paper-inferred.toml if omitted).
    #[arg(long, value_name = "FILE")]
    calibration: Option<PathBuf>,
    /// Fit the parameters the paper does not publish to Fig 10 and Fig 12a's Baseline
    /// shares (grid search, objective printed) and write the paper-inferred calibration.
    #[arg(long)]
    fit_paper: bool,
    /// With --fit-paper: search NAME over `v1,v2,...` or `lo..hi:step` instead of its
    /// default grid (repeatable). Names: baseline_query_block_per_corelet,
    /// baseline_query_block_shared, baseline_resident_buffer_fraction,
    /// baseline_tile_double_buffered, padding_gpt2_l, padding_synth, memory_channels,
    /// memory_channels_per_corelet, prefetch_queries, scoring_pipelined.
    #[arg(long = "fit-range", value_name = "NAME=RANGE")]
    fit_ranges: Vec<String>,
    /// With --fit-paper: `staged` (the baseline's block and the paddings from Fig 10's
    /// Mask-only bars and Fig 12a's shares, then SPRINT's locality policy from SPRINT's
    /// bars) or `joint` (everything on every cell at once).
    /// Default: staged.
    #[arg(long, value_name = "METHOD")]
    fit_method: Option<sprint_sim::fit::FitMethod>,
    /// Decode with a growing KV cache under the --preset designs: `smollm2` (the embedded
    /// configs/decode/smollm2.toml, the default) or a decode TOML file.
    #[arg(long, value_name = "CONFIG", num_args = 0..=1, default_missing_value = "smollm2")]
    decode: Option<String>,
    /// With --fit-paper: where to write the calibration.
    #[arg(
        long,
        value_name = "FILE",
        default_value = "configs/presets/paper-inferred.toml"
    )]
    fit_out: PathBuf,
}

/// `trace FILE: problem`, with the reader's placeholder stream name replaced by the file.
fn trace_error(path: &Path, e: impl std::fmt::Display) -> anyhow::Error {
    let msg = e.to_string();
    let msg = msg
        .strip_prefix("<stream>: ")
        .unwrap_or(&msg)
        .replace("<stream>", "");
    anyhow!("trace {}: {msg}", path.display())
}

fn open_trace(path: &Path) -> Result<TraceReader<BufReader<File>>> {
    if path.is_dir() {
        bail!("trace {}: is a folder, not a trace file", path.display());
    }
    let f = File::open(path).map_err(|e| trace_error(path, e))?;
    TraceReader::new(BufReader::new(f)).map_err(|e| trace_error(path, e))
}

/// Refuses flags that the chosen mode would ignore.
fn check_flags(a: &Args) -> Result<()> {
    let refuse = |flag: &str, why: &str| -> Result<()> { bail!("{flag} {why}") };
    // The first flag given among `flags` (given, name) is refused with `why`.
    let refuse_any = |flags: &[(bool, &str)], why: &str| -> Result<()> {
        match flags.iter().find(|(given, _)| *given) {
            Some((_, flag)) => refuse(flag, why),
            None => Ok(()),
        }
    };
    // What the modes over every paper workload choose themselves.
    let workload_flags = [
        (!a.presets.is_empty(), "--preset"),
        (a.workload.is_some(), "--workload"),
        (a.trace.is_some(), "--trace"),
        (a.seq_len.is_some(), "--seq-len"),
        (a.padding.is_some(), "--padding"),
        (a.measure_stats.is_some(), "--measure-stats"),
    ];
    if a.compare_paper {
        refuse_any(
            &workload_flags,
            "cannot be used with --compare-paper (it runs the paper's designs on every paper workload)",
        )?;
    }
    if !a.compare_peers && !a.peer_trace.is_empty() {
        refuse(
            "--peer-trace",
            "needs --compare-peers (use --trace to replay a trace on --preset designs)",
        )?;
    }
    if a.compare_peers {
        refuse_any(
            &[
                &workload_flags[..],
                &[
                    (a.compare_paper, "--compare-paper"),
                    (a.calibration.is_some(), "--calibration"),
                    (a.fit_paper, "--fit-paper"),
                    (a.decode.is_some(), "--decode"),
                ],
            ]
            .concat(),
            "cannot be used with --compare-peers (it runs its designs on every paper workload)",
        )?;
    }
    if a.fit_paper {
        refuse_any(
            &[
                &workload_flags[..],
                &[
                    (a.compare_paper, "--compare-paper"),
                    (a.calibration.is_some(), "--calibration"),
                ],
            ]
            .concat(),
            "cannot be used with --fit-paper (it fits over every paper workload)",
        )?;
    } else if !a.fit_ranges.is_empty() {
        refuse("--fit-range", "needs --fit-paper")?;
    } else if a.fit_method.is_some() {
        refuse("--fit-method", "needs --fit-paper")?;
    }
    if a.calibration.is_some() && !a.compare_paper {
        refuse("--calibration", "needs --compare-paper")?;
    }
    if a.measure_stats.is_some() {
        refuse_any(
            &[
                (!a.presets.is_empty(), "--preset"),
                (a.workload.is_some(), "--workload"),
                (a.seq_len.is_some(), "--seq-len"),
                (a.padding.is_some(), "--padding"),
                (a.stats.is_some(), "--stats"),
                (!a.sets.is_empty(), "--set"),
                (a.energy.is_some(), "--energy"),
                (a.compare_paper, "--compare-paper"),
                (a.json, "--json"),
            ],
            "cannot be used with --measure-stats (it only measures the trace)",
        )?;
    }
    if a.trace.is_some() {
        refuse_any(
            &[
                (a.seq_len.is_some(), "--seq-len"),
                (a.padding.is_some(), "--padding"),
                (a.stats.is_some(), "--stats"),
            ],
            "cannot be used with --trace (the trace fixes the shape, the padding and the kept sets)",
        )?;
    }
    Ok(())
}

/// Runs `sprint simulate`.
pub fn run(a: Args) -> Result<()> {
    let threads = a.threads.checked()?;
    check_flags(&a)?;
    if let Some(out) = &a.measure_stats {
        let mut inputs: Vec<(&str, &Path)> = Vec::new();
        if let Some(t) = &a.trace {
            inputs.push(("--trace", t));
        }
        sprint_core::outfile::check_outputs(&inputs, &[("--measure-stats", out)])?;
    }
    let pool = crate::args::pool_of(threads)?;
    let (hw_sets, energy_sets) = split_sets(&a.sets);
    let table = load_energy(a.energy.as_deref().unwrap_or("default"), &energy_sets)?;
    let stats = match &a.stats {
        Some(p) => {
            let text =
                std::fs::read_to_string(p).map_err(|e| anyhow!("--stats {}: {e}", p.display()))?;
            StatsFile::from_toml_str(&text, &p.display().to_string())?
        }
        None => StatsFile::default_stats(),
    };
    let started = Instant::now();

    if let Some(out) = &a.measure_stats {
        return measure_stats_cmd(&a, out, &stats);
    }
    if a.fit_paper {
        return fit_paper_cmd(&a, &table, &stats, &hw_sets, &pool, started);
    }
    if let Some(cfg) = &a.decode {
        return run_decode_cmd(&a, cfg, &hw_sets, &table, &stats, &pool, started);
    }

    if a.compare_paper {
        return compare_paper_cmd(&a, &table, &stats, &hw_sets, &pool, started);
    }
    if a.compare_peers {
        return compare_peers_cmd(&a, &table, &stats, &hw_sets, &pool, started);
    }
    simulate_designs(&a, &table, &stats, &hw_sets, &pool, started)
}

/// `--measure-stats FILE`: the kept-set statistics of `--trace`, written as a stats file.
fn measure_stats_cmd(a: &Args, out: &Path, stats: &StatsFile) -> Result<()> {
    let Some(trace) = &a.trace else {
        bail!("--measure-stats needs --trace FILE");
    };
    let m = measure(open_trace(trace)?).map_err(|e| trace_error(trace, e))?;
    let name = out
        .file_stem()
        .map_or("measured".into(), |s| s.to_string_lossy().to_string());
    let text = m.to_toml(
        &name,
        &format!("trace file {}", trace.display()),
        stats.seed,
    );
    write_atomic(out, |f| Ok(f.write_all(text.as_bytes())?))?;
    println!("wrote {}: {}", out.display(), m.summary_line());
    Ok(())
}

/// `--fit-paper`: fits the unpublished constants to the paper's figures and writes the
/// calibration to `--fit-out`.
fn fit_paper_cmd(
    a: &Args,
    table: &sprint_sim::EnergyTable,
    stats: &StatsFile,
    hw_sets: &[String],
    pool: &rayon::ThreadPool,
    started: Instant,
) -> Result<()> {
    let mut space = Space::default_grid();
    for r in &a.fit_ranges {
        space.set_range(r)?;
    }
    sprint_core::outfile::check_outputs(&[], &[("--fit-out", &a.fit_out)])?;
    let quiet = a.json;
    let out = pool.install(|| {
        fit(
            &space,
            a.fit_method.unwrap_or_default(),
            table,
            stats,
            hw_sets,
            |m| {
                if !quiet {
                    eprintln!("fitting on {m} ...");
                }
            },
        )
    })?;
    let text = out.calibration.to_toml();
    write_atomic(&a.fit_out, |f| Ok(f.write_all(text.as_bytes())?))?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        print!("{}", fit_text(&out, &a.fit_out));
        eprintln!("done in {:.1} s", started.elapsed().as_secs_f64());
    }
    Ok(())
}

/// `--compare-paper`: every paper workload under the sourced default and the paper-inferred
/// calibration, against the paper's figures.
fn compare_paper_cmd(
    a: &Args,
    table: &sprint_sim::EnergyTable,
    stats: &StatsFile,
    hw_sets: &[String],
    pool: &rayon::ThreadPool,
    started: Instant,
) -> Result<()> {
    let quiet = a.json;
    let inferred = match &a.calibration {
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .map_err(|e| anyhow!("--calibration {}: {e}", p.display()))?;
            Calibration::from_toml_str(&text, &p.display().to_string())?
        }
        None => Calibration::paper_inferred()?,
    };
    let cals = [Calibration::sourced_default(), inferred];
    if !quiet {
        eprintln!(
            "simulating every paper workload under {} and {} ...",
            cals[0].name, cals[1].name
        );
    }
    // Progress in steps of 10 % of the heads (workers report as heads finish).
    let shown = std::sync::atomic::AtomicUsize::new(0);
    let cmps = pool.install(|| {
        compare_many(hw_sets, table, stats, &cals, |done, total| {
            let tenth = 10 * done / total.max(1);
            if !quiet && shown.fetch_max(tenth, std::sync::atomic::Ordering::Relaxed) < tenth {
                eprintln!("  {}% of {total} heads", 10 * tenth);
            }
        })
    })?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&cmps)?);
    } else {
        for c in &cmps {
            print!("{}", comparison_text(c));
        }
        print!("{}", summaries_text(&cmps));
        eprintln!("done in {:.1} s", started.elapsed().as_secs_f64());
    }
    Ok(())
}

/// `--compare-peers`: SPRINT, its baselines and the peers on every paper workload at one
/// technology, and each at its published configuration beside Table III.
fn compare_peers_cmd(
    a: &Args,
    table: &sprint_sim::EnergyTable,
    stats: &StatsFile,
    hw_sets: &[String],
    pool: &rayon::ThreadPool,
    started: Instant,
) -> Result<()> {
    let quiet = a.json;
    if !quiet {
        eprintln!("simulating SPRINT and its peers on every paper workload ...");
    }
    let shown = std::sync::atomic::AtomicUsize::new(0);
    let mut c = pool.install(|| {
        compare_peers(hw_sets, table, stats, |done, total| {
            let tenth = 10 * done / total.max(1);
            if !quiet && shown.fetch_max(tenth, std::sync::atomic::Ordering::Relaxed) < tenth {
                eprintln!("  {}% of {total} heads", 10 * tenth);
            }
        })
    })?;
    let mut readers = Vec::new();
    for p in &a.peer_trace {
        readers.push((p.display().to_string(), open_trace(p)?));
    }
    c.traces = pool.install(|| peer_trace_rows(readers, hw_sets, table))?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&c)?);
    } else {
        print!("{}", peers_text(&c));
        eprintln!("done in {:.1} s", started.elapsed().as_secs_f64());
    }
    Ok(())
}

/// The designs of `--preset` on `--workload` or `--trace`: the report as text or JSON.
fn simulate_designs(
    a: &Args,
    table: &sprint_sim::EnergyTable,
    stats: &StatsFile,
    hw_sets: &[String],
    pool: &rayon::ThreadPool,
    started: Instant,
) -> Result<()> {
    if a.presets.is_empty() {
        bail!(
            "give at least one --preset ({}), or --compare-paper",
            preset_names().join(", ")
        );
    }
    let designs = a
        .presets
        .iter()
        .map(|p| load_design(p, hw_sets))
        .collect::<sprint_sim::Result<Vec<_>>>()?;
    let mut workload = match &a.workload {
        Some(w) => Some(model_workload(w)?),
        None => None,
    };
    if let Some(w) = &mut workload {
        if let Some(n) = a.seq_len {
            w.seq_len = n;
        }
        if let Some(p) = a.padding {
            w.padding_fraction = p;
        }
        w.validate()?;
    }
    let (label, totals, stats_source) = match (&a.trace, &workload) {
        (Some(path), w) => {
            let reader = open_trace(path)?;
            let (h, t) = pool
                .install(|| run_trace(&designs, reader, w.as_ref()))
                .map_err(|e| match e {
                    sprint_sim::SimError::Core(c) => trace_error(path, c),
                    other => other.into(),
                })?;
            if h.n_queries == 0 || h.n_keys == 0 {
                eprintln!(
                    "warning: trace {} has {} queries x {} keys: nothing to simulate, ratios are n/a",
                    path.display(),
                    h.n_queries,
                    h.n_keys
                );
            }
            (
                format!(
                    "trace {} ({}, {} layers x {} heads, {} tokens, d = {})",
                    path.display(),
                    h.workload,
                    h.layers,
                    h.heads,
                    h.n_queries,
                    h.head_dim
                ),
                t,
                format!("kept sets from the trace (variant {})", h.variant),
            )
        }
        (None, Some(w)) => {
            let st = stats.resolve(&w.name);
            let t = pool.install(|| run_model(&designs, w, &st))?;
            (workload_label(w), t, st.source)
        }
        (None, None) => bail!(
            "give --workload NAME ({}) or --trace FILE",
            workload_names().join(", ")
        ),
    };
    let reports = build(&designs, table, &totals)?;
    let elapsed = started.elapsed().as_secs_f64();
    if a.json {
        let outcome = Outcome {
            label,
            stats_source,
            reports,
        };
        let mut doc = json_document(&outcome, &designs, table);
        doc.insert("wall_seconds".into(), json!(elapsed));
        doc.insert("peak_rss_bytes".into(), json!(peak_rss_bytes()));
        println!("{}", serde_json::to_string_pretty(&Value::Object(doc))?);
    } else {
        println!("workload: {label}");
        println!("kept sets: {stats_source}");
        println!("energy table: {}", table.name());
        print!("{}", designs_text(&reports));
        eprintln!(
            "simulated in {elapsed:.2} s, peak memory {}",
            peak_rss_bytes().map_or("n/a".into(), |b| format!("{:.0} MiB", b as f64 / 1048576.0))
        );
    }
    Ok(())
}

/// `--decode`: the designs on a decode configuration, with write share and endurance.
fn run_decode_cmd(
    a: &Args,
    cfg: &str,
    hw_sets: &[String],
    table: &sprint_sim::EnergyTable,
    stats: &StatsFile,
    pool: &rayon::ThreadPool,
    started: Instant,
) -> Result<()> {
    for (given, flag) in [
        (a.workload.is_some(), "--workload"),
        (a.seq_len.is_some(), "--seq-len"),
        (a.padding.is_some(), "--padding"),
        (a.compare_paper, "--compare-paper"),
        (a.fit_paper, "--fit-paper"),
    ] {
        if given {
            bail!("{flag} cannot be used with --decode (the decode configuration fixes the shape)");
        }
    }
    if a.presets.is_empty() {
        bail!("--decode needs at least one --preset");
    }
    let file = if cfg.eq_ignore_ascii_case("smollm2") {
        DecodeFile::smollm2()?
    } else {
        let text = std::fs::read_to_string(cfg).map_err(|e| anyhow!("--decode {cfg}: {e}"))?;
        DecodeFile::from_toml_str(&text, cfg)?
    };
    let designs = a
        .presets
        .iter()
        .map(|p| load_design(p, hw_sets))
        .collect::<sprint_sim::Result<Vec<_>>>()?;
    let st = stats.resolve("GPT-2-L");
    let (out, kept_source) = match &a.trace {
        Some(path) => {
            let trace = DecodeTrace::read(open_trace(path)?, &file).map_err(|e| match e {
                sprint_sim::SimError::Core(c) => trace_error(path, c),
                other => anyhow!("trace {}: {other}", path.display()),
            })?;
            let src = format!(
                "trace {} ({}, variant {}; row t of the causal trace = decode step t)",
                path.display(),
                trace.header.workload,
                trace.header.variant
            );
            (
                pool.install(|| run_decode_trace(&designs, &file, &trace))?,
                src,
            )
        }
        None => (
            pool.install(|| run_decode(&designs, &file, &st))?,
            format!(
                "{} (generator, causal rows of the growing cache)",
                st.source
            ),
        ),
    };
    let totals: Vec<_> = out.iter().map(|o| o.with_stalls()).collect();
    let reports = build(&designs, table, &totals)?;
    let summaries = summarise(&reports, &out, &file);
    if a.json {
        let doc = decode_json(&file, &kept_source, &reports, &summaries);
        println!("{}", serde_json::to_string_pretty(&doc)?);
        return Ok(());
    }
    print!("{}", decode_text(&file, &kept_source, &summaries));
    eprintln!("simulated in {:.2} s", started.elapsed().as_secs_f64());
    Ok(())
}

/// Peak resident memory of this process (Linux `VmHWM`), bytes.
fn peak_rss_bytes() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}
