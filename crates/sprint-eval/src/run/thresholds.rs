//! The thresholds of the non-dense variants: the given ones (file, configuration,
//! explicit values), or a calibration on the task's data when the options ask for one,
//! with the [`ThresholdReport`] saying where they came from.

use sprint_core::config::{ThresholdFile, Thresholds};

use super::ctx::Ctx;
use super::options::{EvalOptions, ThresholdChoice};
use super::report::ThresholdReport;
use crate::calibrate::{
    CalibratingAttention, CalibrationMeta, KeepMethod, ScoreStats, keep_method_description,
    threshold_file, write_threshold_file,
};
use crate::error::{EvalError, Result};
use crate::peer_calibrate::{PeerKnobs, PeerSet, spatten_scale_for_keep};

/// Per-layer thresholds `Th` (logit units) of `th`: each layer's value, or the mean over
/// its heads.
fn per_layer(th: &Thresholds) -> Vec<f32> {
    th.values
        .iter()
        .map(|r| r.iter().sum::<f32>() / r.len().max(1) as f32)
        .collect()
}

pub(super) fn resolve_given(
    choice: &ThresholdChoice,
    opts: &EvalOptions,
    layers: usize,
    heads: usize,
) -> Result<Option<(Thresholds, ThresholdReport)>> {
    match choice {
        ThresholdChoice::File(path) => {
            let f = ThresholdFile::read(path)?;
            let th = f.resolve(layers, heads, &path.display().to_string())?;
            let report = ThresholdReport {
                source: format!("file {}", path.display()),
                method: f
                    .meta
                    .get("method")
                    .cloned()
                    .unwrap_or_else(|| "not stated in the file".into()),
                target_keep: f.meta.get("target_keep").and_then(|s| s.parse().ok()),
                split: f.meta.get("split").cloned(),
                per_layer: per_layer(&th),
            };
            Ok(Some((th, report)))
        }
        ThresholdChoice::Config => {
            let th = opts.attention.thresholds(layers, heads)?;
            let report = ThresholdReport {
                source: "config".into(),
                method: "given in the attention configuration".into(),
                target_keep: None,
                split: None,
                per_layer: per_layer(&th),
            };
            Ok(Some((th, report)))
        }
        ThresholdChoice::Given { thresholds, method } => {
            if thresholds.values.len() != layers
                || thresholds.values.iter().any(|r| r.len() != heads)
            {
                return Err(EvalError::Input(format!(
                    "given thresholds are not {layers} layers x {heads} heads"
                )));
            }
            let report = ThresholdReport {
                source: "given".into(),
                method: method.clone(),
                target_keep: None,
                split: None,
                per_layer: per_layer(thresholds),
            };
            Ok(Some((thresholds.clone(), report)))
        }
        ThresholdChoice::Calibrate { .. } => Ok(None),
    }
}

/// What determines a calibration's score statistics: the model, the task's items and the
/// number of calibration items asked for.
#[derive(Clone, Debug, PartialEq)]
struct CalibKey {
    model: String,
    task: String,
    limit: Option<usize>,
    seq_len: usize,
    seed: u64,
    batch_size: usize,
    items: Option<usize>,
    /// The peers' parameters and which peers, when their statistics are collected too.
    peers: Option<String>,
}

/// Calibrations of this process: the statistics and the description of their data.
static CALIBRATIONS: crate::memo::Memo<CalibKey, (ScoreStats, String)> = crate::memo::Memo::new();

impl Ctx<'_> {
    pub(super) fn calib_choice(&self) -> Option<(f64, bool, Option<usize>, KeepMethod)> {
        match (&self.opts.thresholds, self.needs_th, &self.given) {
            (
                ThresholdChoice::Calibrate {
                    keep,
                    per_head,
                    items,
                    method,
                },
                true,
                None,
            ) => Some((*keep, *per_head, *items, *method)),
            _ => None,
        }
    }

    pub(super) fn calibrator(&self) -> CalibratingAttention {
        let g = self.model.model.geometry();
        let cal = CalibratingAttention::new(self.opts.attention.clone(), g.layers, g.heads);
        if self.peer_keep().is_some() {
            cal.with_peers(self.opts.attention.peers.clone(), self.peer_set())
        } else {
            cal
        }
    }

    /// The calibrated peers among the variants.
    fn peer_set(&self) -> PeerSet {
        PeerSet::of(&self.opts.variants)
    }

    /// The kept fraction the peers' knobs are calibrated to, when asked and a calibrated
    /// peer runs.
    fn peer_keep(&self) -> Option<f64> {
        self.opts.peer_keep.filter(|_| self.peer_set().any())
    }

    /// The peers' knobs at `keep` from the calibration statistics `stats` on `split`.
    fn peer_knobs(&self, stats: &ScoreStats, keep: f64, split: &str) -> Result<PeerKnobs> {
        let set = self.peer_set();
        let g = self.model.model.geometry();
        let sp = &stats.peers;
        Ok(PeerKnobs {
            keep,
            sanger_prob_threshold: if set.sanger {
                stats.sanger_threshold_for_keep(keep)?
            } else {
                None
            },
            a3_post_score_ratio: if set.a3 {
                sp.a3_ratio_for_keep(keep)?
            } else {
                None
            },
            energon_alpha: if set.energon {
                sp.energon_alpha_for_keep(keep)?
            } else {
                None
            },
            spatten_token_scale: if set.spatten {
                spatten_scale_for_keep(
                    &self.opts.attention.peers.spatten,
                    g.layers,
                    g.heads,
                    &sp.spatten_tokens,
                    sp.spatten_causal,
                    keep,
                )?
            } else {
                None
            },
            items: split.to_string(),
        })
    }

    /// The thresholds (logit units) of the non-dense variants and their report. When the
    /// options ask for a calibration, `calibrate(items)` (`items`: the requested number of
    /// calibration items, if any) returns the score statistics and a description of the
    /// calibration data; the thresholds are their quantiles at the target keep fraction,
    /// written to `--save-thresholds` when asked. Otherwise the given ones (file or
    /// configuration), or none when only dense runs.
    pub(super) fn thresholds(
        &self,
        calibrate: impl FnOnce(Option<usize>) -> Result<(ScoreStats, String)>,
    ) -> Result<(Option<Thresholds>, Option<ThresholdReport>)> {
        let choice = self.calib_choice();
        let peer_keep = self.peer_keep();
        if choice.is_none() && peer_keep.is_none() {
            return Ok(self.given.clone().unzip());
        }
        let items = choice.and_then(|c| c.2);
        // The calibration's dense pass does not depend on the attention configuration (its
        // output is dense, its statistics exact scores): a sweep over precisions or noise
        // calibrates once. The peers' statistics do depend on their parameters, which join
        // the key when they are collected.
        let key = CalibKey {
            model: self.model.name.clone(),
            task: self.opts.task.name().into(),
            limit: self.limit,
            seq_len: self.seq_len,
            seed: self.opts.seed,
            batch_size: self.opts.batch_size,
            items,
            peers: peer_keep
                .map(|_| format!("{:?} {:?}", self.opts.attention.peers, self.peer_set())),
        };
        let (stats, split) = CALIBRATIONS.get_or_try(key, || calibrate(items))?;
        if let Some(keep) = peer_keep {
            *self.peer_knobs.borrow_mut() = Some(self.peer_knobs(&stats, keep, &split)?);
        }
        let Some((keep, per_head, _, method)) = choice else {
            return Ok(self.given.clone().unzip());
        };
        let (th, mass) = match method {
            KeepMethod::Quantile => (stats.thresholds(keep, per_head)?, None),
            KeepMethod::Mass => {
                let (th, mass) = stats.mass_thresholds_at_keep(keep, per_head)?;
                (th, Some(mass))
            }
        };
        let description = keep_method_description(per_head, mass);
        let meta = CalibrationMeta {
            target_keep: keep,
            per_head,
            model: self.model.name.clone(),
            task: self.opts.task.name().into(),
            split: split.clone(),
            seed: self.opts.seed,
            scores: stats.total(),
        };
        if let Some(p) = &self.opts.save_thresholds {
            let mut file = threshold_file(&th, &meta);
            file.meta.insert("method".into(), description.clone());
            // Staged with the traces: written when the whole evaluation has succeeded.
            let tmp = sprint_core::outfile::PendingFile::new(p);
            write_threshold_file(tmp.path(), &file)?;
            self.staged.borrow_mut().push((tmp, p.clone()));
        }
        let report = ThresholdReport {
            source: "calibrated".into(),
            method: description,
            target_keep: Some(keep),
            split: Some(split),
            per_layer: per_layer(&th),
        };
        Ok((Some(th), Some(report)))
    }
}
