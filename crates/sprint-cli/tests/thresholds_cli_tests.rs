//! `sprint thresholds` and `sprint sweep-sparsity` refuse bad arguments before any work:
//! one line naming what is wrong, a non-zero exit, no output file.

use std::process::Command;

fn sprint() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_sprint"));
    c.env_remove("RUST_BACKTRACE");
    c
}

fn refused(args: &[&str], needle: &str) {
    let out = sprint().args(args).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{args:?} succeeded");
    assert!(err.contains(needle), "{args:?}: {err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn bad_arguments_are_refused_without_output() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("th.toml");
    let o = out.to_str().unwrap();
    refused(
        &[
            "thresholds",
            "calibrate",
            "--model",
            "minilm",
            "--task",
            "bbc",
            "-o",
            o,
            "--target",
            "2",
        ],
        "--target must be in (0, 1]",
    );
    refused(
        &[
            "thresholds",
            "calibrate",
            "--model",
            "minilm",
            "--task",
            "bbc",
            "-o",
            o,
            "--target",
            "0.5",
            "--method",
            "median",
        ],
        "--method must be quantile or mass",
    );
    refused(
        &[
            "thresholds",
            "learn",
            "--model",
            "minilm",
            "--task",
            "nope",
            "-o",
            o,
        ],
        "nope",
    );
    let learn = |extra: &[&str], needle: &str| {
        let mut args = vec![
            "thresholds",
            "learn",
            "--model",
            "minilm",
            "--task",
            "bbc",
            "-o",
            o,
        ];
        args.extend_from_slice(extra);
        refused(&args, needle);
    };
    learn(&["--datapath-set", "noise.preset=typical"], "--datapath");
    learn(
        &["--datapath", "--datapath-set", "variant=runtime-pruning"],
        "in-memory variant",
    );
    learn(
        &["--datapath", "--datapath-set", "quant.k_msb_bits=9"],
        "quant.k_msb_bits: must be in 1..=8",
    );
    let csv = dir.path().join("s.csv");
    let svg = dir.path().join("s.svg");
    refused(
        &[
            "sweep-sparsity",
            "--model",
            "minilm",
            "--task",
            "bbc",
            "--csv",
            csv.to_str().unwrap(),
            "--svg",
            svg.to_str().unwrap(),
            "--file",
            "learned=/no/such/file.toml",
        ],
        "does not exist",
    );
    refused(
        &[
            "sweep-sparsity",
            "--model",
            "minilm",
            "--task",
            "bbc",
            "--csv",
            csv.to_str().unwrap(),
            "--svg",
            svg.to_str().unwrap(),
            "--targets",
            "0.2,1.5",
        ],
        "--targets: 1.5 is not in (0, 1]",
    );
    refused(
        &[
            "sweep-sparsity",
            "--model",
            "minilm",
            "--task",
            "bbc",
            "--csv",
            csv.to_str().unwrap(),
            "--svg",
            svg.to_str().unwrap(),
            "--set",
            "noise.bogus=1",
        ],
        "unknown field `bogus`",
    );
    assert!(!out.exists() && !csv.exists() && !svg.exists());
}
