//! Every instruction-set copy of the datapath computes the same bits: the row loop compiled
//! for baseline x86-64, AVX2 and AVX-512, and the score GEMMs on the int8 kernels or on the
//! f32 fallback. The level is fixed once per process, so the test re-runs this binary with
//! `SPRINT_SIMD` capped at each level and compares a digest of everything `run_layer`
//! returns (output bits, masks, per-query counts, head statistics).
//!
//! The peer designs' models (Sanger, LeOPArd, A3, Energon, SpAtten) are digested the same
//! way, and their digest is also pinned: the value their straightforward first versions
//! computed, before their loops were made fast (docs/peers.md, "Speed at 4096 keys"). Every
//! such change must leave every output bit, mask, per-query record and counter unchanged.

use std::process::Command;

use sprint_attention::peers::spatten::{Cascade, run_layer as spatten_layer};
use sprint_attention::synth::{SynthSpec, generate};
use sprint_attention::{AttentionInput, LayerRun, SIMD_CAP_ENV, run_layer};
use sprint_core::config::{AttentionConfig, RecomputeMode, Variant};

/// Set in the child processes: the name of the level they run at.
const CHILD_ENV: &str = "SPRINT_SIMD_LEVELS_CHILD";

/// FNV-1a over a stream of 64-bit words.
struct Digest(u64);

impl Digest {
    fn add(&mut self, x: u64) {
        for b in x.to_le_bytes() {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
        }
    }
}

/// Two query heads on one KV head, 1500 tokens of which 37 are padding, d = 64, from `seed`.
fn rows_of_1500_keys(seed: u64) -> AttentionInput {
    generate(&SynthSpec {
        heads: 2,
        kv_heads: 1,
        seq: 1500,
        head_dim: 64,
        padding: 37,
        seed,
        ..SynthSpec::default()
    })
}

/// Digest of every variant and mode on 1500 real-length rows, ideal and noisy cells.
fn digest_of_all_variants() -> u64 {
    let input = rows_of_1500_keys(5);
    let mut digest = Digest(0xcbf2_9ce4_8422_2325);
    for noise in ["ideal", "typical"] {
        for variant in [
            Variant::Dense,
            Variant::RuntimePruning,
            Variant::SprintNoRecompute,
            Variant::Sprint,
        ] {
            for recompute in [RecomputeMode::FixedPoint, RecomputeMode::Float] {
                let mut cfg = AttentionConfig::default()
                    .with_overrides(&[format!("noise.preset={noise}")])
                    .expect("preset");
                cfg.variant = variant;
                cfg.recompute = recompute;
                cfg.causal = true;
                let run = run_layer(&cfg, 0, &[0.4, 0.9], &input).expect("run");
                run.output
                    .data
                    .iter()
                    .for_each(|x| digest.add(u64::from(x.to_bits())));
                for h in &run.heads {
                    (0..h.masks.rows()).for_each(|i| {
                        h.masks.row_words(i).iter().for_each(|&w| digest.add(w));
                    });
                    h.records.iter().for_each(|r| {
                        digest.add(u64::from(r.kept));
                        digest.add(u64::from(r.softmax_kept));
                    });
                    let s = &h.stats;
                    for x in [
                        s.exact_kept,
                        s.false_pruned,
                        s.false_kept,
                        s.score_saturated,
                        s.output_saturated,
                    ] {
                        digest.add(x);
                    }
                }
            }
        }
    }
    digest.0
}

/// Adds everything a layer run returns: output bits, and each head's trace (masks,
/// per-query records, statistics) through its `Debug` form, which prints every field.
fn add_run(digest: &mut Digest, run: &LayerRun) {
    run.output
        .data
        .iter()
        .for_each(|x| digest.add(u64::from(x.to_bits())));
    digest.add(run.visible_pairs);
    for h in &run.heads {
        for b in format!("{h:?}").bytes() {
            digest.add(u64::from(b));
        }
    }
}

/// The peers' digest recorded at commit 8e2b18d (their straightforward versions), on
/// x86-64 with AVX-512 and with the instruction set capped at AVX2 and at baseline.
const PEERS_DIGEST: u64 = 0xe496_aa1f_a6b6_c0f8;

/// Digest of every peer design on 1500-key rows (two query heads on one KV head, 37 padding
/// tokens), causal and not, at its published parameters and at settings that keep about a
/// quarter of the keys; SpAtten on its first layer (every token) and on a cascade's layer 11
/// (30 % of the tokens), with progressive quantisation off and on.
fn digest_of_peers() -> u64 {
    let input = rows_of_1500_keys(9);
    let mut digest = Digest(0xcbf2_9ce4_8422_2325);
    let settings: [(Variant, &[&str]); 8] = [
        (Variant::Sanger, &[]),
        (Variant::Sanger, &["peers.sanger.prob_threshold=3e-4"]),
        (Variant::Leopard, &[]),
        (Variant::A3, &[]),
        (Variant::A3, &["peers.a3.post_score_ratio=0.05"]),
        (Variant::A3, &["peers.a3.iterations_per_key=0.3"]),
        (Variant::Energon, &[]),
        (Variant::Energon, &["peers.energon.round_alpha=[0.3, -0.2]"]),
    ];
    for causal in [false, true] {
        for (variant, sets) in settings {
            let sets: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
            let mut cfg = AttentionConfig::default()
                .with_overrides(&sets)
                .expect("overrides");
            cfg.variant = variant;
            cfg.causal = causal;
            let run = run_layer(&cfg, 0, &[0.4, 0.9], &input).expect("run");
            add_run(&mut digest, &run);
        }
        for progressive in [false, true] {
            spatten_digest(&mut digest, &input, causal, progressive);
        }
    }
    digest.0
}

/// SpAtten's layers 0 and 11 of a 24-layer cascade (its published schedules) into `digest`,
/// with the importance each layer returns.
fn spatten_digest(digest: &mut Digest, input: &AttentionInput, causal: bool, progressive: bool) {
    let mut cfg = AttentionConfig {
        variant: Variant::Spatten,
        causal,
        ..AttentionConfig::default()
    };
    cfg.peers.spatten.progressive_quantization = progressive;
    let mut cascade = Cascade::new(24);
    let (nk, heads) = (input.k.dims[1], input.q.dims[0]);
    for layer in [0, 11] {
        let plan = cascade
            .plan(
                &cfg.peers.spatten,
                layer,
                input.key_valid.as_deref(),
                nk,
                heads,
            )
            .expect("plan");
        let run = spatten_layer(&cfg, layer, &plan, input).expect("spatten layer");
        add_run(digest, &run.run);
        run.token_importance
            .iter()
            .chain(&run.head_importance)
            .for_each(|x| digest.add(x.to_bits()));
        digest.add(run.requant_rows);
        cascade.record(&run).expect("record");
    }
}

#[test]
fn the_peers_compute_the_bits_of_their_first_versions() {
    let got = digest_of_peers();
    assert_eq!(
        got, PEERS_DIGEST,
        "peers digest {got:016x}, recorded {PEERS_DIGEST:016x}: an output bit, a mask, a record or a counter changed"
    );
}

#[test]
fn every_instruction_set_copy_computes_the_same_bits() {
    if let Ok(level) = std::env::var(CHILD_ENV) {
        // Child: print the digests for the parent.
        println!(
            "DIGEST {level} {:016x}{:016x}",
            digest_of_all_variants(),
            digest_of_peers()
        );
        return;
    }
    let exe = std::env::current_exe().expect("test binary");
    let mut digests = Vec::new();
    for level in ["baseline", "avx2", "avx512"] {
        let out = Command::new(&exe)
            .args([
                "--exact",
                "every_instruction_set_copy_computes_the_same_bits",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, level)
            .env(SIMD_CAP_ENV, level)
            .output()
            .expect("run the child");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{level}: {text}");
        let tag = format!("DIGEST {level} ");
        let digest = text
            .find(&tag)
            .map(|at| text[at + tag.len()..].chars().take(32).collect::<String>())
            .unwrap_or_else(|| panic!("{level}: no digest in {text}"));
        digests.push((level, digest));
    }
    assert!(
        digests.iter().all(|(_, d)| *d == digests[0].1),
        "copies disagree: {digests:?}"
    );
}
