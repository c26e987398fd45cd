//! LoRe (Bose et al., 2025): a low-rank basis V (H → K) on the reward features and per-user
//! weights on the simplex, r_u(x, y) = e(x, y)ᵀ V softmax(w_u).
//!
//! As in LoRe's reference code (`facebookresearch/LoRe`, `utils.py`: `LoRe`, `PersonalizeBatch`),
//! the seen users' logits w_u are trained jointly with V by the Bradley–Terry likelihood on their
//! pairs, and an unseen user gets fresh logits w ~ N(0, I) fitted by Adam (500 steps at 0.1) on
//! its reference pairs with V frozen. Differences from the reference, forced by this harness:
//! the features e are the backbone's pooled states and the backbone is fine-tuned with V (LoRe
//! keeps a frozen embedding model); V is initialised like the other heads here (scale 1/√H)
//! instead of N(0, 1) with logits divided by 100, which only rescales the same model; seen-user
//! logits learn at `train.latent_lr_mult` × the backbone's rate (0.1 at the defaults, LoRe's
//! few-shot rate) rather than LoRe's 0.5 on frozen features.

use candle_core::{Module, Tensor, D};
use candle_nn::{linear_no_bias, Linear, VarBuilder};

use super::{
    fit_user_params, seeded_randn, seen_users, weighted_bt, Baseline, BaselineConfig, Batch,
    StepInfo, TrainOut, UserOptim,
};
use vrf_trainer::config::Method;
use vrf_trainer::corpus::rows;
use vrf_trainer::error::Result;

/// Name of the seen users' logits `[n_seen, K]`.
pub const USERS: &str = "lore.users";

/// LoRe's parameters: the basis and the seen users' weight logits.
pub struct Lore {
    basis: Linear,
    users: Tensor,
    k: usize,
    adapt_steps: usize,
    adapt_lr: f64,
}

impl Lore {
    /// Builds V (`lore.basis.weight`, `[K, H]`) and the seen users' logits (`lore.users`).
    pub fn new(vb: VarBuilder, h: usize, n_seen: usize, c: &BaselineConfig) -> Result<Self> {
        let basis = linear_no_bias(h, c.lore_k, vb.pp("basis"))?;
        let users = seen_users(&vb, n_seen, c.lore_k)?;
        Ok(Self {
            basis,
            users,
            k: c.lore_k,
            adapt_steps: c.adapt_steps,
            adapt_lr: c.adapt_lr,
        })
    }

    /// Basis rewards of pair differences: V e(c) − V e(r) `[triplets, K]`.
    pub fn pair_features(&self, b: &Batch) -> Result<Tensor> {
        Ok(self.basis.forward(&b.delta_e()?)?)
    }
}

/// r_u(c) − r_u(r) from pair features `f` `[N, K]` and each pair's user weights `w` `[N, K]`.
pub fn weighted_margins(f: &Tensor, w: &Tensor) -> Result<Tensor> {
    Ok((f * w)?.sum(D::Minus1)?)
}

/// Fits fresh softmax logits `[n_users, K]` (from `init`) to fixed pair features `f` `[M, K]`
/// of users `user` by Adam on the summed per-user mean BT losses; returns softmax(logits).
pub fn fit_weights(
    f: &Tensor,
    user: &[u32],
    weights: &Tensor,
    init: &Tensor,
    steps: usize,
    lr: f64,
) -> Result<Tensor> {
    let f = f.detach();
    let logits = fit_user_params(init, steps, lr, UserOptim::Adam, |l| {
        let w = rows(&candle_nn::ops::softmax(l, D::Minus1)?, user)?;
        weighted_bt(&weighted_margins(&f, &w)?, weights)
    })?;
    Ok(candle_nn::ops::softmax(&logits, D::Minus1)?)
}

impl Baseline for Lore {
    fn method(&self) -> Method {
        Method::Lore
    }

    fn user_var(&self) -> Option<&'static str> {
        Some(USERS)
    }

    fn train_loss(&self, b: &Batch, _: Option<&Batch>, _: StepInfo) -> Result<TrainOut> {
        let reps = self.seen_reps(b)?;
        let m = self.margins(b, &reps)?;
        Ok(TrainOut {
            loss: vrf_trainer::loss::bt_loss(&m)?.mean_all()?,
            margins: m,
            metrics: Default::default(),
        })
    }

    fn seen_reps(&self, refs: &Batch) -> Result<Tensor> {
        let w = candle_nn::ops::softmax(&self.users, D::Minus1)?;
        Ok(rows(&w, &refs.seen_pos)?)
    }

    fn adapt(&self, refs: &Batch, seed: u64) -> Result<Tensor> {
        let f = self.pair_features(refs)?;
        let init = seeded_randn(seed, "lore-adapt", (refs.n_users, self.k), refs.e.device())?;
        let weights = refs.per_user_weights(refs.e.device())?;
        fit_weights(
            &f,
            &refs.user,
            &weights,
            &init,
            self.adapt_steps,
            self.adapt_lr,
        )
    }

    fn margins(&self, b: &Batch, reps: &Tensor) -> Result<Tensor> {
        weighted_margins(&self.pair_features(b)?, &b.user_rows(reps)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    /// Fixed features whose pairs a planted weight vector ranks: the fit recovers its ranking
    /// (and puts most weight where the planted vector does).
    #[test]
    fn unseen_fit_recovers_planted_weights() -> Result<()> {
        let dev = Device::Cpu;
        let (m, k) = (60, 3);
        let f = seeded_randn(1, "f", (m, k), &dev)?;
        let planted = Tensor::new(&[[0.8f32, 0.15, 0.05], [0.05, 0.15, 0.8]], &dev)?;
        // Two users, 30 pairs each; orient every pair so its user prefers the first response.
        let user: Vec<u32> = (0..m as u32).map(|i| i / 30).collect();
        let w_rows = rows(&planted, &user)?;
        let sign = weighted_margins(&f, &w_rows)?.sign()?;
        let f = f.broadcast_mul(&sign.unsqueeze(1)?)?;
        let weights = Tensor::new(vec![1f32 / 30.0; m], &dev)?;
        let init = Tensor::zeros((2, k), candle_core::DType::F32, &dev)?;
        let w = fit_weights(&f, &user, &weights, &init, 500, 0.1)?;
        let acc =
            vrf_trainer::metrics::pairwise_accuracy(&weighted_margins(&f, &rows(&w, &user)?)?)?;
        assert!(acc >= 0.95, "training accuracy {acc}");
        let w = w.to_vec2::<f32>()?;
        assert!(w[0][0] > w[0][2] && w[1][2] > w[1][0], "weights {w:?}");
        Ok(())
    }
}
