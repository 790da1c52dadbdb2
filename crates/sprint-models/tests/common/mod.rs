//! Helpers shared by the model tests: asset lookup with a visible skip, tensor comparison.
#![allow(dead_code)]

pub mod reference;

use std::path::PathBuf;

use candle_core::Tensor;
use sprint_assets::{Asset, Cache};

/// Folder of `asset`, or `None` after printing why the test is skipped.
pub fn asset_dir(asset: Asset) -> Option<PathBuf> {
    match Cache::from_env().require(asset) {
        Ok(p) => Some(p),
        Err(e) => {
            eprintln!("SKIPPED (asset missing): {e}");
            None
        }
    }
}

/// Flattened f32 values of a tensor.
pub fn values(t: &Tensor) -> Vec<f32> {
    t.flatten_all().unwrap().to_vec1::<f32>().unwrap()
}

/// Largest absolute difference between two tensors of the same shape.
pub fn max_abs_diff(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.dims(), b.dims(), "shapes differ");
    values(a)
        .iter()
        .zip(values(b))
        .map(|(x, y)| (f64::from(*x) - f64::from(y)).abs())
        .fold(0.0, f64::max)
}

/// Cosine similarity of two equally long vectors.
pub fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let (mut ab, mut aa, mut bb) = (0f64, 0f64, 0f64);
    for (&x, &y) in a.iter().zip(b) {
        let (x, y) = (f64::from(x), f64::from(y));
        ab += x * y;
        aa += x * x;
        bb += y * y;
    }
    ab / (aa.sqrt() * bb.sqrt())
}

/// English sentences of different lengths (so a batch has padding).
pub const SENTENCES: [&str; 4] = [
    "The quick brown fox jumps over the lazy dog.",
    "Shares in BBC Worldwide rose 12.5% in 2004, analysts said, as the broadcaster's commercial arm reported record profits from overseas sales of its programmes.",
    "England's rugby coach named an unchanged side for Saturday's Six Nations match against Wales in Cardiff.",
    "A new mobile phone that can play music and video went on sale today.",
];
