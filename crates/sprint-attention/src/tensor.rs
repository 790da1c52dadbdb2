//! Plain row-major tensors and the validated input of one attention layer.

use crate::error::{AttentionError, Result, shape_error};

/// A dense row-major `f32` tensor of shape `[heads, seq, head_dim]`.
#[derive(Clone, Debug, PartialEq)]
pub struct Tensor3 {
    /// `[heads, seq, head_dim]`.
    pub dims: [usize; 3],
    /// `heads * seq * head_dim` values, row-major.
    pub data: Vec<f32>,
}

impl Tensor3 {
    /// Wraps `data`; fails if its length is not the product of `dims`.
    pub fn new(dims: [usize; 3], data: Vec<f32>) -> Result<Self> {
        let n = dims.iter().product::<usize>();
        if data.len() != n {
            return Err(shape_error("tensor data length", n, data.len()));
        }
        Ok(Self { dims, data })
    }

    /// All-zero tensor.
    pub fn zeros(dims: [usize; 3]) -> Self {
        Self {
            dims,
            data: vec![0.0; dims.iter().product()],
        }
    }

    /// Number of heads.
    pub fn heads(&self) -> usize {
        self.dims[0]
    }

    /// Tokens per head.
    pub fn seq(&self) -> usize {
        self.dims[1]
    }

    /// Elements per vector.
    pub fn head_dim(&self) -> usize {
        self.dims[2]
    }

    /// The `[seq, head_dim]` matrix of head `h`.
    pub fn head(&self, h: usize) -> &[f32] {
        let n = self.dims[1] * self.dims[2];
        &self.data[h * n..(h + 1) * n]
    }

    /// Mutable `[seq, head_dim]` matrix of head `h`.
    pub fn head_mut(&mut self, h: usize) -> &mut [f32] {
        let n = self.dims[1] * self.dims[2];
        &mut self.data[h * n..(h + 1) * n]
    }

    /// Fails with [`AttentionError::NonFinite`] at the first NaN or infinity.
    pub fn check_finite(&self, name: &str) -> Result<()> {
        if let Some(i) = self.data.iter().position(|x| !x.is_finite()) {
            let [_, s, d] = self.dims;
            return Err(AttentionError::NonFinite {
                tensor: name.into(),
                head: i / (s * d),
                row: (i / d) % s,
                col: i % d,
                value: self.data[i],
            });
        }
        Ok(())
    }
}

/// Q, K, V of one attention layer plus optional padding masks.
///
/// `q` is `[heads, n_queries, d]`; `k` and `v` are `[kv_heads, n_keys, d]` with
/// `heads % kv_heads == 0` (grouped-query attention: query head `h` reads KV head
/// `h / (heads / kv_heads)`).
#[derive(Clone, Debug)]
pub struct AttentionInput {
    /// Queries.
    pub q: Tensor3,
    /// Keys.
    pub k: Tensor3,
    /// Values.
    pub v: Tensor3,
    /// Real (non-padding) queries; `None` = all real.
    pub query_valid: Option<Vec<bool>>,
    /// Real (non-padding) keys; `None` = all real.
    pub key_valid: Option<Vec<bool>>,
}

/// The validated shape of an [`AttentionInput`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LayerShape {
    /// Query heads.
    pub heads: usize,
    /// Key/value heads.
    pub kv_heads: usize,
    /// Queries per head.
    pub n_queries: usize,
    /// Keys per head.
    pub n_keys: usize,
    /// Elements per vector.
    pub head_dim: usize,
}

impl LayerShape {
    /// KV head read by query head `h`.
    pub fn kv_head_of(&self, h: usize) -> usize {
        h / (self.heads / self.kv_heads)
    }
}

impl AttentionInput {
    /// Input without padding.
    pub fn new(q: Tensor3, k: Tensor3, v: Tensor3) -> Self {
        Self {
            q,
            k,
            v,
            query_valid: None,
            key_valid: None,
        }
    }

    /// Checks shapes, GQA grouping, mask lengths and finiteness.
    pub fn validate(&self) -> Result<LayerShape> {
        let [heads, n_queries, head_dim] = self.q.dims;
        let [kv_heads, n_keys, kd] = self.k.dims;
        if heads == 0 || n_queries == 0 || head_dim == 0 {
            return Err(shape_error(
                "q [heads, seq, head_dim]",
                "all > 0",
                format!("{:?}", self.q.dims),
            ));
        }
        if kv_heads == 0 || n_keys == 0 {
            return Err(shape_error(
                "k [kv_heads, seq, head_dim]",
                "all > 0",
                format!("{:?}", self.k.dims),
            ));
        }
        if kd != head_dim {
            return Err(shape_error("k head_dim (vs q)", head_dim, kd));
        }
        if self.v.dims != self.k.dims {
            return Err(shape_error(
                "v shape (vs k)",
                format!("{:?}", self.k.dims),
                format!("{:?}", self.v.dims),
            ));
        }
        if heads % kv_heads != 0 {
            return Err(shape_error(
                "q heads divisible by kv heads",
                format!("a multiple of {kv_heads}"),
                heads,
            ));
        }
        if let Some(m) = &self.query_valid
            && m.len() != n_queries
        {
            return Err(shape_error("query padding mask length", n_queries, m.len()));
        }
        if let Some(m) = &self.key_valid
            && m.len() != n_keys
        {
            return Err(shape_error("key padding mask length", n_keys, m.len()));
        }
        self.q.check_finite("q")?;
        self.k.check_finite("k")?;
        self.v.check_finite("v")?;
        Ok(LayerShape {
            heads,
            kv_heads,
            n_queries,
            n_keys,
            head_dim,
        })
    }
}
