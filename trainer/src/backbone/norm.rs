//! RmsNorm and its ONNX emission.

use candle_core::{Result, Tensor};
use candle_nn::{Init, VarBuilder};

use crate::onnx::{attr_int, attr_ints, OnnxGraph};

/// Norm weights start at 1.
const NORM_INIT: Init = Init::Const(1.0);

/// RmsNorm from primitives: `x * 1/sqrt(mean(x², last) + eps) * w`.
#[derive(Debug, Clone)]
pub(crate) struct RmsNorm {
    /// Per-channel scale.
    pub(crate) weight: Tensor,
    /// Added to the mean square before the square root.
    pub(crate) eps: f64,
}

impl RmsNorm {
    pub(super) fn new(size: usize, eps: f64, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            weight: vb.get_with_hints(size, "weight", NORM_INIT)?,
            eps,
        })
    }

    /// Normalises over the last axis (the fused kernel on the CPU).
    pub(super) fn forward(&self, x: &Tensor) -> Result<Tensor> {
        super::fused::rms_norm::rms_norm(x, &self.weight, self.eps)
    }

    /// ONNX of [`RmsNorm::forward`] over the last axis, `axis` (ONNX wants it non-negative).
    pub(super) fn onnx(
        &self,
        g: &mut OnnxGraph,
        scope: &str,
        x: &str,
        axis: i64,
    ) -> Result<String> {
        let w = g.weight(&format!("{scope}.weight"), &self.weight)?;
        let eps = g.f32_scalar(&format!("{scope}.eps"), self.eps as f32);
        let one = g.f32_scalar("const.one", 1.0);
        let sq = g.op(scope, "Mul", &[x, x], vec![]);
        let ms = g.op(
            scope,
            "ReduceMean",
            &[&sq],
            vec![attr_ints("axes", &[axis]), attr_int("keepdims", 1)],
        );
        let s = g.op(scope, "Add", &[&ms, &eps], vec![]);
        let s = g.op(scope, "Sqrt", &[&s], vec![]);
        let inv = g.op(scope, "Div", &[&one, &s], vec![]);
        let y = g.op(scope, "Mul", &[x, &inv], vec![]);
        Ok(g.op(scope, "Mul", &[&y, &w], vec![]))
    }
}
