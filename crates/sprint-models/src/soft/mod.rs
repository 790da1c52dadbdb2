//! Differentiable forwards with a soft pruning mask, for learning thresholds on candle's
//! autograd (LeOPArd-style, arXiv 2204.03227).
//!
//! Runtime pruning keeps key `j` for query `i` of head `h` when the score
//! `s_ij = q_i . k_j / sqrt(d)` (logit units) reaches the threshold `Th_h`; a query whose
//! every key is pruned gets a zero output. In training the hard test is replaced by the
//! mask `m_ij = sigmoid((s_ij - Th_h) / T)` (temperature `T`, logit units) over the visible
//! keys, and attention becomes
//!
//! `out_i = sum_j m_ij e_ij v_j / (sum_j m_ij e_ij + EPS)`, `e_ij = exp(s_ij - max_j s_ij)`,
//!
//! so that `T -> 0` gives exactly the pruned softmax (the row maximum is kept whenever any
//! key is, so the denominator is at least 1 and `EPS` moves the output by at most `1e-6`
//! relative). The expected kept fraction is `sum m_ij / visible pairs`.
//!
//! The model stays frozen: every linear layer is a custom op whose backward returns only
//! the gradient of its input (the weights get none), through the same fused kernel as the
//! inference forward. Norms, activations, RoPE and the attention are plain candle ops.
//! [`SoftModel::make_trainable`] turns the norms' gains and biases and the linear layers'
//! biases into variables (the bias then a separate differentiable add after the op), for
//! fine-tuning them beside the thresholds; the weight matrices stay frozen.
//!
//! One job per file: `model` the soft model, its layers and its forward; `attention` the
//! soft-masked attention, its frozen block and the datapath's decision scores; `linear` the frozen linear layers; `norm` the trainable
//! tensors and the differentiable norms; `checkpoint` the training forward with gradient
//! checkpointing and its backward; `tape` the estimate of the autograd tape it saves.

mod attention;
mod checkpoint;
mod linear;
mod model;
mod norm;
mod tape;

pub use attention::{EPS, datapath_scores, soft_attention};
pub use checkpoint::TrainingForward;
pub use model::{SoftMask, SoftModel, SoftOutput, visibility};
pub use norm::Trainable;
