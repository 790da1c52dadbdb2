//! `sprint assets status`'s table and the byte sizes of the fetch messages (the CLI prints
//! them).

use std::fmt::Write;

use comfy_table::Table;

use crate::{Asset, Cache, State, status};

/// A size in bytes with a decimal prefix, `12.3 MB` style (B, kB, MB, GB).
pub fn size_text(bytes: u64) -> String {
    let b = bytes as f64;
    if b >= 1e9 {
        format!("{:.2} GB", b / 1e9)
    } else if b >= 1e6 {
        format!("{:.1} MB", b / 1e6)
    } else if b >= 1e3 {
        format!("{:.1} kB", b / 1e3)
    } else {
        format!("{bytes} B")
    }
}

/// Every asset of `cache`: present or why not, size, whether its files' sha256 match (all
/// re-hashed when `verify`), folder; then the problems found and the command that fetches
/// the missing ones.
pub fn status_text(cache: &Cache, verify: bool) -> String {
    let mut table = Table::new();
    table.set_header(vec!["id", "present", "size", "sha256 ok", "path"]);
    let mut problems = Vec::new();
    for asset in Asset::ALL {
        let st = status(cache, asset, verify);
        let present = match st.state {
            State::Present => "yes".to_string(),
            other => format!("no ({})", other.name()),
        };
        let size = if st.state == State::Present || st.state == State::Stale {
            size_text(st.bytes)
        } else {
            "-".to_string()
        };
        let ok = match st.sha256_ok {
            Some(true) if verify => "yes (verified)".to_string(),
            Some(true) => "yes".to_string(),
            Some(false) => "NO".to_string(),
            None => "-".to_string(),
        };
        table.add_row(vec![
            asset.id().to_string(),
            present,
            size,
            ok,
            st.dir.display().to_string(),
        ]);
        if let Some(p) = st.problem {
            problems.push(format!("{}: {p}", asset.id()));
        }
    }
    let mut out = format!("cache: {}\n{table}\n", cache.root().display());
    for p in &problems {
        let _ = writeln!(out, "{p}");
    }
    let missing: Vec<&str> = Asset::ALL
        .into_iter()
        .filter(|a| !cache.is_present(*a))
        .map(Asset::id)
        .collect();
    if !missing.is_empty() {
        let _ = writeln!(
            out,
            "fetch the missing ones with `sprint assets fetch {}`",
            missing.join(" ")
        );
    }
    out
}
