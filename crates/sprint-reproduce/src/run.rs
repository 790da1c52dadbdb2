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
use crate::grid::Shard;
use crate::mode::Plan;
use crate::provenance::{Provenance, StageRecord};
use crate::report::{Results, document, verdict_table};
use crate::results::{AccuracyResult, TraceSimResult};
use crate::stages::{self, StageCtx, Thresholds};

/// Progress of a run. Stages run on two lanes at once (the MiniLM stages on lane 0; the
/// SmolLM2 and simulator stages on lane 1; the sparsity and noise sweeps on lane 1 in
/// `--quick`, on lane 0 in `--full`), so every call names its lane.
pub trait Progress: Sync {
    /// Stage `index` of `total` begins on `lane` (`cached`: it is read from the cache).
    fn begin(&self, lane: usize, index: usize, total: usize, stage: &str, cached: bool);
    /// Stage `index` of `total` on `lane` ended after `seconds` (of this run).
    fn end(&self, lane: usize, index: usize, total: usize, stage: &str, seconds: f64, cached: bool);
    /// A step of `len` units of `what` begins inside the stage running on `lane`.
    fn step(&self, lane: usize, what: &str, len: u64);
    /// `n` units of that step are done.
    fn inc(&self, lane: usize, n: u64);
}

/// The evaluations' progress inside the stages of one lane.
struct LaneProgress<'a> {
    lane: usize,
    inner: &'a dyn Progress,
}

impl sprint_eval::run::Progress for LaneProgress<'_> {
    fn stage(&self, what: &str, len: u64) {
        self.inner.step(self.lane, what, len);
    }
    fn inc(&self, n: u64) {
        self.inner.inc(self.lane, n);
    }
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

/// Runs the stages of one lane, each read from the cache when its inputs are unchanged.
struct Runner<'a> {
    cache: StageCache,
    plan: &'a Plan,
    tool: &'a str,
    progress: &'a dyn Progress,
    lane: usize,
    total: usize,
    /// The stages run, with their index in the run's order.
    records: Vec<(usize, StageRecord)>,
    /// With a shard, only the stages it owns are computed; the others are read from the
    /// cache when there, else left to another shard (a default stands in for the result).
    shard: Option<Shard>,
}

impl Runner<'_> {
    /// Runs (or reads from the cache) stage `name`, number `index` of the run, whose result
    /// depends on `inputs`; `valid` rejects a cached result whose artefacts are gone.
    fn stage<T: Serialize + DeserializeOwned + Default>(
        &mut self,
        index: usize,
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
        let (lane, total) = (self.lane, self.total);
        if let Some(c) = self
            .cache
            .load::<T>(name, &key)
            .filter(|c| valid(&c.result))
        {
            self.progress.begin(lane, index, total, name, true);
            self.progress.end(lane, index, total, name, 0.0, true);
            self.records.push((
                index,
                StageRecord {
                    stage: name.into(),
                    key,
                    seconds: c.seconds,
                    cached: true,
                },
            ));
            return Ok(c.result);
        }
        if self.shard.is_some_and(|s| !s.owns(index)) {
            return Ok(T::default());
        }
        self.progress.begin(lane, index, total, name, false);
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
        self.progress.end(lane, index, total, name, seconds, false);
        self.records.push((
            index,
            StageRecord {
                stage: name.into(),
                key,
                seconds,
                cached: false,
            },
        ));
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

/// The results of the MiniLM lane.
struct MiniLmLane {
    accuracy: Vec<crate::results::AccuracyResult>,
    finetuned: crate::results::FinetunedResult,
    precision: crate::results::CurveResult,
    /// The sparsity and noise sweeps when the plan runs them on this lane.
    sweeps: Option<BbcSweeps>,
}

/// The sparsity and the noise sweep on MiniLM BBC.
type BbcSweeps = (crate::results::CurveResult, crate::results::CurveResult);

/// The results of the SmolLM2 and simulator lane (and the last two MiniLM sweeps).
struct SmolLm2Lane {
    accuracy: crate::results::AccuracyResult,
    long_trace: Option<crate::results::AccuracyResult>,
    finetuned: Option<crate::results::FinetunedResult>,
    precision_ppl: Option<crate::results::CurveResult>,
    sim_paper: Vec<crate::results::SimPaperResult>,
    decode: crate::results::DecodeResult,
    sim_peers: sprint_sim::peers::PeerComparison,
    /// The sparsity and noise sweeps when the plan runs them on this lane.
    sweeps: Option<BbcSweeps>,
    peers: Vec<crate::results::CurveResult>,
}

/// Where each stage comes in the run's order (the numbers shown and recorded).
struct Order {
    n_minilm: usize,
    /// Whether the peers' accuracy stage runs (last, on the SmolLM2 lane).
    peers: bool,
    long_trace: bool,
    ft_smollm2: bool,
    prec_smollm2: bool,
}

impl Order {
    /// The stages `plan` runs, in order.
    fn of(plan: &Plan) -> Self {
        Order {
            n_minilm: plan.minilm_tasks.len(),
            peers: !plan.peers.keeps.is_empty(),
            long_trace: plan.smollm2_trace_seq_len != plan.smollm2_seq_len,
            ft_smollm2: plan.smollm2_finetune.is_some(),
            prec_smollm2: plan.smollm2_sweep_windows > 0,
        }
    }
    fn accuracy_smollm2(&self) -> usize {
        self.n_minilm
    }
    fn long_trace(&self) -> usize {
        self.n_minilm + 1
    }
    fn finetuned_minilm(&self) -> usize {
        self.n_minilm + 1 + usize::from(self.long_trace)
    }
    fn finetuned_smollm2(&self) -> usize {
        self.finetuned_minilm() + 1
    }
    fn precision(&self) -> usize {
        self.finetuned_minilm() + 1 + usize::from(self.ft_smollm2)
    }
    fn precision_smollm2(&self) -> usize {
        self.precision() + 1
    }
    fn noise(&self) -> usize {
        self.precision() + 1 + usize::from(self.prec_smollm2)
    }
    fn sparsity(&self) -> usize {
        self.noise() + 1
    }
    fn sim_paper(&self, i: usize) -> usize {
        self.sparsity() + 1 + i
    }
    fn sim_trace(&self, i: usize) -> usize {
        self.sim_paper(2) + i
    }
    fn decode(&self) -> usize {
        self.sim_trace(self.n_minilm + 1 + usize::from(self.long_trace))
    }
    fn sim_peers(&self) -> usize {
        self.decode() + 1
    }
    fn peers(&self) -> usize {
        self.sim_peers() + 1
    }
    fn total(&self) -> usize {
        self.peers() + usize::from(self.peers)
    }
}

/// Runs the whole evaluation of `plan` into `out` with `threads` worker threads in all,
/// with the real assets of `assets` (they must be present: `sprint assets fetch`). Two
/// lanes run at the same time on one rayon pool of `threads` workers: the MiniLM stages, and
/// the SmolLM2 and simulator stages, the sparsity and noise sweeps on the lane the plan
/// names (`Plan::sweeps_on_minilm_lane`), the peers' accuracy stage last (each lane
/// holds a worker; their parallel parts go to whichever worker is free);
/// the replays of the real traces follow. Results do not depend on the lanes or on
/// `threads` (recorded in the provenance).
pub fn reproduce(
    plan: &Plan,
    out: &Path,
    assets: &Cache,
    threads: usize,
    progress: &dyn Progress,
) -> Result<Outcome> {
    match run(plan, out, assets, threads, progress, None)? {
        Ran::Report(outcome) => Ok(*outcome),
        Ran::Shard(_) => unreachable!("an unsharded run writes the report"),
    }
}

/// Runs the stages that `shard` owns (stage `k` of the run's order when `k` is its index
/// modulo its count) into the stage cache of `out`, and writes no report: one task of a
/// job array over a shared `out`. Stages that need another stage's result (the replays of
/// the real traces, the long SmolLM2 trace when its accuracy stage is elsewhere) are left
/// to the merge, a plain [`reproduce`] on the same `out` that finds every sharded stage in
/// the cache. Returns the stages computed or read here.
pub fn reproduce_shard(
    plan: &Plan,
    out: &Path,
    assets: &Cache,
    threads: usize,
    progress: &dyn Progress,
    shard: Shard,
) -> Result<Vec<StageRecord>> {
    match run(plan, out, assets, threads, progress, Some(shard))? {
        Ran::Shard(records) => Ok(records),
        Ran::Report(_) => unreachable!("a sharded run writes no report"),
    }
}

/// What [`run`] did: the whole run with its report, or one shard's stages.
enum Ran {
    Report(Box<Outcome>),
    Shard(Vec<StageRecord>),
}

/// The run behind [`reproduce`] (`shard` = None) and [`reproduce_shard`].
fn run(
    plan: &Plan,
    out: &Path,
    assets: &Cache,
    threads: usize,
    progress: &dyn Progress,
    shard: Option<Shard>,
) -> Result<Ran> {
    if out.exists() && !out.is_dir() {
        return Err(ReproduceError::Usage(format!(
            "--out {}: exists and is not a folder",
            out.display()
        )));
    }
    let cache = StageCache::new(out);
    let artefacts = cache.dir().join("artefacts");
    let order = Order::of(plan);
    let tool = tool_sha256()?;
    let runner = |lane: usize| Runner {
        cache: cache.clone(),
        plan,
        tool: &tool,
        progress,
        lane,
        total: order.total(),
        records: Vec::new(),
        shard,
    };
    // One pool of `threads` workers for both lanes: each lane's closure holds a worker and
    // the lanes' parallel work is stolen by whichever worker is free, so the machine is never
    // oversubscribed (two pools as wide as the machine spent about 40 % more CPU on the
    // quick plan, docs/reproduce.md), and a lane that ends first leaves its worker to the
    // other.
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads.max(1))
        .thread_name(|i| format!("sprint-reproduce-{i}"))
        .build()
        .map_err(|e| ReproduceError::Usage(format!("cannot start the worker threads: {e}")))?;
    // The learned MiniLM/BBC thresholds file, written before the lanes start.
    let learned = Thresholds::best_for("minilm", "bbc", &artefacts)?;
    let Thresholds::Learned(learned_path) = &learned else {
        unreachable!("MiniLM on BBC has a learned thresholds file")
    };
    let bits = plan.key_bit_points();
    // The precision sweep's reference point: the most key bits.
    let most_bits = (0..bits.len()).max_by(|&a, &b| bits[a].1.total_cmp(&bits[b].1));
    let lanes = Lanes {
        plan,
        assets,
        progress,
        cache: &cache,
        artefacts: &artefacts,
        order: &order,
        learned: &learned,
        learned_path,
        bits,
        most_bits,
    };

    let (mut r0, mut r1) = (runner(0), runner(1));
    let (a, b) = std::thread::scope(|s| {
        let other = s.spawn(|| pool.install(|| lanes.smollm2(&mut r1)));
        let a = pool.install(|| lanes.minilm(&mut r0));
        let b = other
            .join()
            .unwrap_or_else(|e| std::panic::resume_unwind(e));
        (a, b)
    });
    let (a, b) = (a?, b?);
    if shard.is_some() {
        let mut records: Vec<(usize, StageRecord)> =
            r0.records.into_iter().chain(r1.records).collect();
        records.sort_by_key(|x| x.0);
        return Ok(Ran::Shard(records.into_iter().map(|x| x.1).collect()));
    }

    let Some((sparsity, noise)) = a.sweeps.or(b.sweeps) else {
        unreachable!("one lane runs the sparsity and noise sweeps")
    };
    let mut accuracy = a.accuracy;
    accuracy.push(b.accuracy);
    let replayed: Vec<&AccuracyResult> = accuracy.iter().chain(b.long_trace.iter()).collect();
    let mut finetuned = vec![a.finetuned];
    finetuned.extend(b.finetuned);

    let mut r2 = runner(0);
    let traces = lanes.replay_traces(&mut r2, &pool, &replayed, accuracy.len())?;
    let mut records: Vec<(usize, StageRecord)> = r0
        .records
        .into_iter()
        .chain(r1.records)
        .chain(r2.records)
        .collect();
    records.sort_by_key(|x| x.0);
    let records: Vec<StageRecord> = records.into_iter().map(|x| x.1).collect();
    let results = Results {
        plan: plan.clone(),
        accuracy,
        finetuned,
        precision: a.precision,
        precision_ppl: b.precision_ppl,
        noise,
        sparsity,
        sim_paper: b.sim_paper,
        traces,
        decode: b.decode,
        peers: b.peers,
        sim_peers: Some(b.sim_peers),
    };
    let provenance = Provenance::collect(plan, &tool, threads, assets, &records);
    let doc = document(&results, &provenance)?;
    let written = doc.write(out)?;
    Ok(Ran::Report(Box::new(Outcome {
        verdict: verdict_table(&results)?,
        written,
        stages: records,
    })))
}

/// What both lanes share: the plan, the assets, the stage cache and its artefacts, the
/// stages' order, and the precision sweep's points.
struct Lanes<'a> {
    plan: &'a Plan,
    assets: &'a Cache,
    progress: &'a dyn Progress,
    cache: &'a StageCache,
    artefacts: &'a Path,
    order: &'a Order,
    /// The learned MiniLM/BBC thresholds, and their file.
    learned: &'a Thresholds,
    learned_path: &'a Path,
    /// The precision sweep's points: label, key bits, configuration overrides.
    bits: Vec<(String, f64, Vec<String>)>,
    /// The precision sweep's reference point: the most key bits.
    most_bits: Option<usize>,
}

impl Lanes<'_> {
    /// What the BBC sweeps (precision, noise) run on: MiniLM, the plan's documents and
    /// length, SPRINT with and without recompute.
    fn bbc_sweep(&self) -> stages::SweepOn<'static> {
        stages::SweepOn {
            model: "minilm",
            task: "bbc",
            limit: self.plan.sweep_limit,
            seq_len: self.plan.minilm_seq_len,
            variants: vec![Variant::SprintNoRecompute, Variant::Sprint],
        }
    }

    /// Whether the SPRINT trace of a cached accuracy result is still among the artefacts.
    fn trace_ok(&self, a: &AccuracyResult) -> bool {
        a.sprint_trace
            .as_ref()
            .is_some_and(|t| self.artefacts.join(t).is_file())
    }

    /// The MiniLM lane: accuracy per task, the fine-tuned stage, the precision sweep, and the
    /// sparsity and noise sweeps when the plan puts them here (`--full`).
    fn minilm(&self, r: &mut Runner) -> Result<MiniLmLane> {
        let lp = LaneProgress {
            lane: r.lane,
            inner: self.progress,
        };
        let ctx = StageCtx::new(self.plan, self.assets, &lp);
        let mut accuracy = Vec::new();
        for (i, task) in self.plan.minilm_tasks.iter().enumerate() {
            let model = "minilm";
            let th = Thresholds::best_for(model, task, self.artefacts)?;
            let name = format!("accuracy-{model}-{task}");
            let inputs =
                json!({"model": model, "task": task, "thresholds": th.describe(self.plan.keep)});
            accuracy.push(r.stage(
                i,
                &name,
                inputs,
                |a: &AccuracyResult| self.trace_ok(a),
                |key| {
                    let base = self.cache.artefact(&name, key, "trace.bin")?;
                    stages::accuracy(&ctx, &name, model, task, &th, &base, None)
                },
            )?);
        }
        let finetuned = finetuned_stage(
            r,
            &ctx,
            self.cache,
            self.order.finetuned_minilm(),
            "minilm",
            &self.plan.minilm_finetune,
        )?;
        let th_inputs = json!({"thresholds": self.learned.describe(self.plan.keep)});
        let bbc = self.bbc_sweep();
        let precision = r.stage(
            self.order.precision(),
            "precision",
            th_inputs,
            |_| true,
            |_| {
                stages::sprint_sweep(
                    &ctx,
                    "precision",
                    &bbc,
                    self.learned,
                    &self.bits,
                    self.most_bits,
                )
            },
        )?;
        let sweeps = if self.plan.sweeps_on_minilm_lane {
            Some(self.bbc_sweeps(r, &ctx)?)
        } else {
            None
        };
        Ok(MiniLmLane {
            accuracy,
            finetuned,
            precision,
            sweeps,
        })
    }

    /// The SmolLM2 and simulator lane: SmolLM2's accuracy (and its longer trace), its
    /// fine-tuned stage and precision sweep, the simulator against the paper, decode, and
    /// the last two MiniLM sweeps (sparsity, noise) when the plan puts them here (`--quick`,
    /// whose MiniLM lane is the longer without them), and the peers' accuracy stage.
    fn smollm2(&self, r: &mut Runner) -> Result<SmolLm2Lane> {
        let lp = LaneProgress {
            lane: r.lane,
            inner: self.progress,
        };
        let ctx = StageCtx::new(self.plan, self.assets, &lp);
        let (model, task) = ("smollm2", "ppl-austen");
        let th = Thresholds::best_for(model, task, self.artefacts)?;
        let name = format!("accuracy-{model}-{task}");
        let inputs =
            json!({"model": model, "task": task, "thresholds": th.describe(self.plan.keep)});
        let long = self.order.long_trace;
        let files_ok = |a: &AccuracyResult| {
            self.trace_ok(a)
                && (!long
                    || a.thresholds_file
                        .as_ref()
                        .is_some_and(|t| self.artefacts.join(t).is_file()))
        };
        let accuracy = r.stage(
            self.order.accuracy_smollm2(),
            &name,
            inputs,
            files_ok,
            |key| {
                let base = self.cache.artefact(&name, key, "trace.bin")?;
                let th_file = self.cache.artefact(&name, key, "thresholds.toml")?;
                stages::accuracy(&ctx, &name, model, task, &th, &base, Some(&th_file))
            },
        )?;
        let long_trace = self.long_trace(r, &ctx, &accuracy)?;
        let finetuned = match &self.plan.smollm2_finetune {
            Some(fp) => Some(finetuned_stage(
                r,
                &ctx,
                self.cache,
                self.order.finetuned_smollm2(),
                "smollm2",
                fp,
            )?),
            None => None,
        };
        let precision_ppl = self.precision_smollm2(r, &ctx, &th)?;
        let mut sim_paper = Vec::new();
        for (i, cal) in ["sourced-default", "paper-inferred"].iter().enumerate() {
            let name = format!("sim-paper-{cal}");
            sim_paper.push(r.stage(
                self.order.sim_paper(i),
                &name,
                json!({"calibration": cal}),
                |_| true,
                |_| stages::sim_paper(&name, cal),
            )?);
        }
        let decode = r.stage(
            self.order.decode(),
            "decode",
            json!({"config": "smollm2"}),
            |_| true,
            |_| stages::decode("decode"),
        )?;
        let sim_peers = r.stage(
            self.order.sim_peers(),
            "sim-peers",
            json!({"designs": sprint_sim::peers::ISO_DESIGNS}),
            |_| true,
            |_| crate::sim_peers::sim_peers("sim-peers"),
        )?;
        let sweeps = if self.plan.sweeps_on_minilm_lane {
            None
        } else {
            Some(self.bbc_sweeps(r, &ctx)?)
        };
        let peers = self.peers(r, &ctx)?;
        Ok(SmolLm2Lane {
            peers,
            accuracy,
            long_trace,
            finetuned,
            precision_ppl,
            sim_paper,
            decode,
            sim_peers,
            sweeps,
        })
    }

    /// The sparsity and the noise sweep on MiniLM BBC, at the learned thresholds; on the lane
    /// the plan names (`Plan::sweeps_on_minilm_lane`).
    fn bbc_sweeps(&self, r: &mut Runner, ctx: &StageCtx) -> Result<BbcSweeps> {
        let th_inputs = json!({"thresholds": self.learned.describe(self.plan.keep)});
        let sparsity = r.stage(
            self.order.sparsity(),
            "sparsity",
            th_inputs.clone(),
            |_| true,
            |_| stages::sparsity(ctx, "sparsity", self.learned_path),
        )?;
        let noise_points: Vec<(String, f64, Vec<String>)> = self
            .plan
            .noise_presets
            .iter()
            .enumerate()
            .map(|(i, p)| (p.clone(), i as f64, vec![format!("noise.preset={p}")]))
            .collect();
        let bbc = self.bbc_sweep();
        let noise = r.stage(
            self.order.noise(),
            "noise",
            th_inputs,
            |_| true,
            |_| stages::sprint_sweep(ctx, "noise", &bbc, self.learned, &noise_points, Some(0)),
        )?;
        Ok((sparsity, noise))
    }

    /// The peers' accuracy stage (MiniLM BBC and SmolLM2 Austen, every design at each of the
    /// plan's kept fractions), when the plan has kept fractions for it (empty otherwise). It
    /// is mostly SmolLM2 work and runs last on this lane, off the MiniLM lane's critical path.
    fn peers(&self, r: &mut Runner, ctx: &StageCtx) -> Result<Vec<crate::results::CurveResult>> {
        if !self.order.peers {
            return Ok(Vec::new());
        }
        let name = "accuracy-peers";
        r.stage(
            self.order.peers(),
            name,
            json!({"designs": crate::peers_stage::DESIGNS.map(|v| v.name())}),
            |_| true,
            |_| {
                Ok(vec![
                    crate::peers_stage::peers_curve(ctx, name, "minilm", "bbc")?,
                    crate::peers_stage::peers_curve(ctx, name, "smollm2", "ppl-austen")?,
                ])
            },
        )
    }

    /// SmolLM2's precision sweep (perplexity over the key bits) at the accuracy stage's
    /// thresholds `th`, when the plan has windows for it (`None` otherwise).
    fn precision_smollm2(
        &self,
        r: &mut Runner,
        ctx: &StageCtx,
        th: &Thresholds,
    ) -> Result<Option<crate::results::CurveResult>> {
        if self.plan.smollm2_sweep_windows == 0 {
            return Ok(None);
        }
        let on = stages::SweepOn {
            model: "smollm2",
            task: "ppl-austen",
            limit: self.plan.smollm2_sweep_windows,
            seq_len: self.plan.smollm2_seq_len,
            variants: vec![Variant::Sprint],
        };
        Ok(Some(r.stage(
            self.order.precision_smollm2(),
            "precision-smollm2",
            json!({"thresholds": th.describe(self.plan.keep)}),
            |_| true,
            |_| {
                stages::sprint_sweep(
                    ctx,
                    "precision-smollm2",
                    &on,
                    th,
                    &self.bits,
                    self.most_bits,
                )
            },
        )?))
    }

    /// SmolLM2's trace at GPT-2-L's length, at the accuracy stage's thresholds, when the
    /// accuracy run's windows are shorter (`None` otherwise).
    fn long_trace(
        &self,
        r: &mut Runner,
        ctx: &StageCtx,
        accuracy: &AccuracyResult,
    ) -> Result<Option<AccuracyResult>> {
        let (model, task) = ("smollm2", "ppl-austen");
        Ok(match (&accuracy.thresholds_file, self.order.long_trace) {
            (Some(file), true) => {
                let seq_len = self.plan.smollm2_trace_seq_len;
                let name = format!("trace-{model}-{task}-{seq_len}");
                let th_path = self.artefacts.join(file);
                let inputs =
                    json!({"thresholds_sha256": file_sha256(&th_path)?, "seq_len": seq_len});
                Some(r.stage(
                    self.order.long_trace(),
                    &name,
                    inputs,
                    |a: &AccuracyResult| self.trace_ok(a),
                    |key| {
                        let base = self.cache.artefact(&name, key, "trace.bin")?;
                        stages::long_trace(ctx, &name, model, task, seq_len, &th_path, &base)
                    },
                )?)
            }
            _ => None,
        })
    }

    /// The simulator on the SPRINT trace of each accuracy result in `replayed` (the first
    /// `n_accuracy` are the accuracy stages', the rest longer traces), on `pool`.
    fn replay_traces(
        &self,
        r: &mut Runner,
        pool: &rayon::ThreadPool,
        replayed: &[&AccuracyResult],
        n_accuracy: usize,
    ) -> Result<Vec<TraceSimResult>> {
        let mut traces = Vec::new();
        for (i, acc) in replayed.iter().enumerate() {
            let Some(file) = &acc.sprint_trace else {
                continue;
            };
            let path: PathBuf = self.artefacts.join(file);
            let name = if i < n_accuracy {
                format!("sim-trace-{}-{}", acc.model, acc.task)
            } else {
                format!("sim-trace-{}-{}-{}", acc.model, acc.task, acc.seq_len)
            };
            let label = if i < n_accuracy {
                format!("{} on {} (first sequence, SPRINT)", acc.model, acc.task)
            } else {
                format!(
                    "{} on {} (one window, SPRINT at the accuracy stage's thresholds)",
                    acc.model, acc.task
                )
            };
            let inputs = json!({"trace_sha256": file_sha256(&path)?, "label": label});
            traces.push(pool.install(|| {
                r.stage(
                    self.order.sim_trace(i),
                    &name,
                    inputs,
                    |_| true,
                    |_| stages::sim_trace(&name, &label, &path),
                )
            })?);
        }
        Ok(traces)
    }
}

/// The fine-tuned stage of `model` (number `index`): the recipe with pruning and its twin.
fn finetuned_stage(
    r: &mut Runner,
    ctx: &StageCtx,
    cache: &StageCache,
    index: usize,
    model: &str,
    fp: &crate::mode::FinetunePlan,
) -> Result<crate::results::FinetunedResult> {
    let name = format!(
        "accuracy-{model}-{}-finetuned",
        crate::finetuned::task_of(model).name()
    );
    let inputs = json!({
        "pruned": crate::finetuned::recipe(ctx, model, fp, true),
        "twin": crate::finetuned::recipe(ctx, model, fp, false),
        "eval": [fp.eval_items, fp.eval_seq_len],
    });
    r.stage(
        index,
        &name,
        inputs,
        |_| true,
        |key| {
            let base = cache.artefact(&name, key, "run")?;
            crate::finetuned::finetuned(ctx, &name, model, fp, &base)
        },
    )
}

#[cfg(test)]
mod tests {
    use super::{Order, Progress, Runner, Shard, StageCache};
    use crate::{Mode, Plan};

    struct Silent;
    impl Progress for Silent {
        fn begin(&self, _: usize, _: usize, _: usize, _: &str, _: bool) {}
        fn end(&self, _: usize, _: usize, _: usize, _: &str, _: f64, _: bool) {}
        fn step(&self, _: usize, _: &str, _: u64) {}
        fn inc(&self, _: usize, _: u64) {}
    }

    /// A shard computes only the stages it owns (index modulo count), reads the others from
    /// the cache when another shard put them there, and otherwise leaves them (a default
    /// result, nothing stored); the unsharded merge then computes nothing that a shard did.
    #[test]
    fn shards_compute_their_own_stages_and_the_merge_reads_them() {
        let dir = tempfile::tempdir().unwrap();
        let plan = Plan::new(Mode::Quick, 0);
        let runner = |shard: Option<Shard>| Runner {
            cache: StageCache::new(dir.path()),
            plan: &plan,
            tool: "tool",
            progress: &Silent,
            lane: 0,
            total: 4,
            records: Vec::new(),
            shard,
        };
        let computed = std::cell::RefCell::new(Vec::new());
        let run_all = |r: &mut Runner| -> Vec<u32> {
            (0..4usize)
                .map(|i| {
                    r.stage(
                        i,
                        &format!("s{i}"),
                        serde_json::json!({}),
                        |_| true,
                        |_| {
                            computed.borrow_mut().push(i);
                            Ok(10 + i as u32)
                        },
                    )
                    .unwrap()
                })
                .collect()
        };
        let mut second = runner(Some(Shard { index: 1, count: 2 }));
        assert_eq!(run_all(&mut second), vec![0, 11, 0, 13]);
        assert_eq!(second.records.len(), 2);
        let mut first = runner(Some(Shard { index: 0, count: 2 }));
        assert_eq!(run_all(&mut first), vec![10, 11, 12, 13]);
        assert!(first.records.iter().filter(|r| r.1.cached).count() == 2);
        let mut merge = runner(None);
        assert_eq!(run_all(&mut merge), vec![10, 11, 12, 13]);
        assert!(merge.records.iter().all(|r| r.1.cached));
        assert_eq!(*computed.borrow(), vec![1, 3, 0, 2]);
    }

    /// Every stage of every plan shape gets its own number, and the numbers are 0..total.
    #[test]
    fn stage_numbers_are_a_permutation_of_the_total() {
        for n_minilm in [1, 3] {
            for long_trace in [false, true] {
                for ft_smollm2 in [false, true] {
                    for (prec_smollm2, peers) in [(false, true), (true, false), (true, true)] {
                        let o = Order {
                            n_minilm,
                            peers,
                            long_trace,
                            ft_smollm2,
                            prec_smollm2,
                        };
                        let mut n: Vec<usize> = (0..n_minilm).collect();
                        n.push(o.accuracy_smollm2());
                        if long_trace {
                            n.push(o.long_trace());
                        }
                        n.push(o.finetuned_minilm());
                        if ft_smollm2 {
                            n.push(o.finetuned_smollm2());
                        }
                        n.push(o.precision());
                        if prec_smollm2 {
                            n.push(o.precision_smollm2());
                        }
                        n.extend([o.noise(), o.sparsity(), o.sim_paper(0), o.sim_paper(1)]);
                        n.extend(
                            (0..n_minilm + 1 + usize::from(long_trace)).map(|i| o.sim_trace(i)),
                        );
                        n.push(o.decode());
                        n.push(o.sim_peers());
                        if peers {
                            n.push(o.peers());
                        }
                        n.sort_unstable();
                        assert_eq!(n, (0..o.total()).collect::<Vec<_>>());
                    }
                }
            }
        }
    }
}
