//! Attention's scaled, masked softmax over the last axis, `softmax(s·x + mask)`, forward and
//! backward in one pass each (candle's composition: scale, broadcast add, max, subtract, exp,
//! sum, divide, and their backward). The mask is a constant: it gets no gradient (candle's
//! backward would build one per layer and keep it to the end of the step).

use candle_core::{CpuStorage, CustomOp2, Layout, Result, Shape, Tensor, D};

use super::{exp, for_rows, slice};

/// The forward op: `(x [.., R, L], mask [R', L]) → y`; row `i` of the flattened `x` takes mask
/// row `i mod R'` (the mask repeats over batch and heads, and over grouped query heads stacked
/// along the row axis).
struct MaskedSoftmax {
    scale: f32,
}

/// The backward op: `(y, dy) → dx = s · y · (dy − Σ dy·y)`.
struct MaskedSoftmaxBwd {
    scale: f32,
}

impl CustomOp2 for MaskedSoftmax {
    fn name(&self) -> &'static str {
        "vrf-masked-softmax"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let x = slice(s1, l1, self.name())?;
        let mask = slice(s2, l2, self.name())?;
        let n = l1.dims().last().copied().unwrap_or(0);
        if n == 0 || l2.dims().last() != Some(&n) || mask.len() % n != 0 {
            candle_core::bail!("{}: mask does not match the last axis", self.name());
        }
        let mask_rows = mask.len() / n;
        let mut y = vec![0f32; x.len()];
        for_rows(&mut y, n, |i, y| {
            let x = &x[i * n..(i + 1) * n];
            let m = &mask[(i % mask_rows) * n..(i % mask_rows + 1) * n];
            for ((y, &x), &m) in y.iter_mut().zip(x).zip(m) {
                *y = x * self.scale + m;
            }
            let max = row_max(y);
            // The exponentials in a loop of their own (it vectorises), then the sum in order.
            exp::exp_shifted(y, max);
            let sum: f32 = y.iter().sum();
            for y in y.iter_mut() {
                *y /= sum;
            }
        });
        Ok((CpuStorage::F32(y), l1.shape().clone()))
    }

    fn bwd(
        &self,
        _x: &Tensor,
        _mask: &Tensor,
        y: &Tensor,
        dy: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let dx = y.apply_op2_no_bwd(&dy.contiguous()?, &MaskedSoftmaxBwd { scale: self.scale })?;
        Ok((Some(dx), None))
    }
}

/// The largest element of `v` (−∞ if empty; NaNs ignored, as `f32::max` does), in 8 independent
/// lanes: a single running `f32::max` is a serial chain the compiler cannot vectorise, and it
/// took 8 % of the tiny backbone's step. The maximum is exact, so the order changes nothing.
fn row_max(v: &[f32]) -> f32 {
    let mut lanes = [f32::NEG_INFINITY; 8];
    let chunks = v.chunks_exact(8);
    let rest = chunks.remainder();
    for c in chunks {
        for (l, &x) in lanes.iter_mut().zip(c) {
            *l = if x > *l { x } else { *l };
        }
    }
    let mut max = f32::NEG_INFINITY;
    for &x in lanes.iter().chain(rest) {
        max = if x > max { x } else { max };
    }
    max
}

impl CustomOp2 for MaskedSoftmaxBwd {
    fn name(&self) -> &'static str {
        "vrf-masked-softmax-bwd"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let y = slice(s1, l1, self.name())?;
        let dy = slice(s2, l2, self.name())?;
        let n = l1.dims().last().copied().unwrap_or(0);
        if n == 0 || dy.len() != y.len() {
            candle_core::bail!("{}: shapes do not match", self.name());
        }
        let mut dx = vec![0f32; y.len()];
        for_rows(&mut dx, n, |i, dx| {
            let (y, dy) = (&y[i * n..(i + 1) * n], &dy[i * n..(i + 1) * n]);
            let dot: f32 = y.iter().zip(dy).map(|(y, g)| y * g).sum();
            for ((dx, &y), &g) in dx.iter_mut().zip(y).zip(dy) {
                *dx = self.scale * y * (g - dot);
            }
        });
        Ok((CpuStorage::F32(dx), l1.shape().clone()))
    }
}

/// `softmax(scale·x + mask)` over the last axis, `x: [.., R, L]`, `mask: [R', L]` repeating
/// over the flattened rows of `x` (R' divides R): the fused kernel where it serves, candle's
/// composition elsewhere.
pub(crate) fn masked_softmax(x: &Tensor, mask: &Tensor, scale: f64) -> Result<Tensor> {
    if super::serves(x) && super::serves(mask) {
        x.contiguous()?.apply_op2(
            &mask.contiguous()?,
            MaskedSoftmax {
                scale: scale as f32,
            },
        )
    } else {
        composed(x, mask, scale)
    }
}

/// candle's composition (the reference, and the path off the CPU): the rows of `x` regrouped
/// so that the mask broadcasts over them.
pub(crate) fn composed(x: &Tensor, mask: &Tensor, scale: f64) -> Result<Tensor> {
    let (r, l) = mask.dims2()?;
    let shape = x.shape().clone();
    let grouped = (x * scale)?.reshape(((), r, l))?.broadcast_add(mask)?;
    candle_nn::ops::softmax(&grouped, D::Minus1)?.reshape(shape)
}

#[cfg(test)]
mod tests {
    use super::super::check::{finite_difference, grads, max_rel, tensor, var};
    use super::*;

    fn causal(l: usize) -> Tensor {
        let v: Vec<f32> = (0..l * l)
            .map(|i| if i % l <= i / l { 0.0 } else { f32::MIN })
            .collect();
        Tensor::from_vec(v, (l, l), &candle_core::Device::Cpu).unwrap()
    }

    #[test]
    fn row_max_is_the_maximum() {
        for n in [0, 1, 7, 8, 9, 16, 33, 128] {
            let v: Vec<f32> = (0..n).map(|i| ((i * 37 % 11) as f32 - 5.0) * 0.3).collect();
            let want = v.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            assert_eq!(row_max(&v).to_bits(), want.to_bits(), "{n}");
        }
        let mut v = vec![f32::MIN; 20];
        v[13] = f32::NAN;
        v[17] = -3.0;
        assert_eq!(row_max(&v), -3.0);
    }

    #[test]
    fn matches_the_composition_in_values_and_gradients() {
        // [B, kv, n_rep·L, L] as attention calls it; small and large (the pool).
        for (shape, l) in [(vec![2, 2, 3 * 9, 9], 9), (vec![2, 4, 2 * 64, 64], 64)] {
            let x = var(&tensor(&shape, 7, 8.0));
            let mask = causal(l);
            let up = tensor(&shape, 8, 1.0);
            let scale = 0.25;
            let fused = masked_softmax(x.as_tensor(), &mask, scale).unwrap();
            let plain = composed(x.as_tensor(), &mask, scale).unwrap();
            assert!(max_rel(&fused, &plain) <= 1e-5, "{shape:?}");
            let gf = grads(fused, &up);
            let gp = grads(plain, &up);
            let (a, b) = (gf.get(&x).unwrap(), gp.get(&x).unwrap());
            assert!(max_rel(a, b) <= 1e-5, "{shape:?}: {}", max_rel(a, b));
            // The f64 reference needs its own mask (f32::MIN stays far below every score).
            let mask64 = mask.to_dtype(candle_core::DType::F64).unwrap();
            let fd = finite_difference(x.as_tensor(), a, |t| composed(t, &mask64, scale), &up);
            assert!(fd <= 1e-4, "{shape:?}: finite differences {fd}");
        }
    }
}
