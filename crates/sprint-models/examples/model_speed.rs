//! Times forward passes of the real models with the dense and SPRINT backends and reports
//! the peak resident memory.
//!
//! ```text
//! cargo run --release -p sprint-models --example model_speed -- minilm 256 [reps]
//! cargo run --release -p sprint-models --example model_speed -- smollm2 512 [reps]
//! cargo run --release -p sprint-models --example model_speed -- smollm2 4096 1 dense
//! ```
//! Inputs are real text (a fixed English paragraph repeated) cut to exactly N tokens; one
//! sequence per forward. SPRINT runs with per-layer threshold 0 logits, fixed-point
//! recompute, no noise.

use std::sync::Mutex;
use std::time::Instant;

use candle_core::Tensor;
use sprint_core::config::{AttentionConfig, Thresholds, Variant};
use sprint_models::attention::{Attention, AttentionCall};
use sprint_models::record::Recorder;
use sprint_models::{TokenBatch, load};

/// Wraps a backend and adds up the time spent inside it.
struct Timed {
    inner: Box<dyn Attention>,
    seconds: Mutex<f64>,
}

impl Attention for Timed {
    fn variant(&self) -> Variant {
        self.inner.variant()
    }
    fn config(&self) -> &AttentionConfig {
        self.inner.config()
    }
    fn attend(&self, call: &AttentionCall, rec: &mut Recorder) -> sprint_models::Result<Tensor> {
        let t = Instant::now();
        let out = self.inner.attend(call, rec);
        *self.seconds.lock().unwrap() += t.elapsed().as_secs_f64();
        out
    }
}

const TEXT: &str = "It is a truth universally acknowledged, that a single man in possession of a good fortune, must be in want of a wife. However little known the feelings or views of such a man may be on his first entering a neighbourhood, this truth is so well fixed in the minds of the surrounding families, that he is considered the rightful property of some one or other of their daughters. ";

fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kib| kib / 1024.0)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let name = args.first().map_or("minilm", String::as_str);
    let n: usize = args.get(1).map_or(Ok(256), |s| s.parse())?;
    let reps: usize = args.get(2).map_or(Ok(3), |s| s.parse())?;
    let only = args.get(3).map(String::as_str);
    let t0 = Instant::now();
    let m = load(name, &sprint_assets::Cache::from_env())?;
    eprintln!("loaded {name} in {:.2} s", t0.elapsed().as_secs_f64());
    let tok = m.tokenizer()?;
    let mut text = String::new();
    while tok.encode(&text, None)?.len() < n + 8 {
        text.push_str(TEXT);
    }
    let ids = tok.encode(&text, Some(n))?;
    let batch = TokenBatch::from_sequences(vec![ids], tok.pad_id())?;
    let geo = m.model.geometry();
    for variant in [Variant::Dense, Variant::Sprint] {
        if only.is_some_and(|o| o != variant.name()) {
            continue;
        }
        let cfg = AttentionConfig {
            variant,
            ..AttentionConfig::default()
        };
        let th = Thresholds {
            values: vec![vec![0.0; geo.heads]; geo.layers],
        };
        let attn = Timed {
            inner: sprint_models::backend(cfg, th)?,
            seconds: Mutex::new(0.0),
        };
        let mut times = Vec::new();
        let mut kept = 0.0;
        for _ in 0..reps {
            let t = Instant::now();
            let rec = if geo.causal {
                m.model.logits(&batch, &attn, false)?.1
            } else {
                m.model.embed(&batch, &attn, false, true)?.1
            };
            times.push(t.elapsed().as_secs_f64());
            kept = rec.totals().kept_fraction();
        }
        let in_attention = *attn.seconds.lock().unwrap() / reps as f64;
        times.sort_by(f64::total_cmp);
        let best = times[0];
        println!(
            "{name} {n} tokens {:<7} best {:.3} s ({:.0} tokens/s), median {:.3} s (mean {:.3} s in attention), kept {:.3}, peak RSS {:.0} MiB, {} threads",
            variant.name(),
            best,
            n as f64 / best,
            times[times.len() / 2],
            in_attention,
            kept,
            peak_rss_mib(),
            rayon::current_num_threads()
        );
    }
    Ok(())
}
