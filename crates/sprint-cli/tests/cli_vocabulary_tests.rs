//! One vocabulary across the subcommands: every `sprint <sub> --help` (and sub-subcommand) is
//! read, its long flags collected, and a flag that several subcommands declare must carry the
//! same help text in each (defaults and possible values aside, which may differ), except the
//! few listed in [`EXCEPTIONS`]; no two spellings of one idea are visible; every old spelling
//! still parses, with one deprecation note on stderr.

use std::collections::BTreeMap;
use std::process::Command;

fn sprint() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_sprint"));
    c.env_remove("RUST_BACKTRACE");
    c
}

/// Flags whose name several subcommands use for a thing of their own (what a command
/// writes, reads or slices): the subcommands listed may word it differently; the others
/// that declare the flag must agree. (flag, subcommands, why).
const EXCEPTIONS: &[(&str, &[&str], &str)] = &[
    (
        "out",
        &["attend", "synth", "reproduce", "sweep", "sweep merge"],
        "each command's own output (tensor file, report folder, CSV)",
    ),
    (
        "svg",
        &["sweep-sparsity", "sweep", "sweep merge"],
        "each command's own plot",
    ),
    (
        "trace",
        &["attend", "simulate", "eval"],
        "attend and eval write a trace, simulate replays one",
    ),
    (
        "shard",
        &["reproduce", "sweep"],
        "slices of stages against slices of grid points",
    ),
    (
        "padding",
        &["simulate"],
        "a workload's padding fraction, not synth's padding tokens",
    ),
    (
        "set",
        &["simulate"],
        "hardware-preset and energy-table keys, not attention-config keys",
    ),
    (
        "calibration",
        &["simulate"],
        "a file of fitted hardware parameters, not the threshold calibration method",
    ),
    (
        "cache",
        &["sweep"],
        "the grid's cache of point results, not the asset cache",
    ),
    (
        "seq-len",
        &[
            "simulate",
            "eval",
            "thresholds learn",
            "thresholds calibrate",
            "sweep-sparsity",
        ],
        "the sequences of each command, with their own defaults",
    ),
    (
        "limit",
        &[
            "eval",
            "thresholds learn",
            "thresholds calibrate",
            "sweep-sparsity",
        ],
        "evaluated items, or documents before the split, with each command's default",
    ),
];

/// Spellings of one idea: the visible name first, then the old spellings, which must not be
/// visible in any `--help`.
const IDEAS: &[&[&str]] = &[
    &["per-head", "per-layer"],
    &["calib-items", "calib"],
    &["calibration", "method"],
];

/// Old spellings that must still parse, each run with an input that fails for another
/// reason (the unknown task `nope`): the subcommand, the old spelling with its value, and the
/// new name the note points to.
const OLD_SPELLINGS: &[(&[&str], &[&str], &str)] = &[
    (&["eval"], &["--calib", "4"], "--calib-items"),
    (&["eval"], &["--method", "mass"], "--calibration"),
    (
        &["thresholds", "calibrate"],
        &["--items", "4"],
        "--calib-items",
    ),
    (
        &["thresholds", "calibrate"],
        &["--method", "mass"],
        "--calibration",
    ),
    (&["sweep-sparsity"], &["--calib=4"], "--calib-items"),
    (
        &["thresholds", "learn"],
        &["--per-layer"],
        "--per-head=false",
    ),
];

fn help(cmd: &[&str]) -> String {
    let out = sprint().args(cmd).arg("--help").output().unwrap();
    assert!(out.status.success(), "{cmd:?} --help failed");
    String::from_utf8(out.stdout).unwrap()
}

/// The lines of a help section (`Commands:`, `Options:`) up to the next heading.
fn section<'a>(text: &'a str, name: &str) -> Vec<&'a str> {
    let mut lines = text.lines();
    let mut out = Vec::new();
    if lines.by_ref().any(|l| l == format!("{name}:")) {
        for l in lines {
            if !l.is_empty() && !l.starts_with(' ') {
                break;
            }
            out.push(l);
        }
    }
    out
}

fn subcommand_names(text: &str) -> Vec<String> {
    section(text, "Commands")
        .iter()
        .filter(|l| l.starts_with("  ") && !l.starts_with("   "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| *n != "help")
        .map(String::from)
        .collect()
}

/// Every subcommand path whose `--help` lists options of its own.
fn commands() -> Vec<Vec<String>> {
    let mut all = Vec::new();
    for c in subcommand_names(&help(&[])) {
        let text = help(&[&c]);
        let subs = subcommand_names(&text);
        // `sprint sweep` runs a grid itself and has `merge` besides.
        if subs.is_empty() || text.contains("--grid") {
            all.push(vec![c.clone()]);
        }
        for s in subs {
            all.push(vec![c.clone(), s]);
        }
    }
    all
}

/// The long flags of a help text and their help, whitespace collapsed and the
/// `[default: ...]` and `[possible values: ...]` notes removed.
fn flags(text: &str) -> BTreeMap<String, String> {
    let mut entries: Vec<(String, String)> = Vec::new();
    for l in section(text, "Options") {
        let t = l.trim();
        if t.starts_with('-') {
            let Some(at) = t.find("--") else { continue };
            let name: String = t[at + 2..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
                .collect();
            let help = t.split_once("  ").map_or("", |(_, h)| h).to_string();
            entries.push((name, help));
        } else if let Some(last) = entries.last_mut() {
            last.1.push(' ');
            last.1.push_str(t);
        }
    }
    entries
        .into_iter()
        .filter(|(n, _)| n != "help" && n != "version")
        .map(|(n, h)| (n, normalise(&h)))
        .collect()
}

fn normalise(help: &str) -> String {
    let mut s = help.to_string();
    for note in ["[default: ", "[possible values: "] {
        while let Some(i) = s.find(note) {
            let end = s[i..].find(']').map_or(s.len(), |j| i + j + 1);
            s.replace_range(i..end, "");
        }
    }
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// flag -> (subcommand -> help).
fn vocabulary() -> BTreeMap<String, BTreeMap<String, String>> {
    let mut by_flag: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for cmd in commands() {
        let refs: Vec<&str> = cmd.iter().map(String::as_str).collect();
        for (flag, text) in flags(&help(&refs)) {
            by_flag.entry(flag).or_default().insert(cmd.join(" "), text);
        }
    }
    by_flag
}

#[test]
fn every_subcommand_is_read() {
    let cmds: Vec<String> = commands().iter().map(|c| c.join(" ")).collect();
    for want in [
        "assets fetch",
        "attend",
        "eval",
        "reproduce",
        "simulate",
        "sweep",
        "sweep merge",
        "sweep-sparsity",
        "synth",
        "thresholds learn",
        "thresholds calibrate",
    ] {
        assert!(
            cmds.iter().any(|c| c == want),
            "{want} not found in {cmds:?}"
        );
    }
    let v = vocabulary();
    assert!(v["threads"].len() >= 8, "{:?}", v["threads"].keys());
}

#[test]
fn a_shared_flag_has_one_help_text() {
    let mut problems = Vec::new();
    for (flag, uses) in vocabulary() {
        let excepted: &[&str] = EXCEPTIONS
            .iter()
            .find(|(f, _, _)| *f == flag)
            .map_or(&[], |(_, cmds, _)| cmds);
        let agreeing: BTreeMap<&String, &String> = uses
            .iter()
            .filter(|(c, _)| !excepted.contains(&c.as_str()))
            .collect();
        let mut texts: Vec<&&String> = agreeing.values().collect();
        texts.dedup();
        if texts.len() > 1 {
            problems.push(format!("--{flag}: {agreeing:#?}"));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    // An exception that no longer differs should leave the list.
    let v = vocabulary();
    for (flag, cmds, why) in EXCEPTIONS {
        let uses = &v[*flag];
        assert!(
            cmds.iter().all(|c| uses.contains_key(*c)),
            "--{flag} ({why}): {cmds:?} against {:?}",
            uses.keys()
        );
    }
}

#[test]
fn no_two_spellings_of_one_idea_are_visible() {
    let v = vocabulary();
    for idea in IDEAS {
        let (name, old) = (idea[0], &idea[1..]);
        assert!(v.contains_key(name), "--{name} is not visible anywhere");
        for o in old {
            if let Some(uses) = v.get(*o) {
                panic!("old spelling --{o} is visible in {:?}", uses.keys());
            }
        }
    }
    // `--items` stays the training items of `thresholds learn`, and only there.
    let items: Vec<&String> = v
        .get("items")
        .map(|u| u.keys().collect())
        .unwrap_or_default();
    assert_eq!(items, ["thresholds learn"], "--items");
}

#[test]
fn old_spellings_parse_with_one_deprecation_note() {
    let dir = tempfile::tempdir().unwrap();
    let o = dir.path().join("o");
    let o = o.to_str().unwrap();
    for (cmd, old, new) in OLD_SPELLINGS {
        let mut args: Vec<&str> = cmd.to_vec();
        args.extend(["--model", "minilm", "--task", "nope"]);
        match cmd[..] {
            ["thresholds", "calibrate"] => args.extend(["-o", o, "--target", "0.5"]),
            ["thresholds", "learn"] => args.extend(["-o", o]),
            ["sweep-sparsity"] => args.extend(["--csv", o, "--svg", o]),
            _ => {}
        }
        args.extend_from_slice(old);
        let out = sprint().args(&args).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        let spelling = old[0].split('=').next().unwrap();
        let note = format!("note: `{spelling}` is deprecated; use `{new}`");
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert_eq!(err.matches("is deprecated").count(), 1, "{args:?}: {err}");
        let lines: Vec<&str> = err.lines().collect();
        assert_eq!(lines.len(), 2, "{args:?}: {err}");
        assert_eq!(lines[0], note, "{args:?}");
        assert!(
            lines[1].starts_with("error: unknown task `nope`"),
            "{args:?}: {err}"
        );
        assert!(!dir.path().join("o").exists());
    }
    // The new spellings print no note.
    let out = sprint()
        .args(["eval", "--model", "minilm", "--task", "nope"])
        .args(["--calib-items", "4", "--calibration", "mass", "--per-head"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(!err.contains("deprecated"), "{err}");
    assert!(err.starts_with("error: unknown task `nope`"), "{err}");
}

#[test]
fn per_layer_and_per_head_false_are_one_choice() {
    // `thresholds learn` learns per head by default: `--per-head=false` (or the old
    // `--per-layer`) learns one threshold per layer, and refuses `--init-per-head`.
    for (flag, says) in [
        ("--per-head=false", "--per-head=false learns one per layer"),
        ("--per-layer", "--per-layer learns one per layer"),
    ] {
        let out = sprint()
            .args(["thresholds", "learn", "--model", "minilm", "--task", "bbc"])
            .args(["-o", "/nonexistent/th.toml", flag, "--init-per-head"])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(err.contains(says), "{flag}: {err}");
    }
    // Both spellings at once are refused by the parser.
    let out = sprint()
        .args(["thresholds", "learn", "--model", "minilm", "--task", "bbc"])
        .args(["-o", "/nonexistent/th.toml", "--per-layer", "--per-head"])
        .output()
        .unwrap();
    assert!(!out.status.success());
}
