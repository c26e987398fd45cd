//! One pre-norm decoder layer (attention and MLP with residuals) and its ONNX emission.

use candle_core::{Result, Tensor};
use candle_nn::VarBuilder;

use super::attention::{Attention, LayerInputs};
use super::mlp::Mlp;
use super::norm::RmsNorm;
use super::Qwen3Config;
use crate::onnx::OnnxGraph;

/// One pre-norm decoder layer: `h = x + attn(norm(x))`, `y = h + mlp(norm(h))`.
#[derive(Debug, Clone)]
pub(crate) struct DecoderLayer {
    /// Norm before attention.
    pub(crate) input_layernorm: RmsNorm,
    /// Self-attention.
    pub(crate) self_attn: Attention,
    /// Norm before the MLP.
    pub(crate) post_attention_layernorm: RmsNorm,
    /// Feed-forward block.
    pub(crate) mlp: Mlp,
}

impl DecoderLayer {
    pub(super) fn new(cfg: &Qwen3Config, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            input_layernorm: RmsNorm::new(
                cfg.hidden_size,
                cfg.rms_norm_eps,
                vb.pp("input_layernorm"),
            )?,
            self_attn: Attention::new(cfg, vb.pp("self_attn"))?,
            post_attention_layernorm: RmsNorm::new(
                cfg.hidden_size,
                cfg.rms_norm_eps,
                vb.pp("post_attention_layernorm"),
            )?,
            mlp: Mlp::new(cfg, vb.pp("mlp"))?,
        })
    }

    /// Every weight of the layer (what its backward gives gradients to).
    pub(super) fn weights(&self) -> Vec<&Tensor> {
        let (a, m) = (&self.self_attn, &self.mlp);
        vec![
            &self.input_layernorm.weight,
            &a.q_proj,
            &a.k_proj,
            &a.v_proj,
            &a.o_proj,
            &a.q_norm.weight,
            &a.k_norm.weight,
            &self.post_attention_layernorm.weight,
            &m.gate_proj,
            &m.up_proj,
            &m.down_proj,
        ]
    }

    /// `x: [B, L, H]` → `[B, L, H]`.
    pub(super) fn forward(&self, x: &Tensor, at: &LayerInputs<Tensor>) -> Result<Tensor> {
        let h = (x + self
            .self_attn
            .forward(&self.input_layernorm.forward(x)?, at)?)?;
        &h + self
            .mlp
            .forward(&self.post_attention_layernorm.forward(&h)?)?
    }

    /// ONNX of [`DecoderLayer::forward`] under `scope` = `model.layers.{i}`.
    pub(super) fn onnx(
        &self,
        g: &mut OnnxGraph,
        scope: &str,
        x: &str,
        at: &LayerInputs<String>,
    ) -> Result<String> {
        let n = self
            .input_layernorm
            .onnx(g, &format!("{scope}.input_layernorm"), x, 2)?;
        let a = self
            .self_attn
            .onnx(g, &format!("{scope}.self_attn"), &n, at)?;
        let h = g.op(scope, "Add", &[x, &a], vec![]);
        let n = self.post_attention_layernorm.onnx(
            g,
            &format!("{scope}.post_attention_layernorm"),
            &h,
            2,
        )?;
        let m = self.mlp.onnx(g, &format!("{scope}.mlp"), &n)?;
        Ok(g.op(scope, "Add", &[&h, &m], vec![]))
    }
}
