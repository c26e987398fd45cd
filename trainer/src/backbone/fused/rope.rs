//! Rope with the head transpose folded in: `x [B, L, H, d]` (a projection's output, heads
//! split) → `[B, H, L, d]`, `y = x·cos + rotate_half(x)·sin` (HF's convention,
//! `rotate_half(x) = [−x₂, x₁]`), forward and backward in one pass each. candle's composition
//! transposes, makes the layout contiguous, narrows twice, negates, concatenates, multiplies
//! twice and adds, and back again; cos and sin (constants) get no gradient here.

use candle_core::{CpuStorage, CustomOp3, Layout, Result, Shape, Tensor, D};

use super::{for_rows, slice};

/// The forward op: `(x [B, L, H, d], cos [L, d], sin [L, d]) → [B, H, L, d]`.
struct RopeOp;

/// The backward op: `(dy [B, H, L, d], cos, sin) → dx [B, L, H, d]`.
struct RopeBwd {
    /// `(B, L, H, d)` of the forward's input.
    dims: (usize, usize, usize, usize),
}

/// `(B, L, H, d)` of a 4-D layout and the checks both directions share.
fn dims(l: &Layout, cos: &[f32], sin: &[f32], op: &str) -> Result<(usize, usize, usize, usize)> {
    let &[b, s, h, d] = l.dims() else {
        candle_core::bail!("{op}: expected a 4-D input");
    };
    if d % 2 != 0 || cos.len() != s * d || sin.len() != s * d {
        candle_core::bail!("{op}: rope tables do not match [L, d]");
    }
    Ok((b, s, h, d))
}

impl CustomOp3 for RopeOp {
    fn name(&self) -> &'static str {
        "vrf-rope"
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
        let (cos, sin) = (slice(s2, l2, self.name())?, slice(s3, l3, self.name())?);
        let (b, s, h, d) = dims(l1, cos, sin, self.name())?;
        let half = d / 2;
        let mut y = vec![0f32; x.len()];
        // Output row (bi, hi, p) reads input row (bi, p, hi).
        for_rows(&mut y, d, |row, y| {
            let (bi, hi, p) = (row / (h * s), row / s % h, row % s);
            let x = &x[((bi * s + p) * h + hi) * d..][..d];
            let (c, sn) = (&cos[p * d..(p + 1) * d], &sin[p * d..(p + 1) * d]);
            for i in 0..half {
                y[i] = x[i] * c[i] - x[i + half] * sn[i];
                y[i + half] = x[i + half] * c[i + half] + x[i] * sn[i + half];
            }
        });
        Ok((CpuStorage::F32(y), Shape::from((b, h, s, d))))
    }

    fn bwd(
        &self,
        x: &Tensor,
        cos: &Tensor,
        sin: &Tensor,
        _y: &Tensor,
        dy: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let dims = x.dims4()?;
        let dx = dy
            .contiguous()?
            .apply_op3_no_bwd(cos, sin, &RopeBwd { dims })?;
        Ok((Some(dx), None, None))
    }
}

impl CustomOp3 for RopeBwd {
    fn name(&self) -> &'static str {
        "vrf-rope-bwd"
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
        let dy = slice(s1, l1, self.name())?;
        let (cos, sin) = (slice(s2, l2, self.name())?, slice(s3, l3, self.name())?);
        let (b, s, h, d) = self.dims;
        if l1.dims() != [b, h, s, d] || cos.len() != s * d || sin.len() != s * d {
            candle_core::bail!("{}: shapes do not match", self.name());
        }
        let half = d / 2;
        let mut dx = vec![0f32; dy.len()];
        // Input row (bi, p, hi) gathers output row (bi, hi, p); the rotation's transpose is
        // `[g₂·sin₂, −g₁·sin₁]`.
        for_rows(&mut dx, d, |row, dx| {
            let (bi, p, hi) = (row / (s * h), row / h % s, row % h);
            let g = &dy[((bi * h + hi) * s + p) * d..][..d];
            let (c, sn) = (&cos[p * d..(p + 1) * d], &sin[p * d..(p + 1) * d]);
            for i in 0..half {
                dx[i] = g[i] * c[i] + g[i + half] * sn[i + half];
                dx[i + half] = g[i + half] * c[i + half] - g[i] * sn[i];
            }
        });
        Ok((CpuStorage::F32(dx), Shape::from((b, s, h, d))))
    }
}

/// Rope of `x: [B, L, H, d]` with tables `cos`, `sin: [L, d]`, returned as `[B, H, L, d]`
/// (contiguous where fused): the fused kernel where it serves, candle's composition elsewhere.
pub(crate) fn rope_heads(x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
    if super::serves(x) && super::serves(cos) && super::serves(sin) {
        x.contiguous()?
            .apply_op3(&cos.contiguous()?, &sin.contiguous()?, RopeOp)
    } else {
        composed(x, cos, sin)
    }
}

/// candle's composition (the reference, and the path off the CPU).
pub(crate) fn composed(x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
    let x = x.transpose(1, 2)?;
    let d = x.dim(D::Minus1)?;
    let x1 = x.narrow(D::Minus1, 0, d / 2)?;
    let x2 = x.narrow(D::Minus1, d / 2, d / 2)?;
    let rot = Tensor::cat(&[&x2.neg()?, &x1], D::Minus1)?;
    x.broadcast_mul(cos)? + rot.broadcast_mul(sin)?
}

#[cfg(test)]
mod tests {
    use super::super::check::{finite_difference, grads, max_rel, tensor, var};
    use super::*;

    #[test]
    fn matches_the_composition_in_values_and_gradients() {
        for (b, s, h, d) in [(2, 5, 3, 8), (2, 64, 4, 64)] {
            let x = var(&tensor(&[b, s, h, d], 9, 2.0));
            let cos = tensor(&[s, d], 10, 1.0);
            let sin = tensor(&[s, d], 11, 1.0);
            let up = tensor(&[b, h, s, d], 12, 1.0);
            let fused = rope_heads(x.as_tensor(), &cos, &sin).unwrap();
            let plain = composed(x.as_tensor(), &cos, &sin).unwrap();
            assert_eq!(fused.dims(), plain.dims());
            assert!(max_rel(&fused, &plain) <= 1e-5);
            let gf = grads(fused, &up);
            let gp = grads(plain, &up);
            let (a, g) = (gf.get(&x).unwrap(), gp.get(&x).unwrap());
            assert!(max_rel(a, g) <= 1e-5, "{}", max_rel(a, g));
            let f64_ = |t: &Tensor| t.to_dtype(candle_core::DType::F64).unwrap();
            let (c64, s64) = (f64_(&cos), f64_(&sin));
            let fd = finite_difference(x.as_tensor(), a, |t| composed(t, &c64, &s64), &up);
            assert!(fd <= 1e-4, "finite differences {fd}");
        }
    }
}
