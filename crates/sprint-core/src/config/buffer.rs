//! The on-chip buffers and which kept keys count as already on chip.

use serde::{Deserialize, Serialize};

/// Which keys the locality engine finds on chip.
///
/// Names are what the configs and trace headers hold; the spellings of earlier releases
/// (`paper` for the strict rule, `residency-lru` for residency) are still read, so traces
/// written before the rename replay with the policy that made them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LocalityPolicy {
    /// The default: a residency table keyed by token index. Keys stay on chip while the
    /// buffer has room; when room is needed, resident keys the current query pruned go
    /// first (those it just stopped keeping before older ones), then the least recently
    /// kept; resident keys are served first. The paper's Fig 10 requires it: SPRINT's
    /// traffic falls with the buffer (BERT-B 97.5 -> 98.4 -> 98.8 % at S/M/L) and equals
    /// Mask only's at L, which a buffer holding only the previous kept set cannot give.
    #[serde(alias = "residency-lru")]
    Residency,
    /// The strict reading of the SLD engine (an option): the buffer holds what fitted of
    /// the previous query's kept set only, so `reuse = P_t AND P_(t-1)`, everything else
    /// of `P_t` is fetched, and keys of `P_(t-1)` outside `P_t` are dropped even when the
    /// buffer has free slots. Fig 10 contradicts it as the paper's design.
    #[serde(alias = "paper")]
    SldStrict,
}

impl LocalityPolicy {
    /// The kebab-case name used in configs and trace headers.
    pub fn name(self) -> &'static str {
        match self {
            LocalityPolicy::Residency => "residency",
            LocalityPolicy::SldStrict => "sld-strict",
        }
    }
}

/// On-chip buffers seen by the locality engine.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BufferConfig {
    /// Key buffer capacity in bytes (holds full 8-bit keys: K_MSB and K_LSB; default 8192).
    pub k_bytes: u64,
    /// Value buffer capacity in bytes (8-bit values; default 8192).
    pub v_bytes: u64,
    /// Bytes of the key index sent with each fetched key (default 2).
    pub index_bytes: u32,
    /// Which kept keys count as already on chip (default `residency`; `sld-strict` keeps
    /// only the previous query's kept set).
    pub locality: LocalityPolicy,
}

impl Default for BufferConfig {
    fn default() -> Self {
        Self {
            k_bytes: 8192,
            v_bytes: 8192,
            index_bytes: 2,
            locality: LocalityPolicy::Residency,
        }
    }
}
