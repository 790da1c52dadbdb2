//! all-MiniLM-L6-v2 (real weights from the asset cache): token ids, dense sentence
//! embeddings against candle-transformers' BertModel, and every attention variant.

mod common;

use std::sync::OnceLock;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use common::{SENTENCES, asset_dir, cosine, max_abs_diff, values};
use sprint_assets::Asset;
use sprint_core::config::{AttentionConfig, RecomputeMode, Thresholds, Variant};
use sprint_models::attention::{DenseAttention, SprintAttention};
use sprint_models::backend;
use sprint_models::{LoadedModel, load_path};

fn minilm() -> Option<&'static LoadedModel> {
    static MODEL: OnceLock<Option<LoadedModel>> = OnceLock::new();
    MODEL
        .get_or_init(|| asset_dir(Asset::MiniLm).map(|d| load_path(&d).expect("MiniLM loads")))
        .as_ref()
        .or_else(|| {
            eprintln!("SKIPPED: MiniLM is not in the asset cache");
            None
        })
}

fn dense() -> DenseAttention {
    DenseAttention::new(AttentionConfig::default())
}

fn cfg(variant: Variant) -> AttentionConfig {
    AttentionConfig {
        variant,
        seed: 7,
        ..AttentionConfig::default()
    }
}

/// Ids from Python: `tokenizers` 0.23.2,
/// `Tokenizer.from_file(".../minilm/tokenizer.json")`, `no_truncation()`, `no_padding()`,
/// `encode(text).ids` (adds `[CLS]`/`[SEP]`).
#[test]
fn token_ids_match_python() {
    let Some(m) = minilm() else { return };
    let tok = m.tokenizer().unwrap();
    let expected: [&[u32]; 3] = [
        &[
            101, 1996, 4248, 2829, 4419, 14523, 2058, 1996, 13971, 3899, 1012, 102,
        ],
        &[
            101, 6661, 1999, 4035, 4969, 3123, 2260, 1012, 1019, 1003, 1999, 2432, 1010, 18288,
            2056, 999, 102,
        ],
        &[
            101, 3674, 7258, 1010, 21628, 2015, 1998, 2047, 3210, 1025, 7592, 15743, 7668, 1517,
            7929, 1029, 102,
        ],
    ];
    let texts = [
        "The quick brown fox jumps over the lazy dog.",
        "Shares in BBC Worldwide rose 12.5% in 2004, analysts said!",
        "  Multiple   spaces,\ttabs and new\nlines; héllo naïve café — ok?",
    ];
    for (t, e) in texts.iter().zip(expected) {
        assert_eq!(tok.encode(t, None).unwrap(), e, "{t:?}");
    }
    // Truncation keeps [CLS] and [SEP].
    let cut = tok.encode(texts[0], Some(5)).unwrap();
    assert_eq!(cut, [101, 1996, 4248, 2829, 102]);
}

/// Mean pooling + L2 normalisation written out here, for the reference model.
fn reference_embeddings(dir: &std::path::Path, batch: &sprint_models::TokenBatch) -> Tensor {
    use candle_transformers::models::bert::{BertModel, Config};
    let dev = Device::Cpu;
    let cfg: Config =
        serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap();
    let data = std::fs::read(dir.join("model.safetensors")).unwrap();
    let vb = VarBuilder::from_buffered_safetensors(data, DType::F32, &dev).unwrap();
    let model = BertModel::load(vb, &cfg).unwrap();
    let ids = batch.ids_tensor(&dev).unwrap();
    let types = ids.zeros_like().unwrap();
    let mask: Vec<u32> = batch
        .valid
        .iter()
        .flat_map(|r| r.iter().map(|&v| u32::from(v)))
        .collect();
    let mask = Tensor::from_vec(mask, ids.dims(), &dev).unwrap();
    let hidden = model.forward(&ids, &types, Some(&mask)).unwrap();
    let m = mask.to_dtype(DType::F32).unwrap().unsqueeze(2).unwrap();
    let sum = hidden.broadcast_mul(&m).unwrap().sum(1).unwrap();
    let mean = sum.broadcast_div(&m.sum(1).unwrap()).unwrap();
    let norm = mean.sqr().unwrap().sum_keepdim(1).unwrap().sqrt().unwrap();
    mean.broadcast_div(&norm).unwrap()
}

#[test]
fn dense_embeddings_match_candle_transformers_bert() {
    let Some(m) = minilm() else { return };
    let dir = asset_dir(Asset::MiniLm).unwrap();
    let batch = m.encode_batch(&SENTENCES, Some(256)).unwrap();
    assert!(
        batch.valid.iter().any(|r| r.iter().any(|v| !v)),
        "batch has padding"
    );
    let (ours, rec) = m.model.embed(&batch, &dense(), false, true).unwrap();
    let reference = reference_embeddings(&dir, &batch);
    let diff = max_abs_diff(&ours, &reference);
    eprintln!("MiniLM dense embeddings vs candle-transformers BertModel: max |diff| = {diff:.2e}");
    assert!(diff < 1e-5, "max |diff| {diff}");
    let t = rec.totals();
    assert_eq!(t.kept, t.visible);
    assert_eq!(rec.sequences.len(), SENTENCES.len());
}

#[test]
fn sprint_with_no_threshold_and_float_recompute_equals_dense() {
    let Some(m) = minilm() else { return };
    let batch = m.encode_batch(&SENTENCES, Some(256)).unwrap();
    let (dense_e, _) = m.model.embed(&batch, &dense(), false, true).unwrap();
    let geo = m.model.geometry();
    for variant in [Variant::Sprint, Variant::RuntimePruning] {
        let mut c = cfg(variant);
        c.recompute = RecomputeMode::Float;
        let th = geo.thresholds(&c).unwrap();
        let attn = SprintAttention::new(c, th).unwrap();
        let (e, rec) = m.model.embed(&batch, &attn, false, true).unwrap();
        let diff = max_abs_diff(&e, &dense_e);
        eprintln!(
            "{} (Th = -inf, float recompute) vs dense: max |diff| = {diff:.2e}",
            variant.name()
        );
        assert!(diff < 1e-4, "{}: {diff}", variant.name());
        assert_eq!(rec.totals().kept, rec.totals().visible);
    }
}

#[test]
fn all_four_variants_run_and_prune() {
    let Some(m) = minilm() else { return };
    let batch = m.encode_batch(&SENTENCES[..2], Some(64)).unwrap();
    let geo = m.model.geometry();
    let (dense_e, _) = m.model.embed(&batch, &dense(), false, true).unwrap();
    let dense_v = values(&dense_e);
    for variant in Variant::ALL {
        let c = cfg(variant);
        // Th = 0 logits: keys scoring below the mean-ish logit are pruned.
        let th = Thresholds {
            values: vec![vec![0.0; geo.heads]; geo.layers],
        };
        let attn = backend(c, th).unwrap();
        assert_eq!(attn.variant(), variant);
        let (e, rec) = m.model.embed(&batch, attn.as_ref(), false, true).unwrap();
        let v = values(&e);
        assert!(
            v.iter().all(|x| x.is_finite()),
            "{}: non-finite",
            variant.name()
        );
        let t = rec.totals();
        let cos: Vec<f64> = v
            .chunks(384)
            .zip(dense_v.chunks(384))
            .map(|(a, b)| cosine(a, b))
            .collect();
        eprintln!(
            "MiniLM {:<20} kept {:.3} softmax-kept {:.3} cosine vs dense {:?}",
            variant.name(),
            t.kept_fraction(),
            t.softmax_fraction(),
            cos
        );
        assert_eq!(rec.per_layer().len(), geo.layers);
        if variant == Variant::Dense {
            assert_eq!(t.kept, t.visible);
        } else {
            assert!(
                t.softmax_kept < t.visible,
                "{} pruned nothing",
                variant.name()
            );
            assert!(cos.iter().all(|&c| c > 0.5), "{}: {cos:?}", variant.name());
        }
    }
}

#[test]
fn traces_cover_every_layer_and_head_and_are_reproducible() {
    let Some(m) = minilm() else { return };
    let batch = m.encode_batch(&SENTENCES[..1], Some(32)).unwrap();
    let geo = m.model.geometry();
    let mut c = cfg(Variant::Sprint);
    c.noise.read_sigma_fs = 0.01;
    let th = Thresholds {
        values: vec![vec![0.5; geo.heads]; geo.layers],
    };
    let attn = SprintAttention::new(c, th).unwrap();
    let (e1, r1) = m.model.embed(&batch, &attn, true, true).unwrap();
    let (e2, r2) = m.model.embed(&batch, &attn, true, true).unwrap();
    assert_eq!(values(&e1), values(&e2), "same seed, same bits");
    let t1 = r1.sequences[0].trace.as_ref().unwrap();
    let t2 = r2.sequences[0].trace.as_ref().unwrap();
    assert_eq!(t1.heads.len(), geo.layers * geo.heads);
    assert_eq!(t1.heads, t2.heads);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("minilm.trace");
    t1.write(&path).unwrap();
    let (header, heads) = sprint_core::trace::read_trace(&path).unwrap();
    assert_eq!(header.layers as usize, geo.layers);
    assert_eq!(header.variant, "sprint");
    assert_eq!(heads, t1.heads);

    // The dense backend's trace keeps every visible key.
    let (_, rd) = m.model.embed(&batch, &dense(), true, true).unwrap();
    let td = rd.sequences[0].trace.as_ref().unwrap();
    assert_eq!(td.heads.len(), geo.layers * geo.heads);
    let n = batch.seq_len() as u32;
    assert!(
        td.heads
            .iter()
            .all(|h| h.records.iter().all(|r| r.kept == n))
    );
}
