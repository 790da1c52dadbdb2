//! The fine-tuned accuracy stages: the paper's method. The paper reports SPRINT's accuracy
//! after fine-tuning the model with its learned thresholds; here the thresholds are learned
//! with the norms and biases fine-tuned against SPRINT's datapath (`sprint thresholds learn
//! --finetune norms-biases --datapath`; MiniLM BBC on its labels, `--task-loss
//! classification`; SmolLM2 on next-token NLL from the mass calibration), and the honest
//! reference is the same recipe without pruning (its no-pruning twin), evaluated on the
//! same items (MiniLM: compared document by document). docs/thresholds.md.

use std::path::Path;

use sprint_core::config::Variant;
use sprint_eval::Task;
use sprint_eval::finetune::Finetune;
use sprint_eval::learn::{CheckpointPlan, LearnOptions, LearnProgress, Learned, learn};
use sprint_eval::paired::paired_accuracy_delta;
use sprint_eval::probe_loss::ProbeLoss;
use sprint_eval::run::{
    EvalOptions, EvalReport, ProbeFit, ThresholdChoice, VariantResult, evaluate,
};

use crate::error::{ReproduceError, Result};
use crate::mode::FinetunePlan;
use crate::results::{FinetunedResult, FinetunedRow};
use crate::stages::StageCtx;

/// Forwards a training run's stages to the evaluation progress of the reproduction.
struct LearnStages<'a>(&'a dyn sprint_eval::run::Progress);

impl LearnProgress for LearnStages<'_> {
    fn stage(&self, what: &str, len: u64) {
        self.0.stage(what, len);
    }
    fn inc(&self, _status: Option<&str>) {
        self.0.inc(1);
    }
}

/// The task a model's fine-tuned stage trains and evaluates on.
pub fn task_of(model: &str) -> Task {
    if model == "smollm2" {
        Task::PplAusten
    } else {
        Task::Bbc
    }
}

/// The training recipe of `fp` for `model`: `prune` false gives the no-pruning twin.
pub fn recipe(ctx: &StageCtx, model: &str, fp: &FinetunePlan, prune: bool) -> LearnOptions {
    let task = task_of(model);
    let mut o = LearnOptions::new(task);
    o.keep = fp.keep;
    o.items = fp.items;
    o.epochs = fp.epochs;
    o.seq_len = fp.seq_len;
    o.seed = ctx.plan.seed;
    o.finetune = Finetune::NormsBiases;
    o.datapath = prune;
    o.prune = prune;
    if task == Task::Bbc {
        o.batch_size = 4;
        o.limit = fp.eval_items;
        o.init_per_head = true;
        o.task_loss = ProbeLoss::Classification;
    } else {
        o.eval_windows = fp.eval_items;
        o.eval_seq_len = fp.eval_seq_len;
        o.init_mass = fp.init_mass.filter(|_| prune);
    }
    o
}

/// Learns the recipe (with `prune`) and writes its weights file (and, pruning, its
/// thresholds file) at `base` + `.weights.safetensors` / `.toml`; returns the training
/// wall time (s) and the recipe in words.
fn train(
    ctx: &StageCtx,
    stage: &str,
    model: &sprint_models::LoadedModel,
    o: &LearnOptions,
    base: &Path,
) -> Result<(f64, String)> {
    let prune = o.prune;
    let Learned {
        mut file,
        report,
        weights,
        ..
    } = learn(
        model,
        ctx.assets,
        task_of(&model.name),
        o,
        &CheckpointPlan::default(),
        &LearnStages(ctx.progress),
    )
    .map_err(|e| ReproduceError::stage(stage, e))?;
    let mut w = weights.ok_or_else(|| {
        ReproduceError::stage(
            stage,
            "fine-tuning wrote no weights (a model without a base file?)",
        )
    })?;
    let th_path = base.with_extension("toml");
    let w_path = base.with_extension("weights.safetensors");
    w.meta
        .insert("thresholds_file".into(), th_path.display().to_string());
    w.write(&w_path)
        .map_err(|e| ReproduceError::stage(stage, e))?;
    if prune {
        file.meta
            .insert("weights_file".into(), w_path.display().to_string());
        sprint_eval::calibrate::write_threshold_file(&th_path, &file)
            .map_err(|e| ReproduceError::stage(stage, e))?;
    }
    let method = file.meta.get("method").cloned().unwrap_or_default();
    Ok((report.seconds, method))
}

fn find<'a>(r: &'a EvalReport, variant: &str) -> Result<&'a VariantResult> {
    r.rows
        .iter()
        .find(|x| x.variant == variant)
        .ok_or_else(|| ReproduceError::stage("finetuned", format!("no {variant} row")))
}

fn row(label: &str, r: &EvalReport, variant: &str, twin: &EvalReport) -> Result<FinetunedRow> {
    let x = find(r, variant)?;
    let t = find(twin, "dense")?;
    let vs_twin = match (&t.item_correct, &x.item_correct) {
        (Some(a), Some(b)) => {
            Some(paired_accuracy_delta(a, b).map_err(|e| ReproduceError::stage("finetuned", e))?)
        }
        _ => None,
    };
    let change_vs_twin = if r.metric == "perplexity" {
        100.0 * (x.metric / t.metric - 1.0)
    } else {
        100.0 * (x.metric - t.metric)
    };
    let fidelity_vs_twin = Some(
        sprint_eval::fidelity::compare(&t.outputs, &x.outputs)
            .map_err(|e| ReproduceError::stage("finetuned", e))?,
    );
    Ok(FinetunedRow {
        run: label.into(),
        metric: x.metric,
        softmax_fraction: x.softmax_fraction,
        change_vs_twin,
        vs_twin,
        fidelity_vs_twin,
    })
}

/// The stage for `model` (`minilm` or `smollm2`): learn the recipe with pruning and its
/// no-pruning twin, evaluate the twin's dense model and the pruned recipe's dense and
/// SPRINT rows (MiniLM: each variant's probe fitted on its own embeddings), and compare
/// each with the twin. Files go to `base` (`-pruned` and `-twin` suffixes).
pub fn finetuned(
    ctx: &StageCtx,
    stage: &str,
    model: &str,
    fp: &FinetunePlan,
    base: &Path,
) -> Result<FinetunedResult> {
    let m = ctx.model(stage, model)?;
    let task = task_of(model);
    let name = base
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    let pruned_base = base.with_file_name(format!("{name}-pruned"));
    let twin_base = base.with_file_name(format!("{name}-twin"));
    let (s_pruned, method) = train(ctx, stage, &m, &recipe(ctx, model, fp, true), &pruned_base)?;
    let (s_twin, _) = train(ctx, stage, &m, &recipe(ctx, model, fp, false), &twin_base)?;

    let eval = |variants: Vec<Variant>, weights: &Path, thresholds: Option<ThresholdChoice>| {
        let mut o = EvalOptions::new(task);
        o.variants = variants;
        o.limit = if task == Task::Bbc {
            (fp.eval_items > 0).then_some(fp.eval_items)
        } else {
            Some(fp.eval_items)
        };
        o.seq_len = Some(fp.eval_seq_len);
        o.seed = ctx.plan.seed;
        o.weights = Some(weights.to_path_buf());
        o.probe_fit = ProbeFit::PerVariant;
        o.probe_train = ctx.plan.probe_train;
        if let Some(t) = thresholds {
            o.thresholds = t;
        }
        o.attention.seed = ctx.plan.seed;
        evaluate(&m, ctx.assets, &o, ctx.progress).map_err(|e| ReproduceError::stage(stage, e))
    };
    let twin = eval(
        vec![Variant::Dense],
        &twin_base.with_extension("weights.safetensors"),
        None,
    )?;
    let pruned = eval(
        if fp.recipe_dense {
            vec![Variant::Dense, Variant::Sprint]
        } else {
            vec![Variant::Sprint]
        },
        &pruned_base.with_extension("weights.safetensors"),
        Some(ThresholdChoice::File(pruned_base.with_extension("toml"))),
    )?;
    Ok(FinetunedResult {
        // The base model's name (the reports name the overlaid weights file too).
        model: m.name.clone(),
        task: pruned.task.clone(),
        metric: pruned.metric.clone(),
        items: format!("{} {}", pruned.items, pruned.item_name),
        seq_len: pruned.seq_len,
        split: pruned.split.clone(),
        recipe: method,
        learn_seconds: s_pruned + s_twin,
        rows: {
            let mut rows = vec![row("no-pruning twin: dense", &twin, "dense", &twin)?];
            if fp.recipe_dense {
                rows.push(row(
                    "fine-tuned with pruning: dense",
                    &pruned,
                    "dense",
                    &twin,
                )?);
            }
            rows.push(row(
                "fine-tuned with pruning: SPRINT",
                &pruned,
                "sprint",
                &twin,
            )?);
            rows
        },
    })
}
