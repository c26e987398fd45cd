//! Basis-reward heads: φ(x, y) = W₂·gelu(W₁·e + b₁) + b₂ ∈ R^K (SPEC §2).
//!
//! The BT baseline uses the same module with K = 1.

use candle_core::{Module, Result, Tensor};
use candle_nn::{linear, Linear, VarBuilder};

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
        Ok(Self { l1: linear(h, h, vb.pp("l1"))?, l2: linear(h, k, vb.pp("l2"))?, k })
    }

    /// Number of basis rewards.
    pub fn k(&self) -> usize {
        self.k
    }

    /// φ for a batch of pooled states `[N, H]` → `[N, K]`.
    pub fn forward(&self, e: &Tensor) -> Result<Tensor> {
        self.l2.forward(&self.l1.forward(e)?.gelu_erf()?)
    }
}
