//! SpAtten in a model forward: the cascade state lives in the forward pass (one per
//! sequence, none left over between passes), keeping everything equals dense attention,
//! the schedule shows in the per-layer counts and the trace, and a sequence gives the same
//! logits alone as in a padded batch. A generated 4-layer GPT-2 with a fixed seed.

mod common;

use common::values;
use sprint_core::config::{AttentionConfig, Variant};
use sprint_models::attention::DenseAttention;
use sprint_models::checkpoint::{generate_gpt2, save_checkpoint};
use sprint_models::gpt2::{Gpt2Config, Gpt2Model};
use sprint_models::spatten::SpattenAttention;
use sprint_models::{Model, TokenBatch, backend, load_path};

fn model(dir: &std::path::Path) -> Gpt2Model {
    let cfg = Gpt2Config {
        vocab_size: 64,
        n_positions: 64,
        n_embd: 32,
        n_layer: 4,
        n_head: 4,
        n_inner: Some(48),
        activation_function: "gelu_new".into(),
        layer_norm_epsilon: 1e-5,
        model_type: None,
    };
    save_checkpoint(dir, &cfg, "gpt2", &generate_gpt2(&cfg, 25).unwrap()).unwrap();
    match load_path(dir).unwrap().model {
        Model::Gpt2(m) => m,
        _ => panic!("not gpt2"),
    }
}

fn ids(n: usize, mul: u32) -> Vec<u32> {
    (0..n as u32).map(|i| (i * mul + 3) % 60).collect()
}

fn spatten(token_keep: &[f32], head_keep: &[f32]) -> SpattenAttention {
    let mut cfg = AttentionConfig {
        variant: Variant::Spatten,
        ..AttentionConfig::default()
    };
    cfg.peers.spatten.token_keep = token_keep.to_vec();
    cfg.peers.spatten.head_keep = head_keep.to_vec();
    SpattenAttention::new(cfg).unwrap()
}

#[test]
fn keeping_everything_is_dense_attention() {
    let dir = tempfile::tempdir().unwrap();
    let m = model(dir.path());
    let b = TokenBatch::from_sequences(vec![ids(20, 7), ids(13, 11)], 0).unwrap();
    let dense = DenseAttention::new(AttentionConfig::default());
    let (want, _) = m.forward(&b, &dense, false).unwrap();
    let (got, rec) = m.forward(&b, &spatten(&[1.0], &[1.0]), false).unwrap();
    let d = values(&want)
        .iter()
        .zip(values(&got))
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(d < 1e-4, "max |diff| {d}");
    let t = rec.totals();
    assert_eq!(t.kept, t.visible);
    assert_eq!(t.datapath.cascade_head_pruned, 0);
}

#[test]
fn the_schedule_shows_per_layer_and_no_state_outlives_a_forward_pass() {
    let dir = tempfile::tempdir().unwrap();
    let m = model(dir.path());
    let a = ids(24, 7);
    let b = TokenBatch::from_sequences(vec![a.clone()], 0).unwrap();
    let attn = spatten(&[1.0, 0.5, 0.5, 0.25], &[1.0, 1.0, 0.5, 0.5]);
    let (first, rec) = m.forward(&b, &attn, true).unwrap();
    // A second pass starts again from no importance: the same logits.
    let (second, _) = m.forward(&b, &attn, false).unwrap();
    assert_eq!(values(&first), values(&second));
    let trace = rec.sequences[0].trace.as_ref().unwrap();
    assert_eq!(trace.header.variant, "spatten");
    let tokens: Vec<u64> = (0..4)
        .map(|l| trace.heads[l * 4].stats.cascade_tokens_kept)
        .collect();
    assert_eq!(tokens, vec![24, 12, 12, 6]);
    let pruned: Vec<u64> = (0..4)
        .map(|l| {
            (0..4)
                .map(|h| trace.heads[l * 4 + h].stats.cascade_head_pruned)
                .sum()
        })
        .collect();
    assert_eq!(pruned, vec![0, 0, 2, 2]);
    // Fewer pairs kept in the later layers.
    let per_layer = rec.per_layer();
    assert_eq!(per_layer[0].kept, per_layer[0].visible);
    assert!(per_layer[3].kept < per_layer[1].kept);
}

#[test]
fn a_sequence_gives_the_same_logits_alone_and_in_a_padded_batch() {
    let dir = tempfile::tempdir().unwrap();
    let m = model(dir.path());
    let cfg = {
        let mut c = AttentionConfig {
            variant: Variant::Spatten,
            ..AttentionConfig::default()
        };
        c.peers.spatten.token_keep = vec![1.0, 0.6, 0.4, 0.3];
        c.peers.spatten.head_keep = vec![1.0, 0.75];
        c
    };
    let attn = backend(cfg, sprint_core::config::Thresholds { values: vec![] }).unwrap();
    let (short, long) = (ids(11, 5), ids(19, 3));
    let alone = TokenBatch::from_sequences(vec![short.clone()], 0).unwrap();
    let both = TokenBatch::from_sequences(vec![long, short], 0).unwrap();
    let (a, _) = m.forward(&alone, attn.as_ref(), false).unwrap();
    let (b, _) = m.forward(&both, attn.as_ref(), false).unwrap();
    let a = values(&a.get(0).unwrap());
    let b = values(&b.get(1).unwrap().narrow(0, 0, 11).unwrap());
    let d = a
        .iter()
        .zip(&b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0f32, f32::max);
    assert!(d < 1e-4, "max |diff| {d}");
}
