//! Fine-tuning norms and biases on MiniLM and SmolLM2 (real weights): the trainable soft forward
//! equals the frozen one at the start, the gradients of the gain and bias path match
//! central finite differences, and fine-tuned weights files round-trip and are refused
//! (wrong base sha256, unknown tensor, wrong shape, not such a file) with errors naming the
//! file and the tensor or field.

mod common;

use std::collections::BTreeMap;

use candle_core::{Device, Tensor};
use common::asset_dir;
use sprint_assets::Asset;
use sprint_core::config::AttentionConfig;
use sprint_models::finetuned::{BASE_SHA256, FineTunedWeights, sha256_hex};
use sprint_models::model::Model;
use sprint_models::soft::{SoftMask, SoftModel};
use sprint_models::{DenseAttention, LoadedModel, load_path};

fn minilm() -> Option<LoadedModel> {
    let dir = asset_dir(Asset::MiniLm)?;
    Some(load_path(&dir).unwrap())
}

/// The trainable forward at its start is the frozen forward (to 1e-5); the gradients of
/// `sum(embedding * target)` with respect to gains and biases of the embedding norm, a
/// query bias (through the scores and the soft mask), a feed-forward bias and the last
/// output norm match central finite differences (f32 model, step 0.01, tolerance 3 % of
/// the larger magnitude + 2e-5).
#[test]
fn gain_and_bias_gradients_match_finite_differences() {
    let Some(m) = minilm() else { return };
    let batch = m
        .encode_batch(&[common::SENTENCES[0], common::SENTENCES[3]], Some(32))
        .unwrap();
    let frozen = SoftModel::new(&m.model).unwrap();
    let mut soft = frozen.clone();
    let vars = soft.make_trainable().unwrap();
    assert_eq!(
        vars.len(),
        2 + 6 * 10,
        "embedding norm + 10 tensors per layer"
    );
    assert_eq!(vars[0].name, "embeddings.LayerNorm.weight");
    assert_eq!(vars[2].name, "encoder.layer.0.attention.self.query.bias");
    let (l, h) = (soft.layers(), soft.heads());
    let th: Vec<f32> = (0..l * h).map(|i| -1.0 + 0.1 * (i % 5) as f32).collect();
    let th = Tensor::from_vec(th, (l, h), &Device::Cpu).unwrap();
    let mask = SoftMask {
        thresholds: &th,
        temperature: 1.0,
        datapath: None,
    };
    let a = frozen.forward(&batch, mask).unwrap();
    let b = soft.forward(&batch, mask).unwrap();
    assert!(common::max_abs_diff(&a.output, &b.output) < 1e-5);

    // Dense: the trainable forward with open thresholds is the model's own forward.
    let open = Tensor::full(-1e9f32, (l, h), &Device::Cpu).unwrap();
    let dense = DenseAttention::new(AttentionConfig::default());
    let (want, _) = m.model.embed(&batch, &dense, false, true).unwrap();
    let got = soft
        .forward(
            &batch,
            SoftMask {
                thresholds: &open,
                temperature: 0.5,
                datapath: None,
            },
        )
        .unwrap();
    assert!(common::max_abs_diff(&got.output, &want) < 1e-5);

    let hidden = want.dim(1).unwrap();
    let target = Tensor::from_vec(
        (0..2 * hidden)
            .map(|i| ((i * 37 % 11) as f32 - 5.0) / 5.0)
            .collect::<Vec<_>>(),
        (2, hidden),
        &Device::Cpu,
    )
    .unwrap();
    let loss = || -> Tensor {
        let o = soft.forward(&batch, mask).unwrap();
        (o.output * &target).unwrap().sum_all().unwrap()
    };
    let grads = loss().backward().unwrap();
    let pick = [
        ("embeddings.LayerNorm.weight", 5usize),
        ("embeddings.LayerNorm.bias", 17),
        ("encoder.layer.0.attention.self.query.bias", 3),
        ("encoder.layer.1.attention.self.value.bias", 40),
        ("encoder.layer.2.intermediate.dense.bias", 10),
        ("encoder.layer.3.attention.output.LayerNorm.weight", 100),
        ("encoder.layer.5.output.LayerNorm.bias", 7),
    ];
    for (name, idx) in pick {
        let t = vars.iter().find(|t| t.name == name).unwrap();
        let g: Vec<f32> = common::values(grads.get(t.var.as_tensor()).unwrap());
        let base = common::values(t.var.as_tensor());
        let at = |d: f32| -> f64 {
            let mut x = base.clone();
            x[idx] += d;
            t.var
                .set(&Tensor::from_vec(x, base.len(), &Device::Cpu).unwrap())
                .unwrap();
            f64::from(loss().to_scalar::<f32>().unwrap())
        };
        let step = 0.01;
        let fd = (at(step) - at(-step)) / (2.0 * f64::from(step));
        t.var
            .set(&Tensor::from_vec(base.clone(), base.len(), &Device::Cpu).unwrap())
            .unwrap();
        let gi = f64::from(g[idx]);
        eprintln!("{name}[{idx}]: autograd {gi:.6e}, finite difference {fd:.6e}");
        assert!(
            (gi - fd).abs() <= 0.03 * gi.abs().max(fd.abs()) + 2e-5,
            "{name}[{idx}]: autograd {gi} vs finite difference {fd}"
        );
    }
}

fn ffn_out_bias(m: &Model, layer: usize) -> Vec<f32> {
    let Model::Bert(b) = m else { panic!("BERT") };
    common::values(b.layers()[layer].ffn_out.bias().unwrap())
}

/// A weights file written and read back overlays exactly its tensors; a wrong base sha256,
/// an unknown tensor, a wrong shape and a file of another format are refused naming the
/// file and the tensor or field.
#[test]
fn weights_file_round_trip_and_refusals() {
    let Some(m) = minilm() else { return };
    let base = m.base.clone().unwrap();
    let sha = sha256_hex(&std::fs::read(&base.file).unwrap());
    assert_eq!(base.sha256().unwrap(), sha);
    let dir = tempfile::tempdir().unwrap();
    let name = "encoder.layer.2.output.dense.bias";
    let before = ffn_out_bias(&m.model, 2);
    // Not a constant shift (the LayerNorm after the layer would remove it).
    let changed: Vec<f32> = before
        .iter()
        .enumerate()
        .map(|(i, x)| x + 0.25 * (i % 3) as f32)
        .collect();
    let mut meta = BTreeMap::new();
    meta.insert(BASE_SHA256.to_string(), sha.clone());
    meta.insert("task".to_string(), "bbc".to_string());
    let file = |tensors: Vec<(&str, Tensor)>, meta: &BTreeMap<String, String>, f: &str| {
        let w = FineTunedWeights {
            tensors: tensors
                .into_iter()
                .map(|(n, t)| (n.to_string(), t))
                .collect(),
            meta: meta.clone(),
        };
        let p = dir.path().join(f);
        w.write(&p).unwrap();
        p
    };
    let bias = |v: Vec<f32>| Tensor::from_vec(v.clone(), v.len(), &Device::Cpu).unwrap();
    let good = file(
        vec![(name, bias(changed.clone()))],
        &meta,
        "good.safetensors",
    );
    let back = FineTunedWeights::read(&good).unwrap();
    assert_eq!(back.meta.get("task").map(String::as_str), Some("bbc"));
    assert_eq!(back.base_sha256(), sha);
    let o = m.with_weights(&good).unwrap();
    assert_eq!(ffn_out_bias(&o.model, 2), changed);
    assert_eq!(ffn_out_bias(&o.model, 1), ffn_out_bias(&m.model, 1));
    assert!(o.name.contains("good.safetensors"));
    // The overlaid model computes something else.
    let batch = m.encode_batch(&[common::SENTENCES[1]], Some(16)).unwrap();
    let dense = DenseAttention::new(AttentionConfig::default());
    let (e0, _) = m.model.embed(&batch, &dense, false, true).unwrap();
    let (e1, _) = o.model.embed(&batch, &dense, false, true).unwrap();
    assert!(common::max_abs_diff(&e0, &e1) > 1e-4);

    let refused = |p: &std::path::Path, words: &[&str]| {
        let e = m.with_weights(p).unwrap_err().to_string();
        let f = p.file_name().unwrap().to_str().unwrap();
        assert!(e.contains(f), "{e}");
        for w in words {
            assert!(e.contains(w), "`{w}` not in: {e}");
        }
    };
    let mut wrong = meta.clone();
    wrong.insert(BASE_SHA256.to_string(), "0".repeat(64));
    let p = file(
        vec![(name, bias(changed.clone()))],
        &wrong,
        "sha.safetensors",
    );
    refused(&p, &["sha256", &sha]);
    let p = file(
        vec![("encoder.layer.9.output.dense.bias", bias(changed.clone()))],
        &meta,
        "unknown.safetensors",
    );
    refused(&p, &["encoder.layer.9.output.dense.bias", "not a tensor"]);
    let p = file(
        vec![(name, bias(changed[..100].to_vec()))],
        &meta,
        "shape.safetensors",
    );
    refused(&p, &[name, "shape", "[100]", "[384]"]);
    let mut no_sha = meta.clone();
    no_sha.remove(BASE_SHA256);
    let p = file(
        vec![(name, bias(changed.clone()))],
        &no_sha,
        "nosha.safetensors",
    );
    refused(&p, &["base_sha256", "missing"]);
    // A plain safetensors file (no format metadata) and garbage.
    let plain = dir.path().join("plain.safetensors");
    candle_core::safetensors::save(
        &[(name.to_string(), bias(changed.clone()))]
            .into_iter()
            .collect(),
        &plain,
    )
    .unwrap();
    refused(&plain, &["format"]);
    let junk = dir.path().join("junk.safetensors");
    std::fs::write(&junk, b"not a tensor file").unwrap();
    refused(&junk, &["safetensors"]);
}

/// SmolLM2 (Llama, GGUF): the RMS-norm gains become trainable, in GGUF names; a gradient
/// reaches every one; a weights file of a changed gain overlaid on the GGUF model gives the
/// final hidden states of the trainable forward holding the same gain (to 1e-4), not the
/// base model's; a wrong base sha256 is refused naming the file.
#[test]
fn llama_norm_gains_train_and_overlay() {
    let Some(dir) = asset_dir(Asset::SmolLm2) else {
        return;
    };
    let m = load_path(&dir.join(sprint_models::model::SMOLLM2_GGUF)).unwrap();
    let base = m.base.clone().expect("a GGUF model has its file as base");
    let sha = base.sha256().unwrap();
    let mut soft = SoftModel::new(&m.model).unwrap();
    let vars = soft.make_trainable().unwrap();
    let layers = soft.layers();
    assert_eq!(
        vars.len(),
        2 * layers + 1,
        "two gains per layer + the final norm"
    );
    assert_eq!(vars[0].name, "blk.0.attn_norm.weight");
    assert_eq!(vars[1].name, "blk.0.ffn_norm.weight");
    assert_eq!(vars[2 * layers].name, "output_norm.weight");

    let batch = m.encode_batch(&[common::SENTENCES[2]], Some(12)).unwrap();
    let open = Tensor::full(-1e9f32, (layers, soft.heads()), &Device::Cpu).unwrap();
    let mask = SoftMask {
        thresholds: &open,
        temperature: 0.5,
        datapath: None,
    };
    let name = "blk.5.ffn_norm.weight";
    let t = vars.iter().find(|t| t.name == name).unwrap();
    let changed: Vec<f32> = common::values(t.var.as_tensor())
        .iter()
        .enumerate()
        .map(|(i, x)| x * (1.0 + 0.2 * (i % 3) as f32))
        .collect();
    let gain = Tensor::from_vec(changed.clone(), changed.len(), &Device::Cpu).unwrap();
    t.var.set(&gain).unwrap();
    let out = soft.forward(&batch, mask).unwrap().output;

    // Every gain gets a gradient.
    let target = out.ones_like().unwrap();
    let grads = (&out * &target)
        .unwrap()
        .sum_all()
        .unwrap()
        .backward()
        .unwrap();
    for v in &vars {
        let g = common::values(grads.get(v.var.as_tensor()).expect(&v.name));
        assert!(g.iter().all(|x| x.is_finite()), "{}", v.name);
        assert!(g.iter().any(|&x| x != 0.0), "{}: zero gradient", v.name);
    }

    let tmp = tempfile::tempdir().unwrap();
    let write = |sha: &str, f: &str| {
        let mut meta = BTreeMap::new();
        meta.insert(BASE_SHA256.to_string(), sha.to_string());
        let w = FineTunedWeights {
            tensors: [(name.to_string(), gain.clone())].into(),
            meta,
        };
        let p = tmp.path().join(f);
        w.write(&p).unwrap();
        p
    };
    let o = m.with_weights(&write(&sha, "gain.safetensors")).unwrap();
    let hidden = |model: &Model| {
        let Model::Llama(l) = model else {
            panic!("SmolLM2 is a Llama model")
        };
        let dense = DenseAttention::new(AttentionConfig::default());
        l.forward_hidden(&batch, &dense, false).unwrap().0
    };
    let overlaid = hidden(&o.model);
    let d = common::max_abs_diff(&overlaid, &out);
    assert!(d < 1e-4, "overlay vs trainable forward: {d}");
    assert!(common::max_abs_diff(&hidden(&m.model), &out) > 1e-3);

    let p = write(&"0".repeat(64), "sha.safetensors");
    let e = m.with_weights(&p).unwrap_err().to_string();
    assert!(e.contains("sha.safetensors") && e.contains(&sha), "{e}");
}
