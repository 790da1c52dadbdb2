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

/// Hardening of the grid commands (issue #29 rows 1, 3-6, 10, 13): shard files are checked
/// before anything is sized by them, every output (the implicit `.csv.json` included) is
/// distinct from every input and from the others before any work, `--svg` that cannot be
/// written is refused first, and a grid larger than the limit is refused at once. Each case
/// exits non-zero without a panic and leaves the inputs as they were.
#[test]
fn grid_outputs_and_shards_are_checked_before_work() {
    let d = tempfile::tempdir().unwrap();
    let grid = d.path().join("grid.toml");
    std::fs::write(&grid, GRID).unwrap();
    let parts: Vec<_> = (0..2).map(|i| d.path().join(format!("p{i}.csv"))).collect();
    for (i, p) in parts.iter().enumerate() {
        let shard = format!("{i}/2");
        ok(&[
            "sweep",
            "--grid",
            s(&grid),
            "--out",
            s(p),
            "--shard",
            &shard,
        ]);
    }
    let snapshot = |p: &Path| std::fs::read(p).unwrap();
    let before: Vec<_> = parts
        .iter()
        .flat_map(|p| [p.clone(), sprint_info(p)])
        .map(|p| (p.clone(), snapshot(&p)))
        .collect();
    let unchanged = || {
        for (p, b) in &before {
            assert_eq!(&snapshot(p), b, "{} was changed", p.display());
        }
    };
    let merged = d.path().join("m.csv");
    let merge_both = [
        "sweep",
        "merge",
        "--out",
        s(&merged),
        s(&parts[0]),
        s(&parts[1]),
    ];
    // Row 3: merge outputs that are inputs.
    for out in [s(&parts[0]).to_string(), format!("{}.json", s(&parts[0]))] {
        refused(
            &["sweep", "merge", "--out", &out, s(&parts[0]), s(&parts[1])],
            "--out",
        );
    }
    refused(
        &[
            "sweep",
            "merge",
            "--out",
            s(&merged),
            "--svg",
            s(&parts[1]),
            s(&parts[0]),
            s(&parts[1]),
        ],
        "--svg",
    );
    // Row 5: --svg onto the output's own info file.
    let info_of_merged = format!("{}.json", s(&merged));
    refused(
        &[
            "sweep",
            "merge",
            "--out",
            s(&merged),
            "--svg",
            &info_of_merged,
            s(&parts[0]),
            s(&parts[1]),
        ],
        "--svg",
    );
    unchanged();
    // Row 1: a huge "points" is refused before any allocation.
    let info1 = sprint_info(&parts[1]);
    let text = std::fs::read_to_string(&info1).unwrap();
    for huge in ["18446744073709551615", "1000000000000000"] {
        let edited = text.replacen("\"points\": 4", &format!("\"points\": {huge}"), 1);
        assert_ne!(edited, text);
        std::fs::write(&info1, &edited).unwrap();
        refused(
            &[
                "sweep",
                "merge",
                "--out",
                s(&merged),
                s(&parts[0]),
                s(&parts[1]),
            ],
            "points",
        );
    }
    std::fs::write(&info1, &text).unwrap();
    // Row 6: a shard whose last row is cut, or whose rows disagree with `covered`.
    let csv1 = std::fs::read_to_string(&parts[1]).unwrap();
    let cut: String = csv1
        .lines()
        .take(csv1.lines().count() - 1)
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&parts[1], &cut).unwrap();
    refused(&merge_both, "covers");
    let last = csv1.lines().last().unwrap();
    std::fs::write(&parts[1], format!("{csv1}{last}\n")).unwrap();
    refused(&merge_both, "rows");
    std::fs::write(&parts[1], &csv1).unwrap();
    assert!(!merged.exists(), "a refused merge wrote its output");
    ok(&[
        "sweep",
        "merge",
        "--out",
        s(&merged),
        s(&parts[0]),
        s(&parts[1]),
    ]);
    // Row 4 and 5: sweep --svg onto the grid file or onto --out's info file.
    let out = d.path().join("s.csv");
    refused(
        &[
            "sweep",
            "--grid",
            s(&grid),
            "--out",
            s(&out),
            "--svg",
            s(&grid),
        ],
        "--svg",
    );
    let out_info = format!("{}.json", s(&out));
    refused(
        &[
            "sweep",
            "--grid",
            s(&grid),
            "--out",
            s(&out),
            "--svg",
            &out_info,
        ],
        "--svg",
    );
    // Row 10: --svg that cannot be written (a shard; a grid without [pareto]) and a cache on
    // the output, refused before any point runs.
    let svg = d.path().join("p.svg");
    refused(
        &[
            "sweep",
            "--grid",
            s(&grid),
            "--out",
            s(&out),
            "--svg",
            s(&svg),
            "--shard",
            "0/2",
        ],
        "shard",
    );
    let plain = d.path().join("plain.toml");
    std::fs::write(&plain, GRID.split("[pareto]").next().unwrap()).unwrap();
    refused(
        &[
            "sweep",
            "--grid",
            s(&plain),
            "--out",
            s(&out),
            "--svg",
            s(&svg),
        ],
        "[pareto]",
    );
    refused(
        &[
            "sweep",
            "--grid",
            s(&grid),
            "--out",
            s(&out),
            "--cache",
            s(&out),
        ],
        "--cache",
    );
    assert!(
        !out.exists() && !svg.exists(),
        "a refused sweep left an output"
    );
    assert!(!Path::new(&out_info).exists());
    // Row 13: 10^9 and 10^24 points are refused at once.
    for (n, axes) in [(9, 3), (24, 8)] {
        let values: Vec<String> = (0..1000).map(|v| v.to_string()).collect();
        let mut g = String::from(
            "kind = \"simulate\"\ndesigns = [\"s-sprint\"]\nworkloads = [\"BERT-B\"]\n[axes]\n",
        );
        for k in 0..axes {
            g += &format!("\"memory.x{k}\" = [{}]\n", values.join(", "));
        }
        let big = d.path().join(format!("big{n}.toml"));
        std::fs::write(&big, g).unwrap();
        refused(&["sweep", "--grid", s(&big), "--out", s(&out)], "limit");
    }
    unchanged();
}

fn sprint_info(csv: &Path) -> std::path::PathBuf {
    Path::new(&format!("{}.json", s(csv))).to_path_buf()
}
