//! One reproduction run: every stage in order, each taken from the cache when its inputs
//! are unchanged, then the report written into the output folder.

use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use sprint_assets::Cache;
use sprint_core::config::Variant;

use crate::cache::{Cached, StageCache, file_sha256};
use crate::error::{ReproduceError, Result};
use crate::mode::Plan;
use crate::provenance::{Provenance, StageRecord};
use crate::report::{Results, document, verdict_table};
use crate::stages::{self, StageCtx, Thresholds};

/// Progress of a run: stage boundaries, plus the evaluations' own progress inside a stage.
pub trait Progress: sprint_eval::run::Progress {
    /// Stage `index` of `total` begins (`cached`: it is read from the cache).
    fn begin(&self, index: usize, total: usize, stage: &str, cached: bool);
    /// Stage `index` of `total` ended after `seconds` (of this run).
    fn end(&self, index: usize, total: usize, stage: &str, seconds: f64, cached: bool);
}

/// What a run produced.
#[derive(Debug)]
pub struct Outcome {
    /// The verdict table (also the report's first table).
    pub verdict: sprint_report::Table,
    /// Files written, relative to the output folder.
    pub written: sprint_report::document::Written,
    /// Every stage with its time and whether it came from the cache.
    pub stages: Vec<StageRecord>,
}

struct Runner<'a> {
    cache: StageCache,
    plan: &'a Plan,
    tool: String,
    progress: &'a dyn Progress,
    total: usize,
    records: Vec<StageRecord>,
}

impl Runner<'_> {
    /// Runs (or reads from the cache) stage `name` whose result depends on `inputs`;
    /// `valid` rejects a cached result whose artefacts are gone.
    fn stage<T: Serialize + DeserializeOwned>(
        &mut self,
        name: &str,
        inputs: Value,
        valid: impl Fn(&T) -> bool,
        compute: impl FnOnce(&str) -> Result<T>,
    ) -> Result<T> {
        let inputs = json!({
            "stage": name,
            "tool_sha256": self.tool,
            "plan": self.plan,
            "inputs": inputs,
        });
        let key = StageCache::key(&inputs);
        let index = self.records.len();
        if let Some(c) = self
            .cache
            .load::<T>(name, &key)
            .filter(|c| valid(&c.result))
        {
            self.progress.begin(index, self.total, name, true);
            self.progress.end(index, self.total, name, 0.0, true);
            self.records.push(StageRecord {
                stage: name.into(),
                key,
                seconds: c.seconds,
                cached: true,
            });
            return Ok(c.result);
        }
        self.progress.begin(index, self.total, name, false);
        let started = Instant::now();
        let result = compute(&key)?;
        let seconds = started.elapsed().as_secs_f64();
        self.cache.store(&Cached {
            stage: name.into(),
            key: key.clone(),
            seconds,
            inputs,
            result: &result,
        })?;
        self.progress.end(index, self.total, name, seconds, false);
        self.records.push(StageRecord {
            stage: name.into(),
            key,
            seconds,
            cached: false,
        });
        Ok(result)
    }
}

/// sha256 of the running executable: the tool's identity in every cache key (it embeds
/// every configuration file, so any change of code or configuration invalidates).
fn tool_sha256() -> Result<String> {
    let exe = std::env::current_exe()
        .map_err(|e| ReproduceError::Usage(format!("cannot locate the running executable: {e}")))?;
    file_sha256(&exe)
}

/// Runs the whole evaluation of `plan` into `out` on the current rayon pool, with the real
/// assets of `assets` (they must be present: `sprint assets fetch`). `threads` is recorded
/// in the provenance (results do not depend on it).
pub fn reproduce(
    plan: &Plan,
    out: &Path,
    assets: &Cache,
    threads: usize,
    progress: &dyn Progress,
) -> Result<Outcome> {
    if out.exists() && !out.is_dir() {
        return Err(ReproduceError::Usage(format!(
            "--out {}: exists and is not a folder",
            out.display()
        )));
    }
    let cache = StageCache::new(out);
    let artefacts = cache.dir().join("artefacts");
    let n_minilm = plan.minilm_tasks.len();
    let mut r = Runner {
        cache: cache.clone(),
        plan,
        tool: tool_sha256()?,
        progress,
        // accuracy (MiniLM tasks + SmolLM2), fine-tuned (MiniLM, SmolLM2 in --full),
        // precision, noise, sparsity, 2 x sim-paper, one trace replay per accuracy
        // stage, decode.
        total: 2 * (n_minilm + 1)
            + 7
            + usize::from(plan.smollm2_finetune.is_some())
            + usize::from(plan.smollm2_sweep_windows > 0),
        records: Vec::new(),
    };
    let ctx = StageCtx::new(plan, assets, progress);
    let trace_ok = |a: &crate::results::AccuracyResult| {
        a.sprint_trace
            .as_ref()
            .is_some_and(|t| artefacts.join(t).is_file())
    };

    let mut accuracy = Vec::new();
    for (model, task) in plan
        .minilm_tasks
        .iter()
        .map(|t| ("minilm", t.as_str()))
        .chain([("smollm2", "ppl-austen")])
    {
        let th = Thresholds::best_for(model, task, &artefacts)?;
        let name = format!("accuracy-{model}-{task}");
        let inputs = json!({"model": model, "task": task, "thresholds": th.describe(plan.keep)});
        let a = r.stage(&name, inputs, trace_ok, |key| {
            let base = cache.artefact(&name, key, "trace.bin")?;
            stages::accuracy(&ctx, &name, model, task, &th, &base)
        })?;
        accuracy.push(a);
    }

    let mut finetuned = Vec::new();
    for (model, fp) in [
        ("minilm", Some(&plan.minilm_finetune)),
        ("smollm2", plan.smollm2_finetune.as_ref()),
    ] {
        let Some(fp) = fp else { continue };
        let name = format!(
            "accuracy-{model}-{}-finetuned",
            crate::finetuned::task_of(model).name()
        );
        let inputs = json!({
            "pruned": crate::finetuned::recipe(&ctx, model, fp, true),
            "twin": crate::finetuned::recipe(&ctx, model, fp, false),
            "eval": [fp.eval_items, fp.eval_seq_len],
        });
        finetuned.push(r.stage(
            &name,
            inputs,
            |_| true,
            |key| {
                let base = cache.artefact(&name, key, "run")?;
                crate::finetuned::finetuned(&ctx, &name, model, fp, &base)
            },
        )?);
    }

    let learned = Thresholds::best_for("minilm", "bbc", &artefacts)?;
    let Thresholds::Learned(learned_path) = &learned else {
        unreachable!("MiniLM on BBC has a learned thresholds file")
    };
    let th_inputs = json!({"thresholds": learned.describe(plan.keep)});
    let bits: Vec<(String, f64, Vec<String>)> = plan
        .k_msb_bits
        .iter()
        .map(|b| {
            (
                format!("{b} bits"),
                f64::from(*b),
                vec![format!("quant.k_msb_bits={b}")],
            )
        })
        .collect();
    // The precision sweep's reference point: the most key bits.
    let most_bits = (0..bits.len()).max_by(|&a, &b| bits[a].1.total_cmp(&bits[b].1));
    let bbc = stages::SweepOn {
        model: "minilm",
        task: "bbc",
        limit: plan.sweep_limit,
        seq_len: plan.minilm_seq_len,
        variants: vec![Variant::SprintNoRecompute, Variant::Sprint],
    };
    let precision = r.stage(
        "precision",
        th_inputs.clone(),
        |_| true,
        |_| stages::sprint_sweep(&ctx, "precision", &bbc, &learned, &bits, most_bits),
    )?;
    let precision_ppl = if plan.smollm2_sweep_windows > 0 {
        let th = Thresholds::best_for("smollm2", "ppl-austen", &artefacts)?;
        let on = stages::SweepOn {
            model: "smollm2",
            task: "ppl-austen",
            limit: plan.smollm2_sweep_windows,
            seq_len: plan.smollm2_seq_len,
            variants: vec![Variant::Sprint],
        };
        Some(r.stage(
            "precision-smollm2",
            json!({"thresholds": th.describe(plan.keep)}),
            |_| true,
            |_| stages::sprint_sweep(&ctx, "precision-smollm2", &on, &th, &bits, most_bits),
        )?)
    } else {
        None
    };
    let noise_points: Vec<(String, f64, Vec<String>)> = plan
        .noise_presets
        .iter()
        .enumerate()
        .map(|(i, p)| (p.clone(), i as f64, vec![format!("noise.preset={p}")]))
        .collect();
    let noise = r.stage(
        "noise",
        th_inputs.clone(),
        |_| true,
        |_| stages::sprint_sweep(&ctx, "noise", &bbc, &learned, &noise_points, Some(0)),
    )?;
    let sparsity = r.stage(
        "sparsity",
        th_inputs,
        |_| true,
        |_| stages::sparsity(&ctx, "sparsity", learned_path),
    )?;

    let mut sim_paper = Vec::new();
    for cal in ["sourced-default", "paper-inferred"] {
        let name = format!("sim-paper-{cal}");
        sim_paper.push(r.stage(
            &name,
            json!({"calibration": cal}),
            |_| true,
            |_| stages::sim_paper(&name, cal),
        )?);
    }

    let mut traces = Vec::new();
    for a in &accuracy {
        let Some(file) = &a.sprint_trace else {
            continue;
        };
        let path: PathBuf = artefacts.join(file);
        let name = format!("sim-trace-{}-{}", a.model, a.task);
        let label = format!("{} on {} (first sequence, SPRINT)", a.model, a.task);
        let inputs = json!({"trace_sha256": file_sha256(&path)?, "label": label});
        traces.push(r.stage(
            &name,
            inputs,
            |_| true,
            |_| stages::sim_trace(&name, &label, &path),
        )?);
    }

    let decode = r.stage(
        "decode",
        json!({"config": "smollm2"}),
        |_| true,
        |_| stages::decode("decode"),
    )?;

    let results = Results {
        plan: plan.clone(),
        accuracy,
        finetuned,
        precision,
        precision_ppl,
        noise,
        sparsity,
        sim_paper,
        traces,
        decode,
    };
    let provenance = Provenance::collect(plan, &r.tool, threads, assets, &r.records);
    let doc = document(&results, &provenance)?;
    let written = doc.write(out)?;
    Ok(Outcome {
        verdict: verdict_table(&results)?,
        written,
        stages: r.records,
    })
}
