//! Batch parallelism ("data parallel" on one machine): a step's texts split across threads.
//!
//! At a small backbone's shapes (the tiny one: 64 wide, 2 layers) each operation is too short
//! for its own threads to pay: candle's pool and the GEMM's workers spend their time waking and
//! waiting, and two threads make a step only 1.1–1.2× faster. Here each of `threads` threads
//! instead runs the backbone's forward and backward on its own share of the step's texts, every
//! operation on one thread, and the shares' weight gradients are summed. The forward keeps each
//! share's graph and returns hidden states whose graph starts at a leaf standing for all of
//! them (as [`super::recompute`] does for the last layer); after the step's `loss.backward()`,
//! [`super::Qwen3::backward_recorded`] hands each share its rows of the leaf's gradient and
//! back-propagates the shares side by side (the vector–Jacobian product of `sum(y ⊙ g)`). Rows
//! are independent in every layer, so the gradients equal the whole batch's up to float
//! summation order. The heads, the loss and the optimizer run on the calling thread.
//!
//! With activation recomputation ([`super::recompute`]) the tape is the recomputation's and
//! only [`Split::map`] is used: each recomputed layer runs its shares side by side, and their
//! halves of the layer's weight gradients are added before the next layer. At Qwen3-0.6B that
//! was faster than splitting each product too (82 s against 92 s a step on 2 cores): threads
//! that meet at the end of every operation wait whenever either is delayed.

use std::sync::Mutex;

use candle_core::backprop::GradStore;
use candle_core::{Result, Tensor, Var};

use super::recompute::add_weight_grads;

/// What the forward of one split batch left for its backward.
struct Entry {
    /// Each share's hidden states `[b_i, L, H]`, with its graph.
    parts: Vec<Tensor>,
    /// The leaf standing for their concatenation; the loss's gradient arrives here.
    leaf: Var,
}

/// The split forwards of a step, waiting for their backward.
pub struct Split {
    /// Threads, each with a share of the texts.
    threads: usize,
    entries: Mutex<Vec<Entry>>,
}

impl std::fmt::Debug for Split {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Split")
            .field("threads", &self.threads)
            .field("pending", &self.lock().len())
            .finish()
    }
}

impl Split {
    /// Splits batches across `threads` threads (at least 1).
    pub fn new(threads: usize) -> Self {
        Self {
            threads: threads.max(1),
            entries: Mutex::new(Vec::new()),
        }
    }

    /// Threads a batch is split across.
    pub fn threads(&self) -> usize {
        self.threads
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Entry>> {
        // A panic while holding the lock leaves a plain Vec behind: still usable.
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Split forwards not yet back-propagated.
    #[cfg(test)]
    pub(super) fn pending(&self) -> usize {
        self.lock().len()
    }

    /// Row ranges `(start, len)` of a batch of `b` rows: at most `threads` shares, as even as
    /// rows allow, none empty.
    pub(super) fn shares(&self, b: usize) -> Vec<(usize, usize)> {
        let n = self.threads.min(b).max(1);
        let (base, extra) = (b / n, b % n);
        let mut start = 0;
        (0..n)
            .map(|i| {
                let len = base + usize::from(i < extra);
                let s = (start, len);
                start += len;
                s
            })
            .collect()
    }

    /// `f` on every share of a `b`-row batch, side by side (the first on the calling thread),
    /// results in row order.
    pub(super) fn map<T: Send>(
        &self,
        b: usize,
        f: impl Fn(usize, usize) -> Result<T> + Sync,
    ) -> Result<Vec<T>> {
        side_by_side(&self.shares(b), |&(s, n)| f(s, n))
    }

    /// Concatenates the shares' outputs `parts` (row order) under a new leaf, remembers them for
    /// [`Split::backward`] and returns the leaf.
    pub(super) fn record(&self, parts: Vec<Tensor>) -> Result<Tensor> {
        let detached: Vec<Tensor> = parts.iter().map(Tensor::detach).collect();
        let leaf = Var::from_tensor(&Tensor::cat(&detached, 0)?)?;
        let out = leaf.as_tensor().clone();
        self.lock().push(Entry { parts, leaf });
        Ok(out)
    }

    /// Back-propagates every recorded forward (newest first) whose leaf received a gradient in
    /// `grads`, the shares side by side, and adds the gradients of `weights` to `grads`. A
    /// forward the loss did not depend on is dropped.
    pub(super) fn backward(&self, grads: &mut GradStore, weights: &[&Tensor]) -> Result<()> {
        let entries = std::mem::take(&mut *self.lock());
        for entry in entries.into_iter().rev() {
            let Some(g) = grads.remove(entry.leaf.as_tensor()) else {
                continue;
            };
            // Each share on its own thread, as the forward split them.
            let jobs: Vec<_> = entry.parts.iter().zip(self.shares(g.dim(0)?)).collect();
            let stores = side_by_side(&jobs, |&(part, (s, n))| {
                let mut gs = (part * g.narrow(0, s, n)?)?.sum_all()?.backward()?;
                // Only the weights' gradients: candle also returns activation-sized ones of the
                // constants (rope tables, the mask), freed here with the share's graph.
                let mut kept = GradStore::default();
                add_weight_grads(&mut gs, weights, &mut kept)?;
                Ok(kept)
            })?;
            for mut store in stores {
                add_weight_grads(&mut store, weights, grads)?;
            }
        }
        Ok(())
    }
}

/// `f` on every item, side by side (the first on the calling thread), results in order.
fn side_by_side<I: Sync, T: Send>(
    items: &[I],
    f: impl Fn(&I) -> Result<T> + Sync,
) -> Result<Vec<T>> {
    let Some((first, rest)) = items.split_first() else {
        return Ok(Vec::new());
    };
    let f = &f;
    std::thread::scope(|scope| {
        let handles: Vec<_> = rest.iter().map(|i| scope.spawn(move || f(i))).collect();
        let mut out = vec![f(first)?];
        for h in handles {
            out.push(h.join().map_err(|_| {
                candle_core::Error::Msg("a batch-parallel worker thread panicked".into())
            })??);
        }
        Ok(out)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_cover_the_batch_evenly() {
        let s = Split::new(3);
        assert_eq!(s.shares(7), vec![(0, 3), (3, 2), (5, 2)]);
        assert_eq!(s.shares(2), vec![(0, 1), (1, 1)]);
        assert_eq!(s.shares(1), vec![(0, 1)]);
        assert_eq!(Split::new(1).shares(5), vec![(0, 5)]);
        assert_eq!(Split::new(0).threads(), 1);
    }

    #[test]
    fn map_keeps_row_order_and_passes_errors() {
        let s = Split::new(4);
        let got = s.map(10, |start, n| Ok((start, n))).unwrap();
        assert_eq!(got, vec![(0, 3), (3, 3), (6, 2), (8, 2)]);
        let err = s.map(10, |start, _| {
            if start == 6 {
                candle_core::bail!("share at row {start} failed")
            }
            Ok(start)
        });
        assert!(err.unwrap_err().to_string().contains("row 6"));
    }
}
