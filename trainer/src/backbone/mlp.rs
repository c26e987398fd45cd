//! The SwiGLU feed-forward block and its ONNX emission.

use candle_core::{Result, Tensor};
use candle_nn::VarBuilder;

use super::linear::Linear;
use super::BackboneOptions;
use super::Qwen3Config;
use crate::onnx::OnnxGraph;

/// The SwiGLU feed-forward block: `down(silu(gate(x)) · up(x))`.
#[derive(Debug, Clone)]
pub(crate) struct Mlp {
    /// Gate projection `[I, H]` (through SiLU).
    pub(crate) gate_proj: Linear,
    /// Up projection `[I, H]`.
    pub(crate) up_proj: Linear,
    /// Down projection `[H, I]`.
    pub(crate) down_proj: Linear,
}

impl Mlp {
    pub(super) fn new(cfg: &Qwen3Config, vb: VarBuilder, opts: BackboneOptions) -> Result<Self> {
        let (h, i) = (cfg.hidden_size, cfg.intermediate_size);
        Ok(Self {
            gate_proj: Linear::new(&vb, i, h, "gate_proj", opts)?,
            up_proj: Linear::new(&vb, i, h, "up_proj", opts)?,
            down_proj: Linear::new(&vb, h, i, "down_proj", opts)?,
        })
    }

    /// `x: [.., H]` → `[.., H]` (the gate fused on the CPU).
    pub(super) fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let h =
            super::fused::swiglu::swiglu(&self.gate_proj.forward(x)?, &self.up_proj.forward(x)?)?;
        self.down_proj.forward(&h)
    }

    /// ONNX of [`Mlp::forward`] (SiLU as `x·sigmoid(x)`).
    pub(super) fn onnx(&self, g: &mut OnnxGraph, scope: &str, x: &str) -> Result<String> {
        let wg = (self.gate_proj).onnx_weight(g, &format!("{scope}.gate_proj.weight"))?;
        let wu = (self.up_proj).onnx_weight(g, &format!("{scope}.up_proj.weight"))?;
        let wd = (self.down_proj).onnx_weight(g, &format!("{scope}.down_proj.weight"))?;
        let gate = g.linear(scope, x, &wg, None);
        let sig = g.op(scope, "Sigmoid", &[&gate], vec![]);
        let silu = g.op(scope, "Mul", &[&gate, &sig], vec![]);
        let up = g.linear(scope, x, &wu, None);
        let h = g.op(scope, "Mul", &[&silu, &up], vec![]);
        Ok(g.linear(scope, &h, &wd, None))
    }
}
