//! `sprint_attn.simulate`: the simulator on a trace or a paper workload.

use std::io::{BufReader, Cursor};
use std::path::PathBuf;
use std::time::Instant;

use pyo3::prelude::*;
use serde_json::Value as Json;
use sprint_core::trace::TraceReader;
use sprint_sim::presets::{load_design, load_energy, preset_names};
use sprint_sim::simulate::{json_document, simulate as run_simulation, split_sets};
use sprint_sim::workload::model_workload;
use sprint_sim::wstats::StatsFile;

use crate::conversions::json_to_py;
use crate::error::err;
use crate::trace::PyTrace;

/// Runs `sprint simulate --json` on a trace (in memory or a file) or a paper workload and
/// returns the JSON document as a dict. See `sprint_attn.simulate`.
#[pyfunction]
#[pyo3(signature = (presets, trace=None, trace_path=None, workload=None, sets=Vec::new(),
    energy="default".to_string(), stats=None, seq_len=None, padding=None))]
#[allow(clippy::too_many_arguments)]
pub(crate) fn simulate(
    py: Python<'_>,
    presets: Vec<String>,
    trace: Option<PyRef<'_, PyTrace>>,
    trace_path: Option<PathBuf>,
    workload: Option<String>,
    sets: Vec<String>,
    energy: String,
    stats: Option<PathBuf>,
    seq_len: Option<u32>,
    padding: Option<f64>,
) -> PyResult<Py<PyAny>> {
    if presets.is_empty() {
        return Err(err(format!(
            "give at least one preset ({})",
            preset_names().join(", ")
        )));
    }
    let (hw_sets, energy_sets) = split_sets(&sets);
    let table = load_energy(&energy, &energy_sets).map_err(err)?;
    let stats = match &stats {
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .map_err(|e| err(format!("cannot read {}: {e}", p.display())))?;
            StatsFile::from_toml_str(&text, &p.display().to_string()).map_err(err)?
        }
        None => StatsFile::default_stats(),
    };
    let designs = presets
        .iter()
        .map(|p| load_design(p, &hw_sets))
        .collect::<sprint_sim::Result<Vec<_>>>()
        .map_err(err)?;
    let mut workload = match &workload {
        Some(w) => Some(model_workload(w).map_err(err)?),
        None => None,
    };
    if let Some(w) = &mut workload {
        if let Some(n) = seq_len {
            w.seq_len = n;
        }
        if let Some(p) = padding {
            w.padding_fraction = p;
        }
        w.validate().map_err(err)?;
    }
    let started = Instant::now();
    let doc = match (trace, trace_path) {
        (Some(_), Some(_)) => return Err(err("give a trace or a trace path, not both")),
        (Some(t), None) => {
            let bytes = t.encode()?;
            let name = format!("<memory: {}>", t.header.workload);
            py.detach(|| -> Result<_, String> {
                let reader = TraceReader::new(Cursor::new(bytes)).map_err(|e| e.to_string())?;
                let o = run_simulation(
                    &designs,
                    &table,
                    &stats,
                    Some((name.as_str(), reader)),
                    workload.as_ref(),
                )
                .map_err(|e| e.to_string())?;
                Ok(json_document(&o, &designs, &table))
            })
        }
        (None, Some(path)) => py.detach(|| -> Result<_, String> {
            let f = std::fs::File::open(&path)
                .map_err(|e| format!("cannot open trace {}: {e}", path.display()))?;
            let reader = TraceReader::new(BufReader::new(f))
                .map_err(|e| format!("{}: {e}", path.display()))?;
            let name = path.display().to_string();
            let o = run_simulation(
                &designs,
                &table,
                &stats,
                Some((name.as_str(), reader)),
                workload.as_ref(),
            )
            .map_err(|e| e.to_string())?;
            Ok(json_document(&o, &designs, &table))
        }),
        (None, None) => py.detach(|| -> Result<_, String> {
            let o =
                run_simulation::<std::io::Empty>(&designs, &table, &stats, None, workload.as_ref())
                    .map_err(|e| e.to_string())?;
            Ok(json_document(&o, &designs, &table))
        }),
    };
    let mut doc = doc.map_err(err)?;
    doc.insert(
        "wall_seconds".into(),
        Json::from(started.elapsed().as_secs_f64()),
    );
    json_to_py(py, &Json::Object(doc))
}
