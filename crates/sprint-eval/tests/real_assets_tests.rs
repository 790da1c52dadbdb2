//! Small end-to-end runs on the real assets (MiniLM on BBC, SmolLM2 on Austen); each test
//! is skipped with a visible message when its assets are absent (CI fetches them).

use std::sync::OnceLock;

use sprint_assets::data::stratified_split;
use sprint_assets::{Asset, Cache};
use sprint_core::config::{Thresholds, Variant};
use sprint_eval::calibrate::KeepMethod;
use sprint_eval::logreg::{LogRegOptions, LogisticRegression};
use sprint_eval::metrics::accuracy;
use sprint_eval::run::{
    EvalOptions, EvalReport, ProbeFit, ReferenceRun, TEST_FRACTION, ThresholdChoice, evaluate,
};
use sprint_eval::tasks::{labeled_corpus, subset};
use sprint_eval::{NoProgress, Task};
use sprint_models::LoadedModel;
use sprint_models::backend;

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

fn minilm() -> &'static LoadedModel {
    static M: OnceLock<LoadedModel> = OnceLock::new();
    M.get_or_init(|| sprint_models::load("minilm", &Cache::from_env()).expect("MiniLM loads"))
}

fn smollm2() -> &'static LoadedModel {
    static M: OnceLock<LoadedModel> = OnceLock::new();
    M.get_or_init(|| sprint_models::load("smollm2", &Cache::from_env()).expect("SmolLM2 loads"))
}

/// Everything of a report except the wall times.
fn fingerprint(r: &EvalReport) -> Vec<(String, u64, u64, u64)> {
    r.rows
        .iter()
        .map(|x| {
            (
                x.variant.clone(),
                x.metric.to_bits(),
                x.kept_pairs,
                x.visible_pairs,
            )
        })
        .collect()
}

fn bbc_options(seed: u64) -> EvalOptions {
    let mut o = EvalOptions::new(Task::Bbc);
    o.limit = Some(60);
    o.seq_len = Some(64);
    o.seed = seed;
    o.attention.seed = seed;
    o.thresholds = ThresholdChoice::Calibrate {
        keep: 0.25,
        per_head: false,
        items: Some(4),
        method: KeepMethod::Quantile,
    };
    o
}

#[test]
fn bbc_all_variants_reproducible() {
    if !present(&[Asset::MiniLm, Asset::Bbc]) {
        return;
    }
    let cache = Cache::from_env();
    let a = evaluate(minilm(), &cache, &bbc_options(1), &NoProgress).unwrap();
    assert_eq!(a.rows.len(), 4);
    assert_eq!(a.items, 13, "stratified 20% of 60 documents");
    let dense = &a.rows[0];
    assert_eq!(dense.variant, "dense");
    assert_eq!(dense.kept_fraction, 1.0);
    assert!(dense.metric >= 0.5, "dense accuracy {}", dense.metric);
    let th = a.thresholds.as_ref().unwrap();
    assert_eq!(th.target_keep, Some(0.25));
    assert_eq!(th.per_layer.len(), 6);
    // Runtime pruning scores every key and keeps about the calibrated quarter in the softmax.
    let rp = &a.rows[1];
    assert!((0.1..0.5).contains(&rp.softmax_fraction), "{rp:?}");
    let sp = &a.rows[3];
    assert!((0.1..0.5).contains(&sp.kept_fraction), "{sp:?}");
    assert!(a.rows.iter().all(|r| r.delta.is_some()));
    let b = evaluate(minilm(), &cache, &bbc_options(1), &NoProgress).unwrap();
    assert_eq!(fingerprint(&a), fingerprint(&b), "same seed, same results");
}

/// `--probe-fit per-variant`: the dense row is the dense row of the default (frozen dense
/// probe), and SPRINT's row equals a second pipeline written here from the public parts
/// (split, tokenizer, encoder, attention backend, logistic regression): SPRINT's
/// embeddings of the train split, a probe fitted on them, scored on SPRINT's embeddings
/// of the test split.
#[test]
fn bbc_per_variant_probe_matches_a_hand_built_pipeline() {
    if !present(&[Asset::MiniLm, Asset::Bbc]) {
        return;
    }
    let cache = Cache::from_env();
    let mut o = bbc_options(2);
    o.variants = vec![Variant::Dense, Variant::Sprint];
    let frozen = evaluate(minilm(), &cache, &o, &NoProgress).unwrap();
    let per_layer = frozen.thresholds.as_ref().unwrap().per_layer.clone();
    let g = minilm().model.geometry();
    let th = Thresholds {
        values: per_layer.iter().map(|&t| vec![t; g.heads]).collect(),
    };
    o.thresholds = ThresholdChoice::Given {
        thresholds: th.clone(),
        method: "calibrated above".into(),
    };
    o.probe_fit = ProbeFit::PerVariant;
    let own = evaluate(minilm(), &cache, &o, &NoProgress).unwrap();
    assert_eq!(
        own.rows[0].metric.to_bits(),
        frozen.rows[0].metric.to_bits(),
        "the dense row does not depend on the probe mode"
    );
    let probe = own.probe.as_ref().unwrap();
    assert_eq!(probe.fit, ProbeFit::PerVariant);
    assert_eq!(probe.variant_train_accuracy.len(), 1);
    assert_eq!(probe.variant_train_accuracy[0].0, "sprint");

    // The second pipeline.
    let corpus = labeled_corpus(Task::Bbc, &cache).unwrap();
    let chosen = subset(corpus.docs.len(), o.limit, o.seed);
    let labels: Vec<usize> = chosen.iter().map(|&i| corpus.docs[i].label).collect();
    let sp = stratified_split(&labels, TEST_FRACTION, o.seed).unwrap();
    let mut cfg = o.attention.clone();
    cfg.variant = Variant::Sprint;
    let attn = backend(cfg, th).unwrap();
    let embed = |idx: &[usize]| -> Vec<Vec<f32>> {
        let texts: Vec<&str> = idx
            .iter()
            .map(|&i| corpus.docs[chosen[i]].text.as_str())
            .collect();
        let mut rows = Vec::new();
        for chunk in texts.chunks(o.batch_size) {
            let batch = minilm().encode_batch(chunk, o.seq_len).unwrap();
            let (e, _) = minilm()
                .model
                .embed(&batch, attn.as_ref(), false, true)
                .unwrap();
            rows.extend(e.to_vec2::<f32>().unwrap());
        }
        rows
    };
    let train_labels: Vec<usize> = sp.train.iter().map(|&i| labels[i]).collect();
    let test_labels: Vec<usize> = sp.test.iter().map(|&i| labels[i]).collect();
    let clf = LogisticRegression::fit(
        &embed(&sp.train),
        &train_labels,
        corpus.labels.len(),
        &LogRegOptions::default(),
    )
    .unwrap();
    let predicted = clf.predict(&embed(&sp.test)).unwrap();
    let expected = accuracy(&predicted, &test_labels);
    assert_eq!(
        own.rows[1].metric.to_bits(),
        expected.to_bits(),
        "per-variant SPRINT {} against the hand-built pipeline {expected}",
        own.rows[1].metric
    );
    let correct: Vec<bool> = predicted
        .iter()
        .zip(&test_labels)
        .map(|(p, l)| p == l)
        .collect();
    assert_eq!(own.rows[1].item_correct.as_ref(), Some(&correct));
}

/// A reference report (`sprint eval --json` of an earlier run) pairs every row with its
/// dense row item by item; the counts agree with the two runs' per-item results, and a
/// reference of other data or a malformed file is refused naming the file and the field.
#[test]
fn bbc_reference_report_pairs_items() {
    if !present(&[Asset::MiniLm, Asset::Bbc]) {
        return;
    }
    let cache = Cache::from_env();
    let dir = tempfile::tempdir().unwrap();
    let mut o = bbc_options(3);
    o.limit = Some(120);
    o.variants = vec![Variant::Dense];
    let reference = evaluate(minilm(), &cache, &o, &NoProgress).unwrap();
    let file = dir.path().join("reference.json");
    std::fs::write(&file, serde_json::to_string(&reference).unwrap()).unwrap();

    o.variants = vec![Variant::Dense, Variant::RuntimePruning];
    o.thresholds = ThresholdChoice::Calibrate {
        keep: 0.05,
        per_head: false,
        items: Some(4),
        method: KeepMethod::Quantile,
    };
    o.references = vec![ReferenceRun::read(&file).unwrap()];
    let run = evaluate(minilm(), &cache, &o, &NoProgress).unwrap();
    let base = reference.rows[0].item_correct.clone().unwrap();
    assert_eq!(base.len(), run.items);
    for row in &run.rows {
        let c = row.item_correct.as_ref().unwrap();
        let right = c.iter().filter(|&&x| x).count();
        assert_eq!(right as f64 / c.len() as f64, row.metric, "{}", row.variant);
        let d = &row.vs_references[0];
        let gained = base.iter().zip(c).filter(|&(&b, &x)| x && !b).count();
        let lost = base.iter().zip(c).filter(|&(&b, &x)| b && !x).count();
        assert_eq!((d.items, d.gained, d.lost), (c.len(), gained, lost));
        assert!((d.delta - (row.metric - reference.rows[0].metric)).abs() < 1e-12);
        assert!(d.ci95.0 <= d.delta && d.delta <= d.ci95.1);
    }
    // The same dense model on the same items: nothing to tell apart.
    let same = &run.rows[0].vs_references[0];
    assert_eq!((same.gained, same.lost, same.ci95), (0, 0, (0.0, 0.0)));
    assert_eq!(
        run.rows[1].vs_dense.as_ref(),
        run.rows[1].vs_references.first()
    );
    assert_eq!(run.references.len(), 1);

    // Other data: refused before anything runs, naming the file and the field.
    o.seed = 4;
    let e = evaluate(minilm(), &cache, &o, &NoProgress)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("reference.json") && e.contains("field `seed`"),
        "{e}"
    );
    // Malformed files.
    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, "{\"model\": \"minilm\"}").unwrap();
    let e = ReferenceRun::read(&bad).unwrap_err().to_string();
    assert!(e.contains("bad.json") && e.contains("missing field"), "{e}");
    let mut no_dense = serde_json::to_value(&reference).unwrap();
    no_dense["rows"][0]["variant"] = "sprint".into();
    std::fs::write(&bad, no_dense.to_string()).unwrap();
    let e = ReferenceRun::read(&bad).unwrap_err().to_string();
    assert!(
        e.contains("bad.json") && e.contains("no `dense` row"),
        "{e}"
    );
    let mut old = serde_json::to_value(&reference).unwrap();
    old["rows"][0]["item_correct"] = serde_json::Value::Null;
    std::fs::write(&bad, old.to_string()).unwrap();
    let e = ReferenceRun::read(&bad).unwrap_err().to_string();
    assert!(
        e.contains("bad.json") && e.contains("`item_correct`"),
        "{e}"
    );
}

#[test]
fn austen_perplexity_one_window() {
    if !present(&[Asset::SmolLm2, Asset::Austen]) {
        return;
    }
    let cache = Cache::from_env();
    let mut o = EvalOptions::new(Task::PplAusten);
    o.limit = Some(1);
    o.seq_len = Some(128);
    o.variants = vec![Variant::Dense, Variant::Sprint];
    o.thresholds = ThresholdChoice::Calibrate {
        keep: 0.25,
        per_head: false,
        items: Some(1),
        // The calibration `sprint reproduce` uses on the decoder (the BBC tests cover the
        // quantile on a real model).
        method: KeepMethod::Mass,
    };
    let r = evaluate(smollm2(), &cache, &o, &NoProgress).unwrap();
    let d = &r.rows[0];
    let ppl = d.perplexity.unwrap();
    assert_eq!(ppl.tokens, 127);
    assert!(
        (2.0..200.0).contains(&d.metric),
        "dense perplexity {}",
        d.metric
    );
    let s = &r.rows[1];
    assert!(s.metric.is_finite() && s.metric > 1.0);
    assert!((0.05..0.6).contains(&s.kept_fraction), "{s:?}");
    // The NLL blocks behind the perplexity interval: one window of 127 scored tokens is one
    // block; SPRINT's change against dense is the rows' ratio.
    let f = s.fidelity_vs_dense.as_ref().unwrap();
    assert_eq!(f.blocks, Some(1));
    let want = 100.0 * (s.metric / d.metric - 1.0);
    assert!((f.ppl_change_pct.unwrap() - want).abs() < 1e-6, "{f:?}");
    assert_eq!(
        d.fidelity_vs_dense.as_ref().unwrap().ppl_change_pct,
        Some(0.0)
    );
    let th = r.thresholds.unwrap();
    assert_eq!(th.per_layer.len(), 30);
    assert!(
        th.method.contains("softmax-mass calibration held at"),
        "{}",
        th.method
    );
}

/// The continuous measures on real data, and a probe fitted on part of the train split:
/// the test split is the same documents, dense against itself is zero, and the flips are
/// the documents whose predicted class differs from dense's.
#[test]
fn bbc_fidelity_and_probe_train_subset() {
    if !present(&[Asset::MiniLm, Asset::Bbc]) {
        return;
    }
    let cache = Cache::from_env();
    let mut o = bbc_options(0);
    o.variants = vec![Variant::Dense, Variant::Sprint];
    o.probe_train = Some(12);
    let r = evaluate(minilm(), &cache, &o, &NoProgress).unwrap();
    assert_eq!(r.probe.as_ref().unwrap().train_documents, 12);
    assert!(
        r.split.contains("the probe fitted on a seeded 12"),
        "{}",
        r.split
    );
    let full = evaluate(minilm(), &cache, &bbc_options(0), &NoProgress).unwrap();
    assert_eq!(r.items, full.items, "the test split does not change");
    let (d, s) = (&r.rows[0], &r.rows[1]);
    let fd = d.fidelity_vs_dense.as_ref().unwrap();
    assert_eq!(
        (fd.kl_mean, fd.flips, fd.items),
        (Some(0.0), Some(0), r.items)
    );
    assert!((fd.cosine_mean.unwrap() - 1.0).abs() < 1e-9);
    let fs = s.fidelity_vs_dense.as_ref().unwrap();
    let kl = fs.kl_mean.unwrap();
    assert!(kl > 0.0 && kl.is_finite(), "{fs:?}");
    let cos = fs.cosine_mean.unwrap();
    assert!(cos > 0.5 && cos < 1.0, "{fs:?}");
    // Flips from the kept posteriors' argmax, recounted here.
    let argmax = |p: &Vec<f64>| {
        p.iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .map(|x| x.0)
            .unwrap()
    };
    let (pd, ps) = (
        d.outputs.posteriors.as_ref().unwrap(),
        s.outputs.posteriors.as_ref().unwrap(),
    );
    let flips = pd
        .iter()
        .zip(ps)
        .filter(|(a, b)| argmax(a) != argmax(b))
        .count();
    assert_eq!(fs.flips, Some(flips));
}

#[test]
fn missing_asset_names_the_fetch_command() {
    if !present(&[Asset::MiniLm]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let empty = Cache::new(dir.path());
    let e = evaluate(minilm(), &empty, &bbc_options(0), &NoProgress).unwrap_err();
    assert!(
        e.to_string().contains("sprint assets fetch bbc"),
        "message: {e}"
    );
}

#[test]
fn task_model_mismatch_is_an_error() {
    if !present(&[Asset::MiniLm]) {
        return;
    }
    let e = evaluate(
        minilm(),
        &Cache::from_env(),
        &EvalOptions::new(Task::PplMoby),
        &NoProgress,
    )
    .unwrap_err();
    assert!(e.to_string().contains("needs a decoder"), "{e}");
}
