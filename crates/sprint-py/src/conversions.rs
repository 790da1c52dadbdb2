//! Conversions between Python objects, TOML values and JSON values.

use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyFloat, PyInt, PyList, PyString, PyTuple};
use serde_json::Value as Json;
use toml::Value as Toml;

use crate::error::err;

/// Converts a Python value (dict, list, tuple, str, bool, int, float; `None` entries of a
/// dict are dropped) into a TOML value. `path` names the place in error messages.
pub(crate) fn py_to_toml(obj: &Bound<'_, PyAny>, path: &str) -> PyResult<Option<Toml>> {
    if obj.is_none() {
        return Ok(None);
    }
    if obj.is_instance_of::<PyBool>() {
        return Ok(Some(Toml::Boolean(obj.extract()?)));
    }
    if obj.is_instance_of::<PyInt>() {
        let v: i64 = obj
            .extract()
            .map_err(|_| err(format!("{path}: integer out of range")))?;
        return Ok(Some(Toml::Integer(v)));
    }
    if obj.is_instance_of::<PyFloat>() {
        return Ok(Some(Toml::Float(obj.extract()?)));
    }
    if obj.is_instance_of::<PyString>() {
        return Ok(Some(Toml::String(obj.extract()?)));
    }
    if let Ok(d) = obj.cast::<PyDict>() {
        return Ok(Some(Toml::Table(dict_to_table(d, path)?)));
    }
    if obj.is_instance_of::<PyList>() || obj.is_instance_of::<PyTuple>() {
        let mut out = Vec::new();
        for (i, item) in obj.try_iter()?.enumerate() {
            let item = item?;
            match py_to_toml(&item, &format!("{path}[{i}]"))? {
                Some(v) => out.push(v),
                None => return Err(err(format!("{path}[{i}]: None is not a value"))),
            }
        }
        return Ok(Some(Toml::Array(out)));
    }
    Err(err(format!(
        "{path}: unsupported value of type {} (use dict, list, str, bool, int or float)",
        obj.get_type().name()?
    )))
}

/// Converts a Python dict into a TOML table (see [`py_to_toml`]).
pub(crate) fn dict_to_table(d: &Bound<'_, PyDict>, path: &str) -> PyResult<toml::Table> {
    let mut t = toml::Table::new();
    for (k, v) in d.iter() {
        let key: String = k
            .extract()
            .map_err(|_| err(format!("{path}: keys must be strings")))?;
        let here = if path.is_empty() {
            key.clone()
        } else {
            format!("{path}.{key}")
        };
        if let Some(v) = py_to_toml(&v, &here)? {
            t.insert(key, v);
        }
    }
    Ok(t)
}

/// Merges the Python dict `over` into `base`: a dict merges into an existing table key by
/// key, `None` removes the key (back to its default), anything else replaces.
pub(crate) fn merge(base: &mut toml::Table, over: &Bound<'_, PyDict>, path: &str) -> PyResult<()> {
    for (k, v) in over.iter() {
        let key: String = k
            .extract()
            .map_err(|_| err(format!("{path}: keys must be strings")))?;
        let here = if path.is_empty() {
            key.clone()
        } else {
            format!("{path}.{key}")
        };
        if v.is_none() {
            base.remove(&key);
            continue;
        }
        if let (Some(Toml::Table(b)), Ok(d)) = (base.get_mut(&key), v.cast::<PyDict>()) {
            merge(b, d, &here)?;
            continue;
        }
        if let Some(x) = py_to_toml(&v, &here)? {
            base.insert(key, x);
        }
    }
    Ok(())
}

/// Turns keyword overrides into `key=value` assignments for
/// `AttentionConfig::with_overrides` (the code behind `sprint attend --set`, which knows
/// that `noise.preset` resets the noise table): a dict descends into a section that exists
/// in `base`, any other value is written as TOML; `None` leaves go to `removals`.
pub(crate) fn flatten(
    base: Option<&toml::Table>,
    over: &Bound<'_, PyDict>,
    prefix: &str,
    sets: &mut Vec<String>,
    removals: &mut Vec<String>,
) -> PyResult<()> {
    for (k, v) in over.iter() {
        let key: String = k
            .extract()
            .map_err(|_| err(format!("{prefix}: keys must be strings")))?;
        let here = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        if v.is_none() {
            removals.push(here);
            continue;
        }
        if let (Ok(d), Some(Toml::Table(sub))) =
            (v.cast::<PyDict>(), base.and_then(|b| b.get(&key)))
        {
            flatten(Some(sub), d, &here, sets, removals)?;
            continue;
        }
        if let Some(x) = py_to_toml(&v, &here)? {
            sets.push(format!("{here}={x}"));
        }
    }
    Ok(())
}

/// Removes the dotted `key` from `t` (if present).
pub(crate) fn remove_dotted(t: &mut toml::Table, key: &str) {
    match key.split_once('.') {
        None => {
            t.remove(key);
        }
        Some((head, rest)) => {
            if let Some(Toml::Table(sub)) = t.get_mut(head) {
                remove_dotted(sub, rest);
            }
        }
    }
}

/// Converts a TOML value into the Python value (tables as dicts, arrays as lists).
pub(crate) fn toml_to_py(py: Python<'_>, v: &Toml) -> PyResult<Py<PyAny>> {
    Ok(match v {
        Toml::String(s) => s.into_pyobject(py)?.into_any().unbind(),
        Toml::Integer(i) => i.into_pyobject(py)?.into_any().unbind(),
        Toml::Float(f) => f.into_pyobject(py)?.into_any().unbind(),
        Toml::Boolean(b) => PyBool::new(py, *b).to_owned().into_any().unbind(),
        Toml::Datetime(d) => d.to_string().into_pyobject(py)?.into_any().unbind(),
        Toml::Array(a) => {
            let items = a
                .iter()
                .map(|x| toml_to_py(py, x))
                .collect::<PyResult<Vec<_>>>()?;
            PyList::new(py, items)?.into_any().unbind()
        }
        Toml::Table(t) => {
            let d = PyDict::new(py);
            for (k, x) in t {
                d.set_item(k, toml_to_py(py, x)?)?;
            }
            d.into_any().unbind()
        }
    })
}

/// Converts a JSON value into the Python value (objects as dicts, arrays as lists).
pub(crate) fn json_to_py(py: Python<'_>, v: &Json) -> PyResult<Py<PyAny>> {
    Ok(match v {
        Json::Null => py.None(),
        Json::Bool(b) => PyBool::new(py, *b).to_owned().into_any().unbind(),
        Json::Number(n) => {
            if let Some(i) = n.as_u64() {
                i.into_pyobject(py)?.into_any().unbind()
            } else if let Some(i) = n.as_i64() {
                i.into_pyobject(py)?.into_any().unbind()
            } else {
                n.as_f64()
                    .unwrap_or(f64::NAN)
                    .into_pyobject(py)?
                    .into_any()
                    .unbind()
            }
        }
        Json::String(s) => s.into_pyobject(py)?.into_any().unbind(),
        Json::Array(a) => {
            let items = a
                .iter()
                .map(|x| json_to_py(py, x))
                .collect::<PyResult<Vec<_>>>()?;
            PyList::new(py, items)?.into_any().unbind()
        }
        Json::Object(o) => {
            let d = PyDict::new(py);
            for (k, x) in o {
                d.set_item(k, json_to_py(py, x)?)?;
            }
            d.into_any().unbind()
        }
    })
}

/// Converts any serialisable Rust value into a Python value through JSON.
pub(crate) fn to_py<T: serde::Serialize>(py: Python<'_>, x: &T) -> PyResult<Py<PyAny>> {
    json_to_py(py, &serde_json::to_value(x).map_err(err)?)
}
