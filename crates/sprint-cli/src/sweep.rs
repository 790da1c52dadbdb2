//! `sprint sweep --grid FILE` and `sprint sweep merge`: grid sweeps of configuration keys,
//! resumable and shardable (docs/reproduce.md).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use indicatif::ProgressBar;
use sprint_reproduce::grid::{
    Grid, GridProgress, Shard, check_svg, info_path, merge, read_shard, run_grid, write_outcome,
};

/// Arguments of `sprint sweep`.
#[derive(clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct Args {
    #[command(subcommand)]
    command: Option<Sub>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(clap::Subcommand)]
enum Sub {
    /// Join shard CSVs (each with its `.csv.json`) into the CSV of the whole grid.
    Merge(MergeArgs),
}

#[derive(clap::Args)]
struct RunArgs {
    /// The grid file (TOML; keys in docs/reproduce.md).
    #[arg(long)]
    grid: Option<PathBuf>,
    /// Output CSV (its description is written beside it as CSV.json).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Pareto plot (SVG) of the grid's [pareto] columns; whole grids only.
    #[arg(long)]
    svg: Option<PathBuf>,
    /// Run one slice: points whose index is i modulo n.
    #[arg(long, default_value = "0/1", allow_hyphen_values = true)]
    shard: String,
    /// Cache of point results (resumes an interrupted run); default OUT.cache.
    #[arg(long)]
    cache: Option<PathBuf>,
    #[command(flatten)]
    threads: crate::args::Threads,
}

#[derive(clap::Args)]
struct MergeArgs {
    /// The merged CSV.
    #[arg(long)]
    out: PathBuf,
    /// Pareto plot (SVG) of the merged grid.
    #[arg(long)]
    svg: Option<PathBuf>,
    /// Shard CSVs.
    #[arg(required = true)]
    shards: Vec<PathBuf>,
}

struct Bar(ProgressBar);

impl sprint_eval::run::Progress for Bar {
    fn stage(&self, _what: &str, _len: u64) {}
    fn inc(&self, _n: u64) {}
}

impl GridProgress for Bar {
    fn point_done(&self, _index: usize, _cached: bool) {
        self.0.inc(1);
    }
}

/// Runs `sprint sweep`.
pub fn run(a: Args) -> Result<()> {
    if let Some(Sub::Merge(m)) = a.command {
        // Every shard and its info file are inputs; the merged CSV, its info file and the
        // plot are outputs: all distinct, checked before anything is read.
        let infos: Vec<PathBuf> = m.shards.iter().map(|p| info_path(p)).collect();
        let mut inputs: Vec<(&str, &Path)> = Vec::new();
        for (csv, info) in m.shards.iter().zip(&infos) {
            inputs.push(("shard", csv.as_path()));
            inputs.push(("shard info", info.as_path()));
        }
        let out_info = info_path(&m.out);
        let mut outputs = vec![
            ("--out", m.out.as_path()),
            ("--out's info file", out_info.as_path()),
        ];
        if let Some(svg) = &m.svg {
            outputs.push(("--svg", svg.as_path()));
        }
        sprint_core::outfile::check_outputs(&inputs, &outputs)?;
        let parts = m
            .shards
            .iter()
            .map(|p| read_shard(p))
            .collect::<sprint_reproduce::Result<Vec<_>>>()?;
        let o = merge(parts)?;
        write_outcome(&o, &m.out, m.svg.as_deref())?;
        println!("merged {} points into {}", o.info.points, m.out.display());
        return Ok(());
    }
    let r = a.run;
    let (Some(grid_path), Some(out)) = (r.grid, r.out) else {
        anyhow::bail!("give --grid FILE and --out CSV (or `sprint sweep merge`)");
    };
    let threads = r.threads.checked()?;
    let text = std::fs::read_to_string(&grid_path)
        .with_context(|| format!("--grid {}", grid_path.display()))?;
    let grid = Grid::from_toml_str(&text, &grid_path.display().to_string())?;
    let shard = Shard::parse(&r.shard)?;
    let out_info = info_path(&out);
    let mut outputs = vec![
        ("--out", out.as_path()),
        ("--out's info file", out_info.as_path()),
    ];
    if let Some(svg) = &r.svg {
        check_svg(&grid, shard)?;
        outputs.push(("--svg", svg.as_path()));
    }
    sprint_core::outfile::check_outputs(&[("--grid", grid_path.as_path())], &outputs)?;
    let cache_dir = r.cache.unwrap_or_else(|| {
        let mut s = out.as_os_str().to_os_string();
        s.push(".cache");
        s.into()
    });
    for (flag, p) in &outputs {
        if sprint_core::outfile::same_path(&cache_dir, p) {
            anyhow::bail!(
                "--cache {}: the same path as {flag}; give the cache its own folder",
                cache_dir.display()
            );
        }
    }
    let n = grid.points().iter().filter(|p| shard.owns(p.index)).count();
    let bar = crate::progress::bar(n as u64, "points");
    let assets = sprint_assets::Cache::from_env();
    let pool = crate::args::pool_of(threads)?;
    let progress = Bar(bar.clone());
    let o = pool.install(|| run_grid(&grid, shard, &cache_dir, &assets, &progress))?;
    bar.finish_and_clear();
    write_outcome(&o, &out, r.svg.as_deref())?;
    println!(
        "{} of {} points (shard {}/{}) -> {}",
        o.info.covered.len(),
        o.info.points,
        shard.index,
        shard.count,
        out.display()
    );
    Ok(())
}
