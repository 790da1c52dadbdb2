//! Presets, overrides, energy tables and their validation errors.

mod common;

use sprint_sim::SimError;
use sprint_sim::presets::{load_design, load_energy, preset_names};
use sprint_sim::run::run_trace;
use sprint_sim::workload::{model_workload, workload_names};

fn err(name: &str, sets: &[&str]) -> String {
    let sets: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
    load_design(name, &sets).expect_err("must fail").to_string()
}

#[test]
fn every_preset_and_table_loads() {
    for p in preset_names() {
        let d = common::design(p, &[]);
        assert!(!d.file.design.skip_padding.source.is_empty());
    }
    for e in ["default", "optimistic", "conservative"] {
        load_energy(e, &[]).unwrap();
    }
    let m = common::design("m-sprint", &[]);
    assert_eq!(m.core.corelets, 2);
    assert_eq!(m.file.inherits.as_deref(), Some("s-sprint"));
    let b = common::design("l-baseline", &[]);
    assert_eq!((b.core.corelets, b.in_memory_pruning), (4, false));
}

#[test]
fn overrides_set_values_and_record_their_source() {
    let d = common::design("s-sprint", &["memory.trcd_ns=30", "core.corelets=3"]);
    assert_eq!(d.memory.trcd, 30);
    assert_eq!(d.core.corelets, 3);
    assert_eq!(
        d.file.memory.trcd_ns.source,
        "command-line override (--set)"
    );
}

#[test]
fn unknown_keys_are_rejected() {
    let e = err("s-sprint", &["memory.trcd=30"]);
    assert!(
        e.contains("memory.trcd") && e.contains("unknown key"),
        "{e}"
    );
    let dir = std::env::temp_dir().join(format!("sprint-sim-cfg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join("bad.toml");
    std::fs::write(
        &p,
        "inherits = \"s-sprint\"\n[memory]\nbandwidth_gbps = { value = 1.0, source = \"x\" }\n",
    )
    .unwrap();
    let e = load_design(p.to_str().unwrap(), &[])
        .unwrap_err()
        .to_string();
    assert!(e.contains("bandwidth_gbps"), "{e}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn bad_values_name_the_key() {
    let e = err("s-sprint", &["memory.bus_bytes_per_ns=-6.4"]);
    assert!(
        e.contains("memory.bus_bytes_per_ns") && e.contains("> 0"),
        "{e}"
    );
    let e = err("s-sprint", &["memory.trcd_ns=-1"]);
    assert!(e.contains("memory.trcd_ns"), "{e}");
    let e = err("s-sprint", &["core.corelets=0"]);
    assert!(e.contains("core.corelets"), "{e}");
    let e = err("s-sprint", &["core.corelets=\"two\""]);
    assert!(e.contains("core.corelets") && e.contains("integer"), "{e}");
    let e = err("s-sprint", &["core.qk_units_per_corelet=3"]);
    assert!(
        e.contains("core.qk_units_per_corelet") && e.contains("evenly"),
        "{e}"
    );
    let e = err("s-sprint", &["core.v_units_per_corelet=128"]);
    assert!(e.contains("core.v_units_per_corelet"), "{e}");
    let e = err("s-sprint", &["memory.channels=-2"]);
    assert!(e.contains("channels"), "{e}");
    let e = err("no-such-preset", &[]);
    assert!(e.contains("s-sprint"), "lists the built-in presets: {e}");
}

#[test]
fn buffer_smaller_than_one_key_is_rejected() {
    let d = common::design("s-sprint", &["buffer.k_buffer_bytes_per_corelet=32"]);
    let bytes = common::golden_trace();
    let e = run_trace(&[d], common::reader(&bytes), None)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("buffer.k_buffer_bytes_per_corelet") && e.contains("smaller than one vector"),
        "{e}"
    );
}

#[test]
fn trace_shape_must_agree_with_the_workload() {
    let bytes = common::golden_trace();
    let w = model_workload("bert-b").unwrap();
    let e = run_trace(
        &[common::design("s-sprint", &[])],
        common::reader(&bytes),
        Some(&w),
    )
    .unwrap_err();
    assert!(matches!(e, SimError::Workload { .. }));
    assert!(e.to_string().contains("disagrees"), "{e}");
}

#[test]
fn energy_tables_validate() {
    let e = load_energy("default", &["reram.read_pj_per_bit=-1".into()])
        .unwrap_err()
        .to_string();
    assert!(e.contains("reram.read_pj_per_bit"), "{e}");
    let e = load_energy("default", &["sram.read_pj_per_access=[1.0]".into()])
        .unwrap_err()
        .to_string();
    assert!(e.contains("sram.read_pj_per_access"), "{e}");
}

#[test]
fn workloads_resolve_by_loose_name() {
    assert_eq!(model_workload("gpt2-l").unwrap().name, "GPT-2-L");
    assert_eq!(workload_names().len(), 8);
    assert!(model_workload("bert-xl").is_err());
}
