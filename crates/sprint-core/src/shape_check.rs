//! Checks of an attention configuration against the shape it will run on, shared by
//! `sprint attend` (shape of the input tensors) and `sprint eval` (geometry of the model),
//! so that both refuse the same configurations the same way.

use crate::config::{AttentionConfig, ScaleSource, ScaleValues};
use crate::error::{CoreError, Result};

/// Checks that `cfg` fits attention with `heads` query heads, `kv_heads` key/value heads
/// and `head_dim` elements per vector:
///
/// - fixed per-head scales give exactly one value per head (query heads for `q`, key/value
///   heads for `k` and `v`), or one value for all;
/// - the key and value buffers hold at least one 8-bit vector (`head_dim` bytes), the rule
///   the simulator applies to its presets.
///
/// Errors are [`CoreError::Config`] naming the key.
pub fn check_config_fits(
    cfg: &AttentionConfig,
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
) -> Result<()> {
    if let ScaleSource::Fixed { q, k, v } = &cfg.quant.scales {
        for (name, vals, want, what) in [
            ("q", q, heads, "query heads"),
            ("k", k, kv_heads, "key/value heads"),
            ("v", v, kv_heads, "key/value heads"),
        ] {
            if let ScaleValues::PerHead(list) = vals
                && list.len() != want
            {
                return Err(CoreError::config(
                    format!("quant.scales.{name}"),
                    format!(
                        "{} per-head scales given for {want} {what}; give exactly {want}, or one value for all",
                        list.len()
                    ),
                ));
            }
        }
    }
    for (key, have) in [
        ("buffer.k_bytes", cfg.buffer.k_bytes),
        ("buffer.v_bytes", cfg.buffer.v_bytes),
    ] {
        if have < head_dim as u64 {
            return Err(CoreError::config(
                key,
                format!(
                    "{have} B is smaller than one 8-bit vector ({head_dim} B at head_dim {head_dim}); the simulator refuses such a buffer too"
                ),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scale_counts_must_match_and_buffers_hold_a_vector() {
        let mut cfg = AttentionConfig::default();
        assert!(check_config_fits(&cfg, 4, 2, 64).is_ok());
        cfg.quant.scales = ScaleSource::Fixed {
            q: ScaleValues::PerHead(vec![0.1; 5]),
            k: ScaleValues::All(0.1),
            v: ScaleValues::PerHead(vec![0.1; 2]),
        };
        let e = check_config_fits(&cfg, 4, 2, 64).unwrap_err().to_string();
        assert!(
            e.contains("quant.scales.q: 5 per-head scales given for 4"),
            "{e}"
        );
        cfg.quant.scales = ScaleSource::Dynamic;
        cfg.buffer.k_bytes = 1;
        let e = check_config_fits(&cfg, 4, 2, 64).unwrap_err().to_string();
        assert!(e.contains("buffer.k_bytes: 1 B is smaller"), "{e}");
    }
}
