//! What evaluations keep within a process to reuse (probes, calibrations, variant passes,
//! the dense pass of a training run) is bit-identical to computing it anew: each run here is
//! done cold, again (reusing), and cold once more after `memo::clear`, and every number and
//! per-item output must agree to the bit. Its own test binary: no other test clears the
//! memos meanwhile. Skipped with a visible message when the real assets are absent.

use std::sync::OnceLock;

use sprint_assets::{Asset, Cache};
use sprint_core::config::Variant;
use sprint_eval::calibrate::KeepMethod;
use sprint_eval::learn::{CheckpointPlan, LearnOptions, Learned, NoLearnProgress, learn};
use sprint_eval::run::{EvalOptions, EvalReport, ProbeFit, ThresholdChoice, evaluate};
use sprint_eval::{NoProgress, Task, memo};
use sprint_models::LoadedModel;

fn present(assets: &[Asset]) -> bool {
    let cache = Cache::from_env();
    for &a in assets {
        if let Err(e) = cache.require(a) {
            eprintln!("SKIPPED (asset missing): {e}");
            return false;
        }
    }
    true
}

fn load(name: &'static str) -> &'static LoadedModel {
    static MINILM: OnceLock<LoadedModel> = OnceLock::new();
    static SMOLLM2: OnceLock<LoadedModel> = OnceLock::new();
    let cell = if name == "minilm" { &MINILM } else { &SMOLLM2 };
    cell.get_or_init(|| sprint_models::load(name, &Cache::from_env()).expect("model loads"))
}

/// Every number and per-item output of a report, as bits (wall times left out).
fn bits(r: &EvalReport) -> Vec<Vec<u64>> {
    let f = |x: f64| x.to_bits();
    let mut out = Vec::new();
    for x in &r.rows {
        let mut v = vec![
            f(x.metric),
            f(x.kept_fraction),
            f(x.softmax_fraction),
            x.kept_pairs,
            x.visible_pairs,
            f(x.new_fetch_share),
        ];
        if let Some(c) = &x.item_correct {
            v.extend(c.iter().map(|&b| u64::from(b)));
        }
        let o = &x.outputs;
        if let Some(p) = &o.posteriors {
            v.extend(p.iter().flatten().map(|&y| f(y)));
        }
        if let Some(e) = &o.embeddings {
            v.extend(e.iter().flatten().map(|&y| u64::from(y.to_bits())));
        }
        if let Some(b) = &o.nll_blocks {
            v.extend(b.iter().flat_map(|&(s, n)| [f(s), n]));
        }
        out.push(v);
    }
    if let Some(t) = &r.thresholds {
        out.push(
            t.per_layer
                .iter()
                .map(|&y| u64::from(y.to_bits()))
                .collect(),
        );
    }
    out
}

/// Cold, reused and cold again: the same bits.
fn three_times(run: impl Fn() -> EvalReport) -> EvalReport {
    memo::clear();
    let a = run();
    let b = run();
    memo::clear();
    let c = run();
    assert_eq!(bits(&a), bits(&b), "reused against computed");
    assert_eq!(bits(&a), bits(&c), "computed again after clearing");
    // The reused passes report the wall time of the pass they reuse.
    for (x, y) in a.rows.iter().zip(&b.rows) {
        assert_eq!(x.seconds, y.seconds, "{} was not reused", x.variant);
    }
    a
}

#[test]
fn reused_work_is_bit_identical() {
    if !present(&[Asset::MiniLm, Asset::Bbc, Asset::SmolLm2, Asset::Austen]) {
        return;
    }
    let cache = Cache::from_env();

    // BBC: the frozen dense probe, a calibration and the four variants.
    let mut o = EvalOptions::new(Task::Bbc);
    o.limit = Some(60);
    o.seq_len = Some(64);
    o.seed = 2;
    o.attention.seed = 2;
    o.thresholds = ThresholdChoice::Calibrate {
        keep: 0.25,
        per_head: false,
        items: Some(4),
        method: KeepMethod::Quantile,
    };
    let all = three_times(|| evaluate(load("minilm"), &cache, &o, &NoProgress).unwrap());

    // Each variant with its own probe, without the dense row: the dense probe is not
    // fitted (no train accuracy), and the SPRINT row is the one of a run with dense.
    let mut own = o.clone();
    own.probe_fit = ProbeFit::PerVariant;
    own.variants = vec![Variant::Sprint];
    let alone = evaluate(load("minilm"), &cache, &own, &NoProgress).unwrap();
    assert_eq!(alone.probe.as_ref().unwrap().train_accuracy, None);
    own.variants = vec![Variant::Dense, Variant::Sprint];
    let with_dense = evaluate(load("minilm"), &cache, &own, &NoProgress).unwrap();
    assert!(with_dense.probe.as_ref().unwrap().train_accuracy.is_some());
    assert_eq!(bits(&alone)[0], bits(&with_dense)[1]);
    // A precision override equal to the default is the default pass.
    let mut four = o.clone();
    four.attention = four
        .attention
        .with_overrides(&["quant.k_msb_bits=4".into()])
        .unwrap();
    let again = evaluate(load("minilm"), &cache, &four, &NoProgress).unwrap();
    assert_eq!(bits(&again), bits(&all));

    // SmolLM2 perplexity: a mass calibration, dense and SPRINT on one short window.
    let mut p = EvalOptions::new(Task::PplAusten);
    p.limit = Some(1);
    p.seq_len = Some(48);
    p.variants = vec![Variant::Dense, Variant::Sprint];
    p.thresholds = ThresholdChoice::Calibrate {
        keep: 0.25,
        per_head: false,
        items: Some(1),
        method: KeepMethod::Mass,
    };
    three_times(|| evaluate(load("smollm2"), &cache, &p, &NoProgress).unwrap());

    // A training run: its dense pass (statistics, dense targets) is shared.
    let mut l = LearnOptions::new(Task::Bbc);
    l.items = 4;
    l.seq_len = 48;
    l.batch_size = 2;
    l.epochs = 1;
    l.seed = 3;
    let run = |o: &LearnOptions| {
        let Learned {
            thresholds: th,
            report,
            ..
        } = learn(
            load("minilm"),
            &cache,
            Task::Bbc,
            o,
            &CheckpointPlan::default(),
            &NoLearnProgress,
        )
        .unwrap();
        let mut v: Vec<u64> = th
            .values
            .iter()
            .flatten()
            .map(|x| u64::from(x.to_bits()))
            .collect();
        v.extend([
            report.train_kept.to_bits(),
            report.train_kept_initial.to_bits(),
            report.loss_last.to_bits(),
        ]);
        v
    };
    memo::clear();
    let a = run(&l);
    let b = run(&l);
    memo::clear();
    let c = run(&l);
    assert_eq!(a, b);
    assert_eq!(a, c);
}
