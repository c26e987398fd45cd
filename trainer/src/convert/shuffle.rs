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

    /// Up to `k` distinct indices in random order, skipping those `accept` refuses; fewer only
    /// when `0..n` runs out.
    pub fn take(
        &mut self,
        rng: &mut impl Rng,
        k: usize,
        mut accept: impl FnMut(usize) -> bool,
    ) -> Vec<usize> {
        let n = self.perm.len();
        let mut out = Vec::with_capacity(k);
        let mut i = 0;
        while out.len() < k && i < n {
            let j = rng.random_range(i..n);
            self.perm.swap(i, j);
            if accept(self.perm[i]) {
                out.push(self.perm[i]);
            }
            i += 1;
        }
        out
    }
}

/// A seeded shuffle of a whole slice.
pub fn shuffle<T>(rng: &mut impl Rng, items: &mut [T]) {
    use rand::seq::SliceRandom;
    items.shuffle(rng);
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
        let a = d.take(&mut rng, 20, |i| i % 2 == 0);
        assert_eq!(a.len(), 20);
        assert!(a.iter().all(|i| i % 2 == 0));
        let mut s = a.clone();
        s.sort();
        s.dedup();
        assert_eq!(s.len(), 20);
        // Only 25 even indices exist: a draw of 30 stops at 25.
        assert_eq!(d.take(&mut rng, 30, |i| i % 2 == 0).len(), 25);
        let mut rng2 = ChaCha8Rng::seed_from_u64(3);
        assert_eq!(Draw::new(50).take(&mut rng2, 20, |i| i % 2 == 0), a);
    }
}
