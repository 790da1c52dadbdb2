//! Workload statistics that drive synthetic traces (keep rate per layer, softmax fraction,
//! query-to-query overlap of kept sets), loaded from a sourced TOML file, and measured from
//! real traces so the defaults can be replaced by measurements.

use std::collections::BTreeMap;
use std::io::Read;

use serde::{Deserialize, Serialize};
use sprint_core::trace::TraceReader;

use crate::error::{Result, SimError, one_line};
use crate::recall::{BINS, RecallCounter};
use crate::sourced::Sourced;

/// The embedded default statistics file.
pub const DEFAULT_STATS: &str = include_str!("../configs/workload-stats/default.toml");

/// Per-model overrides of the statistics (any subset).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelStats {
    /// Keep rate by relative depth (see [`StatsFile::keep_rate_by_depth`]).
    pub keep_rate_by_depth: Option<Sourced<Vec<f64>>>,
    /// Softmax fraction.
    pub softmax_fraction: Option<Sourced<f64>>,
    /// Query-to-query overlap.
    pub query_overlap: Option<Sourced<f64>>,
    /// Recall histogram (see [`StatsFile::recall_by_distance`]).
    pub recall_by_distance: Option<Sourced<Vec<f64>>>,
}

/// A statistics file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatsFile {
    /// Name of the statistics set.
    pub name: String,
    /// Where the statistics come from, in words.
    pub source: String,
    /// Fraction of visible (query, key) pairs kept in memory (moved on chip), sampled at
    /// evenly spaced relative depths from the first layer (first entry) to the last (last
    /// entry); other layers interpolate linearly. One entry = the same for every layer.
    pub keep_rate_by_depth: Sourced<Vec<f64>>,
    /// Fraction of kept keys that pass the exact-score threshold and enter the softmax.
    pub softmax_fraction: Sourced<f64>,
    /// `sum |P_i ∩ P_(i-1)| / sum |P_i|` over consecutive real queries of a head.
    pub query_overlap: Sourced<f64>,
    /// Fractions of the keys entering a kept set by recall distance
    /// ([`crate::recall`]: seven ranges of the visible keys, then "never kept before"; eight
    /// values summing to 1). Absent: entering keys are uniformly random visible keys.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recall_by_distance: Option<Sourced<Vec<f64>>>,
    /// Seed of the synthetic kept-set generator.
    pub seed: u64,
    /// Per-model overrides, keyed by workload name (`BERT-B`, ...).
    #[serde(default)]
    pub models: BTreeMap<String, ModelStats>,
}

/// The statistics of one model, resolved.
#[derive(Clone, Debug, PartialEq)]
pub struct WorkloadStats {
    /// Keep rate by relative depth.
    pub keep_rate_by_depth: Vec<f64>,
    /// Softmax fraction.
    pub softmax_fraction: f64,
    /// Query-to-query overlap.
    pub query_overlap: f64,
    /// Recall histogram of entering keys, if measured.
    pub recall: Option<[f64; BINS]>,
    /// Generator seed.
    pub seed: u64,
    /// Provenance, in words.
    pub source: String,
}

fn check_frac(x: f64, key: &str) -> Result<()> {
    if (0.0..=1.0).contains(&x) {
        Ok(())
    } else {
        Err(SimError::config(key, format!("must be in [0, 1], got {x}")))
    }
}

impl StatsFile {
    /// Parses and validates a statistics file.
    pub fn from_toml_str(text: &str, origin: &str) -> Result<Self> {
        let f: Self =
            toml::from_str(text).map_err(|e| SimError::config(origin, one_line(&e.to_string())))?;
        let check_all = |k: &[f64], s: f64, o: f64, at: &str| -> Result<()> {
            if k.is_empty() {
                return Err(SimError::config(
                    format!("{origin}: {at}keep_rate_by_depth"),
                    "needs at least one value",
                ));
            }
            for &x in k {
                check_frac(x, &format!("{origin}: {at}keep_rate_by_depth"))?;
            }
            check_frac(s, &format!("{origin}: {at}softmax_fraction"))?;
            check_frac(o, &format!("{origin}: {at}query_overlap"))
        };
        check_all(
            &f.keep_rate_by_depth.value,
            f.softmax_fraction.value,
            f.query_overlap.value,
            "",
        )?;
        if let Some(r) = &f.recall_by_distance {
            recall_array(&r.value, &format!("{origin}: recall_by_distance"))?;
        }
        for (name, m) in &f.models {
            if let Some(r) = &m.recall_by_distance {
                recall_array(
                    &r.value,
                    &format!("{origin}: models.{name}.recall_by_distance"),
                )?;
            }
            let r = f.resolve(name);
            check_all(
                &r.keep_rate_by_depth,
                r.softmax_fraction,
                r.query_overlap,
                &format!("models.{name}."),
            )?;
        }
        Ok(f)
    }

    /// The embedded default statistics.
    pub fn default_stats() -> Self {
        Self::from_toml_str(DEFAULT_STATS, "workload-stats/default.toml")
            .expect("embedded statistics are valid")
    }

    /// Statistics of workload `model`: its overrides, else the defaults.
    pub fn resolve(&self, model: &str) -> WorkloadStats {
        let m = self.models.get(model).cloned().unwrap_or_default();
        WorkloadStats {
            keep_rate_by_depth: m
                .keep_rate_by_depth
                .map_or_else(|| self.keep_rate_by_depth.value.clone(), |s| s.value),
            softmax_fraction: m
                .softmax_fraction
                .map_or(self.softmax_fraction.value, |s| s.value),
            query_overlap: m
                .query_overlap
                .map_or(self.query_overlap.value, |s| s.value),
            recall: m
                .recall_by_distance
                .or_else(|| self.recall_by_distance.clone())
                .map(|s| recall_array(&s.value, "recall_by_distance").expect("validated")),
            seed: self.seed,
            source: format!("{}: {}", self.name, self.source),
        }
    }
}

/// A checked recall histogram: [`BINS`] fractions in [0, 1] summing to 1 (within 1e-3).
fn recall_array(v: &[f64], key: &str) -> Result<[f64; BINS]> {
    let a: [f64; BINS] = v
        .try_into()
        .map_err(|_| SimError::config(key, format!("needs {BINS} values, got {}", v.len())))?;
    for &x in &a {
        check_frac(x, key)?;
    }
    let sum: f64 = a.iter().sum();
    if (sum - 1.0).abs() > 1e-3 {
        return Err(SimError::config(key, format!("must sum to 1, got {sum}")));
    }
    Ok(a)
}

impl WorkloadStats {
    /// Keep rate of layer `l` of `layers`.
    pub fn keep_rate(&self, l: u32, layers: u32) -> f64 {
        let k = &self.keep_rate_by_depth;
        if k.len() == 1 || layers <= 1 {
            return k[0];
        }
        let x = f64::from(l) / f64::from(layers - 1) * (k.len() - 1) as f64;
        let i = (x.floor() as usize).min(k.len() - 2);
        let t = x - i as f64;
        k[i] * (1.0 - t) + k[i + 1] * t
    }
}

/// Statistics measured from a trace.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct MeasuredStats {
    /// Workload named in the trace header.
    pub workload: String,
    /// Variant that produced the trace.
    pub variant: String,
    /// Keep rate of each layer (kept pairs / visible pairs).
    pub keep_rate_per_layer: Vec<f64>,
    /// Softmax keys / kept keys.
    pub softmax_fraction: f64,
    /// `sum |P_i ∩ P_(i-1)| / sum |P_i|` over consecutive real queries.
    pub query_overlap: f64,
    /// Fractions of the keys entering a kept set by recall bin ([`crate::recall`]).
    pub recall_by_distance: Vec<f64>,
    /// Fraction of keys that are padding (mean over heads).
    pub padding_fraction: f64,
    /// Heads read.
    pub heads: u64,
}

/// Measures the statistics of a trace, streaming one head at a time.
pub fn measure<R: Read>(mut reader: TraceReader<R>) -> Result<MeasuredStats> {
    let h = reader.header().clone();
    let layers = h.layers as usize;
    let (mut kept_l, mut vis_l) = (vec![0u64; layers], vec![0u64; layers]);
    let (mut kept, mut sm, mut inter, mut kept_after_first) = (0u64, 0u64, 0u64, 0u64);
    let (mut pad_keys, mut all_keys, mut heads) = (0u64, 0u64, 0u64);
    let mut recall = [0u64; BINS];
    for head in &mut reader {
        let head = head?;
        heads += 1;
        let nk = head.key_valid.len();
        let mut counter = RecallCounter::new(nk);
        let valid_keys = head.key_valid.count_ones() as u64;
        pad_keys += nk as u64 - valid_keys;
        all_keys += nk as u64;
        let mut prev: Option<usize> = None;
        for (i, r) in head.records.iter().enumerate() {
            if !head.query_valid.get(i) {
                continue;
            }
            let limit = sprint_core::visibility::visible_limit(
                i,
                head.query_valid.len(),
                head.key_valid.len(),
                h.causal,
            );
            let visible = head
                .key_valid
                .iter_ones()
                .take_while(|&j| j < limit)
                .count() as u64;
            let l = head.layer as usize;
            kept_l[l] += u64::from(r.kept);
            vis_l[l] += visible;
            kept += u64::from(r.kept);
            sm += u64::from(r.softmax_kept);
            if r.kept == 0 {
                continue;
            }
            counter.add(head.masks.row_words(i), visible as usize);
            if let Some(p) = prev {
                let (a, b) = (head.masks.row_words(i), head.masks.row_words(p));
                inter += a
                    .iter()
                    .zip(b)
                    .map(|(x, y)| u64::from((x & y).count_ones()))
                    .sum::<u64>();
                kept_after_first += u64::from(r.kept);
            }
            prev = Some(i);
        }
        for (a, c) in recall.iter_mut().zip(counter.counts) {
            *a += c;
        }
    }
    let entering: u64 = recall.iter().sum();
    let frac = |a: u64, b: u64| if b == 0 { 0.0 } else { a as f64 / b as f64 };
    Ok(MeasuredStats {
        workload: h.workload.clone(),
        variant: h.variant.clone(),
        keep_rate_per_layer: kept_l
            .iter()
            .zip(&vis_l)
            .map(|(&k, &v)| frac(k, v))
            .collect(),
        softmax_fraction: frac(sm, kept),
        query_overlap: frac(inter, kept_after_first),
        recall_by_distance: recall.iter().map(|&c| frac(c, entering)).collect(),
        padding_fraction: frac(pad_keys, all_keys),
        heads,
    })
}

impl MeasuredStats {
    /// One line of the measured statistics: keep rate per layer, softmax fraction, query
    /// overlap and padding (fractions).
    pub fn summary_line(&self) -> String {
        format!(
            "keep rate per layer {:?}, softmax fraction {:.4}, query overlap {:.4}, recall by distance {:?}, padding {:.4}",
            self.keep_rate_per_layer,
            self.softmax_fraction,
            self.query_overlap,
            self.recall_by_distance,
            self.padding_fraction
        )
    }

    /// A statistics file (TOML) with these values, labelled with `source`.
    pub fn to_toml(&self, name: &str, source: &str, seed: u64) -> String {
        let r = |x: f64| (x * 1e4).round() / 1e4;
        let keep: Vec<String> = self
            .keep_rate_per_layer
            .iter()
            .map(|&x| format!("{}", r(x)))
            .collect();
        let src = format!(
            "measured from trace (workload {}, variant {}, {} heads, padding {:.3}): {source}",
            self.workload, self.variant, self.heads, self.padding_fraction
        )
        .replace('"', "'");
        format!(
            "# Workload statistics measured by `sprint simulate --trace FILE --measure-stats OUT`.\n\
             name = \"{name}\"\n\
             source = \"{src}\"\n\
             seed = {seed}\n\
             keep_rate_by_depth = {{ value = [{}], source = \"{src}\" }}\n\
             softmax_fraction = {{ value = {}, source = \"{src}\" }}\n\
             query_overlap = {{ value = {}, source = \"{src}\" }}\n\
             recall_by_distance = {{ value = [{}], source = \"{src}\" }}\n",
            keep.join(", "),
            r(self.softmax_fraction),
            r(self.query_overlap),
            recall_toml(&self.recall_by_distance),
        )
    }
}

/// A measured recall histogram as a TOML list that sums to 1 after rounding to 4 decimals
/// (the largest bin takes the rounding residue).
fn recall_toml(v: &[f64]) -> String {
    let mut r: Vec<f64> = v.iter().map(|x| (x * 1e4).round() / 1e4).collect();
    if let Some(k) = (0..r.len()).max_by(|&a, &b| r[a].total_cmp(&r[b])) {
        let rest: f64 = r
            .iter()
            .enumerate()
            .filter(|&(i, _)| i != k)
            .map(|(_, x)| x)
            .sum();
        r[k] = ((1.0 - rest) * 1e4).round() / 1e4;
    }
    r.iter()
        .map(|x| format!("{x}"))
        .collect::<Vec<_>>()
        .join(", ")
}
