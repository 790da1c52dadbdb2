//! Real transformer forward passes on candle with SPRINT attention plugged in.
//!
//! - Architectures written here on candle tensors: BERT and ALBERT encoders (mean pooling
//!   for sentence embeddings), GPT-2 and Llama-family decoders (full-sequence causal forward,
//!   every position's logits), and ViT. The hot layers (linear + bias + activation,
//!   residual + layer norm, head split/merge, dense attention) run fused f32 kernels
//!   ([`kernels`]) on the tensors' data.
//! - Attention is the [`attention::Attention`] trait: [`attention::DenseAttention`] (float,
//!   fused kernel) and [`attention::SprintAttention`] (dense, runtime pruning, SPRINT without
//!   recompute, SPRINT, through `sprint_attention::run_layer`), and
//!   [`spatten::SpattenAttention`] for SpAtten, whose cascade pruning carries state across
//!   the layers of a forward pass (in the pass's [`record::Recorder`]). Thresholds and the
//!   noise seed come in with the backend; every forward can collect the SPRINT trace.
//! - Loading: Hugging Face checkpoint folders (`config.json` + `model.safetensors` +
//!   `tokenizer.json`), GGUF files (dequantised to f32, tokenizer from the metadata), and the
//!   pinned assets by name ([`model::load`]).
//!
//! ```no_run
//! use sprint_core::config::{AttentionConfig, Variant};
//! use sprint_models::model;
//!
//! let m = model::load("minilm", &sprint_assets::Cache::from_env())?;
//! let batch = m.encode_batch(&["A sentence.", "Another one."], Some(256))?;
//! let mut cfg = AttentionConfig::default();
//! cfg.variant = Variant::Sprint;
//! let th = m.model.geometry().thresholds(&cfg)?;
//! let attn = sprint_models::backend(cfg, th)?;
//! let (embeddings, record) = m.model.embed(&batch, attn.as_ref(), false, true)?;
//! println!("{:?} kept {:.3}", embeddings.dims(), record.totals().kept_fraction());
//! # Ok::<(), sprint_models::ModelError>(())
//! ```

pub mod activation;
pub mod albert;
pub mod attention;
pub mod backend;
pub mod bert;
pub mod checkpoint;
pub mod config;
pub mod encoder;
pub mod error;
pub mod fastmath;
pub mod finetuned;
pub mod geometry;
pub mod gguf;
pub mod gpt2;
pub mod kernels;
pub mod llama;
pub mod mha;
pub mod model;
pub mod nn;
pub mod record;
pub mod soft;
pub mod spatten;
pub mod tokenizer;
pub mod vit;
pub mod weights;

pub use attention::{Attention, AttentionCall, DenseAttention, SprintAttention};
pub use backend::backend;
pub use error::{ModelError, Result};
pub use geometry::AttentionGeometry;
pub use model::{LoadedModel, Model, load, load_path};
pub use record::{KeepStats, RunRecord, SequenceTrace};
pub use tokenizer::{TextTokenizer, TokenBatch};
