//! SmolLM2-135M-Instruct (real GGUF weights from the asset cache): tokenizer ids, dense
//! logits against candle-transformers' quantized_llama, padding, and every attention variant.

mod common;

use std::io::Cursor;
use std::sync::OnceLock;

use candle_core::quantized::gguf_file::{self, Content};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{Device, IndexOp, Tensor};
use common::{asset_dir, max_abs_diff, values};
use sprint_assets::Asset;
use sprint_core::config::{AttentionConfig, RecomputeMode, Thresholds, Variant};
use sprint_models::attention::{DenseAttention, SprintAttention};
use sprint_models::backend;
use sprint_models::gguf::GgufFile;
use sprint_models::model::SMOLLM2_GGUF;
use sprint_models::{LoadedModel, TokenBatch, load_path};

const PROMPT: &str = "It is a truth universally acknowledged, that a single man in possession of a good fortune, must be in want of a wife.";

fn gguf_path() -> Option<std::path::PathBuf> {
    asset_dir(Asset::SmolLm2).map(|d| d.join(SMOLLM2_GGUF))
}

fn smollm2() -> Option<&'static LoadedModel> {
    static MODEL: OnceLock<Option<LoadedModel>> = OnceLock::new();
    MODEL
        .get_or_init(|| gguf_path().map(|p| load_path(&p).expect("SmolLM2 loads")))
        .as_ref()
        .or_else(|| {
            eprintln!("SKIPPED: SmolLM2 is not in the asset cache");
            None
        })
}

fn dense() -> DenseAttention {
    DenseAttention::new(AttentionConfig::default())
}

/// Ids from Python (`tokenizers` 0.23.2, `gguf` 0.19.0): the GGUF's `tokenizer.ggml.tokens`
/// and `tokenizer.ggml.merges` into `tokenizers.models.BPE(vocab, merges)`, pre-tokenizer
/// `Sequence([Digits(individual_digits=True), ByteLevel(add_prefix_space=False,
/// trim_offsets=True, use_regex=True)])` (SmolLM2's own `tokenizer.json` pipeline, llama.cpp's
/// `smollm` pre-tokenizer), the 17 control tokens (type 3) added as special tokens;
/// `encode(text).ids`. Decoding each back gives the text.
#[test]
fn token_ids_match_python() {
    let Some(m) = smollm2() else { return };
    let tok = m.tokenizer().unwrap();
    let cases: [(&str, &[u32]); 4] = [
        (
            "The quick brown fox jumps over the lazy dog.",
            &[504, 2365, 6354, 16438, 27003, 690, 260, 23790, 2767, 30],
        ),
        (
            "Shares in BBC Worldwide rose 12.5% in 2004, analysts said!",
            &[
                67, 3250, 375, 281, 15307, 37539, 8739, 216, 33, 34, 30, 37, 21, 281, 216, 34, 32,
                32, 36, 28, 21273, 1137, 17,
            ],
        ),
        (
            "  Multiple   spaces,\ttabs and new\nlines; héllo naïve café — ok?",
            &[
                216, 16560, 256, 5600, 28, 197, 100, 7366, 284, 725, 198, 5110, 43, 294, 2756,
                31394, 15486, 46494, 37366, 1841, 10907, 47,
            ],
        ),
        (
            "<|im_start|>user\nWhat's 1234+5678?<|im_end|>",
            &[
                1, 4093, 198, 1780, 506, 216, 33, 34, 35, 36, 27, 37, 38, 39, 40, 47, 2,
            ],
        ),
    ];
    for (text, ids) in cases {
        assert_eq!(tok.encode(text, None).unwrap(), ids, "{text:?}");
        assert_eq!(tok.inner().decode(ids, false).unwrap(), text);
    }
    assert_eq!(tok.pad_id(), 2);
}

/// candle-transformers' quantized_llama fed the same f32 weights: every tensor of the GGUF
/// is dequantised and re-stored as a `GgmlDType::F32` QTensor in an in-memory GGUF (same
/// metadata), so its matmuls run on f32 weights rather than the Q4_1 kernels (which quantise
/// activations to 8 bits and shift logits by far more than 1e-3).
fn reference_f32(file: &GgufFile) -> candle_transformers::models::quantized_llama::ModelWeights {
    let dev = Device::Cpu;
    let content = file.content();
    let mut reader = std::io::BufReader::new(std::fs::File::open(file.path()).unwrap());
    let mut names: Vec<&String> = content.tensor_infos.keys().collect();
    names.sort();
    let tensors: Vec<(String, QTensor)> = names
        .iter()
        .map(|n| {
            let t = content
                .tensor(&mut reader, n, &dev)
                .unwrap()
                .dequantize(&dev)
                .unwrap();
            ((*n).clone(), QTensor::quantize(&t, GgmlDType::F32).unwrap())
        })
        .collect();
    let meta: Vec<(&str, &gguf_file::Value)> = content
        .metadata
        .iter()
        .filter(|(k, _)| k.starts_with("llama.") || k.starts_with("general."))
        .map(|(k, v)| (k.as_str(), v))
        .collect();
    let tensor_refs: Vec<(&str, &QTensor)> = tensors.iter().map(|(n, t)| (n.as_str(), t)).collect();
    let mut buf = Cursor::new(Vec::new());
    gguf_file::write(&mut buf, &meta, &tensor_refs).unwrap();
    buf.set_position(0);
    let ct = Content::read(&mut buf).unwrap();
    candle_transformers::models::quantized_llama::ModelWeights::from_gguf(ct, &mut buf, &dev)
        .unwrap()
}

#[test]
fn dense_logits_match_quantized_llama_on_f32_weights() {
    let Some(m) = smollm2() else { return };
    let path = gguf_path().unwrap();
    let file = GgufFile::open(&path).unwrap();
    let ids = m.tokenizer().unwrap().encode(PROMPT, None).unwrap();
    let n = ids.len();
    let batch = TokenBatch::from_sequences(vec![ids.clone()], 2).unwrap();
    let (logits, rec) = m.model.logits(&batch, &dense(), false).unwrap();
    assert_eq!(logits.dims(), &[1, n, 49152]);
    let ours = logits.i((0, n - 1)).unwrap();

    let input = Tensor::new(ids.as_slice(), &Device::Cpu)
        .unwrap()
        .unsqueeze(0)
        .unwrap();
    let mut reference = reference_f32(&file);
    let theirs = reference.forward(&input, 0).unwrap().squeeze(0).unwrap();
    let diff = max_abs_diff(&ours, &theirs);
    eprintln!(
        "SmolLM2 last-position logits vs quantized_llama (f32 weights), {n} tokens: max |diff| = {diff:.2e}"
    );
    assert!(diff < 1e-3, "max |diff| {diff}");
    // Same arg-max prediction.
    let am = |t: &Tensor| t.argmax(0).unwrap().to_scalar::<u32>().unwrap();
    assert_eq!(am(&ours), am(&theirs));

    // For the record: the Q4_1 kernels differ much more.
    let mut reader = std::io::BufReader::new(std::fs::File::open(&path).unwrap());
    let ct = Content::read(&mut reader).unwrap();
    let mut q4 = candle_transformers::models::quantized_llama::ModelWeights::from_gguf(
        ct,
        &mut reader,
        &Device::Cpu,
    )
    .unwrap();
    let q4_logits = q4.forward(&input, 0).unwrap().squeeze(0).unwrap();
    eprintln!(
        "  (quantized_llama with its Q4_1 kernels: max |diff| = {:.2e})",
        max_abs_diff(&ours, &q4_logits)
    );
    let t = rec.totals();
    assert_eq!(t.visible, (n * (n + 1) / 2 * 9 * 30) as u64);
}

#[test]
fn right_padding_does_not_change_real_positions() {
    let Some(m) = smollm2() else { return };
    let tok = m.tokenizer().unwrap();
    let batch = tok
        .encode_batch(&[PROMPT, "Call me Ishmael."], None)
        .unwrap();
    let (both, _) = m.model.logits(&batch, &dense(), false).unwrap();
    let alone =
        TokenBatch::from_sequences(vec![tok.encode("Call me Ishmael.", None).unwrap()], 2).unwrap();
    let n = alone.seq_len();
    let (single, _) = m.model.logits(&alone, &dense(), false).unwrap();
    let a = both.i((1, ..n)).unwrap();
    let b = single.i(0).unwrap();
    let diff = max_abs_diff(&a, &b);
    assert!(diff < 1e-3, "padding changed real positions by {diff}");
}

#[test]
fn all_four_variants_run_with_gqa() {
    let Some(m) = smollm2() else { return };
    let geo = m.model.geometry();
    assert_eq!(
        (geo.layers, geo.heads, geo.kv_heads, geo.head_dim),
        (30, 9, 3, 64)
    );
    let batch = m.encode_batch(&[PROMPT], Some(24)).unwrap();
    let n = batch.seq_len();
    let (dense_logits, _) = m.model.logits(&batch, &dense(), false).unwrap();
    let dense_last = values(&dense_logits.i((0, n - 1)).unwrap());
    for variant in Variant::ALL {
        let cfg = AttentionConfig {
            variant,
            seed: 3,
            ..AttentionConfig::default()
        };
        let th = Thresholds {
            values: vec![vec![-1.0; geo.heads]; geo.layers],
        };
        let attn = backend(cfg, th).unwrap();
        let (logits, rec) = m
            .model
            .logits(&batch, attn.as_ref(), variant == Variant::Sprint)
            .unwrap();
        let last = values(&logits.i((0, n - 1)).unwrap());
        assert!(last.iter().all(|x| x.is_finite()), "{}", variant.name());
        let t = rec.totals();
        let top = |v: &[f32]| {
            v.iter()
                .enumerate()
                .max_by(|a, b| a.1.total_cmp(b.1))
                .map(|(i, _)| i)
                .unwrap()
        };
        eprintln!(
            "SmolLM2 {:<20} kept {:.3} softmax-kept {:.3} cosine(last logits vs dense) {:.4} top-1 {} (dense {})",
            variant.name(),
            t.kept_fraction(),
            t.softmax_fraction(),
            common::cosine(&last, &dense_last),
            top(&last),
            top(&dense_last)
        );
        assert_eq!(t.visible, (n * (n + 1) / 2 * geo.heads * geo.layers) as u64);
        if variant != Variant::Dense {
            assert!(
                t.softmax_kept < t.visible,
                "{} pruned nothing",
                variant.name()
            );
        }
        if variant == Variant::Sprint {
            let trace = rec.sequences[0].trace.as_ref().unwrap();
            assert_eq!(trace.heads.len(), geo.layers * geo.heads);
            assert_eq!(trace.header.kv_heads, 3);
            assert!(trace.header.causal);
            assert!(trace.heads.iter().all(|h| h.kv_head == h.head / 3));
        }
    }
    // Float recompute with no threshold is dense attention.
    let cfg = AttentionConfig {
        variant: Variant::Sprint,
        recompute: RecomputeMode::Float,
        ..AttentionConfig::default()
    };
    let th = geo.thresholds(&cfg).unwrap();
    let (logits, _) = m
        .model
        .logits(&batch, &SprintAttention::new(cfg, th).unwrap(), false)
        .unwrap();
    let diff = max_abs_diff(&logits, &dense_logits);
    assert!(diff < 1e-3, "sprint(-inf, float) vs dense: {diff}");
}
