//! Decode with a growing KV cache, against hand counts: the write stall's closed form,
//! the growing key count, GQA sharing of a group's K/V, and the new token's writes.

mod common;

use sprint_sim::decode::{DecodeFile, run_decode, step_write_stall};

fn small(layers: u32, heads: u32, kv: u32, prompt: u32, new: u32) -> DecodeFile {
    let mut f = DecodeFile::smollm2().unwrap();
    f.shape.layers.value = layers;
    f.shape.heads.value = heads;
    f.shape.kv_heads.value = kv;
    f.shape.prompt_tokens.value = prompt;
    f.shape.new_tokens.value = new;
    f
}

/// SmolLM2 on s-sprint, per (layer, step): 3 K/V heads x (K_MSB, K_LSB, V) + 9 Q = 18
/// writes over 16 banks -> 2 x tWP (10) = 20; 3 x 128 + 9 x 64 = 960 B = 15 bursts over 4
/// channels -> 4 x tBURST (10) = 40. Total 60 cycles. The baseline writes K whole: 15
/// writes -> 1 x tWP.
#[test]
fn write_stall_closed_form() {
    let f = DecodeFile::smollm2().unwrap();
    let d = common::design("s-sprint", &[]);
    assert_eq!(step_write_stall(&d, &f), (60, 18));
    let b = common::design("s-baseline", &[]);
    assert_eq!(step_write_stall(&b, &f), (50, 15));
}

/// 1 layer, 2 query heads sharing 1 K/V head, prompt 8, 4 new tokens, every key kept.
/// Step t attends to 9 + t keys. Whole-head reuse (the cache fits): the group's second head
/// reuses what the first fetched, so K fetched = 9 + 10 + 11 + 12 = 42; with no reuse each
/// head fetches its own: 84. Writes per step: K + V of the K/V head (128 B), Q of both
/// heads (128 B).
#[test]
fn growing_cache_and_gqa_sharing() {
    let f = small(1, 2, 1, 8, 4);
    let st = common::stats(1.0, 1.0, 1.0);
    let ds = [
        common::design("s-baseline", &[]),
        common::design("s-baseline", &["design.reuse=\"none\""]),
    ];
    let t = run_decode(&ds, &f, &st).unwrap();
    assert_eq!(t[0].totals.keys_scored, 2 * 42);
    assert_eq!(t[0].totals.k_fetched, 42);
    assert_eq!(t[1].totals.k_fetched, 84);
    assert_eq!(t[0].totals.written_bytes, 4 * 128);
    assert_eq!(t[0].totals.written_q_bytes, 4 * 128);
    assert_eq!(
        t[0].totals.actions.reram_write_bits,
        8 * (4 * 128 + 4 * 128)
    );
    assert_eq!(t[0].totals.dense_ops, 4 * 64 * 2 * 42);
    assert_eq!(t[0].write_stall_cycles, 4 * step_write_stall(&ds[0], &f).0);
}

/// The decode is deterministic and a bad shape names its key.
#[test]
fn deterministic_and_bad_shapes_named() {
    let f = small(2, 3, 1, 16, 8);
    let st = common::stats(0.3, 0.8, 0.8);
    let ds = [common::design("s-sprint", &[])];
    assert_eq!(
        run_decode(&ds, &f, &st).unwrap(),
        run_decode(&ds, &f, &st).unwrap()
    );
    let text = sprint_sim::decode::SMOLLM2.replace("value = 3, source", "value = 4, source");
    let e = DecodeFile::from_toml_str(&text, "x.toml")
        .unwrap_err()
        .to_string();
    assert!(e.contains("shape.kv_heads"), "{e}");
}
