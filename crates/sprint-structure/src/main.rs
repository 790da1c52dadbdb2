//! `structure-check [WORKSPACE] [--allow FILE] [--top N] [--order]`: the structure check of
//! the workspace at `WORKSPACE` (default: the current folder) against the allow-list `FILE`
//! (default: `crates/sprint-structure/allow-list.txt`); `--top N` also lists the `N` longest
//! functions, `--order` each crate's modules in dependency order (docs/architecture.md).
//! Exit status 1 on a new finding or a stale allow-list entry, 2 on a usage or read error.

use std::path::PathBuf;
use std::process::ExitCode;

use sprint_structure::allow::AllowList;
use sprint_structure::check::{Finding, check};

/// The allow-list, relative to the workspace.
const DEFAULT_ALLOW: &str = "crates/sprint-structure/allow-list.txt";

fn main() -> ExitCode {
    match run() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("structure-check: {e}");
            ExitCode::from(2)
        }
    }
}

/// Runs the check and prints it; `Ok(false)` when it fails.
fn run() -> Result<bool, String> {
    let mut workspace = PathBuf::from(".");
    let mut allow = None;
    let mut top = 0usize;
    let mut order = false;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--allow" => allow = Some(PathBuf::from(args.next().ok_or("--allow needs a file")?)),
            "--top" => {
                let n = args.next().ok_or("--top needs a number")?;
                top = n.parse().map_err(|_| format!("--top: not a number: {n}"))?;
            }
            "--order" => order = true,
            "-h" | "--help" => {
                println!("usage: structure-check [WORKSPACE] [--allow FILE] [--top N] [--order]");
                return Ok(true);
            }
            _ if a.starts_with('-') => return Err(format!("unknown option {a}")),
            _ => workspace = PathBuf::from(a),
        }
    }
    let allow = allow.unwrap_or_else(|| workspace.join(DEFAULT_ALLOW));
    let text = std::fs::read_to_string(&allow).map_err(|e| format!("{}: {e}", allow.display()))?;
    let list = AllowList::parse(&text).map_err(|e| format!("{}: {e}", allow.display()))?;
    let mut outcome = check(&workspace).map_err(|e| format!("{}: {e}", workspace.display()))?;
    outcome
        .functions
        .sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
    for (lines, name) in outcome.functions.iter().take(top) {
        println!("{lines:5} {name}");
    }
    if order {
        for (krate, levels) in &outcome.order {
            println!("{krate}");
            for level in levels {
                println!("  - {}", level.join(", "));
            }
        }
    }
    let sorted = list.sort(outcome.findings);
    for f in &sorted.allowed {
        println!("warning: {} (allow-listed)", f.describe());
        print_evidence(f);
    }
    for f in &sorted.new {
        println!("error: {}", f.describe());
        print_evidence(f);
        println!(
            "    fix it, or name it in {}: `{}`",
            allow.display(),
            f.key()
        );
    }
    for s in &sorted.stale {
        println!(
            "error: allow-list entry `{s}` names nothing any more: remove it from {}",
            allow.display()
        );
    }
    for m in &outcome.missing {
        println!("warning: {m}: module file not found");
    }
    let failed = !sorted.new.is_empty() || !sorted.stale.is_empty();
    println!(
        "structure: {} crate roots, {} files, {} functions; {} allow-listed, {} new, {} stale: {}",
        outcome.roots,
        outcome.files,
        outcome.functions.len(),
        sorted.allowed.len(),
        sorted.new.len(),
        sorted.stale.len(),
        if failed { "FAILED" } else { "ok" }
    );
    Ok(!failed)
}

/// The uses that close a circle, one a line.
fn print_evidence(f: &Finding) {
    if let Finding::Circle { evidence, .. } = f {
        for e in evidence {
            println!("    {e}");
        }
    }
}
