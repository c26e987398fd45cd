//! Dense layers in PyTorch/candle layout and the exact (erf) gelu.

use ndarray::{Array1, Array2, ArrayView1, ArrayView2};

use super::check;
use crate::error::MathResult;

/// Exact gelu, `0.5·x·(1 + erf(x/√2))`, as candle's `gelu_erf` and ONNX's Erf-based gelu.
///
/// Evaluated as `0.5·x·erfc(−x/√2)` in `f64`: the same function, but without the cancellation
/// of `1 + erf(·)` for very negative `x`.
pub fn gelu(x: f32) -> f32 {
    let x = f64::from(x);
    (0.5 * x * libm::erfc(-x * std::f64::consts::FRAC_1_SQRT_2)) as f32
}

/// A dense layer `y = x·Wᵀ + b` with `weight` stored `[out, in]` as PyTorch and candle store it.
#[derive(Debug, Clone, PartialEq)]
pub struct Linear {
    weight: Array2<f32>,
    bias: Array1<f32>,
    // `weightᵀ` in f64, `[in, out]`, for the native f64 matrix product (see `forward_unchecked`).
    #[cfg(not(target_arch = "wasm32"))]
    weight_t64: Array2<f64>,
}

impl Linear {
    /// Builds a layer from `weight [out, in]` and `bias [out]`, checking shapes and finiteness.
    pub fn new(weight: Array2<f32>, bias: Array1<f32>) -> MathResult<Self> {
        let (out, inp) = weight.dim();
        check::non_empty("linear.weight (rows)", out)?;
        check::non_empty("linear.weight (columns)", inp)?;
        check::len("linear.bias", out, bias.len())?;
        check::finite("linear.weight", weight.view())?;
        check::finite("linear.bias", bias.view())?;
        Ok(Self {
            #[cfg(not(target_arch = "wasm32"))]
            weight_t64: weight.t().mapv(f64::from),
            weight,
            bias,
        })
    }

    /// Input width.
    pub fn in_dim(&self) -> usize {
        self.weight.ncols()
    }

    /// Output width.
    pub fn out_dim(&self) -> usize {
        self.weight.nrows()
    }

    /// The weight, `[out, in]`.
    pub fn weight(&self) -> ArrayView2<'_, f32> {
        self.weight.view()
    }

    /// The bias, `[out]`.
    pub fn bias(&self) -> ArrayView1<'_, f32> {
        self.bias.view()
    }

    /// Applies the layer to a batch `x [n, in]`, giving `[n, out]`.
    pub fn forward(&self, x: ArrayView2<'_, f32>) -> MathResult<Array2<f32>> {
        check::len("input (columns)", self.in_dim(), x.ncols())?;
        check::finite("input", x)?;
        Ok(self.forward_unchecked(x))
    }

    /// The layer on a batch whose width was already checked.
    ///
    /// Products are accumulated in f64 and rounded once, so the result does not depend on the
    /// summation order of the platform's kernels: the browser build and the server agree to about
    /// one f32 ulp. Natively that is ndarray's f64 matrix product (SIMD); in wasm a fixed-order
    /// loop, which keeps the module small.
    #[cfg(not(target_arch = "wasm32"))]
    fn forward_unchecked(&self, x: ArrayView2<'_, f32>) -> Array2<f32> {
        let y = x.mapv(f64::from).dot(&self.weight_t64);
        let mut out = Array2::zeros(y.dim());
        for (mut or, yr) in out.rows_mut().into_iter().zip(y.rows()) {
            for ((o, v), b) in or.iter_mut().zip(yr).zip(&self.bias) {
                *o = (v + f64::from(*b)) as f32;
            }
        }
        out
    }

    /// See the native version above.
    #[cfg(target_arch = "wasm32")]
    fn forward_unchecked(&self, x: ArrayView2<'_, f32>) -> Array2<f32> {
        let mut out = Array2::zeros((x.nrows(), self.out_dim()));
        for (xr, mut or) in x.rows().into_iter().zip(out.rows_mut()) {
            let xr = xr.to_vec();
            for ((w, b), o) in self
                .weight
                .rows()
                .into_iter()
                .zip(&self.bias)
                .zip(or.iter_mut())
            {
                // A weight built in column-major order has non-contiguous rows: copy those.
                let dot = match w.as_slice() {
                    Some(w) => dot_f64(&xr, w),
                    None => dot_f64(&xr, &w.to_vec()),
                };
                *o = (dot + f64::from(*b)) as f32;
            }
        }
        out
    }
}

#[cfg(target_arch = "wasm32")]
/// `Σ a_i·b_i` in f64 with four interleaved partial sums: a fixed order, so every platform gets
/// the same result, and four dependency chains instead of one hide the addition latency.
fn dot_f64(a: &[f32], b: &[f32]) -> f64 {
    let mut acc = [0.0_f64; 4];
    let (ca, cb) = (a.chunks_exact(4), b.chunks_exact(4));
    let tail: f64 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| f64::from(*x) * f64::from(*y))
        .sum();
    for (x, y) in ca.zip(cb) {
        for j in 0..4 {
            acc[j] += f64::from(x[j]) * f64::from(y[j]);
        }
    }
    (acc[0] + acc[1]) + (acc[2] + acc[3]) + tail
}

/// Two dense layers with gelu between them: `l2(gelu(l1(x)))`.
#[derive(Debug, Clone, PartialEq)]
pub struct Mlp {
    l1: Linear,
    l2: Linear,
}

impl Mlp {
    /// Chains two layers, checking that `l1`'s output width is `l2`'s input width.
    pub fn new(l1: Linear, l2: Linear) -> MathResult<Self> {
        check::len("mlp.l2.weight (columns)", l1.out_dim(), l2.in_dim())?;
        Ok(Self { l1, l2 })
    }

    /// The first layer.
    pub fn l1(&self) -> &Linear {
        &self.l1
    }

    /// The second layer.
    pub fn l2(&self) -> &Linear {
        &self.l2
    }

    /// Input width.
    pub fn in_dim(&self) -> usize {
        self.l1.in_dim()
    }

    /// Output width.
    pub fn out_dim(&self) -> usize {
        self.l2.out_dim()
    }

    /// Applies the MLP to a batch `x [n, in]`, giving `[n, out]`.
    pub fn forward(&self, x: ArrayView2<'_, f32>) -> MathResult<Array2<f32>> {
        check::len("input (columns)", self.in_dim(), x.ncols())?;
        check::finite("input", x)?;
        Ok(self.forward_unchecked(x))
    }

    /// The MLP on a batch whose width and finiteness the caller already checked.
    pub(super) fn forward_unchecked(&self, x: ArrayView2<'_, f32>) -> Array2<f32> {
        let mut h = self.l1.forward_unchecked(x);
        h.mapv_inplace(gelu);
        self.l2.forward_unchecked(h.view())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::MathError;
    use ndarray::array;

    #[test]
    fn gelu_matches_known_values() {
        // Reference values of 0.5·x·(1+erf(x/√2)) (torch.nn.functional.gelu, approximate='none').
        for (x, want) in [
            (1.0_f32, 0.841_344_7_f32),
            (-1.0, -0.158_655_3),
            (0.0, 0.0),
            (3.0, 2.995_950_2),
            (-3.0, -0.004_049_694),
            (0.5, 0.345_731_23),
        ] {
            let got = gelu(x);
            assert!(
                (got - want).abs() <= 1e-6 * want.abs().max(1.0),
                "gelu({x}) = {got}, want {want}"
            );
        }
    }

    #[test]
    fn gelu_keeps_precision_in_the_far_negative_tail() {
        // 1 + erf(−10/√2) rounds to 0 in f32/f64 arithmetic; the erfc form keeps the value.
        let got = gelu(-10.0);
        let want = -7.619_853e-23_f32;
        assert!(((got - want) / want).abs() < 1e-5, "gelu(-10) = {got:e}");
    }

    fn layer(w: Array2<f32>, b: Array1<f32>) -> Linear {
        Linear::new(w, b).unwrap()
    }

    #[test]
    fn linear_uses_out_in_layout() {
        let l = layer(array![[1.0, 2.0, 3.0], [0.0, -1.0, 0.5]], array![0.5, -0.5]);
        let y = l
            .forward(array![[1.0, 1.0, 1.0], [2.0, 0.0, -2.0]].view())
            .unwrap();
        assert_eq!(y, array![[6.5, -1.0], [-3.5, -1.5]]);
    }

    #[test]
    fn mlp_is_l2_gelu_l1() {
        let l1 = layer(array![[1.0], [-1.0]], array![0.0, 0.0]);
        let l2 = layer(array![[1.0, 2.0]], array![0.25]);
        let mlp = Mlp::new(l1, l2).unwrap();
        let y = mlp.forward(array![[1.0], [-1.0]].view()).unwrap();
        let g1 = gelu(1.0);
        let gm1 = gelu(-1.0);
        let want = array![[g1 + 2.0 * gm1 + 0.25], [gm1 + 2.0 * g1 + 0.25]];
        assert!((&y - &want).iter().all(|e| e.abs() < 1e-6), "{y} vs {want}");
    }

    #[test]
    fn shapes_and_values_are_checked() {
        assert_eq!(
            Linear::new(Array2::zeros((2, 3)), Array1::zeros(3)).unwrap_err(),
            MathError::DimensionMismatch {
                field: "linear.bias",
                expected: 2,
                got: 3
            }
        );
        let mut w = Array2::zeros((2, 3));
        w[[1, 0]] = f32::NAN;
        assert_eq!(
            Linear::new(w, Array1::zeros(2)).unwrap_err(),
            MathError::NonFinite {
                field: "linear.weight",
                index: 3
            }
        );
        assert!(matches!(
            Linear::new(Array2::zeros((0, 3)), Array1::zeros(0)),
            Err(MathError::Empty { .. })
        ));
        let l1 = layer(Array2::zeros((4, 3)), Array1::zeros(4));
        let l2 = layer(Array2::zeros((1, 5)), Array1::zeros(1));
        assert_eq!(
            Mlp::new(l1.clone(), l2).unwrap_err(),
            MathError::DimensionMismatch {
                field: "mlp.l2.weight (columns)",
                expected: 4,
                got: 5
            }
        );
        assert_eq!(
            l1.forward(Array2::zeros((2, 2)).view()).unwrap_err(),
            MathError::DimensionMismatch {
                field: "input (columns)",
                expected: 3,
                got: 2
            }
        );
        let mut x = Array2::zeros((2, 3));
        x[[0, 2]] = f32::INFINITY;
        assert_eq!(
            l1.forward(x.view()).unwrap_err(),
            MathError::NonFinite {
                field: "input",
                index: 2
            }
        );
    }
}
