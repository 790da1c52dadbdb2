//! Every instruction-set copy of the datapath computes the same bits: the row loop compiled
//! for baseline x86-64, AVX2 and AVX-512, and the score GEMMs on the int8 kernels or on the
//! f32 fallback. The level is fixed once per process, so the test re-runs this binary with
//! `SPRINT_SIMD` capped at each level and compares a digest of everything `run_layer`
//! returns (output bits, masks, per-query counts, head statistics).

use std::process::Command;

use sprint_attention::synth::{SynthSpec, generate};
use sprint_attention::{SIMD_CAP_ENV, run_layer};
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

/// Digest of every variant and mode on 1500 real-length rows, ideal and noisy cells.
fn digest_of_all_variants() -> u64 {
    let input = generate(&SynthSpec {
        heads: 2,
        kv_heads: 1,
        seq: 1500,
        head_dim: 64,
        padding: 37,
        seed: 5,
        ..SynthSpec::default()
    });
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

#[test]
fn every_instruction_set_copy_computes_the_same_bits() {
    if let Ok(level) = std::env::var(CHILD_ENV) {
        // Child: print the digest for the parent.
        println!("DIGEST {level} {:016x}", digest_of_all_variants());
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
            .map(|at| text[at + tag.len()..].chars().take(16).collect::<String>())
            .unwrap_or_else(|| panic!("{level}: no digest in {text}"));
        digests.push((level, digest));
    }
    assert!(
        digests.iter().all(|(_, d)| *d == digests[0].1),
        "copies disagree: {digests:?}"
    );
}
