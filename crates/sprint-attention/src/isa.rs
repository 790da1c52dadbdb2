//! The instruction-set level the datapath runs at: the widest the CPU has, capped by
//! [`SIMD_CAP_ENV`].

/// The instruction sets a block can run with, narrowest first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Level {
    Baseline,
    Avx2,
    Avx512,
}

/// Environment variable that caps the instruction set (`baseline`, `avx2` or `avx512`), for
/// checking that every copy computes the same bits. `baseline` also keeps the score GEMMs off
/// the int8 kernels (their f32 fallback then runs).
pub const SIMD_CAP_ENV: &str = "SPRINT_SIMD";

/// The level the blocks run at: the widest the CPU has, capped by [`SIMD_CAP_ENV`].
pub(crate) fn level() -> Level {
    static LEVEL: std::sync::OnceLock<Level> = std::sync::OnceLock::new();
    *LEVEL.get_or_init(|| {
        let cap = match std::env::var(SIMD_CAP_ENV).as_deref() {
            Ok("baseline") => Level::Baseline,
            Ok("avx2") => Level::Avx2,
            _ => Level::Avx512,
        };
        detected().min(cap)
    })
}

/// The widest level the CPU supports.
fn detected() -> Level {
    {
        #[cfg(target_arch = "x86_64")]
        {
            if std::is_x86_feature_detected!("avx512f")
                && std::is_x86_feature_detected!("avx512bw")
                && std::is_x86_feature_detected!("avx512vl")
                && std::is_x86_feature_detected!("avx512dq")
                && std::is_x86_feature_detected!("avx2")
                && std::is_x86_feature_detected!("fma")
                && std::is_x86_feature_detected!("bmi2")
                && std::is_x86_feature_detected!("lzcnt")
            {
                return Level::Avx512;
            }
            if std::is_x86_feature_detected!("avx2")
                && std::is_x86_feature_detected!("fma")
                && std::is_x86_feature_detected!("bmi2")
                && std::is_x86_feature_detected!("lzcnt")
            {
                return Level::Avx2;
            }
        }
        Level::Baseline
    }
}
