//! Stage results cached under a content hash of their inputs.
//!
//! The key of a stage is the sha256 of a JSON document of everything its result depends
//! on: the stage name, its plan (sizes, seed), the files it reads (their sha256) and the
//! tool itself (the sha256 of the running executable, which embeds every configuration
//! file). A result is stored as `DIR/.cache/STAGE-KEY.json`, written atomically, so an
//! interrupted run leaves either the complete file or none. A file that does not parse is
//! ignored and recomputed.

use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::error::{ReproduceError, Result};

/// A cached stage result with the wall time it took when it was computed.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Cached<T> {
    /// Stage name.
    pub stage: String,
    /// Content key (hex sha256).
    pub key: String,
    /// Wall time of the computation, seconds.
    pub seconds: f64,
    /// The inputs the key was computed from.
    pub inputs: Value,
    /// The result.
    pub result: T,
}

/// The cache folder of a run.
#[derive(Clone, Debug)]
pub struct StageCache {
    dir: PathBuf,
}

/// Hex sha256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    let d = Sha256::digest(bytes);
    d.iter().map(|b| format!("{b:02x}")).collect()
}

/// Hex sha256 of a file's contents.
pub fn file_sha256(path: &Path) -> Result<String> {
    let mut f = std::fs::File::open(path).map_err(|e| ReproduceError::Cache {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        use std::io::Read;
        let n = f.read(&mut buf).map_err(|e| ReproduceError::Cache {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

/// Appends the JSON text of `v` with object keys sorted (whatever the map's own order).
fn canonical(v: &Value, out: &mut String) {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(k.clone()).to_string());
                out.push(':');
                canonical(&m[k], out);
            }
            out.push('}');
        }
        Value::Array(a) => {
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                canonical(x, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

impl StageCache {
    /// The cache under `out/.cache` (created when first written).
    pub fn new(out: &Path) -> Self {
        Self {
            dir: out.join(".cache"),
        }
    }

    /// The folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The key of `inputs` (their canonical JSON: object keys sorted at every level).
    pub fn key(inputs: &Value) -> String {
        let mut text = String::new();
        canonical(inputs, &mut text);
        sha256_hex(text.as_bytes())
    }

    /// Where the result of `stage` with `key` lives.
    pub fn path(&self, stage: &str, key: &str) -> PathBuf {
        self.dir
            .join(format!("{stage}-{}.json", &key[..16.min(key.len())]))
    }

    /// A scratch file of the stage with `key` (e.g. a trace it writes), in the cache.
    pub fn artefact(&self, stage: &str, key: &str, name: &str) -> Result<PathBuf> {
        let d = self.dir.join("artefacts");
        std::fs::create_dir_all(&d).map_err(|e| ReproduceError::Cache {
            path: d.clone(),
            message: e.to_string(),
        })?;
        Ok(d.join(format!("{stage}-{}-{name}", &key[..16.min(key.len())])))
    }

    /// The cached result of `stage` under `key`, if a complete one is there.
    pub fn load<T: DeserializeOwned>(&self, stage: &str, key: &str) -> Option<Cached<T>> {
        let text = std::fs::read_to_string(self.path(stage, key)).ok()?;
        let mut v: Value = serde_json::from_str(&text).ok()?;
        // An entry whose result does not match its checksum (edited, damaged, or written
        // before checksums) is a miss: the stage is computed again.
        let sum = v.as_object_mut()?.remove("checksum")?;
        if sum.as_str()? != Self::checksum(v.get("result")?) {
            return None;
        }
        let c: Cached<T> = serde_json::from_value(v).ok()?;
        (c.key == key && c.stage == stage).then_some(c)
    }

    /// sha256 of a result's canonical JSON: stored beside it, checked on every load.
    fn checksum(result: &Value) -> String {
        let mut text = String::new();
        canonical(result, &mut text);
        sha256_hex(text.as_bytes())
    }

    /// Stores a result atomically.
    pub fn store<T: Serialize>(&self, c: &Cached<T>) -> Result<()> {
        std::fs::create_dir_all(&self.dir).map_err(|e| ReproduceError::Cache {
            path: self.dir.clone(),
            message: e.to_string(),
        })?;
        let path = self.path(&c.stage, &c.key);
        let err = |e: serde_json::Error| ReproduceError::Cache {
            path: path.clone(),
            message: e.to_string(),
        };
        let mut v = serde_json::to_value(c).map_err(err)?;
        let sum = Self::checksum(&v["result"]);
        if let Value::Object(m) = &mut v {
            m.insert("checksum".into(), Value::String(sum));
        }
        let text = serde_json::to_string(&v).map_err(err)?;
        sprint_report::document::write_text(&path, &text)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn keys_follow_content_not_key_order_and_results_round_trip_exactly() {
        let a = json!({"stage": "x", "plan": {"seed": 1, "limit": 2}});
        let b = json!({"plan": {"limit": 2, "seed": 1}, "stage": "x"});
        assert_eq!(StageCache::key(&a), StageCache::key(&b));
        assert_ne!(StageCache::key(&a), StageCache::key(&json!({"stage": "y"})));
        let dir = tempfile::tempdir().unwrap();
        let c = StageCache::new(dir.path());
        let key = StageCache::key(&a);
        // Values seen to come back 1 ulp off without serde_json's float_roundtrip, then a
        // seeded spread over magnitudes.
        let mut v = vec![
            0.1 + 0.2,
            1.0 / 3.0,
            1e-300,
            12.463420680366038,
            1.6666666666666607,
            0.38226299694189725,
        ];
        let mut x = 0x9e37_79b9_7f4a_7c15_u64;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let mantissa = (x >> 11) as f64 / (1u64 << 53) as f64;
            v.push(mantissa * 10f64.powi((x % 40) as i32 - 20));
        }
        c.store(&Cached {
            stage: "x".into(),
            key: key.clone(),
            seconds: 1.5,
            inputs: a,
            result: v.clone(),
        })
        .unwrap();
        let back: Cached<Vec<f64>> = c.load("x", &key).unwrap();
        assert_eq!(back.result, v, "bit-identical floats");
        assert!(c.load::<Vec<f64>>("x", "0000000000000000beef").is_none());
        // A number edited inside the entry is detected and the stage computed again.
        let text = std::fs::read_to_string(c.path("x", &key)).unwrap();
        let edited = text.replacen("0.30000000000000004", "0.4", 1);
        assert_ne!(edited, text);
        std::fs::write(c.path("x", &key), edited).unwrap();
        assert!(
            c.load::<Vec<f64>>("x", &key).is_none(),
            "an edited result was used"
        );
        std::fs::write(c.path("x", &key), "{ truncated").unwrap();
        assert!(
            c.load::<Vec<f64>>("x", &key).is_none(),
            "unparsable = missing"
        );
    }
}
