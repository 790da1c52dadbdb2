//! Datapath precisions: the quantisation scales, the in-memory score's bias correction,
//! the softmax normalisation and the bit widths.

use serde::{Deserialize, Serialize};

use crate::error::{CoreError, Result};

/// Where the per-(layer, head) quantisation scales come from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub enum ScaleSource {
    /// `scale = max |x| / 127` measured on the data of each (layer, head).
    Dynamic,
    /// Fixed scales (real units per integer step), the same for every layer; one value for
    /// all heads or one per head.
    Fixed {
        /// Scale of Q.
        q: ScaleValues,
        /// Scale of K.
        k: ScaleValues,
        /// Scale of V.
        v: ScaleValues,
    },
}

/// One scale for every head, or one per head.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ScaleValues {
    /// Same scale for every head.
    All(f32),
    /// One scale per head (query heads for Q, KV heads for K and V).
    PerHead(Vec<f32>),
}

impl ScaleValues {
    /// Scale of head `h`, or an error if the list is too short.
    pub fn for_head(&self, h: usize, what: &str) -> Result<f32> {
        match self {
            ScaleValues::All(s) => Ok(*s),
            ScaleValues::PerHead(v) => v.get(h).copied().ok_or_else(|| {
                CoreError::config(
                    format!("quant.scales.{what}"),
                    format!("{} per-head scales given, head {h} needs one", v.len()),
                )
            }),
        }
    }
}

/// How the in-memory score on `K_MSB` stands in for the full 8-bit score.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MsbBiasCorrection {
    /// The comparator's reference is lowered per query by the mean contribution of the
    /// unseen low bits, `(2^lsb_bits - 1) / 2 * sum(q_dac)` in `K_LSB` steps: one small adder
    /// tree over the query's DAC codes and a shift per query (docs/functional-model.md).
    QuerySum,
    /// The literal truncated score `q_dac . K_MSB`: biased low by about half a `K_MSB` step
    /// per element times the query sum.
    None,
}

/// How the fixed-point softmax hands the exponentials to the V-PU.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SoftmaxNormalisation {
    /// Each exponential is rounded to a `prob_bits` mantissa and a shift; the V-PU
    /// multiplies V by the mantissa, shifts the product into its accumulator, and the output
    /// is divided once by the sum of the same rounded exponentials. Relative error about
    /// `2^-prob_bits` at every row length.
    Deferred,
    /// The literal datapath: each probability `round(e_j 2^P / sum)` is rounded to `prob_bits`
    /// fractional bits before the V-PU and never renormalised; rows of more than a few
    /// hundred similar keys lose their scale (kept to show what it costs).
    PerKey,
}

/// Precisions of the datapath. All widths are in bits.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QuantConfig {
    /// Source of the Q/K/V scales. Default: dynamic.
    pub scales: ScaleSource,
    /// Bits of the query driven into the crossbar DACs for the in-memory score (1..=8; default 4).
    pub query_dac_bits: u32,
    /// Bits of each key held in the crossbar as `K_MSB` (1..=8; default 4, the paper's split);
    /// the remaining `8 - k_msb_bits` low bits form `K_LSB`, which is only read for the recompute.
    pub k_msb_bits: u32,
    /// How the in-memory score accounts for the `K_LSB` bits it does not see (default
    /// `query-sum`: an unbiased score).
    pub msb_bias_correction: MsbBiasCorrection,
    /// How the softmax unit and the V-PU normalise the exponentials (default `deferred`).
    pub softmax_normalisation: SoftmaxNormalisation,
    /// Width of the exact score from the QK-PU, signed (default 12).
    pub score_bits: u32,
    /// Fractional bits of the exact score in logit units (default 7: range +-16, step 1/128).
    pub score_frac_bits: u32,
    /// Width of each exponential from the softmax unit, unsigned, 1.0 = 2^(exp_bits-1) (default 17).
    pub exp_bits: u32,
    /// Significant bits kept of the sum of exponentials before the divide (default 16).
    pub sum_bits: u32,
    /// Bits of the weight operand fed to the 8b x 8b V-PU (default 8): the mantissa of each
    /// exponential under `deferred` normalisation, the probability code (1.0 = 2^prob_bits)
    /// under `per-key` normalisation.
    pub prob_bits: u32,
    /// Width of the V-PU accumulator and output, signed (default 16); the sum saturates.
    pub output_bits: u32,
}

impl Default for QuantConfig {
    fn default() -> Self {
        Self {
            scales: ScaleSource::Dynamic,
            query_dac_bits: 4,
            k_msb_bits: 4,
            msb_bias_correction: MsbBiasCorrection::QuerySum,
            softmax_normalisation: SoftmaxNormalisation::Deferred,
            score_bits: 12,
            score_frac_bits: 7,
            exp_bits: 17,
            sum_bits: 16,
            prob_bits: 8,
            output_bits: 16,
        }
    }
}
