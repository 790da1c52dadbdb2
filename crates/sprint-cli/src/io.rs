//! Reading Q/K/V from safetensors or `.npy` files, and writing outputs atomically.

use std::path::{Path, PathBuf};

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
                read_npy(&p).map(Some)
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
                Ok(t) => Raw::from_safetensors(&t)
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
            Some(raw.data.iter().map(|&x| x != 0.0).collect::<Vec<bool>>())
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

/// A tensor read from disk as f32 with its shape.
struct Raw {
    shape: Vec<usize>,
    data: Vec<f32>,
}

impl Raw {
    fn from_safetensors(t: &safetensors::tensor::TensorView) -> Result<Self> {
        let b = t.data();
        let data: Vec<f32> = match t.dtype() {
            Dtype::F32 => b
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
            Dtype::F16 => b
                .chunks_exact(2)
                .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
            Dtype::BF16 => b
                .chunks_exact(2)
                .map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
            Dtype::U8 => b.iter().map(|&x| f32::from(x)).collect(),
            Dtype::BOOL => b.iter().map(|&x| f32::from(x)).collect(),
            other => bail!("dtype {other:?} not supported (use f32, f16 or bf16)"),
        };
        Ok(Self {
            shape: t.shape().to_vec(),
            data,
        })
    }
}

fn read_npy(path: &Path) -> Result<Raw> {
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
    let bad = |e: std::io::Error| anyhow!("{}: {e}", path.display());
    let type_str = match &dtype {
        npyz::DType::Plain(ts) => ts.to_string(),
        other => bail!(
            "{}: structured dtype {} not supported (use float32 or float16)",
            path.display(),
            other.descr()
        ),
    };
    let data: Vec<f32> = match type_str.as_str() {
        "<f4" => npy.into_vec::<f32>().map_err(bad)?,
        "<f2" => npy
            .into_vec::<half::f16>()
            .map_err(bad)?
            .into_iter()
            .map(|x| x.to_f32())
            .collect(),
        "<f8" => npy
            .into_vec::<f64>()
            .map_err(bad)?
            .into_iter()
            .map(|x| x as f32)
            .collect(),
        "|b1" | "|u1" => npy
            .into_vec::<u8>()
            .map_err(bad)?
            .into_iter()
            .map(f32::from)
            .collect(),
        other => bail!(
            "{}: dtype {other} not supported (use float32 or float16)",
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

/// Writes a file atomically: the content goes to a temporary file in the same folder,
/// which is renamed over `path` only once complete. On error nothing is left behind.
pub fn write_atomic(
    path: &Path,
    write: impl FnOnce(&mut std::fs::File) -> Result<()>,
) -> Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let mut tmp = tempfile::NamedTempFile::new_in(&dir)
        .with_context(|| format!("cannot create a file in {}", dir.display()))?;
    write(tmp.as_file_mut())?;
    tmp.as_file()
        .sync_all()
        .with_context(|| format!("cannot write {}", path.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        // Temporary files are private; the result is an ordinary file.
        let _ = tmp
            .as_file()
            .set_permissions(std::fs::Permissions::from_mode(0o644));
    }
    tmp.persist(path)
        .map_err(|e| anyhow!("cannot write {}: {}", path.display(), e.error))?;
    Ok(())
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
