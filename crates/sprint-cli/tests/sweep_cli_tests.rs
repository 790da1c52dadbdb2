//! `sprint sweep --grid` through the binary: two shards merged give byte for byte the CSV of
//! the unsharded run; a re-run is served from the cache with the same CSV; malformed grids
//! and shard sets are refused with the field named, a non-zero exit and no output file.

use std::path::Path;
use std::process::Command;

fn sprint() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_sprint"));
    c.env_remove("RUST_BACKTRACE");
    c
}

fn ok(args: &[&str]) -> String {
    let o = sprint().args(args).output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{args:?}: {err}");
    String::from_utf8_lossy(&o.stdout).to_string()
}

fn refused(args: &[&str], needle: &str) {
    let o = sprint().args(args).output().unwrap();
    assert!(!o.status.success(), "{args:?} succeeded");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains(needle), "{args:?}: {err}");
    assert!(!err.contains("panicked"), "{args:?}: {err}");
}

const GRID: &str = r#"
kind = "simulate"
designs = ["s-sprint"]
baseline = "s-baseline"
workloads = ["BERT-B"]
[axes]
"core.corelets" = [1, 2]
"memory.channels" = [2, 4]
[pareto]
x = "speedup"
y = "energy_reduction"
"#;

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn shards_merged_equal_the_unsharded_run_and_reruns_come_from_the_cache() {
    let d = tempfile::tempdir().unwrap();
    let grid = d.path().join("grid.toml");
    std::fs::write(&grid, GRID).unwrap();
    let all = d.path().join("all.csv");
    let svg = d.path().join("pareto.svg");
    ok(&[
        "sweep",
        "--grid",
        s(&grid),
        "--out",
        s(&all),
        "--svg",
        s(&svg),
        "--threads",
        "2",
    ]);
    let whole = std::fs::read_to_string(&all).unwrap();
    assert_eq!(whole.lines().count(), 1 + 4, "{whole}");
    assert!(
        whole.starts_with("point,design,workload,core.corelets,memory.channels,cycles (cycles)")
    );
    assert!(
        std::fs::read_to_string(&svg)
            .unwrap()
            .contains("Pareto front")
    );
    let mut parts = Vec::new();
    for i in 0..2 {
        let p = d.path().join(format!("part{i}.csv"));
        ok(&[
            "sweep",
            "--grid",
            s(&grid),
            "--out",
            s(&p),
            "--shard",
            &format!("{i}/2"),
            "--threads",
            "1",
        ]);
        parts.push(p);
    }
    assert_eq!(
        std::fs::read_to_string(&parts[0]).unwrap().lines().count(),
        1 + 2
    );
    let merged = d.path().join("merged.csv");
    ok(&[
        "sweep",
        "merge",
        "--out",
        s(&merged),
        s(&parts[0]),
        s(&parts[1]),
    ]);
    assert_eq!(std::fs::read_to_string(&merged).unwrap(), whole);
    // Re-run: every point from the cache, same bytes.
    std::fs::remove_file(&all).unwrap();
    ok(&["sweep", "--grid", s(&grid), "--out", s(&all)]);
    assert_eq!(std::fs::read_to_string(&all).unwrap(), whole);
    // A missing shard is named; nothing is written.
    let bad = d.path().join("bad.csv");
    refused(
        &["sweep", "merge", "--out", s(&bad), s(&parts[0])],
        "point 1 is in no shard",
    );
    refused(
        &[
            "sweep",
            "merge",
            "--out",
            s(&bad),
            s(&parts[0]),
            s(&parts[0]),
        ],
        "appears twice",
    );
    assert!(!bad.exists());
}

#[test]
fn malformed_grids_name_the_field() {
    let d = tempfile::tempdir().unwrap();
    let out = d.path().join("out.csv");
    for (text, needle) in [
        (
            "kind = \"simulate\"\nworkloads = [\"BERT-B\"]\n",
            "needs `designs` and `workloads`",
        ),
        (
            "kind = \"simulate\"\ndesigns = [\"s-sprint\"]\nworkloads = [\"BERT-B\"]\ncolour = 1\n",
            "colour",
        ),
        (
            "kind = \"simulate\"\ndesigns = [\"s-sprint\"]\nworkloads = [\"BERT-B\"]\n[axes]\n\"core.corelets\" = []\n",
            "axes.\"core.corelets\"",
        ),
        (
            "kind = \"simulate\"\ndesigns = [\"s-sprint\"]\nworkloads = [\"BERT-B\"]\n[axes]\n\"core.nonsense\" = [1]\n",
            "nonsense",
        ),
    ] {
        let g = d.path().join("g.toml");
        std::fs::write(&g, text).unwrap();
        refused(&["sweep", "--grid", s(&g), "--out", s(&out)], needle);
        assert!(!out.exists(), "{text}");
    }
    let g = d.path().join("g.toml");
    std::fs::write(&g, GRID).unwrap();
    refused(
        &["sweep", "--grid", s(&g), "--out", s(&out), "--shard", "2/2"],
        "--shard 2/2",
    );
}
