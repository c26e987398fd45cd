//! Activation recomputation per decoder layer ("gradient checkpointing") with micro-batches.
//!
//! A plain candle forward keeps every intermediate of every layer alive until `backward`: for
//! Qwen3-0.6B at 16 texts × 256 tokens that is roughly 0.6 GB a layer, 17 GB for 28 layers. With
//! recomputation the forward keeps only each layer's detached input `[B, L, H]` (16 MB a layer
//! there) and returns hidden states whose graph starts at a leaf standing for the last layer's
//! output. After the step's `loss.backward()`, [`super::Qwen3::backward_recorded`] walks the
//! layers from the top: it recomputes one layer on a micro-batch of rows with the graph on,
//! back-propagates the incoming gradient through it (the vector–Jacobian product of
//! `sum(y ⊙ g)`), adds the layer's weight gradients to the step's [`GradStore`] and passes the
//! input gradient down; the embedding gradient is the scatter-add of the last input gradient.
//! The gradients equal the plain backward's up to float summation order (rows are independent
//! in every layer, so splitting them changes no term), at the price of a second forward.

use std::sync::Mutex;

use candle_core::backprop::GradStore;
use candle_core::{Result, Tensor, Var};

/// What the forward of one recorded batch left for its backward.
pub(super) struct Entry {
    /// Token ids `[B, L]` (for the embedding gradient).
    pub(super) ids: Tensor,
    /// Each layer's detached input `[B, L, H]`, bottom first.
    pub(super) inputs: Vec<Tensor>,
    /// The leaf standing for the last layer's output; the loss's gradient arrives here.
    pub(super) last: Var,
}

/// The recorded forwards of a step, waiting for their backward.
pub struct Tape {
    entries: Mutex<Vec<Entry>>,
    /// Rows per recomputed micro-batch (0: the whole batch at once).
    pub(super) micro_batch: usize,
}

impl std::fmt::Debug for Tape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tape")
            .field("micro_batch", &self.micro_batch)
            .field("pending", &self.entries.lock().map(|e| e.len()).ok())
            .finish()
    }
}

impl Tape {
    /// An empty tape recomputing `micro_batch` rows at a time (0: all rows).
    pub fn new(micro_batch: usize) -> Self {
        Self {
            entries: Mutex::new(Vec::new()),
            micro_batch,
        }
    }

    pub(super) fn push(&self, e: Entry) {
        self.lock().push(e);
    }

    /// Takes every pending entry (newest last).
    pub(super) fn take(&self) -> Vec<Entry> {
        std::mem::take(&mut *self.lock())
    }

    /// Forwards recorded and not yet back-propagated.
    #[cfg(test)]
    pub(super) fn pending(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Entry>> {
        // A panic while holding the lock leaves a plain Vec behind: still usable.
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Row ranges `(start, len)` of a batch of `b` rows in micro-batches.
    pub(super) fn chunks(&self, b: usize) -> Vec<(usize, usize)> {
        let n = if self.micro_batch == 0 {
            b
        } else {
            self.micro_batch.min(b)
        };
        (0..b.div_ceil(n.max(1)))
            .map(|i| (i * n, n.min(b - i * n)))
            .collect()
    }
}

/// Adds `g` to the gradient stored for `t` (or stores it).
pub(super) fn accumulate(grads: &mut GradStore, t: &Tensor, g: Tensor) -> Result<()> {
    let sum = match grads.remove(t) {
        Some(old) => (old + g)?,
        None => g,
    };
    grads.insert(t, sum);
    Ok(())
}

/// Moves the gradients of `weights` out of `from` and adds them to `into`, leaving behind the
/// rest (candle's gradients of constants: rope tables, masks, activation-sized).
pub(super) fn add_weight_grads(
    from: &mut GradStore,
    weights: &[&Tensor],
    into: &mut GradStore,
) -> Result<()> {
    for w in weights {
        if let Some(gw) = from.remove(w) {
            accumulate(into, w, gw)?;
        }
    }
    Ok(())
}

/// The vector–Jacobian product of `f` at `x` for output gradient `g`: the gradients of
/// `weights` (added to `into`) and of `x` (returned). candle's backward also leaves gradients of
/// the constants a layer combines with its activations (rope tables, the mask, broadcast
/// operands), activation-sized; only the weights' are kept, so those are freed here instead of
/// piling up layer after layer.
pub(super) fn vjp(
    x: &Tensor,
    g: &Tensor,
    weights: &[&Tensor],
    into: &mut GradStore,
    f: impl Fn(&Tensor) -> Result<Tensor>,
) -> Result<Tensor> {
    let leaf = Var::from_tensor(x)?;
    let y = f(leaf.as_tensor())?;
    let mut gs = (y * g)?.sum_all()?.backward()?;
    let gx = gs
        .remove(leaf.as_tensor())
        .ok_or_else(|| candle_core::Error::Msg("recomputed layer ignores its input".into()))?;
    add_weight_grads(&mut gs, weights, into)?;
    Ok(gx)
}
