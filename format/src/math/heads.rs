//! The basis-reward heads of a model fitted on external feature vectors (docs/METHOD.md §1):
//! `φ(e) = W₂·gelu(W₁·e + b₁) + b₂ ∈ R^K`, the same two-layer MLP as the trainer's
//! `BasisHeads`, for the runtime and the wasm module to compute φ where no ONNX graph exists.

use ndarray::{Array2, ArrayView2};

use super::check;
use super::mlp::{Linear, Mlp};
use crate::error::{MathError, MathResult};

/// `φ = l2(gelu_erf(l1(e)))`: feature vectors `[N, H]` → basis rewards `[N, K]`.
#[derive(Debug, Clone, PartialEq)]
pub struct BasisHeads {
    mlp: Mlp,
}

impl BasisHeads {
    /// Heads from `l1 [H, H]` and `l2 [K, H]` (weights `[out, in]`, as candle stores them).
    pub fn new(l1: Linear, l2: Linear) -> MathResult<Self> {
        check::len("heads.l1.weight (rows = H)", l1.in_dim(), l1.out_dim())?;
        Ok(Self {
            mlp: Mlp::new(l1, l2)?,
        })
    }

    /// Feature dimension H.
    pub fn dim(&self) -> usize {
        self.mlp.in_dim()
    }

    /// Number of basis rewards K.
    pub fn k(&self) -> usize {
        self.mlp.out_dim()
    }

    /// The MLP (`l1`, `l2`).
    pub fn mlp(&self) -> &Mlp {
        &self.mlp
    }

    /// Basis rewards `[N, K]` of feature vectors `[N, H]`; errors name the field `features`
    /// and, for a non-finite value, its row.
    pub fn forward(&self, features: ArrayView2<'_, f32>) -> MathResult<Array2<f32>> {
        check_vectors("features", self.dim(), features)?;
        Ok(self.mlp.forward_unchecked(features))
    }
}

/// Errors unless `vectors` has `dim` columns and only finite values. A bad value is reported
/// as [`MathError::NonFiniteRow`] (row and column), since callers pass one vector per row.
pub fn check_vectors(
    field: &'static str,
    dim: usize,
    vectors: ArrayView2<'_, f32>,
) -> MathResult<()> {
    check::len(field, dim, vectors.ncols())?;
    for (row, v) in vectors.rows().into_iter().enumerate() {
        if let Some(column) = v.iter().position(|x| !x.is_finite()) {
            return Err(MathError::NonFiniteRow { field, row, column });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{array, Array1};

    fn heads() -> BasisHeads {
        // H = 2, K = 3.
        let l1 = Linear::new(array![[1.0, -2.0], [0.5, 0.25]], array![0.0, -1.0]).unwrap();
        let l2 = Linear::new(
            array![[1.0, 0.0], [0.0, 1.0], [2.0, -1.0]],
            array![0.0, 0.5, -0.25],
        )
        .unwrap();
        BasisHeads::new(l1, l2).unwrap()
    }

    #[test]
    fn heads_are_l2_of_erf_gelu_of_l1() {
        let h = heads();
        assert_eq!((h.dim(), h.k()), (2, 3));
        // e = (1, 1): l1 = (1 − 2, 0.5 + 0.25 − 1) = (−1, −0.25).
        // gelu(−1) = −0.158655254, gelu(−0.25) = −0.25·Φ(−0.25) = −0.25·0.401293674 = −0.100323418.
        // e = (0, 0): l1 = (0, −1) → gelu = (0, −0.158655254).
        let phi = h.forward(array![[1.0, 1.0], [0.0, 0.0]].view()).unwrap();
        let (g1, g2) = (-0.158_655_25_f32, -0.100_323_42_f32);
        let want = array![
            [g1, g2 + 0.5, 2.0 * g1 - g2 - 0.25],
            [0.0, -0.158_655_25 + 0.5, 0.158_655_25 - 0.25],
        ];
        for (g, w) in phi.iter().zip(&want) {
            assert!((g - w).abs() < 1e-6, "{phi} vs {want}");
        }
    }

    #[test]
    fn shapes_and_values_are_checked() {
        let h = heads();
        assert_eq!(
            h.forward(array![[1.0, 2.0, 3.0]].view()).unwrap_err(),
            MathError::DimensionMismatch {
                field: "features",
                expected: 2,
                got: 3
            }
        );
        let e = h
            .forward(array![[1.0, 2.0], [0.0, f32::NAN]].view())
            .unwrap_err();
        assert_eq!(
            e,
            MathError::NonFiniteRow {
                field: "features",
                row: 1,
                column: 1
            }
        );
        assert!(e.to_string().contains("row 1"), "{e}");
        // l1 must be square: the trainer's heads map H to H before the K outputs.
        let l1 = Linear::new(Array2::zeros((3, 2)), Array1::zeros(3)).unwrap();
        let l2 = Linear::new(Array2::zeros((1, 3)), Array1::zeros(1)).unwrap();
        assert!(matches!(
            BasisHeads::new(l1, l2),
            Err(MathError::DimensionMismatch { .. })
        ));
        let l1 = Linear::new(Array2::zeros((2, 2)), Array1::zeros(2)).unwrap();
        let l2 = Linear::new(Array2::zeros((1, 3)), Array1::zeros(1)).unwrap();
        assert!(matches!(
            BasisHeads::new(l1, l2),
            Err(MathError::DimensionMismatch { .. })
        ));
    }
}
