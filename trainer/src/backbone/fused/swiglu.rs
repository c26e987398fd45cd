//! SwiGLU's gate, `silu(a) · b` with `silu(a) = a·σ(a)`, forward and backward in one pass each
//! (candle's composition: silu and a product, and their backward through σ).

use candle_core::{CpuStorage, CustomOp2, Layout, Result, Shape, Tensor};

use super::{exp, for_rows, slice};

/// Rows the element-wise kernels are cut into for the pool.
const ROW: usize = 4096;

/// The forward op: `(a, b) → silu(a)·b`, same shapes.
struct SwiGluOp;

/// The backward op: `(a, b, dy) → [2, N]`: `da` then `db`.
struct SwiGluBwd;

/// `f(start, row)` over `out` cut into pool-sized rows (the last one shorter), `start` the row's
/// first index in `out`.
fn in_rows(out: &mut [f32], f: impl Fn(usize, &mut [f32]) + Sync) {
    let (whole, rest) = out.split_at_mut(out.len() - out.len() % ROW);
    for_rows(whole, ROW, |r, row| f(r * ROW, row));
    f(whole.len(), rest);
}

/// `out = σ(a)` element-wise (each row one vectorised loop).
fn sigmoid(out: &mut [f32], a: &[f32]) {
    in_rows(out, |start, row| {
        exp::sigmoid(row, &a[start..start + row.len()]);
    });
}

/// `out[i] = f(i)`.
fn fill(out: &mut [f32], f: impl Fn(usize) -> f32 + Sync) {
    update(out, |i, _| f(i));
}

/// `out[i] = f(i, out[i])`.
fn update(out: &mut [f32], f: impl Fn(usize, f32) -> f32 + Sync) {
    in_rows(out, |start, row| {
        for (j, o) in row.iter_mut().enumerate() {
            *o = f(start + j, *o);
        }
    });
}

impl CustomOp2 for SwiGluOp {
    fn name(&self) -> &'static str {
        "vrf-swiglu"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let a = slice(s1, l1, self.name())?;
        let b = slice(s2, l2, self.name())?;
        if l1.shape() != l2.shape() {
            candle_core::bail!("{}: the two halves differ in shape", self.name());
        }
        let mut y = vec![0f32; a.len()];
        sigmoid(&mut y, a);
        update(&mut y, |i, s| a[i] * s * b[i]);
        Ok((CpuStorage::F32(y), l1.shape().clone()))
    }

    fn bwd(
        &self,
        a: &Tensor,
        b: &Tensor,
        _y: &Tensor,
        dy: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let both = a.apply_op3_no_bwd(b, &dy.contiguous()?, &SwiGluBwd)?;
        let da = both.get(0)?.reshape(a.shape())?;
        let db = both.get(1)?.reshape(b.shape())?;
        Ok((Some(da), Some(db)))
    }
}

impl candle_core::CustomOp3 for SwiGluBwd {
    fn name(&self) -> &'static str {
        "vrf-swiglu-bwd"
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
        let a = slice(s1, l1, self.name())?;
        let b = slice(s2, l2, self.name())?;
        let dy = slice(s3, l3, self.name())?;
        let n = a.len();
        if b.len() != n || dy.len() != n {
            candle_core::bail!("{}: shapes do not match", self.name());
        }
        let mut out = vec![0f32; 2 * n];
        let (da, db) = out.split_at_mut(n);
        // σ(a) once per element (the exp is most of this kernel's time): into `da` first,
        // read by `db`, then replaced by silu'(a)·b·dy, silu'(a) = σ(a)·(1 + a·(1 − σ(a))).
        sigmoid(da, a);
        fill(db, |i| dy[i] * a[i] * da[i]);
        update(da, |i, s| dy[i] * b[i] * s * (1.0 + a[i] * (1.0 - s)));
        Ok((CpuStorage::F32(out), Shape::from((2, n))))
    }
}

/// `silu(a) · b`: the fused kernel where it serves both, candle's composition elsewhere.
pub(crate) fn swiglu(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    if super::serves(a) && super::serves(b) && a.shape() == b.shape() {
        a.contiguous()?.apply_op2(&b.contiguous()?, SwiGluOp)
    } else {
        composed(a, b)
    }
}

/// candle's composition (the reference, and the path off the CPU).
pub(crate) fn composed(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    a.silu()? * b
}

#[cfg(test)]
mod tests {
    use super::super::check::{finite_difference, grads, max_rel, tensor, var};
    use super::*;

    #[test]
    fn matches_the_composition_in_values_and_gradients() {
        // Small (one thread) and large (the pool, with a partial last row).
        for shape in [vec![2, 7, 33], vec![3, 100, 300]] {
            let a = var(&tensor(&shape, 4, 6.0));
            let b = var(&tensor(&shape, 5, 2.0));
            let up = tensor(&shape, 6, 1.0);
            let fused = swiglu(a.as_tensor(), b.as_tensor()).unwrap();
            let plain = composed(a.as_tensor(), b.as_tensor()).unwrap();
            assert!(max_rel(&fused, &plain) <= 1e-5, "{shape:?}");
            let gf = grads(fused, &up);
            let gp = grads(plain, &up);
            for v in [&a, &b] {
                let (x, y) = (gf.get(v).unwrap(), gp.get(v).unwrap());
                assert!(max_rel(x, y) <= 1e-5, "{shape:?}: {}", max_rel(x, y));
            }
            let b64 = b.to_dtype(candle_core::DType::F64).unwrap();
            let fd = finite_difference(
                a.as_tensor(),
                gf.get(&a).unwrap(),
                |t| composed(t, &b64),
                &up,
            );
            assert!(fd <= 1e-4, "{shape:?}: finite differences {fd}");
            // Bit for bit the per-element formulas (σ computed once changes no rounding).
            let (av, bv, uv) = (flat(a.as_tensor()), flat(b.as_tensor()), flat(&up));
            let (da, db) = (flat(gf.get(&a).unwrap()), flat(gf.get(&b).unwrap()));
            let sig = |x: f32| 1.0 / (1.0 + exp::exp(-x));
            for i in 0..av.len() {
                let s = sig(av[i]);
                let want_da = uv[i] * bv[i] * s * (1.0 + av[i] * (1.0 - s));
                assert_eq!(da[i].to_bits(), want_da.to_bits(), "da[{i}]");
                assert_eq!(db[i].to_bits(), (uv[i] * av[i] * sig(av[i])).to_bits());
            }
        }
    }

    fn flat(t: &Tensor) -> Vec<f32> {
        t.flatten_all().unwrap().to_vec1::<f32>().unwrap()
    }
}
