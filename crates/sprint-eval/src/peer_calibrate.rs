//! Equal sparsity for the peer designs (`sprint eval --peer-keep F`): each design's own knob
//! calibrated on the calibration items so that it keeps a fraction `F` of the visible
//! (query, key) pairs in the softmax.
//!
//! - Sanger: `prob_threshold`, the quantile of the predicted probabilities
//!   ([`crate::calibrate::ScoreStats::sanger_threshold_for_keep`]).
//! - A3: the post-scoring cut `post_score_ratio` at the published (default) number of search
//!   iterations: the quantile of the candidates' margins below their query's largest
//!   candidate logit ([`PeerStats::a3_ratio_for_keep`]). A target above the candidates'
//!   share keeps every candidate (ratio 0) and the kept fraction stays that share.
//! - Energon: one `alpha` shared by every filtering round, by bisection on a deterministic
//!   sample of the query rows' round scores ([`PeerStats::energon_alpha_for_keep`]).
//! - SpAtten: its token-keep schedule scaled by one factor (each entry `min(1, s f_l)`, the
//!   head schedule as published), by bisection on the kept fraction the schedule gives the
//!   calibration items' token counts ([`spatten_softmax_fraction`]).
//! - LeOPArd runs at SPRINT's thresholds, which the threshold calibration already sets.

use rayon::prelude::*;
use serde::Serialize;
use sprint_core::config::Variant;
use sprint_core::peers::{PeerConfig, SpattenConfig};

use crate::error::Result;
use crate::histogram::ScoreHistogram;

/// Energon's calibration keeps the round scores of every this-many-th query row (query index
/// `i` with `i % ENERGON_ROW_STRIDE == 0`) in memory: a labelled default of this project (no
/// paper value), so that a MiniLM calibration on 16 documents holds about 40 MB.
pub const ENERGON_ROW_STRIDE: usize = 8;

/// Which peer designs a calibration collects statistics for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PeerSet {
    /// Sanger's predicted probabilities.
    pub sanger: bool,
    /// A3's candidate margins.
    pub a3: bool,
    /// Energon's round scores.
    pub energon: bool,
    /// SpAtten's token counts.
    pub spatten: bool,
}

impl PeerSet {
    /// The calibrated peers among `variants`.
    pub fn of(variants: &[Variant]) -> Self {
        Self {
            sanger: variants.contains(&Variant::Sanger),
            a3: variants.contains(&Variant::A3),
            energon: variants.contains(&Variant::Energon),
            spatten: variants.contains(&Variant::Spatten),
        }
    }

    /// Whether any peer is calibrated.
    pub fn any(&self) -> bool {
        self.sanger || self.a3 || self.energon || self.spatten
    }
}

/// What a calibration collects for A3, Energon and SpAtten.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PeerStats {
    /// A3: each candidate's exact logit minus its query's largest candidate logit (logits).
    pub a3_margins: ScoreHistogram,
    /// A3: visible pairs of the rows behind [`Self::a3_margins`].
    pub a3_visible: u64,
    /// Energon: per sampled query row, each round's integer scores of its visible keys,
    /// round after round (`rounds x n` values).
    pub energon_rows: Vec<Vec<i32>>,
    /// Energon: filtering rounds per row in [`Self::energon_rows`].
    pub energon_rounds: usize,
    /// SpAtten: real tokens of each calibration sequence.
    pub spatten_tokens: Vec<usize>,
    /// SpAtten: whether the model is causal.
    pub spatten_causal: bool,
}

impl PeerStats {
    /// Adds `other`'s statistics.
    pub fn merge(&mut self, other: PeerStats) {
        self.a3_margins.merge(&other.a3_margins);
        self.a3_visible += other.a3_visible;
        if !other.energon_rows.is_empty() {
            self.energon_rounds = other.energon_rounds;
        }
        self.energon_rows.extend(other.energon_rows);
        self.spatten_tokens.extend(other.spatten_tokens);
        self.spatten_causal |= other.spatten_causal;
    }

    /// A3's `post_score_ratio` that keeps a fraction `keep` of the visible pairs of the
    /// calibration rows in the softmax: `exp(m)` with `m` the margin quantile above which
    /// `keep x visible` candidates lie; 0 (every candidate) when the candidates are fewer.
    /// `None` when nothing was collected.
    pub fn a3_ratio_for_keep(&self, keep: f64) -> Result<Option<f32>> {
        crate::histogram::check_keep(keep)?;
        let cands = self.a3_margins.total();
        if self.a3_visible == 0 || cands == 0 {
            return Ok(None);
        }
        let target = keep * self.a3_visible as f64;
        if target >= cands as f64 {
            return Ok(Some(0.0));
        }
        let m = self.a3_margins.threshold_for_keep(target / cands as f64)?;
        Ok(Some(m.min(0.0).exp()))
    }

    /// Fraction of the visible pairs of the sampled Energon rows that survive every round
    /// with `alpha` in each.
    pub fn energon_fraction(&self, alpha: f32) -> f64 {
        let alphas = vec![alpha; self.energon_rounds];
        let (kept, visible) = self
            .energon_rows
            .par_iter()
            .map_init(
                || (Vec::new(), Vec::new()),
                |(keep, next), row| {
                    let n = row.len() / self.energon_rounds.max(1);
                    let rounds: Vec<&[i32]> = row.chunks_exact(n.max(1)).collect();
                    keep.clear();
                    keep.extend(0..n);
                    let mut survivors = [0u64; 0];
                    sprint_attention::peers::energon::filter_rounds(
                        &alphas,
                        &rounds,
                        0,
                        keep,
                        next,
                        &mut survivors,
                    );
                    (keep.len() as u64, n as u64)
                },
            )
            .reduce(|| (0, 0), |a, b| (a.0 + b.0, a.1 + b.1));
        kept as f64 / visible.max(1) as f64
    }

    /// Energon's `alpha`, shared by every round, at which the sampled rows keep at least a
    /// fraction `keep` of their visible pairs: the largest such value in [-1, 1] found by
    /// bisection to 2^-20 (the kept fraction falls as `alpha` grows; -1 keeps every key).
    /// `None` when nothing was collected.
    pub fn energon_alpha_for_keep(&self, keep: f64) -> Result<Option<f32>> {
        crate::histogram::check_keep(keep)?;
        if self.energon_rows.is_empty() || self.energon_rounds == 0 {
            return Ok(None);
        }
        if self.energon_fraction(1.0) >= keep {
            return Ok(Some(1.0));
        }
        let (mut lo, mut hi) = (-1.0f32, 1.0f32);
        for _ in 0..21 {
            let mid = 0.5 * (lo + hi);
            if self.energon_fraction(mid) >= keep {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        Ok(Some(lo))
    }
}

/// SpAtten's token-keep schedule scaled by `scale`: each entry `min(1, scale f)`, at least
/// 1e-6 (a schedule fraction must be positive; the kept count is at least one token anyway).
pub fn scaled_token_keep(cfg: &SpattenConfig, scale: f64) -> Vec<f32> {
    cfg.token_keep
        .iter()
        .map(|&f| (scale * f64::from(f)).clamp(1e-6, 1.0) as f32)
        .collect()
}

/// The fraction of the visible pairs SpAtten keeps in the softmax over sequences of
/// `tokens` real tokens, for a model of `layers` layers and `heads` query heads, with the
/// token schedule scaled by `scale` ([`scaled_token_keep`]): layer 0 keeps everything,
/// layer `l` keeps `h_l` heads and `k_l` tokens (the cascade of [`SpattenConfig::kept_count`]
/// over the schedules), so `h_l k_l / (H n)` of its pairs. Exact for a bidirectional model
/// (every query sees every kept token); for a causal one it assumes the kept tokens are
/// spread over the positions as the visible ones are, which the measured fraction then checks.
pub fn spatten_softmax_fraction(
    cfg: &SpattenConfig,
    layers: usize,
    heads: usize,
    tokens: &[usize],
    causal: bool,
    scale: f64,
) -> f64 {
    let token_keep = scaled_token_keep(cfg, scale);
    let (mut kept, mut visible) = (0.0f64, 0.0f64);
    for &n in tokens {
        let pairs = if causal {
            (n * (n + 1) / 2) as f64
        } else {
            (n * n) as f64
        };
        let (mut k, mut h) = (n, heads);
        for l in 0..layers {
            if l > 0 {
                let tf = SpattenConfig::schedule_entry(&token_keep, l, layers);
                let hf = SpattenConfig::schedule_entry(&cfg.head_keep, l, layers);
                k = k.min(SpattenConfig::kept_count(tf, n));
                h = h.min(SpattenConfig::kept_count(hf, heads));
            }
            kept += pairs * (h * k) as f64 / n.max(1) as f64;
            visible += pairs * heads as f64;
        }
    }
    kept / visible.max(1.0)
}

/// The smallest scale of SpAtten's token schedule whose kept fraction
/// ([`spatten_softmax_fraction`]) reaches `keep`, by bisection to 1e-9 over
/// `[0, 1 / min f]` (beyond it every entry is 1); the upper end when even that keeps less.
/// `None` when no token count was collected.
pub fn spatten_scale_for_keep(
    cfg: &SpattenConfig,
    layers: usize,
    heads: usize,
    tokens: &[usize],
    causal: bool,
    keep: f64,
) -> Result<Option<f64>> {
    crate::histogram::check_keep(keep)?;
    if tokens.is_empty() || layers == 0 || heads == 0 {
        return Ok(None);
    }
    let min_f = cfg
        .token_keep
        .iter()
        .copied()
        .fold(1.0f32, f32::min)
        .max(1e-6);
    let frac = |s: f64| spatten_softmax_fraction(cfg, layers, heads, tokens, causal, s);
    let (mut lo, mut hi) = (0.0f64, 1.0 / f64::from(min_f));
    if frac(hi) < keep {
        return Ok(Some(hi));
    }
    while hi - lo > 1e-9 {
        let mid = 0.5 * (lo + hi);
        if frac(mid) >= keep {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    Ok(Some(hi))
}

/// The peer knobs calibrated to a kept fraction (`--peer-keep`), as recorded in the JSON
/// report (`peer_knobs`); a design that did not run is `None`.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct PeerKnobs {
    /// The target fraction of the visible pairs in the softmax.
    pub keep: f64,
    /// Sanger's `prob_threshold` (a probability).
    pub sanger_prob_threshold: Option<f32>,
    /// A3's `post_score_ratio` (a weight ratio; 0 keeps every candidate).
    pub a3_post_score_ratio: Option<f32>,
    /// Energon's `alpha`, the same in every round.
    pub energon_alpha: Option<f32>,
    /// The factor on SpAtten's token-keep schedule.
    pub spatten_token_scale: Option<f64>,
    /// The calibration items (e.g. `16 documents of the train split`).
    pub items: String,
}

impl PeerKnobs {
    /// `peers` with the calibrated knobs set.
    pub fn apply(&self, peers: &PeerConfig) -> PeerConfig {
        let mut p = peers.clone();
        if let Some(t) = self.sanger_prob_threshold {
            p.sanger.prob_threshold = t;
        }
        if let Some(r) = self.a3_post_score_ratio {
            p.a3.post_score_ratio = r;
        }
        if let Some(a) = self.energon_alpha {
            p.energon.round_alpha = vec![a; p.energon.round_alpha.len()];
        }
        if let Some(s) = self.spatten_token_scale {
            p.spatten.token_keep = scaled_token_keep(&peers.spatten, s);
        }
        p
    }

    /// The knobs in words, one design after the other.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(t) = self.sanger_prob_threshold {
            parts.push(format!("sanger prob_threshold {t:.6}"));
        }
        if let Some(r) = self.a3_post_score_ratio {
            parts.push(format!("a3 post_score_ratio {r:.6}"));
        }
        if let Some(a) = self.energon_alpha {
            parts.push(format!("energon round_alpha {a:.5} (every round)"));
        }
        if let Some(s) = self.spatten_token_scale {
            parts.push(format!("spatten token_keep x {s:.4}"));
        }
        format!(
            "peers calibrated to keep {:.1} % of the visible pairs on {}: {}",
            100.0 * self.keep,
            self.items,
            parts.join("; ")
        )
    }
}
