//! `sprint sweep --grid FILE`: any configuration keys x values x workloads x designs (the
//! simulator) or x models x tasks x variants (the functional model on real data), one CSV
//! row per result, resumable by content hash, shardable (`--shard i/n` takes the points
//! whose index is `i` modulo `n`; [`merge`] joins the shards into the unsharded CSV).
//!
//! A grid file (TOML, unknown keys are errors):
//!
//! ```toml
//! kind = "simulate"                  # or "eval"
//! designs = ["s-sprint"]             # simulate: presets (ratios against `baseline`)
//! baseline = "s-baseline"
//! axes_apply_to_baseline = false     # iso variables: also set the swept keys on the baseline
//! workloads = ["BERT-B", "GPT-2-L"]  # the paper's workloads
//! # eval: models = ["minilm"], tasks = ["bbc"], variants = ["sprint"], limit = 100, keep = 0.25
//! [axes]                             # config key -> values (`--set` keys of the kind)
//! "core.corelets" = [1, 2, 4]
//! [pareto]                           # optional: the front plotted by `--svg`
//! x = "speedup"
//! y = "energy_reduction"
//! maximise = [true, true]
//! ```

use std::collections::BTreeMap;
use std::path::Path;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sprint_core::config::{AttentionConfig, Variant};
use sprint_report::plot::{Scatter, pareto_front};
use sprint_report::{Cell, Column, Plot, Table};

use crate::cache::{Cached, StageCache};
use crate::error::{ReproduceError, Result};

/// What a grid sweeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GridKind {
    /// Simulator designs on the paper's workloads.
    Simulate,
    /// Attention variants on real models and tasks.
    Eval,
}

/// The Pareto front to plot.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParetoSpec {
    /// Column on x.
    pub x: String,
    /// Column on y.
    pub y: String,
    /// Whether larger is better, for x and y.
    #[serde(default = "both_max")]
    pub maximise: [bool; 2],
}

fn both_max() -> [bool; 2] {
    [true, true]
}

/// A grid file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Grid {
    /// What is swept.
    pub kind: GridKind,
    /// Simulate: designs (presets).
    #[serde(default)]
    pub designs: Vec<String>,
    /// Simulate: the design ratios are taken against.
    #[serde(default = "default_baseline")]
    pub baseline: String,
    /// Simulate: also apply the swept keys to the baseline (iso variables).
    #[serde(default)]
    pub axes_apply_to_baseline: bool,
    /// Simulate: the paper's workloads.
    #[serde(default)]
    pub workloads: Vec<String>,
    /// Eval: models (`minilm`, `smollm2`).
    #[serde(default)]
    pub models: Vec<String>,
    /// Eval: tasks.
    #[serde(default)]
    pub tasks: Vec<String>,
    /// Eval: variants (dense runs once per point as the reference).
    #[serde(default)]
    pub variants: Vec<String>,
    /// Eval: items per point (documents before the split, or windows).
    #[serde(default)]
    pub limit: Option<usize>,
    /// Eval: calibrated kept fraction.
    #[serde(default = "default_keep")]
    pub keep: f64,
    /// Eval: calibrate the peer designs' own knobs to this kept fraction (`sprint eval
    /// --peer-keep`); absent: their published values.
    #[serde(default)]
    pub peer_keep: Option<f64>,
    /// Eval: seed.
    #[serde(default)]
    pub seed: u64,
    /// Config key -> values.
    #[serde(default)]
    pub axes: BTreeMap<String, Vec<toml::Value>>,
    /// The Pareto front of `--svg`.
    #[serde(default)]
    pub pareto: Option<ParetoSpec>,
}

fn default_baseline() -> String {
    "s-baseline".into()
}

fn default_keep() -> f64 {
    0.25
}

/// One point of a grid.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Point {
    /// Index in the grid's order.
    pub index: usize,
    /// Design (simulate) or model (eval).
    pub what: String,
    /// Workload (simulate) or task (eval).
    pub on: String,
    /// Axis key -> value text, in key order.
    pub settings: Vec<(String, String)>,
}

fn value_text(v: &toml::Value) -> String {
    match v {
        toml::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Most points a grid may have (1 million: a grid of the simulator's fastest points takes
/// hours on 2 cores at that size, and its point list about 100 MB). Larger grids are refused
/// before the list is built.
pub const MAX_POINTS: usize = 1_000_000;

impl Grid {
    /// Number of points (designs or models x workloads or tasks x every axis), `None` when
    /// it overflows.
    pub fn point_count(&self) -> Option<usize> {
        let (whats, ons) = match self.kind {
            GridKind::Simulate => (&self.designs, &self.workloads),
            GridKind::Eval => (&self.models, &self.tasks),
        };
        self.axes
            .values()
            .try_fold(whats.len().checked_mul(ons.len())?, |n, v| {
                n.checked_mul(v.len())
            })
    }

    /// Parses and checks a grid file; errors name the file and the field.
    pub fn from_toml_str(text: &str, origin: &str) -> Result<Self> {
        let g: Grid = toml::from_str(text)
            .map_err(|e| ReproduceError::Usage(format!("{origin}: {}", e.message())))?;
        let bad = |m: String| Err(ReproduceError::Usage(format!("{origin}: {m}")));
        match g.kind {
            GridKind::Simulate => {
                if g.designs.is_empty() || g.workloads.is_empty() {
                    return bad("kind = \"simulate\" needs `designs` and `workloads`".into());
                }
                // Keys of the other kind would be silently ignored: refuse them.
                let stray = [
                    ("models", !g.models.is_empty()),
                    ("tasks", !g.tasks.is_empty()),
                    ("variants", !g.variants.is_empty()),
                    ("limit", g.limit.is_some()),
                    ("keep", g.keep != default_keep()),
                    ("peer_keep", g.peer_keep.is_some()),
                    ("seed", g.seed != 0),
                ];
                if let Some((k, _)) = stray.iter().find(|(_, set)| *set) {
                    return bad(format!(
                        "`{k}` is a key of kind = \"eval\" grids; a simulate grid would ignore it"
                    ));
                }
            }
            GridKind::Eval => {
                if g.models.is_empty() || g.tasks.is_empty() || g.variants.is_empty() {
                    return bad("kind = \"eval\" needs `models`, `tasks` and `variants`".into());
                }
                let stray = [
                    ("designs", !g.designs.is_empty()),
                    ("workloads", !g.workloads.is_empty()),
                    ("baseline", g.baseline != default_baseline()),
                    ("axes_apply_to_baseline", g.axes_apply_to_baseline),
                ];
                if let Some((k, _)) = stray.iter().find(|(_, set)| *set) {
                    return bad(format!(
                        "`{k}` is a key of kind = \"simulate\" grids; an eval grid would ignore it"
                    ));
                }
            }
        }
        for (k, v) in &g.axes {
            if v.is_empty() {
                return bad(format!("axes.\"{k}\": give at least one value"));
            }
        }
        if !(g.keep > 0.0 && g.keep <= 1.0) {
            return bad(format!("keep must be in (0, 1], got {}", g.keep));
        }
        if let Some(k) = g.peer_keep
            && !(k > 0.0 && k <= 1.0)
        {
            return bad(format!("peer_keep must be in (0, 1], got {k}"));
        }
        match g.point_count() {
            Some(n) if n <= MAX_POINTS => {}
            n => {
                return bad(format!(
                    "the grid has {} points, more than the limit of {MAX_POINTS} (docs/limits.md)",
                    n.map_or_else(|| "over 2^64".to_string(), |n| n.to_string())
                ));
            }
        }
        Ok(g)
    }

    /// Every point, in order: designs (models) x workloads (tasks) x axes (keys sorted,
    /// the last key varying fastest).
    pub fn points(&self) -> Vec<Point> {
        let (whats, ons) = match self.kind {
            GridKind::Simulate => (&self.designs, &self.workloads),
            GridKind::Eval => (&self.models, &self.tasks),
        };
        let mut combos: Vec<Vec<(String, String)>> = vec![Vec::new()];
        for (k, vs) in &self.axes {
            combos = combos
                .into_iter()
                .flat_map(|c| {
                    vs.iter().map(move |v| {
                        let mut c = c.clone();
                        c.push((k.clone(), value_text(v)));
                        c
                    })
                })
                .collect();
        }
        let mut out = Vec::new();
        for w in whats {
            for o in ons {
                for c in &combos {
                    out.push(Point {
                        index: out.len(),
                        what: w.clone(),
                        on: o.clone(),
                        settings: c.clone(),
                    });
                }
            }
        }
        out
    }

    /// sha256 of the grid's canonical JSON.
    pub fn sha256(&self) -> String {
        StageCache::key(&serde_json::to_value(self).unwrap_or(Value::Null))
    }

    fn columns(&self) -> Vec<Column> {
        let mut c = vec![Column::text("point")];
        match self.kind {
            GridKind::Simulate => {
                c.push(Column::text("design"));
                c.push(Column::text("workload"));
            }
            GridKind::Eval => {
                c.push(Column::text("model"));
                c.push(Column::text("task"));
                c.push(Column::text("variant"));
            }
        }
        c.extend(self.axes.keys().map(|k| Column::text(k)));
        match self.kind {
            GridKind::Simulate => c.extend([
                Column::unit("cycles", "cycles"),
                Column::unit("seconds", "s"),
                Column::unit("energy", "pJ"),
                Column::unit("kv_bytes", "B"),
                Column::unit("speedup", "x"),
                Column::unit("energy_reduction", "x"),
                Column::unit("data_movement_reduction", "%"),
            ]),
            GridKind::Eval => c.extend([
                Column::text("metric_name"),
                Column::text("metric"),
                Column::text("delta"),
                Column::unit("kept", "fraction"),
                Column::unit("softmax", "fraction"),
            ]),
        }
        c
    }
}

/// The rows of one point (one per design, or per variant).
type Rows = Vec<Vec<String>>;

fn sets_of(p: &Point) -> Vec<String> {
    p.settings.iter().map(|(k, v)| format!("{k}={v}")).collect()
}

fn sim_point(g: &Grid, p: &Point) -> Result<Rows> {
    use sprint_sim::presets::{load_design, load_energy};
    let err = |e: sprint_sim::SimError| ReproduceError::stage(&format!("point {}", p.index), e);
    let sets = sets_of(p);
    let (hw, energy_sets) = sprint_sim::simulate::split_sets(&sets);
    let base_sets = if g.axes_apply_to_baseline {
        hw.clone()
    } else {
        Vec::new()
    };
    let designs = vec![
        load_design(&g.baseline, &base_sets).map_err(err)?,
        load_design(&p.what, &hw).map_err(err)?,
    ];
    let table = load_energy("default", &energy_sets).map_err(err)?;
    let w = sprint_sim::workload::model_workload(&p.on).map_err(err)?;
    let stats = sprint_sim::wstats::StatsFile::default_stats();
    let o =
        sprint_sim::simulate::simulate::<std::io::Empty>(&designs, &table, &stats, None, Some(&w))
            .map_err(err)?;
    let r = &o.reports[1];
    let mut row = vec![p.index.to_string(), p.what.clone(), p.on.clone()];
    row.extend(p.settings.iter().map(|(_, v)| v.clone()));
    row.extend([
        r.totals.cycles.to_string(),
        format!("{}", r.seconds),
        format!("{}", r.energy.total()),
        r.totals.moved.kv().to_string(),
        format!("{}", r.speedup),
        format!("{}", r.energy_reduction),
        format!("{}", r.data_movement_reduction_pct),
    ]);
    Ok(vec![row])
}

fn eval_point(
    g: &Grid,
    p: &Point,
    assets: &sprint_assets::Cache,
    model: &sprint_models::LoadedModel,
    progress: &dyn sprint_eval::run::Progress,
) -> Result<Rows> {
    use sprint_eval::run::{EvalOptions, ThresholdChoice, evaluate};
    let stage = format!("point {}", p.index);
    let task = sprint_eval::Task::parse(&p.on).map_err(|e| ReproduceError::stage(&stage, e))?;
    let mut o = EvalOptions::new(task);
    let mut variants = vec![Variant::Dense];
    for v in &g.variants {
        let v = Variant::parse(v).map_err(|e| ReproduceError::stage(&stage, e))?;
        if v != Variant::Dense {
            variants.push(v);
        }
    }
    o.variants = variants;
    o.limit = g.limit;
    o.seed = g.seed;
    let cfg = AttentionConfig {
        seed: g.seed,
        ..AttentionConfig::default()
    };
    o.attention = cfg
        .with_overrides(&sets_of(p))
        .map_err(|e| ReproduceError::stage(&stage, e))?;
    o.peer_keep = g.peer_keep;
    o.thresholds = ThresholdChoice::Calibrate {
        keep: g.keep,
        per_head: false,
        items: None,
        method: sprint_eval::calibrate::KeepMethod::Quantile,
    };
    let r = evaluate(model, assets, &o, progress).map_err(|e| ReproduceError::stage(&stage, e))?;
    Ok(r.rows
        .iter()
        .filter(|v| v.variant != "dense" || g.variants.iter().any(|x| x == "dense"))
        .map(|v| {
            let mut row = vec![
                p.index.to_string(),
                p.what.clone(),
                p.on.clone(),
                v.variant.clone(),
            ];
            row.extend(p.settings.iter().map(|(_, x)| x.clone()));
            row.extend([
                r.metric.clone(),
                format!("{}", v.metric),
                v.delta.map_or(String::new(), |d| format!("{d}")),
                format!("{}", v.kept_fraction),
                format!("{}", v.softmax_fraction),
            ]);
            row
        })
        .collect())
}

/// A shard `i/n` of a grid (`0/1` = all points).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shard {
    /// This shard, from 0.
    pub index: usize,
    /// Number of shards.
    pub count: usize,
}

impl Shard {
    /// Parses `i/n` with `i < n`.
    pub fn parse(s: &str) -> Result<Self> {
        let bad = || ReproduceError::Usage(format!("--shard {s}: give i/n with 0 <= i < n"));
        let (i, n) = s.split_once('/').ok_or_else(bad)?;
        let (index, count) = (
            i.trim().parse::<usize>().map_err(|_| bad())?,
            n.trim().parse::<usize>().map_err(|_| bad())?,
        );
        if count == 0 || index >= count {
            return Err(bad());
        }
        Ok(Self { index, count })
    }

    /// Whether point `i` belongs to this shard.
    pub fn owns(&self, i: usize) -> bool {
        i % self.count == self.index
    }
}

/// What a shard's CSV covers, written beside it as `CSV.json` and checked by [`merge`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ShardInfo {
    /// sha256 of the grid.
    pub grid_sha256: String,
    /// The shard.
    pub shard: Shard,
    /// Points in the whole grid.
    pub points: usize,
    /// Point indices in this file.
    pub covered: Vec<usize>,
    /// The grid itself.
    pub grid: Grid,
}

/// The result of a grid run or merge: the table and the shard description.
pub struct GridOutcome {
    /// The rows (CSV through [`Table::csv`]).
    pub table: Table,
    /// What the table covers.
    pub info: ShardInfo,
}

/// Progress of a grid run.
pub trait GridProgress: sprint_eval::run::Progress + Sync {
    /// A point finished (`cached`: read from the cache).
    fn point_done(&self, index: usize, cached: bool);
}

/// Runs the points of `shard` (in parallel for the simulator), each cached under `cache`
/// by its content, and returns their rows in point order.
pub fn run_grid(
    g: &Grid,
    shard: Shard,
    cache_dir: &Path,
    assets: &sprint_assets::Cache,
    progress: &dyn GridProgress,
) -> Result<GridOutcome> {
    let cache = StageCache::new(cache_dir);
    let tool = crate::cache::file_sha256(
        &std::env::current_exe()
            .map_err(|e| ReproduceError::Usage(format!("cannot locate the executable: {e}")))?,
    )?;
    let points: Vec<Point> = g
        .points()
        .into_iter()
        .filter(|p| shard.owns(p.index))
        .collect();
    let key_of = |p: &Point| {
        let mut inputs = json!({"grid_kind": g.kind, "point": p, "tool_sha256": tool,
            "baseline": g.baseline, "iso": g.axes_apply_to_baseline, "variants": g.variants,
            "limit": g.limit, "keep": g.keep, "seed": g.seed});
        // Only when set, so that the keys of grids without it are unchanged.
        if let Some(k) = g.peer_keep {
            inputs["peer_keep"] = json!(k);
        }
        (StageCache::key(&inputs), inputs)
    };
    let run_one = |p: &Point, compute: &dyn Fn() -> Result<Rows>| -> Result<Rows> {
        let (key, inputs) = key_of(p);
        let stage = format!("point{}", p.index);
        if let Some(c) = cache.load::<Rows>(&stage, &key) {
            progress.point_done(p.index, true);
            return Ok(c.result);
        }
        let t = std::time::Instant::now();
        let rows = compute()?;
        cache.store(&Cached {
            stage,
            key,
            seconds: t.elapsed().as_secs_f64(),
            inputs,
            result: &rows,
        })?;
        progress.point_done(p.index, false);
        Ok(rows)
    };
    let rows: Vec<Rows> = match g.kind {
        GridKind::Simulate => points
            .par_iter()
            .map(|p| run_one(p, &|| sim_point(g, p)))
            .collect::<Result<_>>()?,
        GridKind::Eval => {
            let mut models: BTreeMap<String, sprint_models::LoadedModel> = BTreeMap::new();
            let mut out = Vec::new();
            for p in &points {
                if !models.contains_key(&p.what)
                    && cache
                        .load::<Rows>(&format!("point{}", p.index), &key_of(p).0)
                        .is_none()
                {
                    let m = sprint_models::load(&p.what, assets)
                        .map_err(|e| ReproduceError::stage(&format!("point {}", p.index), e))?;
                    models.insert(p.what.clone(), m);
                }
                out.push(run_one(p, &|| {
                    let m = models.get(&p.what).expect("loaded above when not cached");
                    eval_point(g, p, assets, m, progress)
                })?);
            }
            out
        }
    };
    let mut table = Table::new("grid", "Grid sweep", g.columns());
    for r in rows.into_iter().flatten() {
        table.push(r.into_iter().map(Cell::Text).collect());
    }
    Ok(GridOutcome {
        table,
        info: ShardInfo {
            grid_sha256: g.sha256(),
            shard,
            points: g.points().len(),
            covered: points.iter().map(|p| p.index).collect(),
            grid: g.clone(),
        },
    })
}

/// Joins shard results (tables with their infos): same grid, disjoint, together covering
/// every point; rows in point order. The CSV equals the unsharded run's.
pub fn merge(parts: Vec<(Table, ShardInfo, String)>) -> Result<GridOutcome> {
    let Some((_, first, _)) = parts.first() else {
        return Err(ReproduceError::Usage(
            "sweep merge: give at least one shard CSV".into(),
        ));
    };
    let first = first.clone();
    let mut seen = vec![false; first.points];
    let mut rows: Vec<(usize, Vec<Cell>)> = Vec::new();
    let mut columns = None;
    for (t, info, name) in parts {
        if info.grid_sha256 != first.grid_sha256 {
            return Err(ReproduceError::Usage(format!(
                "sweep merge: {name} is from another grid (sha256 {} vs {})",
                &info.grid_sha256[..12],
                &first.grid_sha256[..12]
            )));
        }
        for &i in &info.covered {
            if i >= seen.len() || seen[i] {
                return Err(ReproduceError::Usage(format!(
                    "sweep merge: point {i} appears twice (or is out of range) in {name}"
                )));
            }
            seen[i] = true;
        }
        if columns.is_none() {
            columns = Some(t.columns.clone());
        }
        for r in t.rows {
            let i = r
                .first()
                .and_then(|c| c.display().parse::<usize>().ok())
                .ok_or_else(|| {
                    ReproduceError::Usage(format!("sweep merge: {name}: a row has no point index"))
                })?;
            rows.push((i, r));
        }
    }
    if let Some(i) = seen.iter().position(|s| !s) {
        return Err(ReproduceError::Usage(format!(
            "sweep merge: point {i} is in no shard (missing shard file?)"
        )));
    }
    rows.sort_by_key(|(i, _)| *i);
    let mut table = Table::new("grid", "Grid sweep", columns.unwrap_or_default());
    for (_, r) in rows {
        table.push(r);
    }
    Ok(GridOutcome {
        table,
        info: ShardInfo {
            shard: Shard { index: 0, count: 1 },
            covered: (0..first.points).collect(),
            ..first
        },
    })
}

/// Reads a shard CSV (written by [`GridOutcome`]) and its `CSV.json` info.
pub fn read_shard(path: &Path) -> Result<(Table, ShardInfo, String)> {
    let name = path.display().to_string();
    let bad = |m: String| ReproduceError::Usage(format!("{name}: {m}"));
    let info_path = info_path(path);
    let info: ShardInfo = serde_json::from_str(
        &std::fs::read_to_string(&info_path)
            .map_err(|e| bad(format!("{}: {e}", info_path.display())))?,
    )
    .map_err(|e| bad(format!("{}: {e}", info_path.display())))?;
    check_info(&info).map_err(bad)?;
    let mut rd = csv::Reader::from_path(path).map_err(|e| bad(e.to_string()))?;
    let header: Vec<String> = rd
        .headers()
        .map_err(|e| bad(e.to_string()))?
        .iter()
        .map(String::from)
        .collect();
    let mut t = Table::new("grid", "Grid sweep", info.grid.columns());
    let want: Vec<String> = t.columns.iter().map(Column::header).collect();
    if header != want {
        return Err(bad(format!(
            "columns {header:?} are not the grid's {want:?}"
        )));
    }
    let mut rows_seen = Vec::with_capacity(info.covered.len());
    for r in rd.records() {
        let r = r.map_err(|e| bad(e.to_string()))?;
        if rows_seen.len() == info.covered.len() {
            return Err(bad(format!(
                "more rows than the {} points its info file covers",
                info.covered.len()
            )));
        }
        let i = r
            .get(0)
            .and_then(|c| c.parse::<usize>().ok())
            .ok_or_else(|| {
                bad(format!(
                    "row {} has no point index in its first column",
                    rows_seen.len() + 1
                ))
            })?;
        rows_seen.push(i);
        t.push(r.iter().map(|c| Cell::Text(c.to_string())).collect());
    }
    let mut covered = info.covered.clone();
    covered.sort_unstable();
    rows_seen.sort_unstable();
    if rows_seen != covered {
        return Err(bad(format!(
            "its rows hold points {} but its info file covers {} (a cut or edited shard?)",
            summarise_indices(&rows_seen),
            summarise_indices(&covered)
        )));
    }
    Ok((t, info, name))
}

/// Checks a shard's info before anything is sized by it: the grid's own point count, at
/// most [`MAX_POINTS`], and covered points inside it, each once.
fn check_info(info: &ShardInfo) -> std::result::Result<(), String> {
    let n = info.grid.point_count();
    if n != Some(info.points) || info.points > MAX_POINTS {
        return Err(format!(
            "\"points\" is {} but its grid has {} (limit {MAX_POINTS})",
            info.points,
            n.map_or_else(|| "over 2^64".to_string(), |n| n.to_string())
        ));
    }
    let mut seen = vec![false; info.points];
    for &i in &info.covered {
        if i >= info.points || std::mem::replace(&mut seen[i], true) {
            return Err(format!(
                "\"covered\" lists point {i} twice or outside the grid's {} points",
                info.points
            ));
        }
    }
    Ok(())
}

/// A short description of a list of point indices (count, first and last).
fn summarise_indices(v: &[usize]) -> String {
    match (v.first(), v.last()) {
        (Some(a), Some(b)) => format!("{} ({a}..={b})", v.len()),
        _ => "none".to_string(),
    }
}

/// Checks before any work that `--svg` can be written for this run: the grid has a
/// `[pareto]` section and the run covers every point (not a part of a sharded run).
pub fn check_svg(grid: &Grid, shard: Shard) -> Result<()> {
    if grid.pareto.is_none() {
        return Err(ReproduceError::Usage(
            "--svg: the grid has no [pareto] section naming x and y".into(),
        ));
    }
    if shard.count > 1 {
        return Err(ReproduceError::Usage(
            "--svg: a shard covers part of the grid; plot after `sprint sweep merge`".into(),
        ));
    }
    Ok(())
}

/// The info file beside a CSV: `NAME.csv.json`.
pub fn info_path(csv: &Path) -> std::path::PathBuf {
    let mut s = csv.as_os_str().to_os_string();
    s.push(".json");
    s.into()
}

/// The Pareto plot of a complete grid result, when the grid asks for one.
pub fn pareto_plot(o: &GridOutcome) -> Result<Option<Plot>> {
    let Some(p) = &o.info.grid.pareto else {
        return Ok(None);
    };
    let col = |name: &str| {
        o.table
            .columns
            .iter()
            .position(|c| c.name == name)
            .ok_or_else(|| {
                ReproduceError::Usage(format!("pareto: no column `{name}` in the grid's results"))
            })
    };
    let (xi, yi) = (col(&p.x)?, col(&p.y)?);
    let pts: Vec<(f64, f64)> = o
        .table
        .rows
        .iter()
        .filter_map(|r| Some((r[xi].display().parse().ok()?, r[yi].display().parse().ok()?)))
        .collect();
    let unit = |i: usize| o.table.columns[i].header();
    Ok(Some(Plot::Scatter(Scatter {
        id: "pareto".into(),
        title: format!("Pareto front: {} against {}", p.y, p.x),
        x_label: unit(xi),
        y_label: unit(yi),
        front: pareto_front(&pts, (p.maximise[0], p.maximise[1])),
        points: pts,
    })))
}

/// Writes a grid result: the CSV, its info file, and the Pareto SVG when asked, atomically.
pub fn write_outcome(o: &GridOutcome, csv: &Path, svg: Option<&Path>) -> Result<()> {
    let text = o.table.csv()?;
    let info = serde_json::to_string_pretty(&o.info).expect("shard info serialises");
    sprint_report::document::write_text(csv, &text)?;
    sprint_report::document::write_text(&info_path(csv), &(info + "\n"))?;
    if let Some(svg) = svg {
        if o.info.covered.len() != o.info.points {
            return Err(ReproduceError::Usage(
                "--svg: a shard covers part of the grid; plot after `sprint sweep merge`".into(),
            ));
        }
        match pareto_plot(o)? {
            Some(p) => sprint_report::document::write_text(svg, &p.svg()?)?,
            None => {
                return Err(ReproduceError::Usage(
                    "--svg: the grid has no [pareto] section naming x and y".into(),
                ));
            }
        }
    }
    Ok(())
}
