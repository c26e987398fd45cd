//! Deterministic random numbers and tolerances for the unit tests (no `rand` in the runtime).

use ndarray::{Array1, Array2, ArrayView1};

/// SplitMix64: small, seeded, good enough for test inputs.
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
        Self(seed)
    }

    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub(crate) fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    pub(crate) fn uniform(&mut self, lo: f32, hi: f32) -> f32 {
        lo + (hi - lo) * self.unit() as f32
    }

    /// Standard normal by Box–Muller.
    pub(crate) fn normal(&mut self) -> f32 {
        let u1 = 1.0 - self.unit();
        let u2 = self.unit();
        ((-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()) as f32
    }

    pub(crate) fn normal_array(&mut self, shape: (usize, usize), scale: f32) -> Array2<f32> {
        Array2::from_shape_simple_fn(shape, || scale * self.normal())
    }

    pub(crate) fn normal_vec(&mut self, n: usize, scale: f32) -> Array1<f32> {
        Array1::from_shape_simple_fn(n, || scale * self.normal())
    }

    pub(crate) fn uniform_array(&mut self, shape: (usize, usize), lo: f32, hi: f32) -> Array2<f32> {
        Array2::from_shape_simple_fn(shape, || self.uniform(lo, hi))
    }

    /// A random point strictly inside the simplex.
    pub(crate) fn simplex(&mut self, k: usize) -> Array1<f32> {
        let raw = Array1::from_shape_simple_fn(k, || 0.2 + self.unit() as f32);
        let total = raw.sum();
        raw / total
    }

    pub(crate) fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            let j = (self.next_u64() % (i as u64 + 1)) as usize;
            v.swap(i, j);
        }
    }
}

/// Asserts `|a − b| ≤ tol·max(1, |b|)` element-wise.
pub(crate) fn assert_close(a: ArrayView1<'_, f32>, b: ArrayView1<'_, f32>, tol: f32) {
    assert_eq!(a.len(), b.len(), "lengths differ: {a} vs {b}");
    for (i, (x, y)) in a.iter().zip(b.iter()).enumerate() {
        assert!(
            (x - y).abs() <= tol * y.abs().max(1.0),
            "index {i}: {x} vs {y} (tol {tol}); {a} vs {b}"
        );
    }
}
