//! Layered TOML: a file may `inherits = "<preset>"` another, and `--set key=value`
//! overrides are applied to the merged document before it is typed, so an unknown key or a
//! value of the wrong type is always an error naming the key.

use toml::{Table, Value};

use crate::error::{Result, SimError, one_line};

/// Source recorded for a value set on the command line.
pub const OVERRIDE_SOURCE: &str = "command-line override (--set)";

/// Parses TOML text into a table; errors name `origin`.
pub fn parse(text: &str, origin: &str) -> Result<Table> {
    text.parse::<Table>()
        .map_err(|e| SimError::config(origin, one_line(&e.to_string())))
}

/// True for a `{ value = ..., source = ... }` leaf.
fn is_leaf(t: &Table) -> bool {
    t.contains_key("value")
}

/// Merges `over` into `base`: tables merge key by key, sourced leaves and plain values are
/// replaced whole.
pub fn merge(base: &mut Table, over: Table) {
    for (k, v) in over {
        match (base.get_mut(&k), v) {
            (Some(Value::Table(b)), Value::Table(o)) if !is_leaf(b) && !is_leaf(&o) => {
                merge(b, o);
            }
            (_, v) => {
                base.insert(k, v);
            }
        }
    }
}

/// Parses the right-hand side of `--set key=value` as a TOML value (number, bool, string,
/// array); anything that does not parse is taken as a bare string.
fn parse_value(raw: &str) -> Value {
    let doc = format!("v = {raw}");
    match doc.parse::<Table>() {
        Ok(mut t) => t.remove("v").unwrap_or(Value::String(raw.to_string())),
        Err(_) => Value::String(raw.to_string()),
    }
}

/// Checks that `new` can replace `old` (same TOML type; an integer may replace a float).
fn coerce(old: &Value, new: Value, key: &str) -> Result<Value> {
    match (old, new) {
        (Value::Float(_), Value::Integer(i)) => Ok(Value::Float(i as f64)),
        (o, n) if std::mem::discriminant(o) == std::mem::discriminant(&n) => Ok(n),
        (o, n) => Err(SimError::config(
            key,
            format!(
                "expected a {}, got `{n}` (a {})",
                o.type_str(),
                n.type_str()
            ),
        )),
    }
}

/// Applies one `key=value` override (dotted key) to `doc`. The key must already exist.
pub fn apply_set(doc: &mut Table, assignment: &str) -> Result<()> {
    let (key, raw) = assignment.split_once('=').ok_or_else(|| {
        SimError::config(
            assignment,
            "an override must look like key=value, e.g. memory.trcd_ns=30",
        )
    })?;
    let key = key.trim();
    let raw = raw.trim();
    let parts: Vec<&str> = key.split('.').collect();
    let mut table = doc;
    for (i, part) in parts.iter().enumerate() {
        let path = parts[..=i].join(".");
        let last = i + 1 == parts.len();
        let entry = table.get_mut(*part).ok_or_else(|| {
            SimError::config(&path, "unknown key (see docs/simulator.md for the keys)")
        })?;
        if last {
            let new = parse_value(raw);
            match entry {
                Value::Table(t) if is_leaf(t) => {
                    let old = t.get("value").cloned().expect("leaf has a value");
                    let v = coerce(&old, new, key)?;
                    t.insert("value".into(), v);
                    t.insert("source".into(), Value::String(OVERRIDE_SOURCE.into()));
                }
                Value::Table(_) => {
                    return Err(SimError::config(
                        key,
                        "is a section, not a value; set one of its keys",
                    ));
                }
                old => {
                    let v = coerce(old, new, key)?;
                    *old = v;
                }
            }
            return Ok(());
        }
        match entry {
            Value::Table(t) if !is_leaf(t) => table = t,
            _ => return Err(SimError::config(&path, "is a value, not a section")),
        }
    }
    unreachable!("a split always yields at least one part")
}
