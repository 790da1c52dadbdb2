//! Vision Transformer (Hugging Face `ViTModel` / `ViTForImageClassification` layout, with or
//! without the `vit.` prefix): patch embedding, CLS token, learned positions, pre-LayerNorm
//! encoder, final norm and an optional classification head on the CLS token.

use std::path::Path;

use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::activation::Activation;
use crate::attention::Attention;
use crate::config::{check_encoder_fields, read_checkpoint};
use crate::error::{CandleContext, ModelError, Result};
use crate::geometry::AttentionGeometry;
use crate::mha::{Projections, SelfAttention};
use crate::nn::{LayerNorm, Linear};
use crate::record::{Recorder, RunRecord};
use crate::weights::WeightMap;

fn gelu() -> String {
    "gelu".into()
}
fn eps() -> f64 {
    1e-12
}
fn three() -> usize {
    3
}
fn yes() -> bool {
    true
}

/// The fields of a ViT `config.json` this crate uses.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VitConfig {
    /// Hidden size.
    pub hidden_size: usize,
    /// Encoder layers.
    pub num_hidden_layers: usize,
    /// Attention heads.
    pub num_attention_heads: usize,
    /// Feed-forward size.
    pub intermediate_size: usize,
    /// Feed-forward activation (default `gelu`, exact).
    #[serde(default = "gelu")]
    pub hidden_act: String,
    /// LayerNorm epsilon (default 1e-12).
    #[serde(default = "eps")]
    pub layer_norm_eps: f64,
    /// Image side in pixels (square images).
    pub image_size: usize,
    /// Patch side in pixels.
    pub patch_size: usize,
    /// Input channels (default 3).
    #[serde(default = "three")]
    pub num_channels: usize,
    /// Biases on q, k, v (default true).
    #[serde(default = "yes")]
    pub qkv_bias: bool,
    /// `vit`.
    #[serde(default)]
    pub model_type: Option<String>,
}

impl VitConfig {
    /// Checks the values; returns the activation.
    pub fn check(&self, path: &Path) -> Result<Activation> {
        let act = check_encoder_fields(
            path,
            &self.hidden_act,
            self.hidden_size,
            self.num_attention_heads,
        )?;
        if self.patch_size == 0 || !self.image_size.is_multiple_of(self.patch_size) {
            return Err(ModelError::config(
                path,
                "image_size is not a multiple of patch_size",
            ));
        }
        Ok(act)
    }

    /// Patches per image.
    pub fn num_patches(&self) -> usize {
        (self.image_size / self.patch_size).pow(2)
    }
}

#[derive(Clone, Debug)]
struct Layer {
    norm_before: LayerNorm,
    attn: SelfAttention,
    norm_after: LayerNorm,
    inter: Linear,
    out: Linear,
}

/// What a ViT forward returns.
#[derive(Clone, Debug)]
pub struct VitOutput {
    /// Final normalised hidden states `[batch, 1 + patches, hidden]` (CLS first).
    pub hidden: Tensor,
    /// Class logits `[batch, labels]` when the checkpoint has a classifier.
    pub logits: Option<Tensor>,
}

/// A Vision Transformer.
#[derive(Clone, Debug)]
pub struct VitModel {
    cfg: VitConfig,
    act: Activation,
    cls: Tensor,
    positions: Tensor,
    patch: Linear,
    layers: Vec<Layer>,
    norm: LayerNorm,
    classifier: Option<Linear>,
}

impl VitModel {
    /// Loads `config.json` and `model.safetensors` from a folder.
    pub fn load_dir(dir: &Path) -> Result<Self> {
        let (cfg, cfg_path, w) = read_checkpoint(dir)?;
        Self::from_weights(cfg, &cfg_path, w)
    }

    /// Builds the model from a parsed config and its weights. The classifier
    /// (`classifier.weight` `[labels, hidden]`) is optional.
    pub fn from_weights(cfg: VitConfig, cfg_path: &Path, w: WeightMap) -> Result<Self> {
        let act = cfg.check(cfg_path)?;
        let classifier = match w.dims_of("classifier.weight") {
            Some(d) if d.len() == 2 => {
                Some(Linear::load(&w, "classifier", cfg.hidden_size, d[0], true)?)
            }
            Some(d) => {
                return Err(ModelError::TensorShape {
                    path: w.path().to_path_buf(),
                    tensor: "classifier.weight".into(),
                    expected: "[labels, hidden]".into(),
                    actual: format!("{d:?}"),
                });
            }
            None => None,
        };
        let w = w.with_prefix_if_stored("vit.", "embeddings.cls_token");
        let (h, p, c) = (cfg.hidden_size, cfg.patch_size, cfg.num_channels);
        let eps = cfg.layer_norm_eps;
        let patch_w = w
            .get(
                "embeddings.patch_embeddings.projection.weight",
                &[h, c, p, p],
            )?
            .reshape((h, c * p * p))
            .op("patch projection")?;
        let patch_b = w.get("embeddings.patch_embeddings.projection.bias", &[h])?;
        let layers = (0..cfg.num_hidden_layers)
            .map(|i| {
                let p = format!("encoder.layer.{i}");
                let lin = |n: &str, i, o, b| Linear::load(&w, &format!("{p}.{n}"), i, o, b);
                Ok(Layer {
                    norm_before: LayerNorm::load(&w, &format!("{p}.layernorm_before"), h, eps)?,
                    attn: SelfAttention::new(
                        Projections {
                            q: lin("attention.attention.query", h, h, cfg.qkv_bias)?,
                            k: lin("attention.attention.key", h, h, cfg.qkv_bias)?,
                            v: lin("attention.attention.value", h, h, cfg.qkv_bias)?,
                            o: lin("attention.output.dense", h, h, true)?,
                        },
                        cfg.num_attention_heads,
                        cfg.num_attention_heads,
                        h / cfg.num_attention_heads,
                        None,
                    )?,
                    norm_after: LayerNorm::load(&w, &format!("{p}.layernorm_after"), h, eps)?,
                    inter: lin("intermediate.dense", h, cfg.intermediate_size, true)?,
                    out: lin("output.dense", cfg.intermediate_size, h, true)?,
                })
            })
            .collect::<Result<_>>()?;
        Ok(Self {
            act,
            cls: w.get("embeddings.cls_token", &[1, 1, h])?,
            positions: w.get(
                "embeddings.position_embeddings",
                &[1, cfg.num_patches() + 1, h],
            )?,
            patch: Linear::new(patch_w, Some(patch_b))?,
            layers,
            norm: LayerNorm::load(&w, "layernorm", h, eps)?,
            classifier,
            cfg,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &VitConfig {
        &self.cfg
    }

    /// Attention geometry.
    pub fn geometry(&self) -> AttentionGeometry {
        let c = &self.cfg;
        AttentionGeometry::multi_head(
            c.num_hidden_layers,
            c.hidden_size,
            c.num_attention_heads,
            false,
        )
    }

    /// Splits `[batch, channels, side, side]` images into `[batch, patches, c*p*p]` rows in
    /// the order of a stride-`p` convolution's weight (channel, row, column).
    fn patches(&self, pixels: &Tensor) -> Result<Tensor> {
        let (b, c, hgt, wid) = pixels.dims4().op("pixels")?;
        let (side, p) = (self.cfg.image_size, self.cfg.patch_size);
        if (c, hgt, wid) != (self.cfg.num_channels, side, side) {
            return Err(ModelError::Input(format!(
                "images are [{c}, {hgt}, {wid}], the model takes [{}, {side}, {side}]",
                self.cfg.num_channels
            )));
        }
        let g = side / p;
        pixels
            .reshape((b, c, g, p, g, p))
            .and_then(|t| t.permute((0, 2, 4, 1, 3, 5)))
            .and_then(|t| t.contiguous())
            .and_then(|t| t.reshape((b, g * g, c * p * p)))
            .op("patches")
    }

    /// Runs images `[batch, channels, side, side]` (already normalised) through the model.
    pub fn forward(
        &self,
        pixels: &Tensor,
        attn: &dyn Attention,
        trace: bool,
    ) -> Result<(VitOutput, RunRecord)> {
        let pixels = pixels.to_device(&Device::Cpu).op("pixels")?;
        let b = pixels.dims4().op("pixels")?.0;
        let x = self.patch.forward(&self.patches(&pixels)?)?;
        let cls = self
            .cls
            .expand((b, 1, self.cfg.hidden_size))
            .op("cls token")?;
        let mut x = Tensor::cat(&[cls, x], 1)
            .and_then(|x| x.broadcast_add(&self.positions))
            .op("embeddings")?;
        let n = x.dims()[1];
        let valid = vec![vec![true; n]; b];
        let mut rec = Recorder::new(b, self.cfg.num_hidden_layers, trace, "vit");
        for (l, layer) in self.layers.iter().enumerate() {
            let a = layer.attn.forward(
                &layer.norm_before.forward(&x)?,
                l,
                &valid,
                false,
                attn,
                &mut rec,
            )?;
            x = (x + a).op("residual")?;
            let m = layer.out.forward(
                &layer
                    .inter
                    .forward_act(&layer.norm_after.forward(&x)?, Some(self.act))?,
            )?;
            x = (x + m).op("residual")?;
        }
        let hidden = self.norm.forward(&x)?;
        let logits = match &self.classifier {
            Some(c) => Some(
                c.forward(
                    &hidden
                        .narrow(1, 0, 1)
                        .and_then(|t| t.squeeze(1))
                        .op("cls")?,
                )?,
            ),
            None => None,
        };
        Ok((VitOutput { hidden, logits }, rec.finish()))
    }
}
