//! `sprint synth`: synthetic Q/K/V with realistic locality, as a safetensors file.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Result, bail};
use sprint_attention::synth::{SynthSpec, generate};

use crate::io::{safetensors_bytes, write_atomic};

/// Arguments of `sprint synth`.
#[derive(clap::Args)]
#[command(allow_negative_numbers = true)]
pub struct Args {
    /// Output safetensors file (tensors `q`, `k`, `v`, and `valid` when padded).
    #[arg(long)]
    out: PathBuf,
    /// Query heads.
    #[arg(long, default_value_t = 4)]
    heads: usize,
    /// Key/value heads (must divide --heads).
    #[arg(long)]
    kv_heads: Option<usize>,
    /// Tokens per head.
    #[arg(long, default_value_t = 256)]
    seq: usize,
    /// Elements per head vector.
    #[arg(long, default_value_t = 64)]
    head_dim: usize,
    /// Trailing padding tokens.
    #[arg(long, default_value_t = 0)]
    padding: usize,
    /// Strength of the local (positional) attention pattern.
    #[arg(long, default_value_t = 3.0)]
    locality: f32,
    #[command(flatten)]
    seed: crate::args::Seed,
}

/// Largest `heads x seq x head_dim` of one synthetic tensor (values): three such f32
/// tensors and their serialised copy stay under about 800 MB.
pub const MAX_SYNTH_VALUES: u64 = 1 << 25;

/// Runs `sprint synth`.
pub fn run(a: Args) -> Result<()> {
    let kv_heads = a.kv_heads.unwrap_or(a.heads);
    if a.heads == 0 || a.seq == 0 || a.head_dim == 0 || kv_heads == 0 {
        bail!("--heads, --kv-heads, --seq and --head-dim must be > 0");
    }
    let values = [a.heads, a.seq, a.head_dim]
        .iter()
        .try_fold(1u64, |acc, &x| acc.checked_mul(x as u64))
        .unwrap_or(u64::MAX);
    if values > MAX_SYNTH_VALUES {
        bail!(
            "--heads x --seq x --head-dim = {values} values per tensor exceeds the limit of {MAX_SYNTH_VALUES} (docs/limits.md)"
        );
    }
    sprint_core::outfile::check_outputs(&[], &[("--out", &a.out)])?;
    if !a.heads.is_multiple_of(kv_heads) {
        bail!(
            "--heads ({}) must be a multiple of --kv-heads ({kv_heads})",
            a.heads
        );
    }
    if a.padding >= a.seq {
        bail!(
            "--padding ({}) must be smaller than --seq ({})",
            a.padding,
            a.seq
        );
    }
    let spec = SynthSpec {
        heads: a.heads,
        kv_heads,
        seq: a.seq,
        head_dim: a.head_dim,
        locality: a.locality,
        padding: a.padding,
        seed: a.seed.seed,
    };
    let input = generate(&spec);
    let valid: Vec<f32> = (0..a.seq)
        .map(|i| if i + a.padding < a.seq { 1.0 } else { 0.0 })
        .collect();
    let mut tensors = vec![
        ("q", input.q.dims.to_vec(), input.q.data.as_slice()),
        ("k", input.k.dims.to_vec(), input.k.data.as_slice()),
        ("v", input.v.dims.to_vec(), input.v.data.as_slice()),
    ];
    if a.padding > 0 {
        tensors.push(("valid", vec![a.seq], valid.as_slice()));
    }
    let bytes = safetensors_bytes(&tensors)?;
    write_atomic(&a.out, |f| Ok(f.write_all(&bytes)?))?;
    println!(
        "wrote {}: q [{}, {}, {}], k/v [{}, {}, {}]",
        a.out.display(),
        a.heads,
        a.seq,
        a.head_dim,
        kv_heads,
        a.seq,
        a.head_dim
    );
    Ok(())
}
