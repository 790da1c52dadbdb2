//! The peer designs' functional models against SPRINT's datapath, timed side by side on the
//! same tensors: every design runs one pass over every head of a layer (`run_layer`, for
//! SpAtten `peers::spatten::run_layer`), in alternating rounds, and the ratio of each
//! design's time to `sprint`'s time of the same round is printed (docs/peers.md, "Speed at
//! 4096 keys"). The machine may be shared, so absolute times move; the ratios of one round
//! are what this measures.
//!
//! Run: `MIMALLOC_PURGE_DELAY=-1 cargo bench -p sprint-bench --bench peers` (the allocator
//! setting `sprint` makes at start). Environment (defaults in brackets):
//! `SPRINT_BENCH_SEQ` tokens [4096], `SPRINT_BENCH_ROUNDS` alternating rounds [3],
//! `SPRINT_BENCH_REPS` passes per design per round, the median kept [3],
//! `SPRINT_BENCH_THREADS` worker threads [1], `SPRINT_BENCH_KEEP` the kept fraction the
//! calibrated settings aim at [0.25], `SPRINT_BENCH_ONLY` a comma list of case names to run
//! besides `sprint` (all when unset), `SPRINT_BENCH_CAUSAL` `0`, `1` or `both` [both].
//!
//! Input: `sprint synth --heads 4 --seq N --head-dim 64 --locality 0` (random normal Q, K,
//! V). Settings: `sprint` and `leopard` at the threshold at the `1 - keep` quantile of the
//! exact logits of every 8th visible query row; Sanger, A3 and Energon at their published
//! parameters (`configs/peers/published.toml`) and calibrated to `keep` the way `sprint eval
//! --peer-keep` calibrates them; SpAtten on the first layer of its cascade (every token) and
//! on layer 11 (30 % of the tokens, its published schedule).

use std::time::Instant;

use sprint_attention::peers::spatten::{Cascade, LayerPlan, run_layer as spatten_layer};
use sprint_attention::peers::{a3, energon, sanger};
use sprint_attention::synth::{SynthSpec, generate};
use sprint_attention::{AttentionInput, LayerRun, run_layer};
use sprint_core::config::{AttentionConfig, Variant};
use sprint_eval::peer_calibrate::{ENERGON_ROW_STRIDE, PeerStats};

/// The allocator `sprint` uses (run with `MIMALLOC_PURGE_DELAY=-1`, as `sprint` sets it).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const HEADS: usize = 4;
const HEAD_DIM: usize = 64;

/// One timed setting: a name, what it runs, and the fraction of visible pairs it puts in
/// the softmax (measured on its first run).
struct Case {
    name: String,
    run: Box<dyn Fn() -> LayerRun>,
    softmax: f64,
}

fn env_or<T: std::str::FromStr>(key: &str, default: T) -> T {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn softmax_fraction(run: &LayerRun) -> f64 {
    let kept: u64 = run
        .heads
        .iter()
        .flat_map(|h| &h.records)
        .map(|r| u64::from(r.softmax_kept))
        .sum();
    kept as f64 / run.visible_pairs.max(1) as f64
}

/// The value of `v` at which a fraction `keep` of its elements lie at or above it.
fn quantile_from_top(mut v: Vec<f32>, keep: f64) -> f32 {
    let at = ((keep * v.len() as f64) as usize).min(v.len().saturating_sub(1));
    *v.select_nth_unstable_by(at, |a, b| b.total_cmp(a)).1
}

/// Threshold (logits) keeping about `keep` of the visible pairs: the quantile of the exact
/// logits of every 8th query row of head 0.
fn threshold_for_keep(input: &AttentionInput, causal: bool, keep: f64) -> f32 {
    let (n, d) = (input.q.dims[1], HEAD_DIM);
    let (q, k) = (input.q.head(0), input.k.head(0));
    let inv = 1.0 / (d as f32).sqrt();
    let mut logits = Vec::new();
    for i in (0..n).step_by(8) {
        let limit = if causal { i + 1 } else { n };
        for j in 0..limit {
            let s: f32 = (0..d).map(|l| q[i * d + l] * k[j * d + l]).sum();
            logits.push(s * inv);
        }
    }
    quantile_from_top(logits, keep)
}

/// The peers' knobs calibrated to `keep` as `sprint eval --peer-keep` does: Sanger's
/// probability threshold, A3's post-scoring ratio, Energon's shared alpha.
fn calibrated(cfg: &AttentionConfig, input: &AttentionInput, keep: f64) -> AttentionConfig {
    let causal = cfg.causal;
    let mut probs = Vec::new();
    sanger::predicted_probabilities(&cfg.peers.sanger, causal, input, &mut |p| probs.push(p))
        .expect("sanger probabilities");
    let (margins, visible) = a3::candidate_margins(&cfg.peers.a3, causal, input).expect("a3");
    let target = (keep * visible as f64) as usize;
    let ratio = if target >= margins.len() {
        0.0
    } else {
        let frac = target as f64 / margins.len() as f64;
        quantile_from_top(margins, frac).exp()
    };
    let mut stats = PeerStats {
        energon_rounds: cfg.peers.energon.round_key_bits.len(),
        ..PeerStats::default()
    };
    energon::round_scores(
        &cfg.peers.energon,
        causal,
        input,
        ENERGON_ROW_STRIDE,
        &mut |r| stats.energon_rows.push(r.concat()),
    )
    .expect("energon scores");
    let alpha = stats
        .energon_alpha_for_keep(keep)
        .expect("keep")
        .unwrap_or(0.0);
    let mut c = cfg.clone();
    c.peers.sanger.prob_threshold = quantile_from_top(probs, keep);
    c.peers.a3.post_score_ratio = ratio;
    c.peers.energon.round_alpha = vec![alpha; c.peers.energon.round_key_bits.len()];
    c
}

/// SpAtten's plans of layers 0 and 11 of a 24-layer cascade (its published schedules).
fn spatten_plans(cfg: &AttentionConfig, input: &AttentionInput) -> Vec<(usize, LayerPlan)> {
    let mut cascade = Cascade::new(24);
    let n = input.k.dims[1];
    let mut plans = Vec::new();
    for layer in [0, 11] {
        let plan = cascade
            .plan(&cfg.peers.spatten, layer, None, n, HEADS)
            .expect("plan");
        let run = spatten_layer(cfg, layer, &plan, input).expect("spatten");
        cascade.record(&run).expect("record");
        plans.push((layer, plan));
    }
    plans
}

/// Every case of one causal setting, `sprint` first.
fn cases(input: &'static AttentionInput, causal: bool, keep: f64) -> Vec<Case> {
    let th = threshold_for_keep(input, causal, keep);
    let base = AttentionConfig {
        causal,
        ..AttentionConfig::default()
    };
    let cal = calibrated(&base, input, keep);
    let layer = |name: String, variant: Variant, cfg: &AttentionConfig| {
        let cfg = AttentionConfig {
            variant,
            ..cfg.clone()
        };
        let run: Box<dyn Fn() -> LayerRun> =
            Box::new(move || run_layer(&cfg, 0, &[th; HEADS], input).expect("run"));
        (name, run)
    };
    let mut list = vec![
        layer(format!("sprint (Th {th:.3})"), Variant::Sprint, &base),
        layer(format!("leopard (Th {th:.3})"), Variant::Leopard, &base),
        layer("sanger (published)".into(), Variant::Sanger, &base),
        layer(
            format!("sanger (t {:.2e})", cal.peers.sanger.prob_threshold),
            Variant::Sanger,
            &cal,
        ),
        layer("a3 (published)".into(), Variant::A3, &base),
        layer(
            format!("a3 (T {:.2e})", cal.peers.a3.post_score_ratio),
            Variant::A3,
            &cal,
        ),
        layer("energon (published)".into(), Variant::Energon, &base),
        layer(
            format!("energon (alpha {:.3})", cal.peers.energon.round_alpha[0]),
            Variant::Energon,
            &cal,
        ),
    ];
    let sp = AttentionConfig {
        variant: Variant::Spatten,
        ..base.clone()
    };
    for (l, plan) in spatten_plans(&sp, input) {
        let cfg = sp.clone();
        let run: Box<dyn Fn() -> LayerRun> =
            Box::new(move || spatten_layer(&cfg, l, &plan, input).expect("spatten").run);
        list.push((format!("spatten (layer {l})"), run));
    }
    let only: Option<Vec<String>> = std::env::var("SPRINT_BENCH_ONLY")
        .ok()
        .map(|s| s.split(',').map(str::to_string).collect());
    list.into_iter()
        .enumerate()
        .filter(|(i, (name, _))| {
            *i == 0
                || only
                    .as_ref()
                    .is_none_or(|o| o.iter().any(|w| name.starts_with(w)))
        })
        .map(|(_, (name, run))| {
            let softmax = softmax_fraction(&run());
            Case { name, run, softmax }
        })
        .collect()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Times every case in `rounds` alternating rounds (`reps` passes each, the median kept) and
/// prints each case's times and its ratios to `sprint`'s time of the same round.
fn measure(cases: &[Case], rounds: usize, reps: usize) {
    let mut times = vec![Vec::new(); cases.len()];
    for _ in 0..rounds {
        for (c, t) in cases.iter().zip(&mut times) {
            let passes = (0..reps)
                .map(|_| {
                    let start = Instant::now();
                    std::hint::black_box((c.run)());
                    start.elapsed().as_secs_f64()
                })
                .collect();
            t.push(median(passes));
        }
    }
    println!(
        "| case | in the softmax | pass (s, per round) | vs sprint (median; range) |\n|---|---|---|---|"
    );
    for (c, t) in cases.iter().zip(&times) {
        let ratios: Vec<f64> = t.iter().zip(&times[0]).map(|(a, b)| a / b).collect();
        let lo = ratios.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = ratios.iter().copied().fold(0.0, f64::max);
        let per_round: Vec<String> = t.iter().map(|x| format!("{x:.3}")).collect();
        println!(
            "| {} | {:.1} % | {} | {:.2} ({lo:.2}-{hi:.2}) |",
            c.name,
            100.0 * c.softmax,
            per_round.join(", "),
            median(ratios)
        );
    }
}

fn load() -> String {
    std::fs::read_to_string("/proc/loadavg").map_or_else(
        |_| "unknown".into(),
        |s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "),
    )
}

fn main() {
    let seq = env_or("SPRINT_BENCH_SEQ", 4096usize);
    let rounds = env_or("SPRINT_BENCH_ROUNDS", 3usize).max(1);
    let reps = env_or("SPRINT_BENCH_REPS", 3usize).max(1);
    let threads = env_or("SPRINT_BENCH_THREADS", 1usize);
    let keep = env_or("SPRINT_BENCH_KEEP", 0.25f64);
    let causal: Vec<bool> = match std::env::var("SPRINT_BENCH_CAUSAL").as_deref() {
        Ok("0") => vec![false],
        Ok("1") => vec![true],
        _ => vec![false, true],
    };
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .expect("thread pool");
    let input: &'static AttentionInput = Box::leak(Box::new(generate(&SynthSpec {
        heads: HEADS,
        kv_heads: HEADS,
        seq,
        head_dim: HEAD_DIM,
        locality: 0.0,
        ..SynthSpec::default()
    })));
    println!(
        "peers vs sprint: {HEADS} heads x {seq} x {HEAD_DIM}, random normal (sprint synth --locality 0), {threads} thread(s), {rounds} rounds x {reps} passes, keep {keep}; load average at start {}",
        load()
    );
    pool.install(|| {
        for c in causal {
            println!("\ncausal = {c}");
            measure(&cases(input, c, keep), rounds, reps);
        }
    });
    println!("\nload average at end {}", load());
}
