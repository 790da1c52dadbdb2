//! `sprint simulate --fit-paper` / `--decode` through the binary: bad fit inputs are refused
//! with the key named, a non-zero exit and no output file.

use std::process::Command;

fn sprint() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_sprint"));
    c.env_remove("RUST_BACKTRACE");
    c
}

fn refused(args: &[&str], needle: &str) {
    let o = sprint().args(args).output().unwrap();
    assert!(!o.status.success(), "{args:?} succeeded");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains(needle), "{args:?}: {err}");
    assert!(!err.contains("panicked"), "{args:?}: {err}");
}

#[test]
fn bad_fit_inputs_name_the_key_and_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("inferred.toml");
    let o = out.to_str().unwrap();
    for (range, needle) in [
        ("baseline_reuse=1,2", "baseline_reuse"),
        ("padding_synth=0.5..0.2", "empty search range"),
        ("padding_gpt2_l=", "padding_gpt2_l"),
        ("memory_channels=0", "memory_channels"),
    ] {
        refused(
            &[
                "simulate",
                "--fit-paper",
                "--fit-range",
                range,
                "--fit-out",
                o,
            ],
            needle,
        );
        assert!(!out.exists(), "{range}: an output file was written");
    }
    refused(
        &["simulate", "--fit-range", "padding_synth=0.1"],
        "--fit-range needs --fit-paper",
    );
    refused(
        &["simulate", "--fit-paper", "--workload", "BERT-B"],
        "--workload cannot be used with --fit-paper",
    );
    refused(
        &["simulate", "--fit-method", "joint"],
        "--fit-method needs --fit-paper",
    );
    refused(
        &["simulate", "--fit-paper", "--fit-method", "halfway"],
        "not a fit method (staged, joint)",
    );
}

#[test]
fn bad_decode_inputs_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("d.toml");
    std::fs::write(&f, "name = \"x\"\n").unwrap();
    refused(
        &[
            "simulate",
            "--preset",
            "s-sprint",
            "--decode",
            f.to_str().unwrap(),
        ],
        "missing field",
    );
    refused(
        &["simulate", "--decode"],
        "--decode needs at least one --preset",
    );
}

#[test]
fn modes_over_every_paper_workload_refuse_the_flags_they_would_ignore() {
    for (args, needle) in [
        (
            &["simulate", "--compare-peers", "--decode"][..],
            "--decode cannot be used with --compare-peers",
        ),
        (
            &["simulate", "--compare-peers", "--preset", "s-sprint"][..],
            "--preset cannot be used with --compare-peers",
        ),
        (
            &["simulate", "--fit-paper", "--workload", "BERT-B"][..],
            "--workload cannot be used with --fit-paper",
        ),
        (
            &["simulate", "--fit-paper", "--calibration", "x.toml"][..],
            "--calibration cannot be used with --fit-paper",
        ),
        (
            &["simulate", "--compare-paper", "--seq-len", "128"][..],
            "--seq-len cannot be used with --compare-paper",
        ),
        (
            &["simulate", "--peer-trace", "x.trace"][..],
            "--peer-trace needs --compare-peers",
        ),
    ] {
        refused(args, needle);
    }
}
