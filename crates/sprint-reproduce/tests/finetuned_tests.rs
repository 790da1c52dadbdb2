//! The fine-tuned stage of `sprint reproduce` on SmolLM2 at toy sizes (one training window
//! of 32 tokens, one held-out window of 64): it trains the recipe and its no-pruning twin,
//! writes files the readers accept, and reports rows consistent with each other (the
//! MiniLM path runs in every `sprint reproduce --quick`, docs/reproduce.md).

use sprint_assets::{Asset, Cache};
use sprint_core::config::ThresholdFile;
use sprint_eval::run::NoProgress;
use sprint_models::finetuned::FineTunedWeights;
use sprint_reproduce::finetuned::finetuned;
use sprint_reproduce::mode::{FinetunePlan, Mode, Plan};
use sprint_reproduce::stages::StageCtx;

#[test]
fn smollm2_stage_trains_recipe_and_twin() {
    let cache = Cache::from_env();
    for a in [Asset::SmolLm2, Asset::Austen] {
        if let Err(e) = cache.require(a) {
            eprintln!("SKIPPED (asset missing): {e}");
            return;
        }
    }
    let plan = Plan::new(Mode::Quick, 0);
    let fp = FinetunePlan {
        items: 1,
        epochs: 1,
        seq_len: 32,
        keep: 0.25,
        init_mass: Some(0.985),
        eval_items: 1,
        eval_seq_len: 64,
    };
    let ctx = StageCtx::new(&plan, &cache, &NoProgress);
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("run");
    let r = finetuned(&ctx, "test", "smollm2", &fp, &base).unwrap();

    assert_eq!(
        (r.model.as_str(), r.metric.as_str()),
        ("smollm2", "perplexity")
    );
    assert_eq!(r.rows.len(), 3);
    let twin = &r.rows[0];
    assert_eq!(twin.change_vs_twin, 0.0);
    assert_eq!(twin.softmax_fraction, 1.0);
    for row in &r.rows[1..] {
        let want = 100.0 * (row.metric / twin.metric - 1.0);
        assert!((row.change_vs_twin - want).abs() < 1e-9, "{row:?}");
        assert!(row.metric.is_finite() && row.metric > 1.0, "{row:?}");
    }
    let sprint = r.sprint().unwrap();
    assert!(sprint.softmax_fraction > 0.0 && sprint.softmax_fraction < 1.0);
    assert!(
        r.recipe.contains("mass calibration at 0.985"),
        "{}",
        r.recipe
    );

    // The files: the thresholds (SmolLM2: 30 layers x 9 heads) and both weights files.
    let th = ThresholdFile::read(&dir.path().join("run-pruned.toml")).unwrap();
    let per_head = th.per_head.as_ref().unwrap();
    assert_eq!((per_head.len(), per_head[0].len()), (30, 9));
    for f in [
        "run-pruned.weights.safetensors",
        "run-twin.weights.safetensors",
    ] {
        let w = FineTunedWeights::read(&dir.path().join(f)).unwrap();
        assert_eq!(w.tensors.len(), 61, "{f}: every RMS-norm gain");
    }
}
