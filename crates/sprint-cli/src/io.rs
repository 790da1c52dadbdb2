//! Reading Q/K/V from safetensors or `.npy` files, and writing outputs atomically.

use std::path::Path;

use anyhow::{Context, Result, anyhow, bail};
use safetensors::{Dtype, SafeTensors};
use sprint_attention::{AttentionInput, Tensor3};

/// Q/K/V of one or more layers as read from disk.
pub struct LoadedInput {
    /// One input per layer.
    pub layers: Vec<AttentionInput>,
}

/// Reads `path`: a `.safetensors` file with tensors `q`, `k`, `v` (`[heads, seq, d]` or
/// `[layers, heads, seq, d]`, f32/f16/bf16) and optional `valid` (`[seq]`, nonzero = real
/// token); or a folder holding `q.npy`, `k.npy`, `v.npy` and optional `valid.npy`.
pub fn load_input(path: &Path) -> Result<LoadedInput> {
    let (q, k, v, valid) = if path.is_dir() {
        let get = |name: &str| -> Result<Option<Raw>> {
            let p = path.join(format!("{name}.npy"));
            if p.exists() {
                read_npy(&p, Role::of(name)).map(Some)
            } else {
                Ok(None)
            }
        };
        let need = |name: &str| -> Result<Raw> {
            get(name)?.ok_or_else(|| anyhow!("{}: missing tensor file {name}.npy", path.display()))
        };
        (need("q")?, need("k")?, need("v")?, get("valid")?)
    } else {
        let bytes =
            std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        let st = SafeTensors::deserialize(&bytes)
            .map_err(|e| anyhow!("{}: not a valid safetensors file ({e})", path.display()))?;
        let get = |name: &str| -> Result<Option<Raw>> {
            match st.tensor(name) {
                Ok(t) => Raw::from_safetensors(&t, Role::of(name))
                    .map(Some)
                    .with_context(|| format!("{}: tensor `{name}`", path.display())),
                Err(_) => Ok(None),
            }
        };
        let need = |name: &str| -> Result<Raw> {
            get(name)?.ok_or_else(|| {
                let names: Vec<String> = st.names().into_iter().map(|s| s.to_string()).collect();
                anyhow!(
                    "{}: missing tensor `{name}` (found: {})",
                    path.display(),
                    names.join(", ")
                )
            })
        };
        (need("q")?, need("k")?, need("v")?, get("valid")?)
    };
    let where_ = path.display().to_string();
    let (lq, q) = split_layers(q, "q", &where_)?;
    let (lk, k) = split_layers(k, "k", &where_)?;
    let (lv, v) = split_layers(v, "v", &where_)?;
    if lq != lk || lq != lv {
        bail!("{where_}: q, k, v have different layer counts ({lq}, {lk}, {lv})");
    }
    let valid = match valid {
        None => None,
        Some(raw) => {
            if raw.shape.len() != 1 {
                bail!(
                    "{where_}: tensor `valid` must be 1-D [seq], got shape {:?}",
                    raw.shape
                );
            }
            if let Some(j) = raw.data.iter().position(|x| !x.is_finite()) {
                bail!(
                    "{where_}: tensor `valid` entry {j} is {} (give 0 for padding, nonzero for a real token)",
                    raw.data[j]
                );
            }
            let mask = raw.data.iter().map(|&x| x != 0.0).collect::<Vec<bool>>();
            if !mask.is_empty() && !mask.contains(&true) {
                bail!(
                    "{where_}: tensor `valid` marks no token as real (all {} entries are 0): nothing to attend to",
                    mask.len()
                );
            }
            Some(mask)
        }
    };
    let mut layers = Vec::with_capacity(lq);
    for ((q, k), v) in q.into_iter().zip(k).zip(v) {
        let mut input = AttentionInput::new(q, k, v);
        if let Some(m) = &valid {
            input.query_valid = Some(m.clone());
            input.key_valid = Some(m.clone());
        }
        input.validate().with_context(|| where_.clone())?;
        layers.push(input);
    }
    Ok(LoadedInput { layers })
}

/// Reads an attention configuration (TOML); errors say `config` and name the file.
pub fn read_attention_config(path: &Path) -> Result<sprint_core::AttentionConfig> {
    if path.is_dir() {
        bail!("config {}: is a folder, not a TOML file", path.display());
    }
    if !path.exists() {
        bail!("config {}: no such file", path.display());
    }
    sprint_core::AttentionConfig::from_file(path).map_err(|e| match e {
        sprint_core::CoreError::Io { source, .. } => {
            anyhow!("config {}: {source}", path.display())
        }
        other => other.into(),
    })
}

/// A tensor read from disk as f32 with its shape.
struct Raw {
    shape: Vec<usize>,
    data: Vec<f32>,
}

/// What a tensor is for: q/k/v data (floating point only) or the `valid` mask (any
/// numeric or boolean type; nonzero = real token).
#[derive(Clone, Copy, PartialEq)]
enum Role {
    Data,
    Mask,
}

impl Role {
    fn of(name: &str) -> Self {
        if name == "valid" {
            Role::Mask
        } else {
            Role::Data
        }
    }
}

fn le<const N: usize>(c: &[u8]) -> [u8; N] {
    let mut a = [0u8; N];
    a.copy_from_slice(c);
    a
}

impl Raw {
    fn from_safetensors(t: &safetensors::tensor::TensorView, role: Role) -> Result<Self> {
        let b = t.data();
        let data: Vec<f32> = match (t.dtype(), role) {
            (Dtype::F32, _) => b
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes(le(c)))
                .collect(),
            (Dtype::F64, _) => b
                .chunks_exact(8)
                .map(|c| f64::from_le_bytes(le(c)) as f32)
                .collect(),
            (Dtype::F16, _) => b
                .chunks_exact(2)
                .map(|c| half::f16::from_le_bytes(le(c)).to_f32())
                .collect(),
            (Dtype::BF16, _) => b
                .chunks_exact(2)
                .map(|c| half::bf16::from_le_bytes(le(c)).to_f32())
                .collect(),
            (Dtype::U8 | Dtype::BOOL, Role::Mask) => b.iter().map(|&x| f32::from(x)).collect(),
            (Dtype::I8, Role::Mask) => b.iter().map(|&x| f32::from(x as i8)).collect(),
            (Dtype::I16 | Dtype::U16, Role::Mask) => b
                .chunks_exact(2)
                .map(|c| if c == [0, 0] { 0.0 } else { 1.0 })
                .collect(),
            (Dtype::I32 | Dtype::U32, Role::Mask) => b
                .chunks_exact(4)
                .map(|c| if c == [0; 4] { 0.0 } else { 1.0 })
                .collect(),
            (Dtype::I64 | Dtype::U64, Role::Mask) => b
                .chunks_exact(8)
                .map(|c| if c == [0; 8] { 0.0 } else { 1.0 })
                .collect(),
            (other, Role::Mask) => bail!(
                "mask dtype {other:?} not supported (use bool, an integer type or a float type; nonzero = real token)"
            ),
            (other, Role::Data) => {
                bail!("dtype {other:?} not supported for q, k, v (use f32, f16, bf16 or f64)")
            }
        };
        Ok(Self {
            shape: t.shape().to_vec(),
            data,
        })
    }
}

fn read_npy(path: &Path, role: Role) -> Result<Raw> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let npy = npyz::NpyFile::new(&bytes[..])
        .map_err(|e| anyhow!("{}: not a valid .npy file ({e})", path.display()))?;
    let shape: Vec<usize> = npy.shape().iter().map(|&x| x as usize).collect();
    if npy.order() != npyz::Order::C {
        bail!(
            "{}: Fortran-order arrays are not supported; save with C order",
            path.display()
        );
    }
    let dtype = npy.dtype();
    let n_values = shape
        .iter()
        .try_fold(1u64, |a, &x| a.checked_mul(x as u64))
        .unwrap_or(u64::MAX);
    let bad = |e: std::io::Error| {
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            anyhow!(
                "{}: truncated .npy file (its header declares shape {shape:?}, {n_values} values, but the data is shorter)",
                path.display()
            )
        } else {
            anyhow!("{}: {e}", path.display())
        }
    };
    let type_str = match &dtype {
        npyz::DType::Plain(ts) => ts.to_string(),
        other => bail!(
            "{}: structured dtype {} not supported (use float32 or float16)",
            path.display(),
            other.descr()
        ),
    };
    // The data must be at least as long as the header says, before anything is allocated.
    let elem = match type_str.get(2..).and_then(|n| n.parse::<u64>().ok()) {
        Some(n) if n > 0 => n,
        _ => 1,
    };
    let payload = bytes.len() as u64;
    if n_values.saturating_mul(elem) > payload {
        return Err(bad(std::io::ErrorKind::UnexpectedEof.into()));
    }
    let nonzero = |x: bool| if x { 1.0 } else { 0.0 };
    let data: Vec<f32> = match (type_str.as_str(), role) {
        ("<f4", _) => npy.into_vec::<f32>().map_err(bad)?,
        ("<f2", _) => npy
            .into_vec::<half::f16>()
            .map_err(bad)?
            .into_iter()
            .map(|x| x.to_f32())
            .collect(),
        ("<f8", _) => npy
            .into_vec::<f64>()
            .map_err(bad)?
            .into_iter()
            .map(|x| x as f32)
            .collect(),
        ("|b1" | "|u1", Role::Mask) => npy
            .into_vec::<u8>()
            .map_err(bad)?
            .into_iter()
            .map(f32::from)
            .collect(),
        ("|i1", Role::Mask) => npy
            .into_vec::<i8>()
            .map_err(bad)?
            .into_iter()
            .map(|x| nonzero(x != 0))
            .collect(),
        ("<i2", Role::Mask) => npy
            .into_vec::<i16>()
            .map_err(bad)?
            .into_iter()
            .map(|x| nonzero(x != 0))
            .collect(),
        ("<i4", Role::Mask) => npy
            .into_vec::<i32>()
            .map_err(bad)?
            .into_iter()
            .map(|x| nonzero(x != 0))
            .collect(),
        ("<i8", Role::Mask) => npy
            .into_vec::<i64>()
            .map_err(bad)?
            .into_iter()
            .map(|x| nonzero(x != 0))
            .collect(),
        ("<u8", Role::Mask) => npy
            .into_vec::<u64>()
            .map_err(bad)?
            .into_iter()
            .map(|x| nonzero(x != 0))
            .collect(),
        (other, Role::Mask) => bail!(
            "{}: mask dtype {other} not supported (use bool, an integer type or a float type; nonzero = real token)",
            path.display()
        ),
        (other, Role::Data) => bail!(
            "{}: dtype {other} not supported for q, k, v (use float32, float16 or float64)",
            path.display()
        ),
    };
    Ok(Raw { shape, data })
}

fn split_layers(raw: Raw, name: &str, where_: &str) -> Result<(usize, Vec<Tensor3>)> {
    let (layers, dims) = match raw.shape.as_slice() {
        [h, s, d] => (1, [*h, *s, *d]),
        [l, h, s, d] => (*l, [*h, *s, *d]),
        other => bail!(
            "{where_}: tensor `{name}` must be [heads, seq, head_dim] or [layers, heads, seq, head_dim], got shape {other:?}"
        ),
    };
    if layers == 0 || dims.contains(&0) {
        bail!(
            "{where_}: tensor `{name}` has shape {:?}; every dimension (layers, heads, seq, head_dim) must be > 0",
            raw.shape
        );
    }
    let per = dims.iter().product::<usize>();
    if raw.data.len() != per * layers {
        bail!(
            "{where_}: tensor `{name}` holds {} values for shape {:?}",
            raw.data.len(),
            raw.shape
        );
    }
    let mut out = Vec::with_capacity(layers);
    for l in 0..layers {
        out.push(Tensor3::new(
            dims,
            raw.data[l * per..(l + 1) * per].to_vec(),
        )?);
    }
    Ok((layers, out))
}

/// The folder of the cached assets (`$SPRINT_CACHE`, else `~/.cache/sprint`): an input of
/// every command that reads a model or data set, so that no output lands on a cached file.
pub fn asset_cache_root() -> std::path::PathBuf {
    sprint_assets::Cache::from_env().root().to_path_buf()
}

/// Writes a file atomically with cleanup on SIGINT/SIGTERM ([`sprint_core::outfile`]): the
/// content goes to a temporary file in the same folder, renamed over `path` once complete.
pub fn write_atomic(
    path: &Path,
    write: impl FnOnce(&mut std::io::BufWriter<std::fs::File>) -> Result<()>,
) -> Result<()> {
    sprint_core::outfile::write_atomic(path, write)
}

/// Serialises named f32 tensors to safetensors bytes.
pub fn safetensors_bytes(tensors: &[(&str, Vec<usize>, &[f32])]) -> Result<Vec<u8>> {
    let bufs: Vec<Vec<u8>> = tensors
        .iter()
        .map(|(_, _, d)| d.iter().flat_map(|x| x.to_le_bytes()).collect())
        .collect();
    let views: Vec<(String, safetensors::tensor::TensorView)> = tensors
        .iter()
        .zip(&bufs)
        .map(|((name, shape, _), b)| {
            safetensors::tensor::TensorView::new(Dtype::F32, shape.clone(), b)
                .map(|v| (name.to_string(), v))
                .map_err(|e| anyhow!("tensor {name}: {e}"))
        })
        .collect::<Result<_>>()?;
    safetensors::serialize(views, None).map_err(|e| anyhow!("serialising safetensors: {e}"))
}

/// Writes one f32 tensor as a `.npy` file body.
pub fn npy_bytes(shape: &[usize], data: &[f32]) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    {
        use npyz::WriterBuilder;
        let mut w = npyz::WriteOptions::<f32>::new()
            .default_dtype()
            .shape(&shape.iter().map(|&x| x as u64).collect::<Vec<_>>())
            .writer(&mut out)
            .begin_nd()?;
        w.extend(data.iter().copied())?;
        w.finish()?;
    }
    Ok(out)
}

/// Bounded fuzzing (proptest, a fixed number of cases in the normal test run) of the input
/// readers: valid safetensors files and `.npy` folders with bit flips, truncations, hostile
/// headers and odd dtypes must load or give an error naming the file, never panic.
#[cfg(test)]
mod fuzz {
    use super::*;
    use proptest::prelude::*;

    fn valid_safetensors(heads: usize, seq: usize, d: usize, mask: Option<Dtype>) -> Vec<u8> {
        let n = heads * seq * d;
        let data: Vec<u8> = (0..n)
            .flat_map(|i| ((i % 7) as f32 - 3.0).to_le_bytes())
            .collect();
        let mut views = vec![];
        for name in ["q", "k", "v"] {
            views.push((
                name.to_string(),
                safetensors::tensor::TensorView::new(Dtype::F32, vec![heads, seq, d], &data)
                    .unwrap(),
            ));
        }
        let mask_bytes: Vec<u8>;
        if let Some(dt) = mask {
            mask_bytes = vec![1u8; seq * dt.bitsize() / 8];
            views.push((
                "valid".into(),
                safetensors::tensor::TensorView::new(dt, vec![seq], &mask_bytes).unwrap(),
            ));
        }
        safetensors::serialize(views, None).unwrap()
    }

    fn npy(shape: &[u64], n: usize) -> Vec<u8> {
        use npyz::WriterBuilder;
        let mut out = Vec::new();
        let mut w = npyz::WriteOptions::<f32>::new()
            .default_dtype()
            .shape(shape)
            .writer(&mut out)
            .begin_nd()
            .unwrap();
        w.extend((0..n).map(|i| i as f32 * 0.01)).unwrap();
        w.finish().unwrap();
        out
    }

    fn check(r: Result<LoadedInput>, path: &Path) -> std::result::Result<(), TestCaseError> {
        match r {
            Ok(l) => {
                prop_assert!(!l.layers.is_empty());
                for layer in &l.layers {
                    prop_assert!(layer.validate().is_ok());
                }
            }
            Err(e) => {
                let m = format!("{e:#}");
                prop_assert!(
                    m.contains(&path.display().to_string()),
                    "error does not name the file: {}",
                    m
                );
            }
        }
        Ok(())
    }

    const MASKS: [Option<Dtype>; 5] = [
        None,
        Some(Dtype::BOOL),
        Some(Dtype::I64),
        Some(Dtype::F16),
        Some(Dtype::F8_E5M2),
    ];

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(96))]

        #[test]
        fn safetensors_input_never_panics(
            heads in 1usize..3,
            seq in 1usize..6,
            d in 1usize..5,
            mask in 0usize..MASKS.len(),
            flips in proptest::collection::vec(any::<usize>(), 0..4),
            cut in proptest::option::of(any::<usize>()),
            header_edit in proptest::option::of((any::<usize>(), "[ -~]{1,12}")),
        ) {
            let mut bytes = valid_safetensors(heads, seq, d, MASKS[mask]);
            if let Some((pos, text)) = header_edit {
                // Inside the JSON header (after the 8-byte length).
                let hlen = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
                let at = 8 + pos % hlen.max(1);
                let end = (at + text.len()).min(8 + hlen);
                bytes.splice(at..end, text.bytes().take(end - at));
            }
            for f in flips {
                let bit = f % (bytes.len() * 8);
                bytes[bit / 8] ^= 1 << (bit % 8);
            }
            if let Some(c) = cut {
                bytes.truncate(c % (bytes.len() + 1));
            }
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("in.safetensors");
            std::fs::write(&path, &bytes).unwrap();
            check(load_input(&path), &path)?;
        }

        #[test]
        fn npy_folder_input_never_panics(
            seq in 1usize..6,
            which in 0usize..4,
            flips in proptest::collection::vec(any::<usize>(), 0..4),
            cut in proptest::option::of(any::<usize>()),
            bad_shape in any::<bool>(),
        ) {
            let dir = tempfile::tempdir().unwrap();
            let shape = [2u64, seq as u64, 4];
            for name in ["q", "k", "v"] {
                std::fs::write(dir.path().join(format!("{name}.npy")), npy(&shape, 2 * seq * 4)).unwrap();
            }
            std::fs::write(dir.path().join("valid.npy"), npy(&[seq as u64], seq)).unwrap();
            let name = ["q", "k", "v", "valid"][which];
            let p = dir.path().join(format!("{name}.npy"));
            let mut bytes = if bad_shape {
                // A header declaring far more values than the file holds.
                let mut h = "{'descr': '<f4', 'fortran_order': False, 'shape': (1048576, 1048576, 4), }".to_string();
                while !(10 + h.len() + 1).is_multiple_of(64) {
                    h.push(' ');
                }
                h.push('\n');
                let mut b = b"\x93NUMPY\x01\x00".to_vec();
                b.extend_from_slice(&(h.len() as u16).to_le_bytes());
                b.extend_from_slice(h.as_bytes());
                b.extend_from_slice(&[0u8; 64]);
                b
            } else {
                std::fs::read(&p).unwrap()
            };
            for f in flips {
                let bit = f % (bytes.len() * 8);
                bytes[bit / 8] ^= 1 << (bit % 8);
            }
            if let Some(c) = cut {
                bytes.truncate(c % (bytes.len() + 1));
            }
            std::fs::write(&p, &bytes).unwrap();
            check(load_input(dir.path()), dir.path())?;
        }
    }
}
