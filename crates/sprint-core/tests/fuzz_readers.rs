//! Bounded fuzzing (proptest, a fixed number of cases in the normal test run) of the text
//! readers of this crate: attention configs and thresholds files. A valid file is mutated
//! with hostile tokens; the reader must return a value that validates or a one-line error,
//! and never panic. (The trace reader has its own generators in trace_tests.rs.)

use proptest::prelude::*;
use sprint_core::config::{AttentionConfig, ThresholdFile};

const CONFIG: &str = include_str!("../configs/attention/sprint.toml");

/// Tokens that have broken readers before: huge, negative, non-finite, wrong types,
/// stray syntax, duplicate sections.
const NASTY: &[&str] = &[
    "-1",
    "0",
    "1e30",
    "-1e30",
    "nan",
    "inf",
    "-inf",
    "4294967296",
    "18446744073709551616",
    "\"x\"",
    "true",
    "[]",
    "[1, 2, 3]",
    "{}",
    "=",
    "[",
    "]",
    "\n[quant]\n",
    "\n[noise]\n",
    "\u{0}",
    "\"\\u0000\"",
    "1.5",
    "-0",
    "9999999999",
    "[threshold]\nfile = \"/\"\n",
];

/// `text` with the edits applied, tokens from [`NASTY`].
fn mutate(text: &str, edits: &[(usize, usize, bool)]) -> String {
    sprint_core::fuzz::mutate(text, edits, NASTY)
}

fn one_line(e: &impl std::fmt::Display) -> bool {
    // Messages may carry the parser's multi-line excerpt; the CLI folds them. They must at
    // least be non-empty.
    !e.to_string().trim().is_empty()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn attention_config_reader_never_panics(
        edits in proptest::collection::vec((any::<usize>(), any::<usize>(), any::<bool>()), 1..5)
    ) {
        let text = mutate(CONFIG, &edits);
        match AttentionConfig::from_toml_str(&text, "fuzz.toml") {
            Ok(cfg) => {
                prop_assert!(cfg.validate().is_ok());
                let _ = cfg.thresholds(3, 4);
            }
            Err(e) => prop_assert!(one_line(&e)),
        }
    }

    #[test]
    fn attention_config_random_text_never_panics(text in "[ -~\n]{0,300}") {
        let _ = AttentionConfig::from_toml_str(&text, "fuzz.toml");
    }

    #[test]
    fn thresholds_file_reader_never_panics(
        layers in 0usize..5,
        heads in 0usize..5,
        values in proptest::collection::vec(prop_oneof![
            Just("nan".to_string()), Just("inf".to_string()), Just("-inf".to_string()),
            Just("1e39".to_string()), Just("\"a\"".to_string()), (-10.0f32..10.0).prop_map(|x| x.to_string()),
        ], 0..6),
        per_head in any::<bool>(),
        edits in proptest::collection::vec((any::<usize>(), any::<usize>(), any::<bool>()), 0..3),
    ) {
        let list = format!("[{}]", values.join(", "));
        let text = if per_head {
            format!("per_head = [{list}, {list}]\n")
        } else {
            format!("per_layer = {list}\n[meta]\nmodel = \"x\"\n")
        };
        let text = mutate(&text, &edits);
        let dir = std::env::temp_dir().join(format!("sprint-fuzz-th-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("th.toml");
        std::fs::write(&path, &text).unwrap();
        match ThresholdFile::read(&path) {
            Ok(f) => match f.resolve(layers, heads, "th.toml") {
                Ok(t) => {
                    prop_assert_eq!(t.values.len(), layers);
                    for row in &t.values {
                        prop_assert_eq!(row.len(), heads);
                        prop_assert!(row.iter().all(|x| !x.is_nan() && *x != f32::INFINITY));
                    }
                }
                Err(e) => prop_assert!(one_line(&e)),
            },
            Err(e) => prop_assert!(one_line(&e)),
        }
    }
}
