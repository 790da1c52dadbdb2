//! Learned thresholds on a small subset of the real data (MiniLM on BBC): bit-reproducible
//! with a seed whatever the thread count, resuming from a checkpoint gives the same
//! thresholds, a malformed checkpoint is rejected naming the file and the field, and the
//! mass calibration keeps the softmax mass it targets.

use std::sync::OnceLock;

use sprint_assets::{Asset, Cache};
use sprint_core::config::Thresholds;
use sprint_eval::Task;
use sprint_eval::learn::{
    Checkpoint, CheckpointPlan, LearnOptions, NoLearnProgress, learn, score_stats, training_items,
};
use sprint_models::LoadedModel;

fn minilm() -> Option<&'static LoadedModel> {
    if let Err(e) = Cache::from_env().require(Asset::MiniLm) {
        eprintln!("SKIPPED (asset missing): {e}");
        return None;
    }
    if let Err(e) = Cache::from_env().require(Asset::Bbc) {
        eprintln!("SKIPPED (asset missing): {e}");
        return None;
    }
    static M: OnceLock<LoadedModel> = OnceLock::new();
    Some(M.get_or_init(|| sprint_models::load("minilm", &Cache::from_env()).expect("MiniLM loads")))
}

/// 4 BBC training documents of 48 tokens, 2 per step, 2 epochs: 4 steps.
fn options() -> LearnOptions {
    let mut o = LearnOptions::new(Task::Bbc);
    o.items = 4;
    o.seq_len = 48;
    o.batch_size = 2;
    o.epochs = 2;
    o.lr = 0.1;
    o.seed = 3;
    o
}

fn run(m: &LoadedModel, plan: &CheckpointPlan, threads: usize) -> Thresholds {
    run_with(m, &options(), plan, threads)
}

fn run_with(
    m: &LoadedModel,
    o: &LearnOptions,
    plan: &CheckpointPlan,
    threads: usize,
) -> Thresholds {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap();
    pool.install(|| {
        learn(m, &Cache::from_env(), Task::Bbc, o, plan, &NoLearnProgress)
            .unwrap()
            .thresholds
    })
}

/// A plan that checkpoints every step to `ck`, resumes from it, and stops after the first
/// step (set `stop_after` to `None` to run on to the end).
fn stop_after_one_step(ck: &std::path::Path) -> CheckpointPlan {
    CheckpointPlan {
        path: Some(ck.to_path_buf()),
        every: 1,
        resume: true,
        stop_after: Some(1),
        ..CheckpointPlan::default()
    }
}

fn bits(t: &Thresholds) -> Vec<u32> {
    t.values.iter().flatten().map(|x| x.to_bits()).collect()
}

#[test]
fn reproducible_and_resumable() {
    let Some(m) = minilm() else { return };
    let none = CheckpointPlan::default();
    let a = run(m, &none, 1);
    let b = run(m, &none, 2);
    assert_eq!(bits(&a), bits(&b), "thread count changed the thresholds");
    // The thresholds moved from the calibration they start at.
    let cal = {
        let seqs = training_items(m, &Cache::from_env(), Task::Bbc, &options())
            .unwrap()
            .0;
        score_stats(m, &seqs, &NoLearnProgress)
            .unwrap()
            .thresholds(0.25, true)
            .unwrap()
    };
    assert_ne!(bits(&a), bits(&cal));

    // Stop after 1 step (checkpoint), resume to the end: the same thresholds.
    let dir = tempfile::tempdir().unwrap();
    let ck = dir.path().join("ck.json");
    let mut plan = stop_after_one_step(&ck);
    run(m, &plan, 2);
    assert_eq!(Checkpoint::read(&ck).unwrap().step, 1);
    plan.stop_after = None;
    let c = run(m, &plan, 1);
    assert_eq!(bits(&a), bits(&c), "resumed run differs");

    // A malformed checkpoint names the file and the field.
    let mut bad = Checkpoint::read(&ck).unwrap();
    bad.m.pop();
    std::fs::write(&ck, serde_json::to_string(&bad).unwrap()).unwrap();
    let e = Checkpoint::read(&ck).unwrap_err().to_string();
    assert!(e.contains("ck.json") && e.contains("`m`"), "{e}");
    // Issue #29 row 7: a negative second moment or a parameter of 1e308 is refused.
    bad.m.push(0.0);
    let good = bad;
    for (field, edit) in [("`v`", 0usize), ("`params`", 1)] {
        let mut c = good.clone();
        if edit == 0 {
            c.v[0] = -1e-3;
        } else {
            c.params[0] = 1e308;
        }
        std::fs::write(&ck, serde_json::to_string(&c).unwrap()).unwrap();
        let e = Checkpoint::read(&ck).unwrap_err().to_string();
        assert!(e.contains("ck.json") && e.contains(field), "{e}");
    }
    std::fs::write(&ck, serde_json::to_string(&good).unwrap()).unwrap();
    assert!(
        Checkpoint::read(&ck).is_ok(),
        "the repaired checkpoint reads"
    );
    std::fs::write(&ck, r#"{"options": 3}"#).unwrap();
    let e = Checkpoint::read(&ck).unwrap_err().to_string();
    assert!(
        e.contains("ck.json") && e.contains("field `options`"),
        "{e}"
    );
}

/// Training against SPRINT's datapath with the `typical` noise preset (a new chip per
/// step): bit-identical for 1 and 2 threads and across a resume, and different from
/// training on the exact scores.
#[test]
fn datapath_noise_aware_reproducible_and_resumable() {
    let Some(m) = minilm() else { return };
    let mut o = options();
    o.epochs = 1;
    o.datapath = true;
    o.datapath_sets = vec!["noise.preset=typical".into()];
    let none = CheckpointPlan::default();
    let a = run_with(m, &o, &none, 1);
    let b = run_with(m, &o, &none, 2);
    assert_eq!(bits(&a), bits(&b), "thread count changed the thresholds");
    let mut exact = options();
    exact.epochs = 1;
    assert_ne!(bits(&a), bits(&run_with(m, &exact, &none, 2)));

    let dir = tempfile::tempdir().unwrap();
    let ck = dir.path().join("ck.json");
    let mut plan = stop_after_one_step(&ck);
    run_with(m, &o, &plan, 2);
    plan.stop_after = None;
    assert_eq!(
        bits(&a),
        bits(&run_with(m, &o, &plan, 1)),
        "resumed run differs"
    );

    // Overrides without the datapath, or a variant that does not prune in memory: refused.
    let mut bad = options();
    bad.datapath_sets = vec!["noise.preset=typical".into()];
    assert!(bad.datapath_config().is_err());
    bad.datapath = true;
    bad.datapath_sets = vec!["variant=runtime-pruning".into()];
    let e = bad.datapath_config().unwrap_err().to_string();
    assert!(e.contains("in-memory"), "{e}");
}

/// Mass calibration against an independent count on synthetic scores: the dense softmax
/// mass each row keeps at the per-head mass threshold, recomputed with plain loops,
/// averages the target to within one histogram bin's mass (tolerance 0.01).
#[test]
fn mass_calibration_keeps_its_target_mass() {
    use candle_core::{Device, Tensor};
    use sprint_core::config::AttentionConfig;
    use sprint_eval::calibrate::CalibratingAttention;
    use sprint_models::Attention;
    use sprint_models::attention::AttentionCall;
    use sprint_models::record::Recorder;
    let (h, s, d) = (2usize, 40usize, 8usize);
    let mut x = 12345u64;
    let mut rnd = || {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((x >> 33) as f64 / (1u64 << 31) as f64 * 2.0 - 1.0) as f32 * 2.0
    };
    let q: Vec<f32> = (0..h * s * d).map(|_| rnd()).collect();
    let k: Vec<f32> = (0..h * s * d).map(|_| rnd()).collect();
    let qt = Tensor::from_vec(q.clone(), (1, h, s, d), &Device::Cpu).unwrap();
    let kt = Tensor::from_vec(k.clone(), (1, h, s, d), &Device::Cpu).unwrap();
    let valid = vec![vec![true; s]];
    let cal = CalibratingAttention::new(AttentionConfig::default(), 1, h);
    let call = AttentionCall {
        layer: 0,
        q: &qt,
        k: &kt,
        v: &kt,
        valid: &valid,
        causal: true,
    };
    cal.attend(&call, &mut Recorder::new(1, 1, false, "test"))
        .unwrap();
    let stats = cal.into_stats();
    for target in [0.5, 0.8, 0.95] {
        let th = stats.mass_thresholds(target, true).unwrap();
        for hh in 0..h {
            let mut kept_mass = 0.0;
            for i in 0..s {
                let sc: Vec<f64> = (0..=i)
                    .map(|j| {
                        (0..d)
                            .map(|e| {
                                f64::from(q[(hh * s + i) * d + e])
                                    * f64::from(k[(hh * s + j) * d + e])
                            })
                            .sum::<f64>()
                            / (d as f64).sqrt()
                    })
                    .collect();
                let mx = sc.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                let z: f64 = sc.iter().map(|x| (x - mx).exp()).sum();
                kept_mass += sc
                    .iter()
                    .filter(|&&x| x >= f64::from(th.values[0][hh]))
                    .map(|x| (x - mx).exp() / z)
                    .sum::<f64>();
            }
            let avg = kept_mass / s as f64;
            assert!(
                (avg - target).abs() < 0.01,
                "head {hh}, target {target}: kept mass {avg}"
            );
        }
    }
}

/// `init_mass`: the run starts from the mass calibration of its training items (per layer:
/// every head of a layer at the layer's threshold) and its kept-fraction target is the
/// kept fraction of that start on the same items; stopped before the first step, the
/// thresholds are that start, bit for bit.
#[test]
fn mass_start_holds_its_kept_fraction() {
    let Some(m) = minilm() else { return };
    let mut o = options();
    o.init_mass = Some(0.95);
    let stats = {
        let seqs = training_items(m, &Cache::from_env(), Task::Bbc, &o)
            .unwrap()
            .0;
        score_stats(m, &seqs, &NoLearnProgress).unwrap()
    };
    let start = stats.mass_thresholds(0.95, false).unwrap();
    let plan = CheckpointPlan {
        stop_after: Some(0),
        ..CheckpointPlan::default()
    };
    let learned = learn(
        m,
        &Cache::from_env(),
        Task::Bbc,
        &o,
        &plan,
        &NoLearnProgress,
    )
    .unwrap();
    let heads = learned.thresholds.values[0].len();
    let expected: Vec<u32> = start
        .values
        .iter()
        .flat_map(|r| std::iter::repeat_n(r[0].to_bits(), heads))
        .collect();
    assert_eq!(
        bits(&learned.thresholds),
        expected,
        "the start is not the mass calibration"
    );
    let r = &learned.report;
    assert_eq!(r.target_keep, stats.kept_fraction(&start));
    assert_eq!(r.target_keep, r.train_kept_initial);
    // A 0.95 mass share keeps far less than all keys and far more than none.
    assert!(
        r.target_keep > 0.05 && r.target_keep < 0.95,
        "{}",
        r.target_keep
    );

    o.init_mass = Some(1.5);
    let Err(e) = learn(
        m,
        &Cache::from_env(),
        Task::Bbc,
        &o,
        &plan,
        &NoLearnProgress,
    ) else {
        panic!("an init mass above 1 is refused");
    };
    assert!(e.to_string().contains("--init-mass"), "{e}");
}

/// Fine-tuning norms and biases beside the thresholds: 1 and 2 threads give bit-identical
/// thresholds and tensors, stopping after one step and resuming from the checkpoint gives
/// the same as an uninterrupted run, the weights file overlays on the base model, a
/// checkpoint whose `tensors` field does not fit is refused naming file and field; and the
/// same recipe without pruning starts at zero loss (the distillation target is the dense
/// model itself).
#[test]
fn finetune_reproducible_and_resumable() {
    use sprint_eval::finetune::Finetune;
    use sprint_models::finetuned::FineTunedWeights;
    let Some(m) = minilm() else { return };
    let mut o = options();
    o.epochs = 1;
    o.finetune = Finetune::NormsBiases;
    o.ft_lr = 0.01;
    let go = |o: &LearnOptions, plan: &CheckpointPlan, threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| learn(m, &Cache::from_env(), Task::Bbc, o, plan, &NoLearnProgress))
            .unwrap()
    };
    let tensor_bits = |w: &FineTunedWeights| -> Vec<(String, Vec<u32>)> {
        w.tensors
            .iter()
            .map(|(n, t)| {
                let v = t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
                (n.clone(), v.iter().map(|x| x.to_bits()).collect())
            })
            .collect()
    };
    let none = CheckpointPlan::default();
    let a = go(&o, &none, 1);
    let b = go(&o, &none, 2);
    let (wa, wb) = (a.weights.as_ref().unwrap(), b.weights.as_ref().unwrap());
    assert_eq!(
        bits(&a.thresholds),
        bits(&b.thresholds),
        "thread count changed the thresholds"
    );
    assert_eq!(
        tensor_bits(wa),
        tensor_bits(wb),
        "thread count changed the tensors"
    );
    assert_eq!(wa.tensors.len(), 62, "every norm and bias moved");
    // Adam moves an element by at most lr (1 - b1) / sqrt(1 - b2) ~ 3.2 lr per step.
    assert!(
        a.report.tuned_max_change > 0.0 && a.report.tuned_max_change <= 2.0 * 3.2 * 0.01,
        "largest change {}",
        a.report.tuned_max_change
    );
    assert_eq!(
        wa.meta.get("finetune").map(String::as_str),
        Some("norms-biases")
    );
    assert_eq!(
        wa.meta.get("base_asset").map(String::as_str),
        Some("minilm")
    );

    let dir = tempfile::tempdir().unwrap();
    let ck = dir.path().join("ck.json");
    let mut plan = stop_after_one_step(&ck);
    go(&o, &plan, 2);
    let c1 = Checkpoint::read(&ck).unwrap();
    assert_eq!(c1.step, 1);
    assert_eq!(c1.tensors.len(), 62);
    plan.stop_after = None;
    let c = go(&o, &plan, 1);
    assert_eq!(
        bits(&a.thresholds),
        bits(&c.thresholds),
        "resumed run differs (thresholds)"
    );
    assert_eq!(
        tensor_bits(wa),
        tensor_bits(c.weights.as_ref().unwrap()),
        "resumed run differs (tensors)"
    );

    // The weights file overlays on the base model.
    let wp = dir.path().join("w.safetensors");
    wa.write(&wp).unwrap();
    let over = m.with_weights(&wp).unwrap();
    assert!(over.name.contains("w.safetensors"));

    // A checkpoint whose tensor list does not fit its parameters is refused.
    let mut bad = c1.clone();
    bad.tensors[0].shape = vec![100_000];
    std::fs::write(&ck, serde_json::to_string(&bad).unwrap()).unwrap();
    let e = Checkpoint::read(&ck).unwrap_err().to_string();
    assert!(e.contains("ck.json") && e.contains("`tensors`"), "{e}");
    let mut bad = c1.clone();
    bad.tensors.clear();
    std::fs::write(&ck, serde_json::to_string(&bad).unwrap()).unwrap();
    let e = Checkpoint::read(&ck).unwrap_err().to_string();
    assert!(e.contains("ck.json") && e.contains("`tensors`"), "{e}");

    // Without pruning the soft forward is the dense model, the distillation target: the
    // loss starts at (rounding) zero.
    let mut dense = o.clone();
    dense.prune = false;
    let d = go(&dense, &CheckpointPlan::default(), 2);
    assert!(
        d.report.loss_first.abs() < 1e-5,
        "loss {}",
        d.report.loss_first
    );
    eprintln!(
        "no pruning: loss {:e} -> {:e}, largest tensor change {:e}",
        d.report.loss_first, d.report.loss_last, d.report.tuned_max_change
    );
}

/// `--task-loss classification`: the first step's loss of the no-pruning recipe (the model
/// still the base model, one batch of all training documents) is the mean cross-entropy of
/// the labels under the probe, recomputed on the host in f64 from the dense embeddings of
/// an ordinary forward (the loss itself against a host computation at non-trivial values:
/// logreg_tests.rs); the run is bit-identical for 1 and 2 threads; the loss is refused
/// for a perplexity task.
#[test]
fn classification_loss_starts_at_the_probe_cross_entropy() {
    use sprint_core::config::AttentionConfig;
    use sprint_eval::finetune::Finetune;
    use sprint_eval::learn::{Learned, training_labels};
    use sprint_eval::logreg::LogisticRegression;
    use sprint_eval::probe_loss::{ClassificationHead, ProbeLoss};
    use sprint_models::TokenBatch;
    use sprint_models::attention::DenseAttention;
    let Some(m) = minilm() else { return };
    let mut o = options();
    o.items = 6;
    o.batch_size = 6;
    o.epochs = 1;
    o.finetune = Finetune::NormsBiases;
    o.prune = false;
    o.task_loss = ProbeLoss::Classification;
    let go = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| {
            learn(
                m,
                &Cache::from_env(),
                Task::Bbc,
                &o,
                &CheckpointPlan::default(),
                &NoLearnProgress,
            )
        })
        .unwrap()
    };
    let Learned {
        file,
        report,
        weights,
        ..
    } = go(2);

    let cache = Cache::from_env();
    let seqs = training_items(m, &cache, Task::Bbc, &o).unwrap().0;
    let (labels, classes) = training_labels(&cache, Task::Bbc, &o).unwrap();
    assert_eq!((labels.len(), classes), (6, 5));
    let pad = m.tokenizer().unwrap().pad_id();
    let dense = DenseAttention::new(AttentionConfig::default());
    let emb: Vec<Vec<f32>> = seqs
        .iter()
        .map(|s| {
            let b = TokenBatch::from_sequences(vec![s.clone()], pad).unwrap();
            let (e, _) = m.model.embed(&b, &dense, false, true).unwrap();
            e.flatten_all().unwrap().to_vec1::<f32>().unwrap()
        })
        .collect();
    let clf =
        LogisticRegression::fit(&emb, &labels, classes, &ClassificationHead::options()).unwrap();
    let cross_entropy = |labels: &[usize]| {
        emb.iter()
            .zip(labels)
            .map(|(e, &l)| -clf.predict_proba(e).unwrap()[l].ln())
            .sum::<f64>()
            / emb.len() as f64
    };
    // The probe separates its 6 training documents with a wide margin, so the loss of the
    // right labels is tiny; labels out of step with the items (rotated by one class) would
    // cost several nats: the first step's loss tells the two apart.
    let want = cross_entropy(&labels);
    let rotated: Vec<usize> = labels.iter().map(|&l| (l + 1) % classes).collect();
    assert!(cross_entropy(&rotated) > 1.0);
    assert!(
        (report.loss_first - want).abs() <= 1e-3 * want + 1e-6,
        "first loss {} vs host cross-entropy {want}",
        report.loss_first
    );
    assert_eq!(report.probe_train_accuracy, Some(1.0));
    assert!(
        file.meta["method"].contains("cross-entropy"),
        "{:?}",
        file.meta
    );
    assert!(weights.unwrap().meta["loss"].contains("cross-entropy"));
    let again = go(1);
    assert_eq!(
        report.loss_last.to_bits(),
        again.report.loss_last.to_bits(),
        "thread count changed the loss"
    );

    // A perplexity task has no labels: refused before any work.
    let mut ppl = LearnOptions::new(Task::PplAusten);
    ppl.task_loss = ProbeLoss::Classification;
    let e = learn(
        m,
        &Cache::from_env(),
        Task::PplAusten,
        &ppl,
        &CheckpointPlan::default(),
        &NoLearnProgress,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("--task-loss classification"), "{e}");
}

/// Gradient checkpointing (`CheckpointPlan::grad_checkpoint`, each layer recomputed in the
/// backward) changes no bit: MiniLM on BBC with its norms and biases fine-tuned against the
/// datapath, and SmolLM2 on Austen windows with its gains fine-tuned against the datapath
/// from the mass calibration (the recipe of `sprint reproduce`, shortened to 2 steps of 128
/// tokens), checkpointed (MiniLM with 1 and 2 threads, SmolLM2 with 2) and not
/// checkpointed: the same thresholds, fine-tuned tensors and per-step losses (tolerance
/// none); `auto` does not checkpoint the MiniLM run (its layers' tape is estimated under
/// the budget).
#[test]
fn grad_checkpoint_changes_no_bit() {
    use sprint_eval::finetune::Finetune;
    use sprint_eval::learn::{GradCheckpoint, Learned};
    let plan = |g: GradCheckpoint| CheckpointPlan {
        grad_checkpoint: g,
        ..CheckpointPlan::default()
    };
    let go = |m: &LoadedModel, task: Task, o: &LearnOptions, g: GradCheckpoint, threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| learn(m, &Cache::from_env(), task, o, &plan(g), &NoLearnProgress))
            .unwrap()
    };
    let fingerprint = |r: &Learned| -> Vec<u32> {
        let mut v = bits(&r.thresholds);
        v.extend([r.report.loss_first, r.report.loss_last].map(|x| (x as f32).to_bits()));
        for t in r.weights.as_ref().unwrap().tensors.values() {
            let x = t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            v.extend(x.iter().map(|x| x.to_bits()));
        }
        v
    };
    // `threads`: the thread counts the checkpointed run is repeated with; `auto`: also run
    // with the automatic choice (it must not checkpoint these small runs).
    let check = |m: &LoadedModel, task: Task, o: &LearnOptions, threads: &[usize], auto: bool| {
        let off = go(m, task, o, GradCheckpoint::Off, 2);
        assert!(!off.report.grad_checkpoint);
        assert!(off.report.layer_tape_bytes > 0.0);
        assert!(
            off.weights.as_ref().unwrap().tensors.len() > 1,
            "tensors moved"
        );
        for &threads in threads {
            let on = go(m, task, o, GradCheckpoint::On, threads);
            assert!(on.report.grad_checkpoint);
            assert_eq!(
                fingerprint(&off),
                fingerprint(&on),
                "{}: checkpointing changed the result ({threads} threads)",
                m.name
            );
        }
        if auto {
            let auto = go(m, task, o, GradCheckpoint::Auto, 2);
            assert!(!auto.report.grad_checkpoint);
            assert_eq!(fingerprint(&off), fingerprint(&auto));
        }
    };

    if let Some(m) = minilm() {
        let mut o = options();
        o.epochs = 1;
        o.finetune = Finetune::NormsBiases;
        o.ft_lr = 0.01;
        o.datapath = true;
        check(m, Task::Bbc, &o, &[1, 2], true);
    }

    let cache = Cache::from_env();
    for a in [Asset::SmolLm2, Asset::Austen] {
        if let Err(e) = cache.require(a) {
            eprintln!("SKIPPED (asset missing): {e}");
            return;
        }
    }
    let m = sprint_models::load("smollm2", &cache).expect("SmolLM2 loads");
    let mut o = LearnOptions::new(Task::PplAusten);
    o.items = 2;
    o.seq_len = 128;
    o.eval_windows = 1;
    o.eval_seq_len = 64;
    o.epochs = 1;
    o.init_mass = Some(0.985);
    o.finetune = Finetune::NormsBiases;
    o.datapath = true;
    // SmolLM2 once checkpointed (its layers' bit-identity across threads and sizes is
    // crates/sprint-models/tests/grad_checkpoint_tests.rs's; the loop is the same code).
    check(&m, Task::PplAusten, &o, &[2], false);
}
