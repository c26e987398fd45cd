//! CPU thread pools: candle's rayon kernels and, with the `mkl` feature, Intel MKL's OpenMP
//! matrix products. Set once, before the first tensor operation.

/// Sizes every CPU pool the trainer uses to `n` threads (at least 1).
pub fn set(n: usize) {
    let n = n.max(1);
    // candle's CPU kernels size their rayon pool from this variable when it is first built.
    std::env::set_var("RAYON_NUM_THREADS", n.to_string());
    #[cfg(feature = "mkl")]
    mkl::set(n);
}

/// The library behind candle's CPU matrix products in this build.
pub fn gemm_library() -> &'static str {
    if cfg!(feature = "mkl") {
        "Intel MKL"
    } else {
        "gemm crate"
    }
}

#[cfg(feature = "mkl")]
mod mkl {
    use std::ffi::c_int;

    extern "C" {
        fn MKL_Set_Num_Threads(n: c_int);
    }

    pub(super) fn set(n: usize) {
        // Intel OpenMP's workers otherwise spin for 200 ms after each product, taking the
        // cores candle's rayon kernels need next; the runtime reads this when it starts.
        if std::env::var_os("KMP_BLOCKTIME").is_none() {
            std::env::set_var("KMP_BLOCKTIME", "0");
        }
        let n = c_int::try_from(n).unwrap_or(c_int::MAX);
        // SAFETY: a setter of MKL's global thread count; no pointers are passed.
        unsafe { MKL_Set_Num_Threads(n) }
    }
}
