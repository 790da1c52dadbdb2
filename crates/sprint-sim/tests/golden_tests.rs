//! Golden statistics: every preset on the fixed synthetic trace, compared exactly with
//! `tests/golden/<preset>.json`. Regenerate deliberately with `SPRINT_BLESS=1 cargo test -p
//! sprint-sim --test golden_tests` and review the diff.

mod common;

use std::path::PathBuf;

use sprint_sim::presets::{load_energy, preset_names};
use sprint_sim::report::build;
use sprint_sim::run::run_trace;

#[test]
fn every_preset_matches_its_golden_statistics() {
    let bytes = common::golden_trace();
    let designs: Vec<_> = preset_names()
        .iter()
        .map(|p| common::design(p, &[]))
        .collect();
    let (_, totals) = run_trace(&designs, common::reader(&bytes), None).unwrap();
    let table = load_energy("default", &[]).unwrap();
    // Each design priced on its own (ratios against itself), so one golden file per preset
    // does not depend on the others.
    let bless = std::env::var_os("SPRINT_BLESS").is_some_and(|v| v == "1");
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    let mut failures = Vec::new();
    for (d, t) in designs.iter().zip(&totals) {
        let r = &build(std::slice::from_ref(d), &table, std::slice::from_ref(t)).unwrap()[0];
        let text = serde_json::to_string_pretty(&r.registry()).unwrap() + "\n";
        let path = dir.join(format!("{}.json", d.key));
        if bless {
            std::fs::write(&path, &text).unwrap();
            continue;
        }
        match std::fs::read_to_string(&path) {
            Ok(g) if g == text => {}
            Ok(_) => failures.push(format!("{} differs", path.display())),
            Err(e) => failures.push(format!("{}: {e}", path.display())),
        }
    }
    assert!(
        failures.is_empty(),
        "golden statistics changed (if deliberate, rerun with SPRINT_BLESS=1 and review): {failures:?}"
    );
}
