//! `exp` over a slice in a form the compiler vectorises: glibc's `expf` is one scalar call per
//! element, and the softmax's scores and SwiGLU's σ made it 10 % of the tiny backbone's step.
//!
//! The method is Cephes' `expf`: `x = n·ln 2 + r` with `n` the nearest integer to `x / ln 2`
//! and `|r| ≤ ln 2 / 2`, a degree-6 polynomial for `e^r`, and `2^n` built in the exponent bits.
//! Branch-free, with integer tricks instead of float-to-int conversions, so each step is one
//! SIMD instruction. Accurate to 2 ulp on the normal range (tested against `f32::exp`); inputs
//! below −87.3 give `e^−87.3` (≈ 1.2e−38, where the true value is subnormal or 0) and above 88.3
//! give `e^88.3`; NaN stays NaN.

/// ln 2 split in two, `C1` exact in few bits so that `n·C1` is exact.
const C1: f32 = 0.693_359_4;
const C2: f32 = -2.121_944_4e-4;
/// 1.5·2^23: adding it rounds a float of magnitude < 2^22 to an integer held in the low bits.
const ROUND: f32 = 12_582_912.0;
const LO: f32 = -87.3;
const HI: f32 = 88.3;

/// `e^x` (see the module's accuracy note); inline so that a loop over a slice vectorises.
#[inline(always)]
pub(super) fn exp(x: f32) -> f32 {
    // Comparisons rather than min/max, so that NaN passes through.
    let x = if x < LO { LO } else { x };
    let x = if x > HI { HI } else { x };
    let t = x * std::f32::consts::LOG2_E + ROUND;
    let n = t - ROUND;
    let r = x - n * C1 - n * C2;
    let z = r * r;
    let p = (((((1.987_569_1e-4 * r + 1.398_199_9e-3) * r + 8.333_452e-3) * r + 4.166_579_6e-2)
        * r
        + 1.666_666_5e-1)
        * r
        + 0.5)
        * z
        + r
        + 1.0;
    // n sits in t's low mantissa bits (offset by ROUND's own bits): 2^n = (n + 127) << 23.
    let n_bits = t.to_bits().wrapping_sub(ROUND.to_bits());
    p * f32::from_bits(n_bits.wrapping_add(127) << 23)
}

/// Whether this CPU runs the 8-wide (AVX2) versions. Without FMA contraction (Rust never
/// contracts) both versions round the same, so the choice changes no result.
#[cfg(target_arch = "x86_64")]
fn wide() -> bool {
    std::arch::is_x86_feature_detected!("avx2")
}

/// `v[i] = e^(v[i] − shift)` in place, exactly 0 where `v[i] − shift < −87.3` (a masked score:
/// there `e^z` is below 1.2e−38, nothing beside a softmax row's sum of at least 1).
pub(super) fn exp_shifted(v: &mut [f32], shift: f32) {
    #[cfg(target_arch = "x86_64")]
    if wide() {
        // SAFETY: the CPU has AVX2 (checked above).
        return unsafe { exp_shifted_avx2(v, shift) };
    }
    exp_shifted_any(v, shift)
}

#[inline(always)]
fn exp_shifted_any(v: &mut [f32], shift: f32) {
    for v in v.iter_mut() {
        let z = *v - shift;
        *v = if z < LO { 0.0 } else { exp(z) };
    }
}

/// [`exp_shifted_any`] compiled for AVX2 (the build's baseline is SSE2, 4 lanes).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn exp_shifted_avx2(v: &mut [f32], shift: f32) {
    exp_shifted_any(v, shift)
}

/// `out[i] = σ(a[i]) = 1 / (1 + e^−a[i])` for equal-length slices.
pub(super) fn sigmoid(out: &mut [f32], a: &[f32]) {
    #[cfg(target_arch = "x86_64")]
    if wide() {
        // SAFETY: the CPU has AVX2 (checked above).
        return unsafe { sigmoid_avx2(out, a) };
    }
    sigmoid_any(out, a)
}

#[inline(always)]
fn sigmoid_any(out: &mut [f32], a: &[f32]) {
    for (o, &v) in out.iter_mut().zip(a) {
        *o = 1.0 / (1.0 + exp(-v));
    }
}

/// [`sigmoid_any`] compiled for AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn sigmoid_avx2(out: &mut [f32], a: &[f32]) {
    sigmoid_any(out, a)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Distance in units in the last place between two positive finite floats.
    fn ulps(a: f32, b: f32) -> u32 {
        a.to_bits().abs_diff(b.to_bits())
    }

    #[test]
    fn within_two_ulp_of_libm_on_the_normal_range() {
        let mut worst = 0;
        let mut x = -87.0f32;
        while x < 88.0 {
            worst = worst.max(ulps(exp(x), x.exp()));
            x += 1.3e-3;
        }
        for x in [
            0.0f32,
            -0.0,
            1.0,
            -1.0,
            1e-8,
            -1e-8,
            0.5,
            -0.346_573_6,
            0.346_573_6,
        ] {
            worst = worst.max(ulps(exp(x), x.exp()));
        }
        assert!(worst <= 2, "{worst} ulp");
    }

    #[test]
    fn every_version_gives_the_same_bits() {
        let x: Vec<f32> = (0..1000).map(|i| (i as f32 - 500.0) * 0.2).collect();
        let (mut a, mut b) = (x.clone(), x.clone());
        exp_shifted(&mut a, 1.5);
        exp_shifted_any(&mut b, 1.5);
        assert!(a.iter().zip(&b).all(|(p, q)| p.to_bits() == q.to_bits()));
        let (mut c, mut d) = (vec![0.0; x.len()], vec![0.0; x.len()]);
        sigmoid(&mut c, &x);
        sigmoid_any(&mut d, &x);
        assert!(c.iter().zip(&d).all(|(p, q)| p.to_bits() == q.to_bits()));
        // Scalar calls (no vectorisation) agree too.
        assert!(x
            .iter()
            .zip(&d)
            .all(|(&v, q)| (1.0 / (1.0 + exp(-v))).to_bits() == q.to_bits()));
    }

    #[test]
    fn the_ends_and_nan() {
        assert!(exp(f32::NAN).is_nan());
        assert!(exp(-1000.0) > 0.0 && exp(-1000.0) < 1.3e-38);
        assert!(exp(f32::MIN) < 1.3e-38);
        assert!(exp(f32::NEG_INFINITY) < 1.3e-38);
        assert!(exp(1000.0).is_finite() && exp(1000.0) > 2e38);
        let mut s = [0.0f32; 3];
        sigmoid(&mut s, &[-1000.0, 0.0, 1000.0]);
        assert!(s[0] >= 0.0 && s[0] < 1e-38);
        assert_eq!(s[1], 0.5);
        assert_eq!(s[2], 1.0);
    }
}
