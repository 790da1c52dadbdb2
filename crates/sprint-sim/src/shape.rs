//! The shape of one simulated head ([`HeadShape`]) and which of its tokens are real
//! ([`Validity`]); re-exported by `crate::head`.

use sprint_core::config::LocalityPolicy;

/// Which keys (or queries) of a head are real tokens.
#[derive(Clone, Debug, PartialEq)]
pub enum Validity {
    /// The first `m` are real, the rest padding.
    Prefix(usize),
    /// Bit `j` set when token `j` is real (`words_for(n)` words).
    Bits(Vec<u64>),
}

impl Validity {
    /// From a bit vector: a prefix when it is one (faster), bits otherwise.
    pub fn from_words(n: usize, words: &[u64]) -> Self {
        let count: usize = words.iter().map(|w| w.count_ones() as usize).sum();
        let prefix = (0..count).all(|j| words[j / 64] >> (j % 64) & 1 == 1);
        if prefix && count <= n {
            Validity::Prefix(count)
        } else {
            Validity::Bits(words.to_vec())
        }
    }

    /// Number of real tokens.
    pub fn count(&self) -> usize {
        match self {
            Validity::Prefix(m) => *m,
            Validity::Bits(w) => w.iter().map(|x| x.count_ones() as usize).sum(),
        }
    }
}

/// Shape and identity of one head.
#[derive(Clone, Debug, PartialEq)]
pub struct HeadShape {
    /// Queries (mask rows).
    pub n_queries: usize,
    /// Keys (mask columns).
    pub n_keys: usize,
    /// Elements per vector.
    pub head_dim: u32,
    /// Causal masking (query `i` sees keys `0..=i`).
    pub causal: bool,
    /// This query head is the first of its K/V group and is charged the K/V writes.
    pub writes_kv: bool,
    /// Policy of the `locality` reuse: the trace's (its header), `residency` for generated
    /// workloads.
    pub locality: LocalityPolicy,
    /// Mean keys kept in memory per real query of the head, when the workload prunes
    /// (`None`: every visible key); sizes the Little's-law run-ahead
    /// ([`crate::config::RunAhead::LittlesLaw`]).
    pub mean_kept_keys: Option<f64>,
}
