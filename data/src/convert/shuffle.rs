//! Seeded draws without replacement, shared by the converters.

use rand::Rng;

/// Draws distinct indices of `0..n` uniformly at random, lazily (partial Fisher–Yates): a draw
/// of k costs O(k + rejected), and the permutation is reused between draws, which keeps each new
/// draw uniform.
#[derive(Debug, Clone)]
pub struct Draw {
    perm: Vec<usize>,
}

impl Draw {
    /// A drawer over `0..n`.
    pub fn new(n: usize) -> Self {
        Self {
            perm: (0..n).collect(),
        }
    }

    /// Up to `k` values `accept(i)` for distinct indices `i` in random order, skipping those it
    /// maps to `None`; fewer only when `0..n` runs out.
    pub fn take<T>(
        &mut self,
        rng: &mut impl Rng,
        k: usize,
        mut accept: impl FnMut(usize) -> Option<T>,
    ) -> Vec<T> {
        let n = self.perm.len();
        let mut out = Vec::with_capacity(k);
        let mut i = 0;
        while out.len() < k && i < n {
            let j = rng.random_range(i..n);
            self.perm.swap(i, j);
            if let Some(v) = accept(self.perm[i]) {
                out.push(v);
            }
            i += 1;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn draws_are_distinct_seeded_and_respect_accept() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let mut d = Draw::new(50);
        let a = d.take(&mut rng, 20, |i| (i % 2 == 0).then_some(i));
        assert_eq!(a.len(), 20);
        assert!(a.iter().all(|i| i % 2 == 0));
        let mut s = a.clone();
        s.sort();
        s.dedup();
        assert_eq!(s.len(), 20);
        // Only 25 even indices exist: a draw of 30 stops at 25.
        assert_eq!(
            d.take(&mut rng, 30, |i| (i % 2 == 0).then_some(i)).len(),
            25
        );
        let mut rng2 = ChaCha8Rng::seed_from_u64(3);
        assert_eq!(
            Draw::new(50).take(&mut rng2, 20, |i| (i % 2 == 0).then_some(i)),
            a
        );
    }
}
