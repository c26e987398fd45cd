//! PAL-B (Chen et al., 2025): an ideal-point model with K prompt prototypes,
//! r_u(x, y) = s · cos(f(e_y), Σ_k softmax(w_u)_k g_k(e_x)), s a learned scale.
//!
//! As in PAL's reference code (`RamyaLab/pluralistic-alignment`, `src/pal_rm_b`: `ItemLearner`,
//! `UserLearner`, `PrefLearner_angle`): f and each g_k are two-layer MLP projectors ("mlp2")
//! into a `pal_dim`-dimensional preference space, the user's ideal point mixes the prototypes
//! g_k(prompt) by softmax weights w_u ~ N(0, I) at start, the cosine similarity is scaled by
//! exp(logit_scale) (initialised at 1/0.07, clamped at 100), and the loss is Bradley–Terry on
//! the chosen and rejected similarities. An unseen user trains only its weights w on its
//! reference pairs (f, g, s and the backbone frozen), here by Adam (`adapt_steps` at
//! `adapt_lr`, shared with LoRe).
//!
//! The prompt embedding e_x: PAL runs the language model on the prompt tokens alone and reads
//! the last token. The closest this backbone allows is the pooled (last-token) state of the
//! prompt rendered in the run's template with an empty response, through the same backbone
//! (trained with gradient, as PAL fine-tunes the shared LLM); the response embedding e_y is the
//! usual pooled state of (prompt, response).

use candle_core::{Module, Tensor, D};
use candle_nn::{linear, Linear, VarBuilder};

use super::{
    fit_user_params, normalize, seeded_randn, seen_users, weighted_bt, Baseline, BaselineConfig,
    Batch, StepInfo, TrainOut, UserOptim,
};
use vrf_trainer::config::Method;
use vrf_trainer::corpus::rows;
use vrf_trainer::error::{Context, Result};

/// Name of the seen users' weight logits `[n_seen, K]`.
pub const USERS: &str = "pal.users";

/// Largest similarity scale (PAL clamps exp(logit_scale) at 100).
const MAX_SCALE: f64 = 100.0;

/// A two-layer projector H → H → out with GELU (PAL's "mlp2" connector).
struct Mlp2 {
    l1: Linear,
    l2: Linear,
}

impl Mlp2 {
    fn new(h: usize, out: usize, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            l1: linear(h, h, vb.pp("l1"))?,
            l2: linear(h, out, vb.pp("l2"))?,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(self.l2.forward(&self.l1.forward(x)?.gelu_erf()?)?)
    }
}

/// PAL-B's parameters.
pub struct Pal {
    f: Mlp2,
    g: Vec<Mlp2>,
    users: Tensor,
    logit_scale: Tensor,
    k: usize,
    adapt_steps: usize,
    adapt_lr: f64,
}

/// The frozen parts of a batch's rewards: normalised f(e_c), f(e_r) `[N, P]` and each pair's
/// prototypes g_k(e_x) `[N, K, P]`, with the scale s.
struct Parts {
    fc: Tensor,
    fr: Tensor,
    g: Tensor,
    scale: Tensor,
}

impl Pal {
    /// Builds f (`pal.f.*`), g_k (`pal.g{k}.*`), the seen users' logits (`pal.users`) and the
    /// log scale (`pal.logit_scale`).
    pub fn new(vb: VarBuilder, h: usize, n_seen: usize, c: &BaselineConfig) -> Result<Self> {
        let f = Mlp2::new(h, c.pal_dim, vb.pp("f"))?;
        let g = (0..c.pal_k)
            .map(|k| Mlp2::new(h, c.pal_dim, vb.pp(format!("g{k}"))))
            .collect::<Result<Vec<_>>>()?;
        let users = seen_users(&vb, n_seen, c.pal_k)?;
        let logit_scale = vb.get_with_hints(
            (),
            "logit_scale",
            candle_nn::Init::Const((1.0f64 / 0.07).ln()),
        )?;
        Ok(Self {
            f,
            g,
            users,
            logit_scale,
            k: c.pal_k,
            adapt_steps: c.adapt_steps,
            adapt_lr: c.adapt_lr,
        })
    }

    /// The similarity scale s = min(exp(logit_scale), 100).
    pub fn scale(&self) -> Result<Tensor> {
        Ok(self.logit_scale.exp()?.minimum(MAX_SCALE)?)
    }

    fn parts(&self, b: &Batch) -> Result<Parts> {
        let (ex, prow) = b
            .prompts
            .as_ref()
            .context("PAL needs the prompts' states in its batches")?;
        let (c, r) = b.pair_states()?;
        let protos: Vec<Tensor> = self
            .g
            .iter()
            .map(|g| g.forward(ex))
            .collect::<Result<_>>()?;
        let protos = Tensor::stack(&protos, 1)?; // [prompts, K, P]
        Ok(Parts {
            fc: normalize(&self.f.forward(&c)?)?,
            fr: normalize(&self.f.forward(&r)?)?,
            g: rows(&protos, prow)?,
            scale: self.scale()?,
        })
    }
}

/// Margins s·(cos(f_c, u) − cos(f_r, u)) with ideal points u = Σ_k w_k g_k for each pair's
/// weights `w` `[N, K]`.
fn margins_of(p: &Parts, w: &Tensor) -> Result<Tensor> {
    let u = normalize(&p.g.broadcast_mul(&w.unsqueeze(2)?)?.sum(1)?)?;
    let d = ((&p.fc - &p.fr)? * u)?.sum(D::Minus1)?;
    Ok(d.broadcast_mul(&p.scale)?)
}

/// PAL's reward of responses with normalised features `fy` `[N, P]` for ideal points `u`
/// `[N, P]`: s · cos(fy, u) (the closed form the tests check).
pub fn cosine_reward(fy: &Tensor, u: &Tensor, scale: f64) -> Result<Tensor> {
    Ok(((normalize(fy)? * normalize(u)?)?.sum(D::Minus1)? * scale)?)
}

impl Baseline for Pal {
    fn method(&self) -> Method {
        Method::Pal
    }

    fn user_var(&self) -> Option<&'static str> {
        Some(USERS)
    }

    fn needs_prompts(&self) -> bool {
        true
    }

    fn train_loss(&self, b: &Batch, _: Option<&Batch>, _: StepInfo) -> Result<TrainOut> {
        let reps = self.seen_reps(b)?;
        let m = self.margins(b, &reps)?;
        let mut metrics = serde_json::Map::new();
        metrics.insert(
            "scale".into(),
            serde_json::json!(self.scale()?.to_scalar::<f32>()?),
        );
        Ok(TrainOut {
            loss: vrf_trainer::loss::bt_loss(&m)?.mean_all()?,
            margins: m,
            metrics,
        })
    }

    fn seen_reps(&self, refs: &Batch) -> Result<Tensor> {
        let w = candle_nn::ops::softmax(&self.users, D::Minus1)?;
        Ok(rows(&w, &refs.seen_pos)?)
    }

    fn adapt(&self, refs: &Batch, seed: u64) -> Result<Tensor> {
        let p = self.parts(refs)?;
        let p = Parts {
            fc: p.fc.detach(),
            fr: p.fr.detach(),
            g: p.g.detach(),
            scale: p.scale.detach(),
        };
        let init = seeded_randn(seed, "pal-adapt", (refs.n_users, self.k), refs.e.device())?;
        let weights = refs.per_user_weights(refs.e.device())?;
        let logits = fit_user_params(
            &init,
            self.adapt_steps,
            self.adapt_lr,
            UserOptim::Adam,
            |l| {
                let w = rows(&candle_nn::ops::softmax(l, D::Minus1)?, &refs.user)?;
                weighted_bt(&margins_of(&p, &w)?, &weights)
            },
        )?;
        Ok(candle_nn::ops::softmax(&logits, D::Minus1)?)
    }

    fn margins(&self, b: &Batch, reps: &Tensor) -> Result<Tensor> {
        margins_of(&self.parts(b)?, &b.user_rows(reps)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    /// s·cos on hand-computed vectors: parallel → s, orthogonal → 0, opposite → −s, and the
    /// reward ignores the vectors' lengths.
    #[test]
    fn cosine_reward_in_closed_form() -> Result<()> {
        let dev = Device::Cpu;
        let fy = Tensor::new(&[[2f32, 0.0], [0.0, 3.0], [-1.0, 0.0], [1.0, 1.0]], &dev)?;
        let u = Tensor::new(&[[5f32, 0.0], [1.0, 0.0], [0.5, 0.0], [0.0, 4.0]], &dev)?;
        let r = cosine_reward(&fy, &u, 14.0)?.to_vec1::<f32>()?;
        let want = [14.0, 0.0, -14.0, 14.0 / 2f32.sqrt()];
        for (a, b) in r.iter().zip(want) {
            assert!((a - b).abs() < 1e-4, "{r:?} vs {want:?}");
        }
        Ok(())
    }

    /// The batched margin equals s·(cos(f_c, u) − cos(f_r, u)) with u the weight-mixed
    /// prototypes, computed by hand.
    #[test]
    fn margins_mix_the_prototypes_by_the_user_weights() -> Result<()> {
        let dev = Device::Cpu;
        // One pair, K = 2 prototypes in 2-d: g₁ = (1, 0), g₂ = (0, 1); w = (0.75, 0.25).
        let p = Parts {
            fc: normalize(&Tensor::new(&[[1f32, 0.0]], &dev)?)?,
            fr: normalize(&Tensor::new(&[[0f32, 1.0]], &dev)?)?,
            g: Tensor::new(&[[[1f32, 0.0], [0.0, 1.0]]], &dev)?,
            scale: Tensor::new(2f32, &dev)?,
        };
        let w = Tensor::new(&[[0.75f32, 0.25]], &dev)?;
        let m = margins_of(&p, &w)?.to_vec1::<f32>()?[0];
        let n = (0.75f32 * 0.75 + 0.25 * 0.25).sqrt();
        let want = 2.0 * (0.75 / n - 0.25 / n);
        assert!((m - want).abs() < 1e-5, "{m} vs {want}");
        Ok(())
    }
}
