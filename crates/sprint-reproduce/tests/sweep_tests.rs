//! The precision sweep on a perplexity task at toy sizes (SmolLM2, one window of 48 tokens,
//! 2 and 6 key bits): every point gets its mean per-token KL of the next-token distribution
//! from dense and from the reference point (the most bits), with intervals that hold the
//! point; the reference against itself is zero; the perplexities are those of plain
//! evaluations of the same points.

use sprint_assets::{Asset, Cache};
use sprint_core::config::Variant;
use sprint_eval::run::{EvalOptions, NoProgress, ThresholdChoice, evaluate};
use sprint_reproduce::mode::{Mode, Plan};
use sprint_reproduce::stages::{StageCtx, SweepOn, Thresholds, sprint_sweep};

#[test]
fn perplexity_sweep_has_token_kl_from_dense_and_the_reference() {
    let cache = Cache::from_env();
    for a in [Asset::SmolLm2, Asset::Austen] {
        if let Err(e) = cache.require(a) {
            eprintln!("SKIPPED (asset missing): {e}");
            return;
        }
    }
    let plan = Plan::new(Mode::Quick, 0);
    let ctx = StageCtx::new(&plan, &cache, &NoProgress);
    let on = SweepOn {
        model: "smollm2",
        task: "ppl-austen",
        limit: 1,
        seq_len: 48,
        variants: vec![Variant::Sprint],
    };
    let th = Thresholds::best_for("smollm2", "ppl-austen", std::path::Path::new(".")).unwrap();
    let points: Vec<(String, f64, Vec<String>)> = [2u32, 6]
        .iter()
        .map(|b| {
            (
                format!("{b} bits"),
                f64::from(*b),
                vec![format!("quant.k_msb_bits={b}")],
            )
        })
        .collect();
    let c = sprint_sweep(&ctx, "test", &on, &th, &points, Some(1)).unwrap();
    assert_eq!(c.points.len(), 2);
    assert_eq!(c.reference.as_deref(), Some("6 bits"));
    let (two, six) = (&c.points[0], &c.points[1]);
    assert_eq!((two.x, six.x), (2.0, 6.0), "points keep their order");
    let own = six.vs_reference.as_ref().unwrap();
    assert_eq!(
        (own.token_kl_mean, own.token_kl_ci95),
        (Some(0.0), Some((0.0, 0.0)))
    );
    for (p, f) in [
        (two, two.vs_reference.as_ref().unwrap()),
        (two, two.fidelity.as_ref().unwrap()),
        (six, six.fidelity.as_ref().unwrap()),
    ] {
        let m = f.token_kl_mean.unwrap();
        let (lo, hi) = f.token_kl_ci95.unwrap();
        assert!(m.is_finite() && m >= 0.0, "{} {f:?}", p.x_label);
        assert!(lo <= m && m <= hi, "{} {f:?}", p.x_label);
    }
    // The same perplexities as plain evaluations of the points.
    for (p, (_, _, sets)) in c.points.iter().zip(&points) {
        let mut o = EvalOptions::new(sprint_eval::Task::PplAusten);
        o.limit = Some(1);
        o.seq_len = Some(48);
        o.seed = plan.seed;
        o.variants = vec![Variant::Sprint];
        o.thresholds = ThresholdChoice::Calibrate {
            keep: plan.keep,
            per_head: false,
            items: None,
            method: sprint_eval::calibrate::KeepMethod::Mass,
        };
        o.attention = sprint_core::config::AttentionConfig {
            seed: plan.seed,
            ..Default::default()
        }
        .with_overrides(sets)
        .unwrap();
        let r = evaluate(
            &ctx.model("test", "smollm2").unwrap(),
            &cache,
            &o,
            &NoProgress,
        )
        .unwrap();
        assert_eq!(
            r.rows[0].metric.to_bits(),
            p.metric.to_bits(),
            "{}",
            p.x_label
        );
    }
}
