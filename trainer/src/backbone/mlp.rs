//! The SwiGLU feed-forward block and its ONNX emission.

use candle_core::{Result, Tensor};
use candle_nn::VarBuilder;

use super::linear::{linear, linear_weight};
use super::Qwen3Config;
use crate::onnx::OnnxGraph;

/// The SwiGLU feed-forward block: `down(silu(gate(x)) · up(x))`.
#[derive(Debug, Clone)]
pub(crate) struct Mlp {
    /// Gate projection `[I, H]` (through SiLU).
    pub(crate) gate_proj: Tensor,
    /// Up projection `[I, H]`.
    pub(crate) up_proj: Tensor,
    /// Down projection `[H, I]`.
    pub(crate) down_proj: Tensor,
}

impl Mlp {
    pub(super) fn new(cfg: &Qwen3Config, vb: VarBuilder) -> Result<Self> {
        let (h, i) = (cfg.hidden_size, cfg.intermediate_size);
        Ok(Self {
            gate_proj: linear_weight(&vb, i, h, "gate_proj")?,
            up_proj: linear_weight(&vb, i, h, "up_proj")?,
            down_proj: linear_weight(&vb, h, i, "down_proj")?,
        })
    }

    /// `x: [.., H]` → `[.., H]`.
    pub(super) fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let g = linear(x, &self.gate_proj)?.silu()?;
        linear(&(g * linear(x, &self.up_proj)?)?, &self.down_proj)
    }

    /// ONNX of [`Mlp::forward`] (SiLU as `x·sigmoid(x)`).
    pub(super) fn onnx(&self, g: &mut OnnxGraph, scope: &str, x: &str) -> Result<String> {
        let wg = g.weight_t(&format!("{scope}.gate_proj.weight"), &self.gate_proj)?;
        let wu = g.weight_t(&format!("{scope}.up_proj.weight"), &self.up_proj)?;
        let wd = g.weight_t(&format!("{scope}.down_proj.weight"), &self.down_proj)?;
        let gate = g.linear(scope, x, &wg, None);
        let sig = g.op(scope, "Sigmoid", &[&gate], vec![]);
        let silu = g.op(scope, "Mul", &[&gate, &sig], vec![]);
        let up = g.linear(scope, x, &wu, None);
        let h = g.op(scope, "Mul", &[&silu, &up], vec![]);
        Ok(g.linear(scope, &h, &wd, None))
    }
}
