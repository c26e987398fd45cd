//! Fused CPU kernels of the decoder's hot paths, forward and backward, as candle custom ops:
//! RmsNorm, SwiGLU (`silu(a)·b`), the scaled masked softmax of attention and rope (with the
//! head transpose folded in). candle's composition of each makes 5–12 operations, each a fresh
//! full-size buffer and, in the backward, as many again; each kernel here reads its inputs once
//! and writes one buffer. They run on f32 CPU tensors; elsewhere (CUDA, bf16) the callers keep
//! the composition, which is also the reference the tests compare the kernels against.

mod exp;
pub(crate) mod rms_norm;
pub(crate) mod rope;
pub(crate) mod softmax;
pub(crate) mod swiglu;

use std::sync::OnceLock;

use candle_core::{CpuStorage, DType, Layout, Result, Tensor};

/// Whether the fused kernels serve `t`: an f32 tensor on the CPU, unless `VRF_UNFUSED=1` asks for
/// candle's composition everywhere (to compare the two in one build).
pub(crate) fn serves(t: &Tensor) -> bool {
    static OFF: OnceLock<bool> = OnceLock::new();
    let off = *OFF.get_or_init(|| std::env::var("VRF_UNFUSED").is_ok_and(|v| v == "1"));
    !off && t.device().is_cpu() && t.dtype() == DType::F32
}

/// The contiguous f32 slice of a storage under `l`.
pub(super) fn slice<'a>(s: &'a CpuStorage, l: &Layout, op: &str) -> Result<&'a [f32]> {
    let (start, end) = l
        .contiguous_offsets()
        .ok_or_else(|| candle_core::Error::Msg(format!("{op}: input is not contiguous")))?;
    match s {
        CpuStorage::F32(v) => Ok(&v[start..end]),
        _ => candle_core::bail!("{op}: input is not f32"),
    }
}

/// Below this many elements a kernel runs on the calling thread: waking the pool costs more.
const PARALLEL_MIN: usize = 1 << 15;

/// Fills `out` in rows of `row` elements with `f(row_index, row)`, on candle's CPU pool when
/// the work is large enough. Each row is written by one thread.
pub(super) fn for_rows(out: &mut [f32], row: usize, f: impl Fn(usize, &mut [f32]) + Sync) {
    if row == 0 {
        return;
    }
    let rows = out.len() / row;
    if out.len() < PARALLEL_MIN {
        for (i, r) in out.chunks_exact_mut(row).enumerate() {
            f(i, r);
        }
        return;
    }
    // Disjoint rows of one buffer handed to several threads.
    struct Rows(*mut f32);
    // SAFETY: every range of rows below is written by exactly one thread, and the buffer
    // outlives the pool call, which returns only when every thread is done.
    unsafe impl Sync for Rows {}
    let base = Rows(out.as_mut_ptr());
    let base = &base;
    candle_core::utils::barrier_pool().execute_chunked(rows, |range| {
        for i in range {
            // SAFETY: row i lies inside `out` (i < rows) and no other thread touches it.
            let r = unsafe { std::slice::from_raw_parts_mut(base.0.add(i * row), row) };
            f(i, r);
        }
    });
}

#[cfg(test)]
pub(crate) mod check {
    //! Shared by the kernels' tests: relative comparison and a finite-difference gradient.

    use candle_core::backprop::GradStore;
    use candle_core::{Device, Result, Tensor, Var};

    /// Largest `|a − b| / max(|b|, 1)` over all elements (relative, absolute near zero).
    pub(crate) fn max_rel(a: &Tensor, b: &Tensor) -> f32 {
        let a = a.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let b = b.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert_eq!(a.len(), b.len());
        a.iter()
            .zip(&b)
            .map(|(x, y)| (x - y).abs() / y.abs().max(1.0))
            .fold(0.0, f32::max)
    }

    /// A deterministic pseudo-random tensor in `[-scale, scale)`.
    pub(crate) fn tensor(shape: &[usize], seed: u64, scale: f32) -> Tensor {
        let n: usize = shape.iter().product();
        let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        let v: Vec<f32> = (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                ((s >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * scale
            })
            .collect();
        Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
    }

    /// Central finite differences (in f64) of `Σ f(x)·w` at a few elements of `x`, against
    /// `grad` (the analytic gradient of that sum): the largest relative difference.
    pub(crate) fn finite_difference(
        x: &Tensor,
        grad: &Tensor,
        f: impl Fn(&Tensor) -> Result<Tensor>,
        w: &Tensor,
    ) -> f64 {
        let x64 = x.to_dtype(candle_core::DType::F64).unwrap();
        let w64 = w.to_dtype(candle_core::DType::F64).unwrap();
        let flat = x64.flatten_all().unwrap().to_vec1::<f64>().unwrap();
        let g = grad.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let h = 1e-4;
        let loss = |v: Vec<f64>| -> f64 {
            let t = Tensor::from_vec(v, x.shape(), &Device::Cpu).unwrap();
            (f(&t).unwrap() * &w64)
                .unwrap()
                .sum_all()
                .unwrap()
                .to_scalar::<f64>()
                .unwrap()
        };
        let step = (flat.len() / 23).max(1);
        let mut worst: f64 = 0.0;
        for i in (0..flat.len()).step_by(step) {
            let (mut up, mut down) = (flat.clone(), flat.clone());
            up[i] += h;
            down[i] -= h;
            let fd = (loss(up) - loss(down)) / (2.0 * h);
            worst = worst.max((fd - f64::from(g[i])).abs() / fd.abs().max(1.0));
        }
        worst
    }

    /// The gradients of `Σ y·up` (a fixed upstream gradient `up` into `y`'s backward).
    pub(crate) fn grads(y: Tensor, up: &Tensor) -> GradStore {
        (y * up).unwrap().sum_all().unwrap().backward().unwrap()
    }

    /// `x` as a variable (so candle's backward reaches it).
    pub(crate) fn var(x: &Tensor) -> Var {
        Var::from_tensor(x).unwrap()
    }
}
