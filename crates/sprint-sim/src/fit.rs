//! `sprint simulate --fit-paper`: an exhaustive grid search over the calibration
//! parameters ([`crate::calibration::PARAMS`]) the paper does not publish (SPRINT's locality
//! policy, the baseline's query block, the paddings of the decoder and synthetic inputs),
//! matching Fig 10
//! (data-movement reduction, 48 cells) and Fig 12a's Baseline component shares (ReRAM read
//! and write, 14 cells; ViT-B left out as unreliable).
//!
//! Objective (percentage points): `J = mean |Fig 10 ours - paper| + mean |share ours -
//! paper|`, both means over their cells, equally weighted. The grid is searched
//! exhaustively in its given order and the first minimum is kept, so the fit is
//! deterministic. Bytes moved and energy shares do not depend on timing, so every design
//! runs in traffic-only mode; parameters that change only timing (`memory_channels`,
//! `memory_channels_per_corelet`, `prefetch_queries`, `scoring_pipelined`) leave the
//! objective flat and are reported as not identifiable instead of being fitted.

use serde::Serialize;

use crate::calibration::{Calibration, Param, check_value, param};
use crate::config::Design;
use crate::energy::{EnergyTable, energy};
use crate::error::{Result, SimError};
use crate::paper::{PaperModel, PaperResults, comparison_designs_with};
use crate::run::run_model;
use crate::sourced::Sourced;
use crate::stats::HeadStats;
use crate::workload::model_workload;
use crate::wstats::StatsFile;

/// The label every fitted value carries.
pub const FITTED: &str = "fitted: Fig 10 + Fig 12a shares";

/// Parameters whose values change timing only (not bytes moved, not energy shares).
const TIMING_ONLY: &[&str] = &[
    "memory_channels",
    "memory_channels_per_corelet",
    "prefetch_queries",
    "scoring_pipelined",
    "baseline_tile_double_buffered",
];

/// The values to search per parameter, in search order.
#[derive(Clone, Debug, PartialEq)]
pub struct Space {
    /// (parameter, candidate values); each list non-empty.
    pub grids: Vec<(&'static Param, Vec<f64>)>,
}

impl Space {
    /// The documented default grid: SPRINT's locality policy (residency, sld-strict),
    /// baseline query block 1-32 per CORELET, padding of GPT-2-L and of Synth 0-0.7 in
    /// steps of 0.1.
    pub fn default_grid() -> Self {
        let pads = vec![0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7];
        Self {
            grids: vec![
                (param("sprint_locality").expect("known"), vec![0.0, 1.0]),
                (
                    param("baseline_query_block_per_corelet").expect("known"),
                    vec![
                        1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0, 12.0, 16.0, 24.0, 32.0,
                    ],
                ),
                (param("padding_gpt2_l").expect("known"), pads.clone()),
                (param("padding_synth").expect("known"), pads),
            ],
        }
    }

    /// Replaces (or adds) the grid of one parameter from `NAME=v1,v2,...` or
    /// `NAME=lo..hi:step`; errors name the parameter (unknown, empty, out of range).
    pub fn set_range(&mut self, spec: &str) -> Result<()> {
        let (name, values) = parse_range(spec)?;
        match self.grids.iter_mut().find(|(p, _)| p.name == name.name) {
            Some(g) => g.1 = values,
            None => self.grids.push((name, values)),
        }
        Ok(())
    }

    fn values(&self, name: &str) -> Option<&[f64]> {
        self.grids
            .iter()
            .find(|(p, _)| p.name == name)
            .map(|(_, v)| v.as_slice())
    }
}

/// Parses `NAME=v1,v2,...` or `NAME=lo..hi:step` into a checked, non-empty list.
pub fn parse_range(spec: &str) -> Result<(&'static Param, Vec<f64>)> {
    let (name, rhs) = spec
        .split_once('=')
        .ok_or_else(|| SimError::config(spec, "expected NAME=v1,v2,... or NAME=lo..hi:step"))?;
    let p = param(name.trim())?;
    let num = |s: &str| -> Result<f64> {
        s.trim()
            .parse::<f64>()
            .map_err(|_| SimError::config(p.name, format!("`{s}` is not a number")))
    };
    let rhs = rhs.trim();
    let values: Vec<f64> = if let Some((lo, rest)) = rhs.split_once("..") {
        let (hi, step) = match rest.split_once(':') {
            Some((h, s)) => (num(h)?, num(s)?),
            None => (num(rest)?, 1.0),
        };
        let lo = num(lo)?;
        if step.is_nan() || step <= 0.0 {
            return Err(SimError::config(p.name, format!("step {step} must be > 0")));
        }
        let n = ((hi - lo) / step + 1e-9).floor();
        if n.is_nan() || n < 0.0 || lo > hi {
            return Err(SimError::config(
                p.name,
                format!("empty search range {lo}..{hi}"),
            ));
        }
        if n > 10_000.0 {
            return Err(SimError::config(
                p.name,
                format!("{n} values is too many for a grid"),
            ));
        }
        (0..=n as usize)
            .map(|k| ((lo + k as f64 * step) * 1e9).round() / 1e9)
            .collect()
    } else if rhs.is_empty() {
        Vec::new()
    } else {
        rhs.split(',').map(num).collect::<Result<_>>()?
    };
    if values.is_empty() {
        return Err(SimError::config(p.name, "empty search range"));
    }
    for &v in &values {
        check_value(p, v)?;
    }
    Ok((p, values))
}

/// The result of a fit.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FitOutcome {
    /// The fitted calibration (only identifiable parameters).
    pub calibration: Calibration,
    /// Objective at the optimum, percentage points.
    pub objective_pp: f64,
    /// Mean absolute Fig 10 error at the optimum, percentage points.
    pub fig10_mae_pp: f64,
    /// Mean absolute Fig 12a share error at the optimum, percentage points.
    pub share_mae_pp: f64,
    /// Objective of the sourced default (no calibration), percentage points.
    pub sourced_objective_pp: f64,
    /// Grid points evaluated.
    pub evaluations: usize,
    /// Which cells identified which parameters.
    pub method: FitMethod,
    /// Parameters that leave the objective flat, with why.
    pub not_identifiable: Vec<String>,
    /// Per baseline query block, the objective the block was chosen by (`J` for the joint
    /// fit, the Mask-only + shares objective for the staged one) at the best other values.
    pub profile: Vec<(f64, f64)>,
    /// At the optimum, per model: (name, mean |Fig 10 error|, mean |share error|), pp
    /// (share error NaN where the model has no reliable share).
    pub per_model: Vec<(String, f64, f64)>,
}

/// Errors of one model at one (padding, block): sums of absolute errors and counts.
#[derive(Clone, Copy, Debug, Default)]
struct Err4 {
    fig10: f64,
    n_fig10: usize,
    /// The Mask-only part of `fig10` (the baseline-only cells).
    mask: f64,
    n_mask: usize,
    share: f64,
    n_share: usize,
}

/// Sourced-default errors plus, per model, per padding value, per locality policy, per
/// block value: the errors.
#[allow(clippy::type_complexity)]
fn model_errors(
    paper: &PaperResults,
    space: &Space,
    table: &EnergyTable,
    stats: &StatsFile,
    sets: &[String],
    mut progress: impl FnMut(&str),
) -> Result<(Err4, Vec<Vec<Vec<Vec<Err4>>>>)> {
    let policies = space.values("sprint_locality").map(<[f64]>::to_vec);
    let blocks = space
        .values("baseline_query_block_per_corelet")
        .map(<[f64]>::to_vec);
    let sourced = comparison_designs_with(sets, &Calibration::sourced_default())?;
    let mut per_block: Vec<Vec<Design>> = Vec::new();
    for &b in blocks.as_deref().unwrap_or(&[]) {
        let mut c = Calibration::sourced_default();
        c.params.insert(
            "baseline_query_block_per_corelet".into(),
            Sourced::new(b, FITTED),
        );
        per_block.push(comparison_designs_with(sets, &c)?);
    }
    // Designs of one run: SPRINT S/M/L of the sourced policy and of each searched policy,
    // then (S-Baseline, Mask S, Mask M, Mask L) for the sourced dataflow and for each block.
    let family = |ds: &[Design]| vec![ds[0].clone(), ds[7].clone(), ds[8].clone(), ds[9].clone()];
    let mut designs: Vec<Design> = sourced[3..6].to_vec();
    for &p in policies.as_deref().unwrap_or(&[]) {
        let mut c = Calibration::sourced_default();
        c.params
            .insert("sprint_locality".into(), Sourced::new(p, FITTED));
        designs.extend(comparison_designs_with(sets, &c)?[3..6].iter().cloned());
    }
    let n_pol = policies.as_ref().map_or(0, Vec::len);
    let fam0 = 3 + 3 * n_pol;
    designs.extend(family(&sourced));
    for ds in &per_block {
        designs.extend(family(ds));
    }
    for d in &mut designs {
        d.traffic_only = true;
    }
    let mut base = Err4::default();
    let mut out = Vec::new();
    for (name, pm) in &paper.models {
        progress(name);
        let pad_key = match name.as_str() {
            "GPT-2-L" => Some("padding_gpt2_l"),
            "Synth-1" | "Synth-2" => Some("padding_synth"),
            _ => None,
        };
        let mut pads: Vec<Option<f64>> = match pad_key.and_then(|k| space.values(k)) {
            Some(v) => v.iter().map(|&p| Some(p)).collect(),
            None => vec![None],
        };
        // The sourced default (the workload's own padding) is always evaluated, for the
        // printed comparison, even when the grid leaves it out; it is not a grid point then.
        let own = model_workload(name)?.padding_fraction;
        let is_own = |p: &Option<f64>| p.is_none_or(|x| x == own);
        let extra_sourced = !pads.iter().any(is_own);
        if extra_sourced {
            pads.push(Some(own));
        }
        let st = stats.resolve(name);
        let mut per_pad = Vec::new();
        for pad in &pads {
            let mut w = model_workload(name)?;
            if let Some(p) = pad {
                w.padding_fraction = *p;
            }
            let t = run_model(&designs, &w, &st)?;
            let err = |f: usize, sp: usize| run_errors(paper, name, pm, table, &designs, &t, f, sp);
            // The sourced default: the presets as shipped, no padding on these workloads.
            if is_own(pad) {
                base.add(&err(fam0, 0)?);
            }
            if extra_sourced && pad == &Some(own) {
                continue;
            }
            // Without a policy grid the sourced SPRINT designs stand for the one "policy".
            let pols: Vec<usize> = if n_pol == 0 {
                vec![0]
            } else {
                (0..n_pol).map(|k| 3 + 3 * k).collect()
            };
            let mut per_policy = Vec::new();
            for &sp in &pols {
                let mut per_block_err = Vec::new();
                for b in 0..per_block.len() {
                    per_block_err.push(err(fam0 + 4 + 4 * b, sp)?);
                }
                per_policy.push(per_block_err);
            }
            per_pad.push(per_policy);
        }
        out.push(per_pad);
    }
    Ok((base, out))
}

/// The errors against the paper of one model's run `t` over `designs`: Fig 10's cells of the
/// family whose S-Baseline is design `f` against the SPRINT designs from `sp` on, and Fig
/// 12a's Baseline ReRAM shares of design `f`.
#[allow(clippy::too_many_arguments)]
fn run_errors(
    paper: &PaperResults,
    name: &str,
    pm: &PaperModel,
    table: &EnergyTable,
    designs: &[Design],
    t: &[HeadStats],
    f: usize,
    sp: usize,
) -> Result<Err4> {
    let kv = |i: usize| t[i].moved.kv() as f64;
    // f: index of the family's S-Baseline in `designs`; sp: of S-SPRINT.
    let mut e = Err4::default();
    let ours = [
        [kv(f + 1), kv(sp)],
        [kv(f + 2), kv(sp + 1)],
        [kv(f + 3), kv(sp + 2)],
    ];
    for (o, p) in ours.iter().zip(&pm.data_movement_pct) {
        for (k, (ok, pk)) in o.iter().zip(p).enumerate() {
            let pct = 100.0 * (1.0 - ok / kv(f));
            e.fig10 += (pct - pk).abs();
            e.n_fig10 += 1;
            if k == 0 {
                e.mask += (pct - pk).abs();
                e.n_mask += 1;
            }
        }
    }
    if let Some(sh) = paper.baseline_shares.iter().find(|(n, _)| n == name) {
        let d = &designs[f];
        let en = energy(
            table,
            &t[f].actions,
            d.k_buffer_bytes,
            d.v_buffer_bytes,
            0,
            0.0,
        )?;
        let tot = en.fig12a_total();
        e.share += (100.0 * en.reram_read / tot - sh.1[0]).abs();
        e.share += (100.0 * en.reram_write / tot - sh.1[1]).abs();
        e.n_share += 2;
    }
    Ok(e)
}

impl Err4 {
    fn add(&mut self, e: &Err4) {
        self.fig10 += e.fig10;
        self.n_fig10 += e.n_fig10;
        self.mask += e.mask;
        self.n_mask += e.n_mask;
        self.share += e.share;
        self.n_share += e.n_share;
    }
}

/// `sum / n`, 0 for no cells.
fn mean(sum: f64, n: usize) -> f64 {
    if n > 0 { sum / n as f64 } else { 0.0 }
}

/// The joint objective: mean |Fig 10 error| over every cell + mean |share error|, pp.
fn objective(e: &Err4) -> f64 {
    mean(e.fig10, e.n_fig10) + mean(e.share, e.n_share)
}

/// The staged fit's first objective: mean |Fig 10 error| over the Mask-only cells + mean
/// |share error|, pp (the cells that depend on the baseline and the workload only).
fn baseline_objective(e: &Err4) -> f64 {
    mean(e.mask, e.n_mask) + mean(e.share, e.n_share)
}

/// The staged fit's second objective: mean |Fig 10 error| over SPRINT's cells, pp.
fn sprint_objective(e: &Err4) -> f64 {
    mean(e.fig10 - e.mask, e.n_fig10 - e.n_mask)
}

/// Which figure cells identify which parameters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FitMethod {
    /// The baseline's query block and the paddings from the cells that depend on them
    /// alone (Fig 10's Mask-only bars and Fig 12a's Baseline shares); then SPRINT's
    /// locality policy from SPRINT's Fig 10 bars at those values. SPRINT's bars also
    /// depend on the kept sets, which come from other models' real traces; this keeps
    /// that mismatch out of the baseline's parameters.
    #[default]
    Staged,
    /// Every parameter at once on every Fig 10 cell and the shares (`J`).
    Joint,
}

impl FitMethod {
    /// The name used on the command line.
    pub fn name(self) -> &'static str {
        match self {
            FitMethod::Staged => "staged",
            FitMethod::Joint => "joint",
        }
    }
}

impl std::str::FromStr for FitMethod {
    type Err = SimError;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "staged" => Ok(FitMethod::Staged),
            "joint" => Ok(FitMethod::Joint),
            _ => Err(SimError::config(
                "--fit-method",
                format!("`{s}` is not a fit method (staged, joint)"),
            )),
        }
    }
}

/// The grid point a method picks, as indices (policy, block, GPT-2-L padding, Synth
/// padding), with the number of points scored and the per-block profile. Search order:
/// block, policy, GPT-2-L padding, Synth padding; the first minimum is kept.
#[allow(clippy::type_complexity)]
fn choose(
    method: FitMethod,
    blocks: &[f64],
    n_p: usize,
    n_g: usize,
    n_s: usize,
    total: impl Fn(usize, usize, usize, usize) -> Err4,
) -> (usize, usize, usize, usize, usize, Vec<(f64, f64)>) {
    let score = |e: &Err4| match method {
        FitMethod::Joint => objective(e),
        FitMethod::Staged => baseline_objective(e),
    };
    let mut best: Option<(f64, usize, usize, usize, usize)> = None;
    let mut evaluations = 0;
    let mut profile = Vec::new();
    for (b, &block) in blocks.iter().enumerate() {
        let mut best_b = f64::INFINITY;
        for p in 0..n_p {
            for g in 0..n_g {
                for s in 0..n_s {
                    let j = score(&total(p, b, g, s));
                    evaluations += 1;
                    best_b = best_b.min(j);
                    if best.as_ref().is_none_or(|x| j < x.0) {
                        best = Some((j, p, b, g, s));
                    }
                }
            }
        }
        profile.push((block, best_b));
    }
    let (_, mut p, b, g, s) = best.expect("non-empty grids");
    if method == FitMethod::Staged {
        // Stage two: the policy from SPRINT's bars at the baseline's values.
        let mut best_p: Option<(usize, f64)> = None;
        for k in 0..n_p {
            let j = sprint_objective(&total(k, b, g, s));
            if best_p.is_none_or(|x| j < x.1) {
                best_p = Some((k, j));
            }
        }
        p = best_p.map_or(0, |x| x.0);
    }
    (p, b, g, s, evaluations, profile)
}

/// Runs the fit over `space` (every paper workload, kept sets from `stats`, energy from
/// `table`, `sets` applied to every preset); `progress` gets each model name.
pub fn fit(
    space: &Space,
    method: FitMethod,
    table: &EnergyTable,
    stats: &StatsFile,
    sets: &[String],
    progress: impl FnMut(&str),
) -> Result<FitOutcome> {
    let paper = PaperResults::load()?;
    let blocks = space
        .values("baseline_query_block_per_corelet")
        .ok_or_else(|| {
            SimError::config(
                "baseline_query_block_per_corelet",
                "the fit needs a search range for the baseline dataflow",
            )
        })?
        .to_vec();
    let (base, errs) = model_errors(&paper, space, table, stats, sets, progress)?;
    let gpt = space.values("padding_gpt2_l").map(<[f64]>::to_vec);
    let syn = space.values("padding_synth").map(<[f64]>::to_vec);
    let n_g = gpt.as_ref().map_or(1, Vec::len);
    let n_s = syn.as_ref().map_or(1, Vec::len);
    let pols = space.values("sprint_locality").map(<[f64]>::to_vec);
    let n_p = pols.as_ref().map_or(1, Vec::len);
    let names: Vec<&str> = paper.models.iter().map(|(n, _)| n.as_str()).collect();
    let total = |p: usize, b: usize, g: usize, s: usize| -> Err4 {
        let mut t = Err4::default();
        for (mi, name) in names.iter().enumerate() {
            let pi = padding_index(name, gpt.is_some(), syn.is_some(), g, s);
            t.add(&errs[mi][pi][p][b]);
        }
        t
    };
    let (p, b, g, s, evaluations, profile) = choose(method, &blocks, n_p, n_g, n_s, total);
    let e = total(p, b, g, s);
    let j = objective(&e);
    let per_model = names
        .iter()
        .enumerate()
        .map(|(mi, name)| {
            let pi = padding_index(name, gpt.is_some(), syn.is_some(), g, s);
            let x = errs[mi][pi][p][b];
            (
                name.to_string(),
                x.fig10 / x.n_fig10.max(1) as f64,
                if x.n_share > 0 {
                    x.share / x.n_share as f64
                } else {
                    f64::NAN
                },
            )
        })
        .collect();
    let mut cal = Calibration {
        name: "paper-inferred".into(),
        description: "parameters the paper does not publish, fitted to Fig 10 and Fig 12a's Baseline shares; Fig 11 and Table III are out of sample".into(),
        fit: fit_description(method, space, evaluations, &e, j, &base),
        params: Default::default(),
    };
    cal.params.insert(
        "baseline_query_block_per_corelet".into(),
        Sourced::new(blocks[b], FITTED),
    );
    if let Some(v) = &pols {
        cal.params
            .insert("sprint_locality".into(), Sourced::new(v[p], FITTED));
    }
    if let Some(v) = &gpt {
        cal.params
            .insert("padding_gpt2_l".into(), Sourced::new(v[g], FITTED));
    }
    if let Some(v) = &syn {
        cal.params
            .insert("padding_synth".into(), Sourced::new(v[s], FITTED));
    }
    let not_identifiable = space
        .grids
        .iter()
        .filter(|(p, _)| TIMING_ONLY.contains(&p.name))
        .map(|(p, _)| {
            format!(
                "{}: changes timing only, not bytes moved or energy shares; the objective is flat in it, so it keeps its sourced value",
                p.name
            )
        })
        .collect();
    Ok(FitOutcome {
        calibration: cal,
        objective_pp: j,
        fig10_mae_pp: e.fig10 / e.n_fig10.max(1) as f64,
        share_mae_pp: e.share / e.n_share.max(1) as f64,
        sourced_objective_pp: objective(&base),
        evaluations,
        method,
        not_identifiable,
        profile,
        per_model,
    })
}

/// The index of `name`'s padding in the error grid: `g` for GPT-2-L and `s` for the
/// synthetic workloads when their padding is searched (`gpt`, `syn`), else 0.
fn padding_index(name: &str, gpt: bool, syn: bool, g: usize, s: usize) -> usize {
    match name {
        "GPT-2-L" if gpt => g,
        "Synth-1" | "Synth-2" if syn => s,
        _ => 0,
    }
}

/// The calibration's account of the fit: the method, the grid, the objective at the optimum
/// `e` (`j`) and the sourced default's (`base`).
fn fit_description(
    method: FitMethod,
    space: &Space,
    evaluations: usize,
    e: &Err4,
    j: f64,
    base: &Err4,
) -> String {
    format!(
        "{}exhaustive grid search ({evaluations} points: {}); objective J = mean |Fig 10 ours - paper| over {} cells + mean |Fig 12a Baseline ReRAM read/write share ours - paper| over {} cells, percentage points; J = {j:.3} (Fig 10 {:.3} + shares {:.3}); sourced default J = {:.3}",
        match method {
            FitMethod::Staged => format!(
                "staged: the baseline's query block and the paddings minimise mean |Fig 10 Mask-only error| ({} cells) + mean |share error| ({:.3} pp at the optimum), then SPRINT's locality policy minimises mean |Fig 10 SPRINT error| ({:.3} pp); ",
                e.n_mask,
                baseline_objective(e),
                sprint_objective(e)
            ),
            FitMethod::Joint => "joint: ".to_string(),
        },
        space
            .grids
            .iter()
            .map(|(p, v)| format!("{} in {:?}", p.name, v))
            .collect::<Vec<_>>()
            .join(", "),
        e.n_fig10,
        e.n_share,
        e.fig10 / e.n_fig10.max(1) as f64,
        e.share / e.n_share.max(1) as f64,
        objective(base)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Errors of a constructed grid: 2 policies x 2 blocks, no paddings. Block 0 fits the
    /// SPRINT cells best (joint), block 1 the Mask-only cells and shares (staged); policy 1
    /// fits SPRINT's cells at block 1.
    fn constructed(p: usize, b: usize, _g: usize, _s: usize) -> Err4 {
        let (mask, sprint) = match (p, b) {
            (_, 0) => (10.0, 0.0),
            (0, _) => (2.0, 30.0),
            _ => (2.0, 20.0),
        };
        Err4 {
            fig10: mask + sprint,
            n_fig10: 2,
            mask,
            n_mask: 1,
            share: 1.0,
            n_share: 1,
        }
    }

    #[test]
    fn staged_fit_takes_the_baseline_from_its_own_cells_and_the_policy_from_sprints() {
        let blocks = [4.0, 8.0];
        let (p, b, ..) = choose(FitMethod::Joint, &blocks, 2, 1, 1, constructed);
        assert_eq!(
            (p, b),
            (0, 0),
            "joint: J = 6 at block 0 against 12 at best elsewhere"
        );
        let (p, b, _, _, n, profile) = choose(FitMethod::Staged, &blocks, 2, 1, 1, constructed);
        assert_eq!(
            (p, b),
            (1, 1),
            "staged: Mask-only 2 + 1 at block 1, then policy 1"
        );
        assert_eq!(n, 4);
        assert_eq!(profile, vec![(4.0, 11.0), (8.0, 3.0)]);
    }

    #[test]
    fn ranges_parse_as_lists_and_steps() {
        let (p, v) = parse_range("padding_synth=0..0.3:0.1").unwrap();
        assert_eq!(p.name, "padding_synth");
        assert_eq!(v, vec![0.0, 0.1, 0.2, 0.3]);
        let (_, v) = parse_range("baseline_query_block_per_corelet=2,4,8").unwrap();
        assert_eq!(v, vec![2.0, 4.0, 8.0]);
        let (_, v) = parse_range("memory_channels=1..4").unwrap();
        assert_eq!(v, vec![1.0, 2.0, 3.0, 4.0]);
    }

    #[test]
    fn bad_ranges_name_the_parameter() {
        for (spec, key, what) in [
            ("baseline_reuse=1,2", "baseline_reuse", "unknown"),
            ("padding_synth=", "padding_synth", "empty"),
            ("padding_synth=0.5..0.2", "padding_synth", "empty"),
            ("padding_synth=0..0.5:0", "padding_synth", "step"),
            ("padding_synth=0.95", "padding_synth", "outside"),
            ("memory_channels=1.5", "memory_channels", "whole"),
            ("memory_channels=a", "memory_channels", "not a number"),
        ] {
            let e = parse_range(spec).unwrap_err().to_string();
            assert!(e.contains(key) && e.contains(what), "{spec}: {e}");
        }
        let mut s = Space::default_grid();
        assert!(s.set_range("nope=1").is_err());
        s.set_range("padding_gpt2_l=0.2").unwrap();
        assert_eq!(s.values("padding_gpt2_l"), Some(&[0.2][..]));
    }
}
