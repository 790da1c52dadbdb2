//! `sprint attend` end to end: correct results against an independent dense reference, and
//! bad input rejected with a one-line error, a non-zero exit and no output file.

use std::path::{Path, PathBuf};
use std::process::Command;

use safetensors::{Dtype, tensor::TensorView};

fn sprint() -> Command {
    Command::new(env!("CARGO_BIN_EXE_sprint"))
}

struct Tensors(Vec<(String, Vec<usize>, Vec<f32>)>);

impl Tensors {
    fn qkv(heads: usize, seq: usize, d: usize, seed: u64) -> Self {
        let mut state = seed.wrapping_add(1);
        let mut next = || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((state >> 40) as f32 / (1u64 << 24) as f32) * 4.0 - 2.0
        };
        let n = heads * seq * d;
        let mut t = Vec::new();
        for name in ["q", "k", "v"] {
            t.push((
                name.to_string(),
                vec![heads, seq, d],
                (0..n).map(|_| next()).collect(),
            ));
        }
        Self(t)
    }

    fn write(&self, path: &Path) {
        let bytes: Vec<Vec<u8>> = self
            .0
            .iter()
            .map(|(_, _, d)| d.iter().flat_map(|x| x.to_le_bytes()).collect())
            .collect();
        let views: Vec<(String, TensorView)> = self
            .0
            .iter()
            .zip(&bytes)
            .map(|((n, s, _), b)| {
                (
                    n.clone(),
                    TensorView::new(Dtype::F32, s.clone(), b).unwrap(),
                )
            })
            .collect();
        std::fs::write(path, safetensors::serialize(views, None).unwrap()).unwrap();
    }

    fn get(&self, name: &str) -> &[f32] {
        &self.0.iter().find(|t| t.0 == name).unwrap().2
    }
}

fn read_out(path: &Path) -> Vec<f32> {
    let bytes = std::fs::read(path).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    st.tensor("out")
        .unwrap()
        .data()
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

fn dense_reference(t: &Tensors, heads: usize, seq: usize, d: usize) -> Vec<f64> {
    let (q, k, v) = (t.get("q"), t.get("k"), t.get("v"));
    let mut out = vec![0f64; heads * seq * d];
    for h in 0..heads {
        for i in 0..seq {
            let row = |j: usize| (h * seq + j) * d..(h * seq + j + 1) * d;
            let qi = &q[row(i)];
            let logits: Vec<f64> = (0..seq)
                .map(|j| {
                    qi.iter()
                        .zip(&k[row(j)])
                        .map(|(a, b)| f64::from(*a) * f64::from(*b))
                        .sum::<f64>()
                        / (d as f64).sqrt()
                })
                .collect();
            let m = logits.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let e: Vec<f64> = logits.iter().map(|x| (x - m).exp()).collect();
            let s: f64 = e.iter().sum();
            for j in 0..seq {
                for t in 0..d {
                    out[(h * seq + i) * d + t] += e[j] / s * f64::from(v[(h * seq + j) * d + t]);
                }
            }
        }
    }
    out
}

fn tmp() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

/// Acceptance 1 through the binary: -inf threshold, float recompute == dense attention.
#[test]
fn attend_without_pruning_equals_dense() {
    let dir = tmp();
    let (heads, seq, d) = (2, 96, 32);
    let t = Tensors::qkv(heads, seq, d, 3);
    let input = dir.path().join("qkv.safetensors");
    t.write(&input);
    let out = dir.path().join("out.safetensors");
    let trace = dir.path().join("run.trace");
    let st = sprint()
        .args([
            "attend",
            "--threshold=-inf",
            "--recompute",
            "float",
            "--json",
            "--input",
        ])
        .arg(&input)
        .arg("--out")
        .arg(&out)
        .arg("--trace")
        .arg(&trace)
        .output()
        .unwrap();
    assert!(
        st.status.success(),
        "{}",
        String::from_utf8_lossy(&st.stderr)
    );
    let got = read_out(&out);
    let want = dense_reference(&t, heads, seq, d);
    let num: f64 = got
        .iter()
        .zip(&want)
        .map(|(a, b)| (f64::from(*a) - b).powi(2))
        .sum();
    let den: f64 = want.iter().map(|b| b * b).sum();
    assert!(
        (num / den).sqrt() < 1e-5,
        "relative error {}",
        (num / den).sqrt()
    );
    let summary: serde_json::Value = serde_json::from_slice(&st.stdout).unwrap();
    assert_eq!(summary["kept_fraction"], 1.0);
    let (header, heads_read) = sprint_core::trace::read_trace(&trace).unwrap();
    assert_eq!(header.heads, 2);
    assert_eq!(heads_read.len(), 2);
    let kept: u64 = heads_read.iter().map(|h| h.masks.count_ones() as u64).sum();
    assert_eq!(summary["kept_pairs"], kept);
}

/// The `.npy` folder input gives the same output as the safetensors file.
#[test]
fn npy_folder_input_matches_safetensors() {
    let dir = tmp();
    let t = Tensors::qkv(2, 40, 16, 9);
    let st_path = dir.path().join("qkv.safetensors");
    t.write(&st_path);
    let npy_dir = dir.path().join("npy");
    std::fs::create_dir(&npy_dir).unwrap();
    for (name, shape, data) in &t.0 {
        let mut bytes = Vec::new();
        {
            use npyz::WriterBuilder;
            let mut w = npyz::WriteOptions::<f32>::new()
                .default_dtype()
                .shape(&shape.iter().map(|&x| x as u64).collect::<Vec<_>>())
                .writer(&mut bytes)
                .begin_nd()
                .unwrap();
            w.extend(data.iter().copied()).unwrap();
            w.finish().unwrap();
        }
        std::fs::write(npy_dir.join(format!("{name}.npy")), bytes).unwrap();
    }
    let run = |input: &Path, out: &Path| {
        let s = sprint()
            .args(["attend", "--threshold", "0.1", "--input"])
            .arg(input)
            .arg("--out")
            .arg(out)
            .output()
            .unwrap();
        assert!(s.status.success(), "{}", String::from_utf8_lossy(&s.stderr));
    };
    let (a, b) = (
        dir.path().join("a.safetensors"),
        dir.path().join("b.safetensors"),
    );
    run(&st_path, &a);
    run(&npy_dir, &b);
    assert_eq!(read_out(&a), read_out(&b));
}

/// Runs `sprint attend` expecting failure; returns stderr and checks no output was left.
fn expect_failure(dir: &Path, input: &Path, extra: &[&str]) -> String {
    let out = dir.join("out.safetensors");
    let trace = dir.join("out.trace");
    let before: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    let s = sprint()
        .arg("attend")
        .arg("--input")
        .arg(input)
        .arg("--out")
        .arg(&out)
        .arg("--trace")
        .arg(&trace)
        .args(extra)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&s.stderr).to_string();
    assert!(!s.status.success(), "expected failure, got success");
    assert_eq!(s.status.code(), Some(1));
    assert_eq!(
        err.trim_end().lines().count(),
        1,
        "error is not one line: {err}"
    );
    assert!(err.starts_with("error: "), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    let after: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(before.len(), after.len(), "files left behind: {after:?}");
    err
}

#[test]
fn bad_inputs_give_one_line_errors_and_no_output() {
    let dir = tmp();
    let p = dir.path();

    let mut t = Tensors::qkv(2, 8, 16, 1);
    t.0.retain(|x| x.0 != "v");
    let missing = p.join("missing.safetensors");
    t.write(&missing);
    let e = expect_failure(p, &missing, &[]);
    assert!(e.contains("missing tensor `v`"), "{e}");

    let mut t = Tensors::qkv(2, 8, 16, 1);
    t.0[1].1 = vec![2, 16, 8];
    let shapes = p.join("shapes.safetensors");
    t.write(&shapes);
    let e = expect_failure(p, &shapes, &[]);
    assert!(e.contains("head_dim"), "{e}");

    let mut t = Tensors::qkv(2, 8, 16, 1);
    t.0[0].2[37] = f32::NAN;
    let nan = p.join("nan.safetensors");
    t.write(&nan);
    let e = expect_failure(p, &nan, &[]);
    assert!(
        e.contains("q holds a non-finite value (NaN) at index [0, 2, 5]"),
        "{e}"
    );

    let good = p.join("good.safetensors");
    Tensors::qkv(2, 8, 16, 1).write(&good);
    let cfg = p.join("bad.toml");
    std::fs::write(&cfg, "[noise]\nread_sigma = 0.1\n").unwrap();
    let e = expect_failure(p, &good, &["--config", cfg.to_str().unwrap()]);
    assert!(e.contains("read_sigma") && e.contains("bad.toml"), "{e}");

    let th = p.join("th.toml");
    std::fs::write(&th, "per_layer = [0.1, 0.2, 0.3]\n").unwrap();
    let cfg2 = p.join("th-cfg.toml");
    std::fs::write(&cfg2, "[threshold]\nfile = \"th.toml\"\n").unwrap();
    let e = expect_failure(p, &good, &["--config", cfg2.to_str().unwrap()]);
    assert!(
        e.contains("3 per-layer thresholds for a model of 1 layers"),
        "{e}"
    );

    let garbage = p.join("garbage.safetensors");
    std::fs::write(&garbage, b"not a tensor file at all").unwrap();
    let e = expect_failure(p, &garbage, &[]);
    assert!(e.contains("not a valid safetensors"), "{e}");

    let e = expect_failure(p, &p.join("nowhere.safetensors"), &[]);
    assert!(e.contains("nowhere.safetensors"), "{e}");

    let e = expect_failure(p, &good, &["--variant", "sparse"]);
    assert!(e.contains("unknown variant `sparse`"), "{e}");
}
