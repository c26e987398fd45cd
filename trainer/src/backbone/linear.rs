//! Bias-free linear layers: the weight init and `x @ wᵀ`.

use candle_core::{Result, Tensor};
use candle_nn::{Init, VarBuilder};

/// Embeddings and linear weights start N(0, 0.02).
pub(super) const LINEAR_INIT: Init = Init::Randn {
    mean: 0.0,
    stdev: 0.02,
};

/// `x @ wᵀ` for `x: [.., in]`, `w: [out, in]` (no bias).
pub(super) fn linear(x: &Tensor, w: &Tensor) -> Result<Tensor> {
    let dims = x.dims();
    let n_in = dims[dims.len() - 1];
    let rows = x.elem_count() / n_in.max(1);
    let y = x.reshape((rows, n_in))?.matmul(&w.t()?)?;
    let mut out = dims.to_vec();
    let last = out.len() - 1;
    out[last] = w.dim(0)?;
    y.reshape(out)
}

/// The `[out, inp]` weight `{name}.weight` under `vb`, created with [`LINEAR_INIT`] if missing.
pub(super) fn linear_weight(vb: &VarBuilder, out: usize, inp: usize, name: &str) -> Result<Tensor> {
    vb.pp(name)
        .get_with_hints((out, inp), "weight", LINEAR_INIT)
}
