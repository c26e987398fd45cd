//! One pre-norm decoder layer (attention and MLP with residuals) and its ONNX emission.

use candle_core::{Result, Tensor};
use candle_nn::VarBuilder;

use super::attention::{Attention, LayerInputs};
use super::mlp::Mlp;
use super::norm::RmsNorm;
use super::BackboneOptions;
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
    /// With LoRA the norms are frozen (detached) and the projections carry adapters.
    pub(super) fn new(cfg: &Qwen3Config, vb: VarBuilder, opts: BackboneOptions) -> Result<Self> {
        let mut layer = Self {
            input_layernorm: RmsNorm::new(
                cfg.hidden_size,
                cfg.rms_norm_eps,
                vb.pp("input_layernorm"),
            )?,
            self_attn: Attention::new(cfg, vb.pp("self_attn"), opts)?,
            post_attention_layernorm: RmsNorm::new(
                cfg.hidden_size,
                cfg.rms_norm_eps,
                vb.pp("post_attention_layernorm"),
            )?,
            mlp: Mlp::new(cfg, vb.pp("mlp"), opts)?,
        };
        if opts.lora.enabled() {
            for norm in [
                &mut layer.input_layernorm,
                &mut layer.post_attention_layernorm,
                &mut layer.self_attn.q_norm,
                &mut layer.self_attn.k_norm,
            ] {
                norm.weight = norm.weight.detach();
            }
        }
        Ok(layer)
    }

    /// Every trainable tensor of the layer (what its backward gives gradients to): all its
    /// weights, or with LoRA only the adapters.
    pub(super) fn weights(&self) -> Vec<&Tensor> {
        let (a, m) = (&self.self_attn, &self.mlp);
        let projections = [
            &a.q_proj,
            &a.k_proj,
            &a.v_proj,
            &a.o_proj,
            &m.gate_proj,
            &m.up_proj,
            &m.down_proj,
        ];
        let mut out: Vec<&Tensor> = projections.iter().flat_map(|p| p.trainable()).collect();
        if a.q_proj.lora.is_none() {
            out.extend([
                &self.input_layernorm.weight,
                &a.q_norm.weight,
                &a.k_norm.weight,
                &self.post_attention_layernorm.weight,
            ]);
        }
        out
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
