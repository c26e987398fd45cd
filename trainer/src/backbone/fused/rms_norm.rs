//! RmsNorm over the last axis, `y = x · w / √(mean(x²) + ε)`, forward and backward in one pass
//! each (candle's composition: square, mean, add, sqrt, recip and two broadcast products, and
//! their backward).

use candle_core::{CpuStorage, CustomOp2, Layout, Result, Shape, Tensor, D};

use super::{for_rows, slice};

/// The forward op: `(x [.., n], w [n]) → y [.., n]`.
struct RmsNormOp {
    eps: f32,
}

/// The backward op: `(x, w, dy) → [rows + 1, n]`: `dx` row by row, then `dw` as the last row.
struct RmsNormBwd {
    eps: f32,
}

/// `1 / √(mean(x²) + ε)` of one row (an f32 sum, as candle's mean).
fn inv_rms(x: &[f32], eps: f32) -> f32 {
    let ss: f32 = x.iter().map(|v| v * v).sum();
    1.0 / (ss / x.len() as f32 + eps).sqrt()
}

impl CustomOp2 for RmsNormOp {
    fn name(&self) -> &'static str {
        "vrf-rms-norm"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let x = slice(s1, l1, self.name())?;
        let w = slice(s2, l2, self.name())?;
        let n = w.len();
        if n == 0 || x.len() % n != 0 || l1.dims().last() != Some(&n) {
            candle_core::bail!("{}: weight does not match the last axis", self.name());
        }
        let mut y = vec![0f32; x.len()];
        for_rows(&mut y, n, |i, y| {
            let x = &x[i * n..(i + 1) * n];
            let inv = inv_rms(x, self.eps);
            for ((y, &x), &w) in y.iter_mut().zip(x).zip(w) {
                *y = x * inv * w;
            }
        });
        Ok((CpuStorage::F32(y), l1.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _y: &Tensor,
        dy: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let n = w.elem_count();
        let dy = dy.contiguous()?;
        let both = x.apply_op3_no_bwd(w, &dy, &RmsNormBwd { eps: self.eps })?;
        let rows = x.elem_count() / n;
        let dx = both.narrow(0, 0, rows)?.reshape(x.shape())?;
        let dw = both.narrow(0, rows, 1)?.reshape(w.shape())?;
        Ok((Some(dx), Some(dw)))
    }
}

impl candle_core::CustomOp3 for RmsNormBwd {
    fn name(&self) -> &'static str {
        "vrf-rms-norm-bwd"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let x = slice(s1, l1, self.name())?;
        let w = slice(s2, l2, self.name())?;
        let dy = slice(s3, l3, self.name())?;
        let n = w.len();
        if n == 0 || x.len() % n != 0 || dy.len() != x.len() {
            candle_core::bail!("{}: shapes do not match", self.name());
        }
        let rows = x.len() / n;
        let mut out = vec![0f32; x.len() + n];
        let (dx, dw) = out.split_at_mut(x.len());
        // u = dy·w; dx = inv·u − x·inv³·mean(u·x); dw = Σ_rows dy·x·inv.
        for_rows(dx, n, |i, dx| {
            let (x, dy) = (&x[i * n..(i + 1) * n], &dy[i * n..(i + 1) * n]);
            let inv = inv_rms(x, self.eps);
            let dot: f32 = x.iter().zip(dy).zip(w).map(|((x, g), w)| x * g * w).sum();
            let c = inv * inv * inv * dot / n as f32;
            for (((dx, &x), &g), &w) in dx.iter_mut().zip(x).zip(dy).zip(w) {
                *dx = inv * g * w - x * c;
            }
        });
        // The weight's gradient sums over rows: one thread, rows in order (deterministic).
        for i in 0..rows {
            let (x, dy) = (&x[i * n..(i + 1) * n], &dy[i * n..(i + 1) * n]);
            let inv = inv_rms(x, self.eps);
            for ((dw, &x), &g) in dw.iter_mut().zip(x).zip(dy) {
                *dw += g * x * inv;
            }
        }
        Ok((CpuStorage::F32(out), Shape::from((rows + 1, n))))
    }
}

/// RmsNorm of `x` over its last axis with weight `w`: the fused kernel where it serves `x`,
/// candle's composition elsewhere.
pub(crate) fn rms_norm(x: &Tensor, w: &Tensor, eps: f64) -> Result<Tensor> {
    if super::serves(x) && super::serves(w) {
        x.contiguous()?
            .apply_op2(&w.contiguous()?, RmsNormOp { eps: eps as f32 })
    } else {
        composed(x, w, eps)
    }
}

/// candle's composition (the reference, and the path off the CPU).
pub(crate) fn composed(x: &Tensor, w: &Tensor, eps: f64) -> Result<Tensor> {
    let inv = (x.sqr()?.mean_keepdim(D::Minus1)? + eps)?.sqrt()?.recip()?;
    x.broadcast_mul(&inv)?.broadcast_mul(w)
}

#[cfg(test)]
mod tests {
    use super::super::check::{finite_difference, grads, max_rel, tensor, var};
    use super::*;

    #[test]
    fn matches_the_composition_in_values_and_gradients() {
        for (shape, n) in [
            (vec![3, 5, 64], 64),
            (vec![2, 40, 4, 16], 16),
            (vec![700, 128], 128),
        ] {
            let x = var(&tensor(&shape, 1, 2.0));
            let w = var(&(tensor(&[n], 2, 0.5) + 1.0).unwrap());
            let up = tensor(&shape, 3, 1.0);
            let fused = rms_norm(x.as_tensor(), w.as_tensor(), 1e-6).unwrap();
            let plain = composed(x.as_tensor(), w.as_tensor(), 1e-6).unwrap();
            assert!(max_rel(&fused, &plain) <= 1e-5, "{shape:?}");
            let gf = grads(fused, &up);
            let gp = grads(plain, &up);
            for v in [&x, &w] {
                let (a, b) = (gf.get(v).unwrap(), gp.get(v).unwrap());
                assert!(max_rel(a, b) <= 1e-5, "{shape:?}: {}", max_rel(a, b));
            }
            let fd = finite_difference(
                x.as_tensor(),
                gf.get(&x).unwrap(),
                |t| composed(t, &w.to_dtype(candle_core::DType::F64)?, 1e-6),
                &up,
            );
            assert!(fd <= 1e-4, "{shape:?}: finite differences {fd}");
        }
    }
}
