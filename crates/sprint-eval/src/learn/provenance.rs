//! The provenance of a run's outputs: the `[meta]` of the learned thresholds file (how the
//! thresholds were obtained, on which data, with which recipe) and the metadata of the
//! fine-tuned weights file.

use std::collections::BTreeMap;

use sprint_core::config::{ThresholdFile, Thresholds};
use sprint_models::LoadedModel;

use super::options::LearnOptions;
use super::report::LearnReport;
use crate::finetune::Finetune;

/// The metadata of the weights file of a fine-tuned run: the base model, the recipe.
pub(super) fn weights_meta(
    model: &LoadedModel,
    o: &LearnOptions,
    r: &LearnReport,
) -> BTreeMap<String, String> {
    let mut m = BTreeMap::new();
    m.insert("base_model".into(), model.name.clone());
    if let Some(b) = &model.base {
        m.insert(
            "base_asset".into(),
            b.asset
                .clone()
                .unwrap_or_else(|| "(none: loaded by path)".into()),
        );
        m.insert("base_file".into(), b.file.display().to_string());
    }
    m.insert("finetune".into(), o.finetune.name().into());
    m.insert("task".into(), o.task.clone());
    m.insert(
        "keep".into(),
        if o.prune {
            r.target_keep.to_string()
        } else {
            "1 (pruning off)".into()
        },
    );
    m.insert("per_head".into(), o.per_head.to_string());
    m.insert("steps".into(), r.steps.to_string());
    m.insert("epochs".into(), o.epochs.to_string());
    m.insert("batch_size".into(), o.batch_size.to_string());
    m.insert("items".into(), o.items.to_string());
    m.insert("seq_len".into(), o.seq_len.to_string());
    m.insert("seed".into(), o.seed.to_string());
    m.insert("lr".into(), o.lr.to_string());
    m.insert("ft_lr".into(), o.ft_lr.to_string());
    m.insert("datapath".into(), o.datapath.to_string());
    m.insert(
        "loss".into(),
        if r.task.starts_with("ppl") {
            "mean next-token NLL".into()
        } else {
            o.task_loss.describe().into()
        },
    );
    m
}

/// The thresholds file of learned thresholds, with how they were obtained in `[meta]`.
pub fn learned_file(th: &Thresholds, o: &LearnOptions, r: &LearnReport) -> ThresholdFile {
    let mut m = BTreeMap::new();
    m.insert(
        "method".into(),
        format!(
            "learned ({}): per-{} thresholds trained on candle autograd with the soft mask sigmoid((s - Th)/T), T annealed {} -> {}, loss {} + {} * (kept - {})^2, Adam lr {}, {} epoch{} of batch {}, from {}",
            if o.finetune == Finetune::None {
                "thresholds only, model frozen".to_string()
            } else {
                format!("thresholds with fine-tuning of {}", o.finetune)
            },
            if o.per_head { "head" } else { "layer" },
            o.t_start,
            o.t_end,
            if r.task.starts_with("ppl") {
                "mean next-token NLL"
            } else {
                o.task_loss.describe()
            },
            o.weight,
            r.target_keep,
            o.lr,
            o.epochs,
            if o.epochs == 1 { "" } else { "s" },
            o.batch_size,
            match o.init_mass {
                Some(mass) => format!(
                    "the mass calibration at {mass} of the softmax mass (its kept fraction on the training items, {:.4}, is the target)",
                    r.target_keep
                ),
                None => format!("the quantile calibration at keep {}", o.keep),
            }
        ) + if o.init_per_head { " (per head)" } else { " (per layer)" },
    );
    m.insert(
        "trained_against".into(),
        if o.datapath {
            format!(
                "SPRINT's datapath: the soft mask follows the in-memory comparator (quantised Q DAC codes on K_MSB cells, bias correction, margin) and the recheck of the recomputed score, straight-through gradients; keep target on the keys reaching the softmax; attention-config overrides {:?}{}",
                o.datapath_sets,
                if o.datapath_sets.iter().any(|x| x.starts_with("noise")) {
                    " (noise-aware: a new chip drawn every step)"
                } else {
                    ""
                }
            )
        } else {
            "exact float scores (the runtime-pruning decision)".into()
        },
    );
    m.insert("target_keep".into(), r.target_keep.to_string());
    if let Some(a) = r.probe_train_accuracy {
        m.insert(
            "probe".into(),
            format!(
                "the classification loss's probe: sprint eval's logistic regression with isotropic scaling, fitted on the training documents' dense embeddings, {:.2} % right on them",
                100.0 * a
            ),
        );
    }
    if o.finetune != Finetune::None {
        m.insert(
            "finetune".into(),
            format!(
                "{} (Adam lr {}; {} tensors changed, largest change {:.3e}); {}; needs its weights file (sprint eval --weights); train_kept is on the base model's scores",
                o.finetune,
                o.ft_lr,
                r.tuned_tensors,
                r.tuned_max_change,
                if o.prune {
                    "pruning on"
                } else {
                    "pruning off (dense reference of the recipe: thresholds not trained)"
                }
            ),
        );
    }
    m.insert("model".into(), r.model.clone());
    m.insert("task".into(), r.task.clone());
    m.insert("split".into(), r.split.clone());
    m.insert("seed".into(), o.seed.to_string());
    m.insert("steps".into(), r.steps.to_string());
    m.insert(
        "train_kept".into(),
        format!("{:.6} (exact scores >= Th)", r.train_kept),
    );
    m.insert("units".into(), "logits (softmax input q.k/sqrt(d))".into());
    let (per_layer, per_head) = if o.per_head {
        (None, Some(th.values.clone()))
    } else {
        (Some(th.values.iter().map(|r| r[0]).collect()), None)
    };
    ThresholdFile {
        per_layer,
        per_head,
        meta: m,
    }
}
