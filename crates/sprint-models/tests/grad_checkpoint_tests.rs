//! Gradient checkpointing of the soft forward (`SoftModel::forward_train`): the gradients of
//! a loss built from the output and the kept sum, with every layer recomputed in the
//! backward, against the plain full-tape backward of the same forward (the reference),
//! on real weights: SmolLM2 (Llama: grouped-query attention, rotary, the datapath's
//! comparator and recheck, trainable RMS-norm gains, per-layer thresholds broadcast to the
//! heads, a padded batch) and MiniLM (BERT: trainable embedding norm, LayerNorms and
//! biases, per-head thresholds, exact scores), and a frozen model (thresholds only).
//!
//! Tolerance: none. The checkpointed backward runs the same operations and sums each
//! gradient's contributions in the same order, so every gradient, the output and the loss
//! must be the same bits; a failure also prints the largest relative difference.
//!
//! Sizes: the short cases (20 and 40 tokens, padded batches) cover every path cheaply; the
//! realistic ones run 256-token windows of Austen (the text `sprint thresholds learn
//! --task ppl-austen` trains on; its recipes use 256 and 512) through SmolLM2 with the
//! datapath and through MiniLM, where the tape checkpointing drops is hundreds of MB.

mod common;

use candle_core::backprop::GradStore;
use candle_core::{Device, Tensor, Var};
use common::asset_dir;
use sprint_assets::Asset;
use sprint_core::config::AttentionConfig;
use sprint_models::soft::{SoftMask, SoftModel, Trainable};
use sprint_models::{LoadedModel, TokenBatch, load_path};

/// `sum(output * target) + 3 (kept / visible - 0.3)^2` (decoders: through the language-model
/// head on every position, so its tape and gradient are part of the comparison).
fn loss(soft: &SoftModel, out: &Tensor, kept: &Tensor, visible: f64) -> Tensor {
    let y = if out.dims().len() == 3 {
        soft.logits(out).unwrap()
    } else {
        out.clone()
    };
    let n = y.elem_count();
    let target: Vec<f32> = (0..n)
        .map(|i| ((i * 37 % 11) as f32 - 5.0) / 50.0)
        .collect();
    let target = Tensor::from_vec(target, y.dims(), &Device::Cpu).unwrap();
    let task = (y * target).unwrap().sum_all().unwrap();
    let excess = (kept / visible)
        .unwrap()
        .affine(1.0, -0.3)
        .unwrap()
        .sqr()
        .unwrap()
        .affine(3.0, 0.0)
        .unwrap();
    (task + excess).unwrap()
}

/// The loss's bits and the gradients of `params` (name, variable) from one training
/// forward and backward, checkpointed or not.
fn gradients(
    soft: &SoftModel,
    batch: &TokenBatch,
    mask: SoftMask,
    checkpoint: bool,
    params: &[(String, Tensor)],
) -> (u32, Vec<Vec<f32>>) {
    let f = soft.forward_train(batch, mask, checkpoint).unwrap();
    assert_eq!(f.checkpointed(), checkpoint);
    let l = loss(soft, &f.output, &f.kept, f.visible);
    let bits = l.to_scalar::<f32>().unwrap().to_bits();
    let g: GradStore = f.backward(l).unwrap();
    let grads = params
        .iter()
        .map(|(name, t)| {
            let gt = g.get(t).unwrap_or_else(|| panic!("no gradient for {name}"));
            assert_eq!(gt.dims(), t.dims(), "{name}");
            common::values(gt)
        })
        .collect();
    (bits, grads)
}

/// Asserts the two runs give the same bits, printing the largest relative difference of
/// each parameter that differs.
fn assert_same(
    params: &[(String, Tensor)],
    plain: &(u32, Vec<Vec<f32>>),
    ck: &(u32, Vec<Vec<f32>>),
) {
    assert_eq!(plain.0, ck.0, "loss differs");
    let mut nonzero = 0;
    let mut differ = Vec::new();
    for ((name, _), (a, b)) in params.iter().zip(plain.1.iter().zip(&ck.1)) {
        nonzero += a.iter().filter(|x| **x != 0.0).count();
        let same = a
            .iter()
            .zip(b)
            .all(|(x, y)| x.to_bits() == y.to_bits() || *x == *y);
        if !same {
            let scale = a.iter().fold(0f64, |m, x| m.max(f64::from(x.abs())));
            let d = a
                .iter()
                .zip(b)
                .fold(0f64, |m, (x, y)| m.max(f64::from((x - y).abs())));
            differ.push(format!(
                "{name}: max |diff| {d:.3e} relative {:.3e}",
                d / scale
            ));
        }
    }
    assert!(
        nonzero > 0,
        "every gradient is zero: the test checks nothing"
    );
    assert!(
        differ.is_empty(),
        "checkpointed gradients differ:\n{}",
        differ.join("\n")
    );
}

/// Per-head thresholds as a variable, `[layers, heads]`, `value(i)` at flat index `i`.
fn per_head_thresholds(soft: &SoftModel, value: impl Fn(usize) -> f32) -> Var {
    let (l, h) = (soft.layers(), soft.heads());
    Var::from_vec(
        (0..l * h).map(value).collect::<Vec<_>>(),
        (l, h),
        &Device::Cpu,
    )
    .unwrap()
}

/// The gradients of the thresholds `th` and of `vars`, checkpointed and from the full
/// tape, are the same bits (and the losses too).
fn check_same_gradients(
    soft: &SoftModel,
    batch: &TokenBatch,
    mask: SoftMask,
    th: &Var,
    vars: &[Trainable],
) {
    let mut params = vec![("thresholds".to_string(), th.as_tensor().clone())];
    params.extend(named(vars));
    let plain = gradients(soft, batch, mask, false, &params);
    let ck = gradients(soft, batch, mask, true, &params);
    assert_same(&params, &plain, &ck);
}

fn named(vars: &[Trainable]) -> Vec<(String, Tensor)> {
    vars.iter()
        .map(|t| (t.name.clone(), t.var.as_tensor().clone()))
        .collect()
}

/// `n` windows of about `words` words of Austen's *Persuasion*, from its 2000th line on, or
/// `None` after printing why the test is skipped.
fn austen_windows(n: usize, words: usize) -> Option<Vec<String>> {
    let cache = sprint_assets::Cache::from_env();
    let novels = match sprint_assets::data::austen(&cache) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("SKIPPED (asset missing): {e}");
            return None;
        }
    };
    let text = &novels.last().expect("six novels").text;
    let body: Vec<&str> = text
        .lines()
        .skip(2000)
        .flat_map(str::split_whitespace)
        .collect();
    Some(body.chunks(words).take(n).map(|c| c.join(" ")).collect())
}

/// Gains moved off their stored values, so that each layer differs from the model's.
fn perturb(vars: &[Trainable]) {
    for (i, t) in vars.iter().enumerate() {
        let v: Vec<f32> = common::values(t.var.as_tensor())
            .iter()
            .enumerate()
            .map(|(j, x)| x * (1.0 + 0.01 * ((i + j) % 5) as f32))
            .collect();
        t.var
            .set(&Tensor::from_vec(v, t.var.dims(), &Device::Cpu).unwrap())
            .unwrap();
    }
}

fn smollm2() -> Option<LoadedModel> {
    let dir = asset_dir(Asset::SmolLm2)?;
    Some(load_path(&dir.join(sprint_models::model::SMOLLM2_GGUF)).unwrap())
}

/// SmolLM2 with trainable gains, per-layer thresholds (a `[layers, 1]` variable broadcast
/// to the heads, as `sprint thresholds learn --per-layer` does) and the datapath (SPRINT
/// with the recheck), a batch of two sequences, one padded.
#[test]
fn llama_checkpointed_gradients_are_the_full_tape_gradients() {
    let Some(m) = smollm2() else { return };
    let mut soft = SoftModel::new(&m.model).unwrap();
    let vars = soft.make_trainable().unwrap();
    perturb(&vars);
    let batch = m
        .encode_batch(&[common::SENTENCES[1], common::SENTENCES[0]], Some(20))
        .unwrap();
    assert!(
        batch.valid[1].iter().any(|v| !v),
        "the second sequence is padded"
    );
    let (l, h) = (soft.layers(), soft.heads());
    let th = Var::from_vec(
        (0..l)
            .map(|i| 1.0 + 0.05 * (i % 4) as f32)
            .collect::<Vec<_>>(),
        (l, 1),
        &Device::Cpu,
    )
    .unwrap();
    let wide = th.as_tensor().broadcast_as((l, h)).unwrap();
    let cfg = AttentionConfig::default();
    assert!(cfg.variant.prunes_in_memory());
    let mask = SoftMask {
        thresholds: &wide,
        temperature: 0.5,
        datapath: Some(&cfg),
    };
    check_same_gradients(&soft, &batch, mask, &th, &vars);
}

/// MiniLM with trainable norms and biases (the embedding norm included: the first layer's
/// input needs its gradient), per-head thresholds as a variable, exact scores, a padded
/// batch of three; and the frozen model (only the thresholds train).
#[test]
fn bert_checkpointed_gradients_are_the_full_tape_gradients() {
    let Some(dir) = asset_dir(Asset::MiniLm) else {
        return;
    };
    let m = load_path(&dir).unwrap();
    let batch = m
        .encode_batch(
            &[
                common::SENTENCES[0],
                common::SENTENCES[1],
                common::SENTENCES[3],
            ],
            Some(40),
        )
        .unwrap();
    let frozen = SoftModel::new(&m.model).unwrap();
    let mut soft = frozen.clone();
    let vars = soft.make_trainable().unwrap();
    let th = per_head_thresholds(&soft, |i| -0.5 + 0.1 * (i % 7) as f32);
    let mask = SoftMask {
        thresholds: th.as_tensor(),
        temperature: 1.0,
        datapath: None,
    };
    check_same_gradients(&soft, &batch, mask, &th, &vars);

    check_same_gradients(&frozen, &batch, mask, &th, &[]);
}

/// SmolLM2 at a realistic size: one 256-token window of Austen, trainable gains, per-head
/// thresholds near the scores' upper quantiles (so that the mask is neither all ones nor
/// all zeros), the datapath with its recheck: the checkpointed gradients are the full-tape
/// gradients, bit for bit.
#[test]
fn llama_checkpointed_gradients_at_256_tokens_of_austen() {
    let Some(m) = smollm2() else { return };
    let Some(text) = austen_windows(1, 400) else {
        return;
    };
    let mut soft = SoftModel::new(&m.model).unwrap();
    let vars = soft.make_trainable().unwrap();
    perturb(&vars);
    let batch = m.encode_batch(&[text[0].as_str()], Some(256)).unwrap();
    assert_eq!(batch.valid[0].iter().filter(|v| **v).count(), 256);
    let th = per_head_thresholds(&soft, |i| 2.0 + 0.25 * (i % 5) as f32);
    let cfg = AttentionConfig::default();
    let mask = SoftMask {
        thresholds: th.as_tensor(),
        temperature: 0.5,
        datapath: Some(&cfg),
    };
    check_same_gradients(&soft, &batch, mask, &th, &vars);
}

/// MiniLM at a realistic size: two Austen windows of 256 tokens and fewer (padded), norms
/// and biases trainable, per-head thresholds, exact scores.
#[test]
fn bert_checkpointed_gradients_at_256_tokens_of_austen() {
    let Some(dir) = asset_dir(Asset::MiniLm) else {
        return;
    };
    let Some(text) = austen_windows(2, 300) else {
        return;
    };
    let m = load_path(&dir).unwrap();
    let short: String = text[1]
        .split_whitespace()
        .take(120)
        .collect::<Vec<_>>()
        .join(" ");
    let batch = m
        .encode_batch(&[text[0].as_str(), short.as_str()], Some(256))
        .unwrap();
    assert_eq!(batch.valid[0].len(), 256);
    assert!(
        batch.valid[1].iter().any(|v| !v),
        "the second window is padded"
    );
    let mut soft = SoftModel::new(&m.model).unwrap();
    let vars = soft.make_trainable().unwrap();
    let th = per_head_thresholds(&soft, |i| 0.5 + 0.2 * (i % 7) as f32);
    let mask = SoftMask {
        thresholds: th.as_tensor(),
        temperature: 1.0,
        datapath: None,
    };
    check_same_gradients(&soft, &batch, mask, &th, &vars);
}
