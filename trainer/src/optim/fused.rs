//! AdamW's element-wise update as three fused in-place CPU passes (candle `InplaceOp`s): the
//! moments, then the weights. candle's tensor ops would make about a dozen full-size temporaries
//! per variable (several GB and most of a step's time for Qwen3-0.6B); these touch each element
//! once per pass and allocate nothing.

use candle_core::{CpuStorage, InplaceOp2, InplaceOp3, Layout, Result, Tensor};

/// `m ← β·m + (1 − β)·s·g` (or with `(s·g)²` for the second moment).
struct Moment {
    beta: f32,
    scale: f32,
    square: bool,
}

/// `θ ← θ·(1 − lr·λ) − lr·(m / c₁) / (√(v / c₂) + ε)`.
struct Apply {
    lr: f32,
    decay: f32,
    c1: f32,
    c2: f32,
    eps: f32,
}

/// The contiguous f32 slice of a storage under `l`.
fn slice<'a>(s: &'a CpuStorage, l: &Layout, what: &str) -> Result<&'a [f32]> {
    let (start, end) = l
        .contiguous_offsets()
        .ok_or_else(|| candle_core::Error::Msg(format!("fused AdamW: {what} is not contiguous")))?;
    match s {
        CpuStorage::F32(v) => Ok(&v[start..end]),
        _ => candle_core::bail!("fused AdamW: {what} is not f32"),
    }
}

fn slice_mut<'a>(s: &'a mut CpuStorage, l: &Layout, what: &str) -> Result<&'a mut [f32]> {
    let (start, end) = l
        .contiguous_offsets()
        .ok_or_else(|| candle_core::Error::Msg(format!("fused AdamW: {what} is not contiguous")))?;
    match s {
        CpuStorage::F32(v) => Ok(&mut v[start..end]),
        _ => candle_core::bail!("fused AdamW: {what} is not f32"),
    }
}

impl InplaceOp2 for Moment {
    fn name(&self) -> &'static str {
        "adamw-moment"
    }

    fn cpu_fwd(
        &self,
        s1: &mut CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<()> {
        let g = slice(s2, l2, "gradient")?;
        let m = slice_mut(s1, l1, "moment")?;
        if m.len() != g.len() {
            candle_core::bail!("fused AdamW: moment and gradient sizes differ");
        }
        let (b, a) = (self.beta, 1.0 - self.beta);
        if self.square {
            for (m, &g) in m.iter_mut().zip(g) {
                let g = g * self.scale;
                *m = *m * b + g * g * a;
            }
        } else {
            for (m, &g) in m.iter_mut().zip(g) {
                *m = *m * b + g * self.scale * a;
            }
        }
        Ok(())
    }
}

impl InplaceOp3 for Apply {
    fn name(&self) -> &'static str {
        "adamw-apply"
    }

    fn cpu_fwd(
        &self,
        s1: &mut CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<()> {
        let (m, v) = (
            slice(s2, l2, "first moment")?,
            slice(s3, l3, "second moment")?,
        );
        let w = slice_mut(s1, l1, "weight")?;
        if w.len() != m.len() || w.len() != v.len() {
            candle_core::bail!("fused AdamW: weight and moment sizes differ");
        }
        let keep = 1.0 - self.lr * self.decay;
        for ((w, &m), &v) in w.iter_mut().zip(m).zip(v) {
            *w = *w * keep - self.lr * ((m / self.c1) / ((v / self.c2).sqrt() + self.eps));
        }
        Ok(())
    }
}

/// One AdamW update of `theta` (f32, contiguous, on the CPU) in place, its moments `m`, `v`
/// updated in place too; `scale` multiplies the gradient (clipping), `decay` is λ (0 for
/// variables that are not decayed), `c` the bias corrections (1 − β₁ᵗ, 1 − β₂ᵗ).
#[allow(clippy::too_many_arguments)]
pub(super) fn step(
    theta: &Tensor,
    grad: &Tensor,
    m: &Tensor,
    v: &Tensor,
    (b1, b2, eps): (f64, f64, f64),
    scale: f64,
    lr: f64,
    decay: f64,
    (c1, c2): (f64, f64),
) -> Result<()> {
    let grad = grad.contiguous()?;
    m.inplace_op2(
        &grad,
        &Moment {
            beta: b1 as f32,
            scale: scale as f32,
            square: false,
        },
    )?;
    v.inplace_op2(
        &grad,
        &Moment {
            beta: b2 as f32,
            scale: scale as f32,
            square: true,
        },
    )?;
    theta.inplace_op3(
        m,
        v,
        &Apply {
            lr: lr as f32,
            decay: decay as f32,
            c1: c1 as f32,
            c2: c2 as f32,
            eps: eps as f32,
        },
    )
}
