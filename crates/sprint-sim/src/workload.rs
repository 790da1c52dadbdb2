//! The paper's workloads as shapes: layers, heads, head dimension, sequence length, padding
//! and causality. Kept sets come from statistics ([`crate::wstats`]) via the generator
//! ([`crate::generate`]), or from a trace.

use crate::error::{Result, SimError};

/// One model workload.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelWorkload {
    /// Name as in the paper (`BERT-B`, ..., `Synth-2`).
    pub name: String,
    /// Attention layers.
    pub layers: u32,
    /// Query heads per layer.
    pub heads: u32,
    /// Key/value heads per layer.
    pub kv_heads: u32,
    /// Elements per head vector.
    pub head_dim: u32,
    /// Tokens per sequence (queries = keys).
    pub seq_len: u32,
    /// Fraction of the sequence that is padding (trailing), both dimensions.
    pub padding_fraction: f64,
    /// Causal (decoder) attention.
    pub causal: bool,
    /// Where the shape, length and padding come from.
    pub source: String,
}

/// Longest sequence a model workload may have (tokens): 4 x the paper's longest (4096).
pub const MAX_SEQ_LEN: u32 = 16384;

/// Most query-key pairs (layers x heads x seq_len^2) of one simulated model workload: about
/// 100 x the paper's Synth-2. Pairs.
pub const MAX_PAIRS: u64 = 1 << 38;

/// (name, layers, heads, head_dim, seq_len, padding, causal, source).
type Row = (&'static str, u32, u32, u32, u32, f64, bool, &'static str);

const SQUAD: &str = "shape: paper-results.toml [models]; 384 tokens (SQuAD max_seq_length 384) with 46% padding (SPRINT.md s3: about 46% of BERT-SQuAD is padding) [D]";

/// The eight workloads of the paper's Figs 10-12.
const MODELS: &[Row] = &[
    ("BERT-B", 12, 12, 64, 384, 0.46, false, SQUAD),
    ("BERT-L", 24, 16, 64, 384, 0.46, false, SQUAD),
    (
        "ALBERT-XL",
        24,
        32,
        64,
        384,
        0.46,
        false,
        "shape as Fig 10 implies: hidden 2048 as 32 heads x 64 (the public model has 16 x 128; the same MACs and K/V bytes per layer): Fig 10's ALBERT-XL Mask-only bars equal ALBERT-XXL's at S / M / L (75.9 / 87.1 / 98.8 %), and 98.8 % at L needs the padded head's K (384 x 128 B = 48 KB) to fit L's 32 KB, which only 64-element heads do; 384 tokens with 46% padding as the other SQuAD encoders [Fig 10]",
    ),
    ("ALBERT-XXL", 12, 64, 64, 384, 0.46, false, SQUAD),
    (
        "ViT-B",
        12,
        12,
        64,
        197,
        0.0,
        false,
        "paper-results.toml [models]: 197 tokens (196 patches + class), no padding [P]",
    ),
    (
        "GPT-2-L",
        36,
        20,
        64,
        1024,
        0.25,
        true,
        "paper-results.toml [models]: 1024 tokens, causal [P]; 25% padding read off Fig 10's S Mask-only bar (74.2%): a causal-aware Mask only against the query-tiled S-Baseline (64 resident keys, the rest streamed per block) saves 73.8 / 74.5 / 76.6 % at 24 / 25 / 28 % padding (docs/simulator.md 'Workloads') [Fig 10]",
    ),
    (
        "Synth-1",
        12,
        12,
        64,
        2048,
        0.49,
        false,
        "[D] long synthetic sequence: BERT-B shape at 2048 tokens (paper: up to 4096); 49% padding read off Fig 10's S Mask-only bar (74.2%): Mask only moves about (1 - p)^2 of the S-Baseline's K/V (r (r - 64) / (n (n - 64)) with 64 resident keys), so p = 1 - sqrt(0.258) = 0.49 (docs/simulator.md 'Workloads') [Fig 10]",
    ),
    (
        "Synth-2",
        12,
        12,
        64,
        4096,
        0.49,
        false,
        "[D] long synthetic sequence: BERT-B shape at 4096 tokens (paper: up to 4096); 49% padding read off Fig 10's S Mask-only bar (74.2%): Mask only moves about (1 - p)^2 of the S-Baseline's K/V (r (r - 64) / (n (n - 64)) with 64 resident keys), so p = 1 - sqrt(0.258) = 0.49 (docs/simulator.md 'Workloads') [Fig 10]",
    ),
];

/// Names of the built-in workloads, in the paper's order.
pub fn workload_names() -> Vec<&'static str> {
    MODELS.iter().map(|r| r.0).collect()
}

fn norm(s: &str) -> String {
    s.chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .collect::<String>()
        .to_ascii_lowercase()
}

/// The built-in workload `name` (case and punctuation ignored: `gpt2-l` = `GPT-2-L`).
pub fn model_workload(name: &str) -> Result<ModelWorkload> {
    let r = MODELS
        .iter()
        .find(|r| norm(r.0) == norm(name))
        .ok_or_else(|| {
            SimError::workload(
                name,
                format!(
                    "unknown workload (built-in: {})",
                    workload_names().join(", ")
                ),
            )
        })?;
    Ok(ModelWorkload {
        name: r.0.to_string(),
        layers: r.1,
        heads: r.2,
        kv_heads: r.2,
        head_dim: r.3,
        seq_len: r.4,
        padding_fraction: r.5,
        causal: r.6,
        source: r.7.to_string(),
    })
}

impl ModelWorkload {
    /// Real (non-padding) tokens.
    pub fn valid_tokens(&self) -> usize {
        let n = self.seq_len as usize;
        let pad = (self.padding_fraction * n as f64).round() as usize;
        n - pad.min(n.saturating_sub(1))
    }

    /// Checks the fields: sizes non-zero, padding in [0, 1).
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(SimError::workload(&self.name, m));
        if self.layers == 0 || self.heads == 0 || self.head_dim == 0 || self.seq_len == 0 {
            return bad("layers, heads, head_dim and seq_len must be > 0".into());
        }
        if self.kv_heads == 0 || !self.heads.is_multiple_of(self.kv_heads) {
            return bad(format!(
                "kv_heads {} must divide heads {}",
                self.kv_heads, self.heads
            ));
        }
        if self.seq_len > MAX_SEQ_LEN {
            return bad(format!(
                "seq_len {} exceeds the limit of {MAX_SEQ_LEN} tokens (docs/limits.md)",
                self.seq_len
            ));
        }
        let pairs = u64::from(self.layers)
            .saturating_mul(u64::from(self.heads))
            .saturating_mul(u64::from(self.seq_len) * u64::from(self.seq_len));
        if pairs > MAX_PAIRS {
            return bad(format!(
                "{} layers x {} heads x {} x {} tokens = {pairs} query-key pairs exceeds the limit of {MAX_PAIRS} (run time grows with the pairs; docs/limits.md)",
                self.layers, self.heads, self.seq_len, self.seq_len
            ));
        }
        if !(0.0..1.0).contains(&self.padding_fraction) {
            return bad(format!(
                "padding fraction must be in [0, 1), got {}",
                self.padding_fraction
            ));
        }
        Ok(())
    }
}
