//! GPT-2, ALBERT and ViT checkpoints generated with a fixed seed: saved in Hugging Face
//! layout, loaded back through the normal loader, and checked against an independent f64
//! forward (tests/common/reference.rs) within 1e-5. Also the loader's error messages.

mod common;

use std::path::Path;

use candle_core::{Device, Tensor};
use common::reference::{self as r, Rows, Weights};
use common::values;
use sprint_core::config::{AttentionConfig, RecomputeMode, Variant};
use sprint_models::albert::AlbertConfig;
use sprint_models::attention::{DenseAttention, SprintAttention};
use sprint_models::checkpoint::{
    generate_albert, generate_bert, generate_gpt2, generate_vit, save_checkpoint,
};
use sprint_models::gpt2::Gpt2Config;
use sprint_models::vit::VitConfig;
use sprint_models::{Model, ModelError, TokenBatch, load_path};

const SEED: u64 = 20220901;
const TOL: f64 = 1e-5;

fn dense() -> DenseAttention {
    DenseAttention::new(AttentionConfig::default())
}

/// SPRINT with no threshold and float recompute: must equal dense.
fn sprint_float() -> impl Fn(usize, usize) -> SprintAttention {
    |layers, heads| {
        let cfg = AttentionConfig {
            variant: Variant::Sprint,
            recompute: RecomputeMode::Float,
            ..AttentionConfig::default()
        };
        let th = cfg.thresholds(layers, heads).unwrap();
        SprintAttention::new(cfg, th).unwrap()
    }
}

fn max_diff(ours: &[f32], reference: &[f64]) -> f64 {
    assert_eq!(ours.len(), reference.len());
    ours.iter()
        .zip(reference)
        .map(|(a, b)| (f64::from(*a) - b).abs())
        .fold(0.0, f64::max)
}

fn batch() -> TokenBatch {
    let a: Vec<u32> = (0..12).map(|i| (i * 7 + 3) % 50).collect();
    let b: Vec<u32> = (0..7).map(|i| (i * 11 + 5) % 50).collect();
    TokenBatch::from_sequences(vec![a, b], 0).unwrap()
}

fn gpt2_config() -> Gpt2Config {
    Gpt2Config {
        vocab_size: 64,
        n_positions: 32,
        n_embd: 32,
        n_layer: 2,
        n_head: 4,
        n_inner: Some(48),
        activation_function: "gelu_new".into(),
        layer_norm_epsilon: 1e-5,
        model_type: None,
    }
}

fn gpt2_reference(w: &Weights, cfg: &Gpt2Config, ids: &[u32]) -> Rows {
    let h = cfg.n_embd;
    let pos: Vec<u32> = (0..ids.len() as u32).collect();
    let mut x = r::add(
        &r::lookup(w.v("wte.weight"), h, ids),
        &r::lookup(w.v("wpe.weight"), h, &pos),
    );
    let valid = vec![true; ids.len()];
    for l in 0..cfg.n_layer {
        let p = |n: &str| format!("h.{l}.{n}");
        let a = r::layer_norm(&x, w.v(&p("ln_1.weight")), w.v(&p("ln_1.bias")), 1e-5);
        let qkv = r::conv1d(
            &a,
            w.v(&p("attn.c_attn.weight")),
            w.v(&p("attn.c_attn.bias")),
            3 * h,
        );
        let part = |i: usize| -> Rows {
            qkv.iter()
                .map(|row| row[i * h..(i + 1) * h].to_vec())
                .collect()
        };
        let ctx = r::attention(&part(0), &part(1), &part(2), cfg.n_head, &valid, true);
        let o = r::conv1d(
            &ctx,
            w.v(&p("attn.c_proj.weight")),
            w.v(&p("attn.c_proj.bias")),
            h,
        );
        x = r::add(&x, &o);
        let m = r::layer_norm(&x, w.v(&p("ln_2.weight")), w.v(&p("ln_2.bias")), 1e-5);
        let f = r::map(
            &r::conv1d(&m, w.v(&p("mlp.c_fc.weight")), w.v(&p("mlp.c_fc.bias")), 48),
            r::gelu_tanh,
        );
        let o = r::conv1d(
            &f,
            w.v(&p("mlp.c_proj.weight")),
            w.v(&p("mlp.c_proj.bias")),
            h,
        );
        x = r::add(&x, &o);
    }
    let x = r::layer_norm(&x, w.v("ln_f.weight"), w.v("ln_f.bias"), 1e-5);
    r::linear(&x, w.v("wte.weight"), None, cfg.vocab_size)
}

#[test]
fn gpt2_round_trip_matches_independent_forward() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = gpt2_config();
    save_checkpoint(
        dir.path(),
        &cfg,
        "gpt2",
        &generate_gpt2(&cfg, SEED).unwrap(),
    )
    .unwrap();
    let loaded = load_path(dir.path()).unwrap();
    let Model::Gpt2(model) = &loaded.model else {
        panic!("not gpt2")
    };
    let b = batch();
    let (logits, rec) = model.forward(&b, &dense(), false).unwrap();
    let w = Weights::read(&dir.path().join("model.safetensors"));
    for (s, len) in b.lengths.iter().enumerate() {
        let want: Vec<f64> = gpt2_reference(&w, &cfg, &b.ids[s][..*len]).concat();
        let got = values(&logits.get(s).unwrap().narrow(0, 0, *len).unwrap());
        let d = max_diff(&got, &want);
        eprintln!("GPT-2 sequence {s}: max |diff| vs f64 reference = {d:.2e}");
        assert!(d < TOL, "sequence {s}: {d}");
    }
    let n: u64 = b.lengths.iter().map(|&l| (l * (l + 1) / 2) as u64).sum();
    assert_eq!(rec.totals().visible, n * 4 * 2);
    // The functional model with no pruning and float recompute is the same forward.
    let (again, _) = model.forward(&b, &sprint_float()(2, 4), false).unwrap();
    let d = common::max_abs_diff(&again, &logits);
    assert!(d < TOL, "sprint(-inf, float) vs dense: {d}");
    // Same seed, same checkpoint.
    let again = generate_gpt2(&cfg, SEED).unwrap();
    assert_eq!(
        values(&again["wte.weight"]),
        w.v("wte.weight")
            .iter()
            .map(|&x| x as f32)
            .collect::<Vec<_>>()
    );
}

fn albert_config() -> AlbertConfig {
    AlbertConfig {
        vocab_size: 50,
        embedding_size: 16,
        hidden_size: 32,
        num_hidden_layers: 4,
        num_hidden_groups: 2,
        inner_group_num: 2,
        num_attention_heads: 4,
        intermediate_size: 48,
        hidden_act: "gelu_new".into(),
        max_position_embeddings: 32,
        type_vocab_size: 2,
        layer_norm_eps: 1e-12,
        model_type: None,
    }
}

fn albert_reference(w: &Weights, cfg: &AlbertConfig, ids: &[u32]) -> Rows {
    let (e, h) = (cfg.embedding_size, cfg.hidden_size);
    let pos: Vec<u32> = (0..ids.len() as u32).collect();
    let zeros = vec![0u32; ids.len()];
    let x = r::add(
        &r::add(
            &r::lookup(w.v("albert.embeddings.word_embeddings.weight"), e, ids),
            &r::lookup(w.v("albert.embeddings.position_embeddings.weight"), e, &pos),
        ),
        &r::lookup(
            w.v("albert.embeddings.token_type_embeddings.weight"),
            e,
            &zeros,
        ),
    );
    let x = r::layer_norm(
        &x,
        w.v("albert.embeddings.LayerNorm.weight"),
        w.v("albert.embeddings.LayerNorm.bias"),
        1e-12,
    );
    let mut x = r::linear(
        &x,
        w.v("albert.encoder.embedding_hidden_mapping_in.weight"),
        Some(w.v("albert.encoder.embedding_hidden_mapping_in.bias")),
        h,
    );
    let valid = vec![true; ids.len()];
    for depth in 0..cfg.num_hidden_layers {
        let group = depth / (cfg.num_hidden_layers / cfg.num_hidden_groups);
        for i in 0..cfg.inner_group_num {
            let p = |n: &str| {
                format!("albert.encoder.albert_layer_groups.{group}.albert_layers.{i}.{n}")
            };
            let lin = |x: &Rows, n: &str, out| {
                r::linear(
                    x,
                    w.v(&p(&format!("{n}.weight"))),
                    Some(w.v(&p(&format!("{n}.bias")))),
                    out,
                )
            };
            let ctx = r::attention(
                &lin(&x, "attention.query", h),
                &lin(&x, "attention.key", h),
                &lin(&x, "attention.value", h),
                4,
                &valid,
                false,
            );
            let a = r::add(&x, &lin(&ctx, "attention.dense", h));
            let a = r::layer_norm(
                &a,
                w.v(&p("attention.LayerNorm.weight")),
                w.v(&p("attention.LayerNorm.bias")),
                1e-12,
            );
            let f = lin(
                &r::map(&lin(&a, "ffn", cfg.intermediate_size), r::gelu_tanh),
                "ffn_output",
                h,
            );
            x = r::layer_norm(
                &r::add(&a, &f),
                w.v(&p("full_layer_layer_norm.weight")),
                w.v(&p("full_layer_layer_norm.bias")),
                1e-12,
            );
        }
    }
    x
}

#[test]
fn albert_round_trip_matches_independent_forward() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = albert_config();
    save_checkpoint(
        dir.path(),
        &cfg,
        "albert",
        &generate_albert(&cfg, SEED).unwrap(),
    )
    .unwrap();
    let loaded = load_path(dir.path()).unwrap();
    let Model::Albert(model) = &loaded.model else {
        panic!("not albert")
    };
    assert_eq!(
        loaded.model.geometry().layers,
        8,
        "4 depths x 2 inner layers"
    );
    let b = batch();
    let (hidden, rec) = model.forward(&b, &dense(), false).unwrap();
    assert_eq!(rec.per_layer().len(), 8);
    let w = Weights::read(&dir.path().join("model.safetensors"));
    let mut pooled_want = Vec::new();
    for (s, len) in b.lengths.iter().enumerate() {
        let want = albert_reference(&w, &cfg, &b.ids[s][..*len]);
        let got = values(&hidden.get(s).unwrap().narrow(0, 0, *len).unwrap());
        let d = max_diff(&got, &want.concat());
        eprintln!("ALBERT sequence {s}: max |diff| vs f64 reference = {d:.2e}");
        assert!(d < TOL, "sequence {s}: {d}");
        pooled_want.extend(
            (0..cfg.hidden_size).map(|c| want.iter().map(|row| row[c]).sum::<f64>() / *len as f64),
        );
    }
    // Mean pooling skips the padding.
    let (pooled, _) = loaded.model.embed(&b, &dense(), false, false).unwrap();
    assert!(max_diff(&values(&pooled), &pooled_want) < TOL);
    let (again, _) = model.forward(&b, &sprint_float()(8, 4), false).unwrap();
    // Padding rows differ (zeros from the functional model); compare real tokens only.
    for (s, len) in b.lengths.iter().enumerate() {
        let a = again.get(s).unwrap().narrow(0, 0, *len).unwrap();
        let h = hidden.get(s).unwrap().narrow(0, 0, *len).unwrap();
        assert!(common::max_abs_diff(&a, &h) < TOL);
    }
}

fn vit_config() -> VitConfig {
    VitConfig {
        hidden_size: 32,
        num_hidden_layers: 2,
        num_attention_heads: 4,
        intermediate_size: 64,
        hidden_act: "gelu".into(),
        layer_norm_eps: 1e-12,
        image_size: 16,
        patch_size: 4,
        num_channels: 3,
        qkv_bias: true,
        model_type: None,
    }
}

fn vit_reference(w: &Weights, cfg: &VitConfig, img: &[f64]) -> Vec<f64> {
    let (h, p, c, side) = (
        cfg.hidden_size,
        cfg.patch_size,
        cfg.num_channels,
        cfg.image_size,
    );
    let g = side / p;
    let pw = w.v("vit.embeddings.patch_embeddings.projection.weight");
    let pb = w.v("vit.embeddings.patch_embeddings.projection.bias");
    let mut x: Rows = vec![w.v("vit.embeddings.cls_token").to_vec()];
    for py in 0..g {
        for px in 0..g {
            let mut row = pb.to_vec();
            for (o, out) in row.iter_mut().enumerate() {
                for ch in 0..c {
                    for i in 0..p {
                        for j in 0..p {
                            let pix = img[ch * side * side + (py * p + i) * side + px * p + j];
                            *out += pw[((o * c + ch) * p + i) * p + j] * pix;
                        }
                    }
                }
            }
            x.push(row);
        }
    }
    let pos = w.v("vit.embeddings.position_embeddings");
    let pos_rows: Rows = pos.chunks(h).map(<[f64]>::to_vec).collect();
    x = r::add(&x, &pos_rows);
    let valid = vec![true; x.len()];
    for l in 0..cfg.num_hidden_layers {
        let p = |n: &str| format!("vit.encoder.layer.{l}.{n}");
        let lin = |x: &Rows, n: &str, out| {
            r::linear(
                x,
                w.v(&p(&format!("{n}.weight"))),
                Some(w.v(&p(&format!("{n}.bias")))),
                out,
            )
        };
        let a = r::layer_norm(
            &x,
            w.v(&p("layernorm_before.weight")),
            w.v(&p("layernorm_before.bias")),
            1e-12,
        );
        let ctx = r::attention(
            &lin(&a, "attention.attention.query", h),
            &lin(&a, "attention.attention.key", h),
            &lin(&a, "attention.attention.value", h),
            cfg.num_attention_heads,
            &valid,
            false,
        );
        x = r::add(&x, &lin(&ctx, "attention.output.dense", h));
        let m = r::layer_norm(
            &x,
            w.v(&p("layernorm_after.weight")),
            w.v(&p("layernorm_after.bias")),
            1e-12,
        );
        let f = lin(
            &r::map(
                &lin(&m, "intermediate.dense", cfg.intermediate_size),
                r::gelu,
            ),
            "output.dense",
            h,
        );
        x = r::add(&x, &f);
    }
    let x = r::layer_norm(
        &x,
        w.v("vit.layernorm.weight"),
        w.v("vit.layernorm.bias"),
        1e-12,
    );
    r::linear(
        &x[..1].to_vec(),
        w.v("classifier.weight"),
        Some(w.v("classifier.bias")),
        5,
    )
    .concat()
}

#[test]
fn vit_round_trip_matches_independent_forward() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = vit_config();
    save_checkpoint(
        dir.path(),
        &cfg,
        "vit",
        &generate_vit(&cfg, 5, SEED).unwrap(),
    )
    .unwrap();
    let loaded = load_path(dir.path()).unwrap();
    let Model::Vit(model) = &loaded.model else {
        panic!("not vit")
    };
    let n = 2 * 3 * 16 * 16;
    let pixels: Vec<f32> = (0..n)
        .map(|i| ((i * 37 % 101) as f32 / 50.0) - 1.0)
        .collect();
    let img = Tensor::from_vec(pixels.clone(), (2, 3, 16, 16), &Device::Cpu).unwrap();
    let (out, rec) = model.forward(&img, &dense(), false).unwrap();
    assert_eq!(out.hidden.dims(), &[2, 17, 32]);
    let logits = out.logits.unwrap();
    let w = Weights::read(&dir.path().join("model.safetensors"));
    for s in 0..2 {
        let one: Vec<f64> = pixels[s * n / 2..(s + 1) * n / 2]
            .iter()
            .map(|&x| f64::from(x))
            .collect();
        let want = vit_reference(&w, &cfg, &one);
        let d = max_diff(&values(&logits.get(s).unwrap()), &want);
        eprintln!("ViT image {s}: max |diff| of logits vs f64 reference = {d:.2e}");
        assert!(d < TOL, "image {s}: {d}");
    }
    assert_eq!(rec.totals().visible, 2 * 17 * 17 * 4 * 2);
    let (again, _) = model.forward(&img, &sprint_float()(2, 4), false).unwrap();
    assert!(common::max_abs_diff(&again.logits.unwrap(), &logits) < TOL);
}

fn expect_err(dir: &Path) -> String {
    let e = load_path(dir).expect_err("load must fail");
    e.to_string()
}

#[test]
fn bad_checkpoints_give_clear_errors() {
    let cfg = gpt2_config();
    let tensors = generate_gpt2(&cfg, SEED).unwrap();

    // Missing tensor: the error names the file and the tensor.
    let dir = tempfile::tempdir().unwrap();
    let mut t = tensors.clone();
    t.remove("h.1.mlp.c_fc.bias");
    save_checkpoint(dir.path(), &cfg, "gpt2", &t).unwrap();
    let e = expect_err(dir.path());
    assert!(
        e.contains("model.safetensors") && e.contains("h.1.mlp.c_fc.bias") && e.contains("missing"),
        "{e}"
    );

    // Wrong shape.
    let dir = tempfile::tempdir().unwrap();
    let mut t = tensors.clone();
    t.insert(
        "ln_f.weight".into(),
        Tensor::zeros(7, candle_core::DType::F32, &Device::Cpu).unwrap(),
    );
    save_checkpoint(dir.path(), &cfg, "gpt2", &t).unwrap();
    let e = expect_err(dir.path());
    assert!(
        e.contains("ln_f.weight") && e.contains("[7]") && e.contains("[32]"),
        "{e}"
    );

    // Truncated weights file.
    let dir = tempfile::tempdir().unwrap();
    save_checkpoint(dir.path(), &cfg, "gpt2", &tensors).unwrap();
    let st = dir.path().join("model.safetensors");
    let bytes = std::fs::read(&st).unwrap();
    std::fs::write(&st, &bytes[..bytes.len() / 2]).unwrap();
    let e = expect_err(dir.path());
    assert!(
        e.contains("model.safetensors") && e.contains("cannot read weights"),
        "{e}"
    );

    // Missing weights file, missing config, unknown model type, bad JSON.
    std::fs::remove_file(&st).unwrap();
    let e = expect_err(dir.path());
    assert!(e.contains("model.safetensors"), "{e}");
    let empty = tempfile::tempdir().unwrap();
    let e = expect_err(empty.path());
    assert!(e.contains("config.json"), "{e}");
    std::fs::write(empty.path().join("config.json"), r#"{"model_type": "t5"}"#).unwrap();
    let e = expect_err(empty.path());
    assert!(e.contains("model_type `t5` is not supported"), "{e}");
    std::fs::write(
        empty.path().join("config.json"),
        r#"{"model_type": "gpt2", "n_embd": "#,
    )
    .unwrap();
    let e = expect_err(empty.path());
    assert!(e.contains("config.json"), "{e}");

    // A file that is not GGUF.
    let junk = empty.path().join("model.gguf");
    std::fs::write(&junk, b"GGUF this is not").unwrap();
    let e = load_path(&junk).unwrap_err();
    assert!(matches!(e, ModelError::Weights { .. }), "{e}");
    assert!(e.to_string().contains("model.gguf"), "{e}");

    // Unknown name, absent path.
    let e =
        sprint_models::load("no-such-model", &sprint_assets::Cache::new(empty.path())).unwrap_err();
    assert!(e.to_string().contains("no-such-model"), "{e}");
    let e = sprint_models::load("minilm", &sprint_assets::Cache::new(empty.path())).unwrap_err();
    assert!(e.to_string().contains("sprint assets fetch minilm"), "{e}");
}

#[test]
fn bert_with_prefix_loads_and_pads() {
    // A BERT checkpoint saved with the `bert.` prefix loads like the unprefixed one.
    let cfg = sprint_models::bert::BertConfig {
        vocab_size: 50,
        hidden_size: 32,
        num_hidden_layers: 2,
        num_attention_heads: 4,
        intermediate_size: 48,
        hidden_act: "gelu".into(),
        max_position_embeddings: 32,
        type_vocab_size: 2,
        layer_norm_eps: 1e-12,
        position_embedding_type: None,
        model_type: None,
    };
    let plain = generate_bert(&cfg, SEED).unwrap();
    let prefixed = plain
        .iter()
        .map(|(k, v)| (format!("bert.{k}"), v.clone()))
        .collect();
    let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    save_checkpoint(d1.path(), &cfg, "bert", &plain).unwrap();
    save_checkpoint(d2.path(), &cfg, "bert", &prefixed).unwrap();
    let (m1, m2) = (load_path(d1.path()).unwrap(), load_path(d2.path()).unwrap());
    let b = batch();
    let (e1, _) = m1.model.embed(&b, &dense(), false, true).unwrap();
    let (e2, _) = m2.model.embed(&b, &dense(), false, true).unwrap();
    assert_eq!(values(&e1), values(&e2));
    // The padded sequence's embedding equals the same sequence run alone.
    let alone = TokenBatch::from_sequences(vec![b.ids[1][..b.lengths[1]].to_vec()], 0).unwrap();
    let (e3, _) = m1.model.embed(&alone, &dense(), false, true).unwrap();
    let d = common::max_abs_diff(&e1.get(1).unwrap(), &e3.get(0).unwrap());
    assert!(d < 1e-6, "{d}");
}
