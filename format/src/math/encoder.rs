//! Pair features and the variational encoder (docs/METHOD.md §2, "Variational encoder").

use ndarray::{s, Array1, Array2, ArrayView1, ArrayView2, Axis};

use super::check;
use super::mlp::Mlp;
use super::posterior::NaturalParams;
use crate::error::MathResult;

/// The encoder's `ℓ = log σ²` is bounded smoothly to `[−LOGVAR_BOUND, LOGVAR_BOUND]`.
pub const LOGVAR_BOUND: f32 = 10.0;

/// One reference pair's feature `[(e_c+e_r)/2 ; e_c−e_r ; Δφ?]`, length `2H` (+ `K` with `dphi`).
pub fn pair_feature(
    e_chosen: ArrayView1<'_, f32>,
    e_rejected: ArrayView1<'_, f32>,
    dphi: Option<ArrayView1<'_, f32>>,
) -> MathResult<Array1<f32>> {
    let rows = pair_features(
        e_chosen.insert_axis(Axis(0)),
        e_rejected.insert_axis(Axis(0)),
        dphi.map(|d| d.insert_axis(Axis(0))),
    )?;
    Ok(rows.row(0).to_owned())
}

/// Batch of pair features: `e_chosen`, `e_rejected` `[M, H]`, optional `dphi` `[M, K]` →
/// `[M, 2H (+K)]`.
pub fn pair_features(
    e_chosen: ArrayView2<'_, f32>,
    e_rejected: ArrayView2<'_, f32>,
    dphi: Option<ArrayView2<'_, f32>>,
) -> MathResult<Array2<f32>> {
    check::non_empty("e_chosen (columns)", e_chosen.ncols())?;
    check::len("e_rejected (rows)", e_chosen.nrows(), e_rejected.nrows())?;
    check::len("e_rejected (columns)", e_chosen.ncols(), e_rejected.ncols())?;
    check::finite("e_chosen", e_chosen)?;
    check::finite("e_rejected", e_rejected)?;
    if let Some(d) = dphi {
        check::len("dphi (rows)", e_chosen.nrows(), d.nrows())?;
        check::finite("dphi", d)?;
    }
    // [mean | diff | Δφ] row by row (a plain loop, not `concatenate`: ~1.5 KB less wasm).
    let (m, h) = e_chosen.dim();
    let k = dphi.map_or(0, |d| d.ncols());
    let mut out = Array2::zeros((m, 2 * h + k));
    for (i, mut row) in out.rows_mut().into_iter().enumerate() {
        for j in 0..h {
            let (c, r) = (e_chosen[[i, j]], e_rejected[[i, j]]);
            row[j] = (c + r) * 0.5;
            row[h + j] = c - r;
        }
        if let Some(d) = dphi {
            for j in 0..k {
                row[2 * h + j] = d[[i, j]];
            }
        }
    }
    Ok(out)
}

/// The variational encoder: an MLP `in → hidden → 2d` whose outputs are `[μ ; ℓ]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Encoder {
    mlp: Mlp,
    d: usize,
}

impl Encoder {
    /// Wraps an MLP whose output width is `2·d`.
    pub fn new(mlp: Mlp, d: usize) -> MathResult<Self> {
        check::non_empty("encoder latent dimension d", d)?;
        check::len("encoder.mlp output width (2d)", 2 * d, mlp.out_dim())?;
        Ok(Self { mlp, d })
    }

    /// Latent dimension `d`.
    pub fn d(&self) -> usize {
        self.d
    }

    /// Width of the pair feature the encoder takes (`2H`, or `2H + K` with `Δφ`).
    pub fn in_dim(&self) -> usize {
        self.mlp.in_dim()
    }

    /// The underlying MLP.
    pub fn mlp(&self) -> &Mlp {
        &self.mlp
    }

    /// Encodes pair features `[M, in]` into `(μ [M, d], ℓ [M, d])`, `ℓ` bounded by
    /// `10·tanh(ℓ/10)`.
    pub fn encode(&self, features: ArrayView2<'_, f32>) -> MathResult<(Array2<f32>, Array2<f32>)> {
        // Checked here so errors name the caller's argument rather than the MLP's input.
        check::len("features (columns)", self.in_dim(), features.ncols())?;
        check::finite("features", features)?;
        let out = self.mlp.forward_unchecked(features);
        let mu = out.slice(s![.., ..self.d]).to_owned();
        let logvar = out
            .slice(s![.., self.d..])
            .mapv(|l| LOGVAR_BOUND * libm::tanhf(l / LOGVAR_BOUND));
        Ok((mu, logvar))
    }

    /// Encodes pair features `[M, in]` and adds them to a user's running natural parameters.
    pub fn accumulate(
        &self,
        params: &mut NaturalParams,
        features: ArrayView2<'_, f32>,
    ) -> MathResult<()> {
        let (mu, logvar) = self.encode(features)?;
        params.observe_batch(mu.view(), logvar.view())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::MathError;
    use crate::math::mlp::Linear;
    use ndarray::array;

    #[test]
    fn pair_feature_layout() {
        let ec = array![1.0, 4.0];
        let er = array![3.0, 0.0];
        assert_eq!(
            pair_feature(ec.view(), er.view(), None).unwrap(),
            array![2.0, 2.0, -2.0, 4.0]
        );
        let dphi = array![0.5, -1.5, 2.0];
        assert_eq!(
            pair_feature(ec.view(), er.view(), Some(dphi.view())).unwrap(),
            array![2.0, 2.0, -2.0, 4.0, 0.5, -1.5, 2.0]
        );
    }

    #[test]
    fn pair_features_batch_matches_single() {
        let ec = array![[1.0, 2.0], [0.5, -1.0], [3.0, 3.0]];
        let er = array![[0.0, 1.0], [1.5, 1.0], [-3.0, 2.0]];
        let dphi = array![[1.0], [2.0], [3.0]];
        let batch = pair_features(ec.view(), er.view(), Some(dphi.view())).unwrap();
        assert_eq!(batch.dim(), (3, 5));
        for i in 0..3 {
            let one = pair_feature(ec.row(i), er.row(i), Some(dphi.row(i))).unwrap();
            assert_eq!(batch.row(i), one);
        }
    }

    #[test]
    fn pair_feature_errors_name_the_field() {
        let a = array![1.0, 2.0];
        let b = array![1.0, 2.0, 3.0];
        assert_eq!(
            pair_feature(a.view(), b.view(), None).unwrap_err(),
            MathError::DimensionMismatch {
                field: "e_rejected (columns)",
                expected: 2,
                got: 3
            }
        );
        let nan = array![1.0, f32::NAN];
        assert_eq!(
            pair_feature(a.view(), nan.view(), None).unwrap_err(),
            MathError::NonFinite {
                field: "e_rejected",
                index: 1
            }
        );
        let ec = Array2::<f32>::zeros((2, 2));
        let dphi = Array2::<f32>::zeros((3, 1));
        assert_eq!(
            pair_features(ec.view(), ec.view(), Some(dphi.view())).unwrap_err(),
            MathError::DimensionMismatch {
                field: "dphi (rows)",
                expected: 2,
                got: 3
            }
        );
    }

    /// An encoder whose MLP passes `x` through and whose output is `[x ; scale·x]`, so μ and ℓ
    /// can be read off.
    fn identityish_encoder(scale: f32) -> Encoder {
        // l1 = [I; −I] with gelu on top; l2 combines them back to x since gelu(x) − gelu(−x) = x.
        let l1 = Linear::new(array![[1.0], [-1.0]], array![0.0, 0.0]).unwrap();
        let l2 = Linear::new(array![[1.0, -1.0], [scale, -scale]], array![0.0, 0.0]).unwrap();
        Encoder::new(Mlp::new(l1, l2).unwrap(), 1).unwrap()
    }

    #[test]
    fn encode_splits_mu_and_bounds_logvar() {
        let enc = identityish_encoder(100.0);
        let (mu, logvar) = enc.encode(array![[0.001], [0.5], [-2.0]].view()).unwrap();
        for (m, want) in mu.iter().zip([0.001_f32, 0.5, -2.0]) {
            assert!((m - want).abs() < 1e-5, "mu {m} vs {want}");
        }
        // ℓ = 10·tanh(100·x/10): ≈ 0.1 for x = 0.001 (near-identity), saturating at ±10.
        assert!(
            (logvar[[0, 0]] - 10.0 * (0.01_f32).tanh()).abs() < 1e-4,
            "{logvar}"
        );
        assert!(logvar[[1, 0]] > 9.99 && logvar[[1, 0]] <= LOGVAR_BOUND);
        assert!(logvar[[2, 0]] < -9.99 && logvar[[2, 0]] >= -LOGVAR_BOUND);
    }

    #[test]
    fn encoder_checks_output_width() {
        let l1 = Linear::new(Array2::zeros((4, 3)), Array1::zeros(4)).unwrap();
        let l2 = Linear::new(Array2::zeros((5, 4)), Array1::zeros(5)).unwrap();
        assert_eq!(
            Encoder::new(Mlp::new(l1, l2).unwrap(), 2).unwrap_err(),
            MathError::DimensionMismatch {
                field: "encoder.mlp output width (2d)",
                expected: 4,
                got: 5
            }
        );
    }
}
