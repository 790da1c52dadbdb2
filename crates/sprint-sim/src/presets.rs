//! The presets and energy tables shipped with the tool, embedded in the binary so it works
//! from any directory, and the loader that resolves a name or a file path, `inherits`, and
//! `--set` overrides.

use std::path::Path;

use toml::Table;

use crate::config::{Design, PresetFile};
use crate::energy::{EnergyFile, EnergyTable};
use crate::error::{Result, SimError};
use crate::layers::{apply_set, merge, parse};

/// Embedded hardware presets: (name, TOML text).
pub const PRESETS: &[(&str, &str)] = &[
    ("s-sprint", include_str!("../configs/presets/s-sprint.toml")),
    ("m-sprint", include_str!("../configs/presets/m-sprint.toml")),
    ("l-sprint", include_str!("../configs/presets/l-sprint.toml")),
    (
        "s-baseline",
        include_str!("../configs/presets/s-baseline.toml"),
    ),
    (
        "m-baseline",
        include_str!("../configs/presets/m-baseline.toml"),
    ),
    (
        "l-baseline",
        include_str!("../configs/presets/l-baseline.toml"),
    ),
    ("pruning", include_str!("../configs/presets/pruning.toml")),
    (
        "mask-only",
        include_str!("../configs/presets/mask-only.toml"),
    ),
    (
        "sprint-no-reuse",
        include_str!("../configs/presets/sprint-no-reuse.toml"),
    ),
    ("sanger", include_str!("../configs/presets/sanger.toml")),
    ("leopard", include_str!("../configs/presets/leopard.toml")),
    (
        "leopard-published",
        include_str!("../configs/presets/leopard-published.toml"),
    ),
    ("a3", include_str!("../configs/presets/a3.toml")),
    (
        "a3-published",
        include_str!("../configs/presets/a3-published.toml"),
    ),
    ("spatten", include_str!("../configs/presets/spatten.toml")),
    (
        "spatten-published",
        include_str!("../configs/presets/spatten-published.toml"),
    ),
    ("energon", include_str!("../configs/presets/energon.toml")),
    (
        "energon-published",
        include_str!("../configs/presets/energon-published.toml"),
    ),
];

/// Embedded energy tables: (name, TOML text).
pub const ENERGY_TABLES: &[(&str, &str)] = &[
    ("default", include_str!("../configs/energy/default.toml")),
    (
        "optimistic",
        include_str!("../configs/energy/optimistic.toml"),
    ),
    (
        "conservative",
        include_str!("../configs/energy/conservative.toml"),
    ),
];

/// Names of the embedded presets, in order.
pub fn preset_names() -> Vec<&'static str> {
    PRESETS.iter().map(|(n, _)| *n).collect()
}

/// Text of an embedded entry, or of a file when `name` is not embedded.
fn text_of(name: &str, embedded: &[(&str, &str)], what: &str) -> Result<(String, String)> {
    if let Some((_, t)) = embedded.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)) {
        return Ok((t.to_string(), format!("{what} {name}")));
    }
    let path = Path::new(name);
    if path.exists() {
        let text = std::fs::read_to_string(path).map_err(|source| SimError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        return Ok((text, path.display().to_string()));
    }
    let names: Vec<&str> = embedded.iter().map(|(n, _)| *n).collect();
    Err(SimError::config(
        name,
        format!(
            "no such {what} and no such file (built-in: {})",
            names.join(", ")
        ),
    ))
}

/// Reads `name` (embedded or a file) and resolves its `inherits` chain into one table.
fn resolve(name: &str, embedded: &[(&str, &str)], what: &str, depth: usize) -> Result<Table> {
    if depth > 8 {
        return Err(SimError::config(
            name,
            "inherits chain deeper than 8 (a cycle?)",
        ));
    }
    let (text, origin) = text_of(name, embedded, what)?;
    let mut table = parse(&text, &origin)?;
    match table.remove("inherits") {
        None => Ok(table),
        Some(toml::Value::String(parent)) => {
            let mut base = resolve(&parent, embedded, what, depth + 1)?;
            merge(&mut base, table);
            base.insert("inherits".into(), toml::Value::String(parent));
            Ok(base)
        }
        Some(other) => Err(SimError::config(
            format!("{origin}: inherits"),
            format!("must be a preset name, got {other}"),
        )),
    }
}

/// Types a merged table, naming the origin in errors.
fn typed<T: serde::de::DeserializeOwned>(table: Table, origin: &str) -> Result<T> {
    // Round-trip through text so the parser's error names the offending key.
    let text = toml::to_string(&table).map_err(|e| SimError::config(origin, e.to_string()))?;
    toml::from_str(&text).map_err(|e: toml::de::Error| {
        let key = e
            .span()
            .and_then(|sp| key_at(&text, sp.start))
            .map_or(origin.to_string(), |k| format!("{origin}: {k}"));
        SimError::config(key, e.message().trim().to_string())
    })
}

/// Dotted key of the value at byte `pos` of serialised TOML (`[a.b]` header + `key = `);
/// a `{ value, source }` leaf is named by its table (`memory.channels`, not `.value`).
fn key_at(text: &str, pos: usize) -> Option<String> {
    let before = &text[..pos.min(text.len())];
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let line = text[line_start..].lines().next()?;
    // The span of an unknown section (`[memory.channelz]`) is its own header line.
    if line.trim_start().starts_with('[') {
        let h = line
            .trim()
            .trim_matches(|c| c == '[' || c == ']')
            .replace('"', "");
        return Some(h.strip_suffix(".value").unwrap_or(&h).to_string());
    }
    let key = line.split('=').next()?.trim().trim_matches('"').to_string();
    let header = before[..line_start]
        .lines()
        .rev()
        .find(|l| l.trim_start().starts_with('['))
        .map(|l| {
            l.trim()
                .trim_matches(|c| c == '[' || c == ']')
                .replace('"', "")
        });
    let full = match header {
        Some(h) if !h.is_empty() => format!("{h}.{key}"),
        _ => key,
    };
    Some(full.strip_suffix(".value").unwrap_or(&full).to_string())
}

/// Loads a hardware preset by built-in name or file path, applies `--set` overrides, and
/// validates it.
pub fn load_design(name: &str, sets: &[String]) -> Result<Design> {
    let mut table = resolve(name, PRESETS, "preset", 0)?;
    for s in sets {
        apply_set(&mut table, s).map_err(|e| prefix(e, name))?;
    }
    let file: PresetFile = typed(table, name)?;
    file.into_design(name).map_err(|e| prefix(e, name))
}

/// Loads an energy table by built-in name or file path, with `--set energy.KEY=VALUE`
/// style overrides already stripped of their `energy.` prefix.
pub fn load_energy(name: &str, sets: &[String]) -> Result<EnergyTable> {
    let mut table = resolve(name, ENERGY_TABLES, "energy table", 0)?;
    for s in sets {
        apply_set(&mut table, s).map_err(|e| prefix(e, name))?;
    }
    let file: EnergyFile = typed(table, name)?;
    file.into_table().map_err(|e| prefix(e, name))
}

/// Puts the preset name in front of a config error's key.
fn prefix(e: SimError, name: &str) -> SimError {
    match e {
        SimError::Config { key, message } if !key.starts_with(name) => SimError::Config {
            key: format!("{name}: {key}"),
            message,
        },
        other => other,
    }
}
