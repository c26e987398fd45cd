//! Basis-reward heads: φ(x, y) = W₂·gelu(W₁·e + b₁) + b₂ ∈ R^K (docs/METHOD.md §2).
//!
//! The BT baseline uses the same module with K = 1.

use candle_core::{Module, Result, Tensor};
use candle_nn::{linear, Linear, VarBuilder};

use crate::onnx::OnnxGraph;

/// Two-layer MLP from the pooled hidden state to K basis rewards.
#[derive(Clone, Debug)]
pub struct BasisHeads {
    pub(crate) l1: Linear,
    pub(crate) l2: Linear,
    k: usize,
}

impl BasisHeads {
    /// Builds the heads under `vb` (`l1`, `l2`), hidden width = input width `h`.
    pub fn new(h: usize, k: usize, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            l1: linear(h, h, vb.pp("l1"))?,
            l2: linear(h, k, vb.pp("l2"))?,
            k,
        })
    }

    /// Number of basis rewards.
    pub fn k(&self) -> usize {
        self.k
    }

    /// φ for a batch of pooled states `[N, H]` → `[N, K]`.
    pub fn forward(&self, e: &Tensor) -> Result<Tensor> {
        self.l2.forward(&self.l1.forward(e)?.gelu_erf()?)
    }

    /// ONNX of [`BasisHeads::forward`] under `heads.*` names, gelu as `x·(1 + erf(x/√2))/2`.
    pub fn onnx(&self, g: &mut OnnxGraph, e: &str) -> Result<String> {
        let s = "heads";
        let layer = |g: &mut OnnxGraph, l: &Linear, name: &str, x: &str| -> Result<String> {
            let w = g.weight_t(&format!("heads.{name}.weight"), l.weight())?;
            let b = match l.bias() {
                Some(b) => Some(g.weight(&format!("heads.{name}.bias"), b)?),
                None => None,
            };
            Ok(g.linear(s, x, &w, b.as_deref()))
        };
        let h = layer(g, &self.l1, "l1", e)?;
        let inv_sqrt2 = g.f32_scalar("const.inv_sqrt2", std::f32::consts::FRAC_1_SQRT_2);
        let (one, half) = (
            g.f32_scalar("const.one", 1.0),
            g.f32_scalar("const.half", 0.5),
        );
        let z = g.op(s, "Mul", &[&h, &inv_sqrt2], vec![]);
        let erf = g.op(s, "Erf", &[&z], vec![]);
        let erf1 = g.op(s, "Add", &[&erf, &one], vec![]);
        let y = g.op(s, "Mul", &[&h, &erf1], vec![]);
        let gelu = g.op(s, "Mul", &[&y, &half], vec![]);
        layer(g, &self.l2, "l2", &gelu)
    }
}
