//! VPL (Poddar et al., 2024): a variational user latent z inferred from the user's preference
//! pairs, and a reward decoder conditioned on it, r(x, y, z) = MLP([e(x, y); z]).
//!
//! As in VPL's reference code (`WEIRDLabUW/vpl_llm`, `hidden_context/vae_utils.py`): a pair
//! encoder MLP([e_c; e_r]) (LeakyReLU 0.2) maps each context pair to the latent width, a
//! self-attention layer (q, k, v projections, softmax(qkᵀ/√d)) mixes a user's pairs and their
//! mean goes through linear mean and log-variance layers; μ and log σ² are clamped to [−1, 1],
//! z = normalise(μ + 10⁻³ σ ε) · √d, and the loss is Bradley–Terry on the decoder's rewards plus
//! β · KL(q(z) ‖ N(0, I)) under a cosine annealing with a floor of 0.1 (VPL's `Annealer`).
//! As in the VRF paper's setup, the backbone states of the context pairs carry no gradient (the
//! backbone acts as a frozen encoder there; the decoder's inputs do train it).
//!
//! Unseen users are amortised: one encoder pass over their reference pairs, z = the noise-free
//! normalise(μ) · √d at evaluation. Differences: one cosine annealing cycle over the whole
//! budget (VPL: cyclical over 10⁴ steps); the KL is summed over dimensions and averaged over the
//! batch's users (VPL sums over both); the context of a seen user is its reference set R_u and
//! its training targets are its target pairs (VPL samples both from one pool).

use candle_core::{Module, Tensor, D};
use candle_nn::{linear, Linear, VarBuilder};
use serde_json::json;

use super::{normalize, seeded_randn, Baseline, BaselineConfig, Batch, StepInfo, TrainOut};
use vrf_trainer::config::Method;
use vrf_trainer::corpus::rows;
use vrf_trainer::encoder::assignment;
use vrf_trainer::error::{Context, Result};

/// Scale of the reparameterisation noise (VPL's `epsilon *= 1e-3`).
const NOISE: f64 = 1e-3;

/// A three-layer MLP with LeakyReLU(0.2) (VPL's pair encoder and decoder).
struct Mlp3 {
    l: [Linear; 3],
}

impl Mlp3 {
    fn new(input: usize, hidden: usize, out: usize, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            l: [
                linear(input, hidden, vb.pp("l1"))?,
                linear(hidden, hidden, vb.pp("l2"))?,
                linear(hidden, out, vb.pp("l3"))?,
            ],
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let leaky = |x: Tensor| -> candle_core::Result<Tensor> { x.maximum(&(&x * 0.2)?) };
        let x = leaky(self.l[0].forward(x)?)?;
        let x = leaky(self.l[1].forward(&x)?)?;
        Ok(self.l[2].forward(&x)?)
    }
}

/// VPL's parameters.
pub struct Vpl {
    pair: Mlp3,
    wq: Linear,
    wk: Linear,
    wv: Linear,
    mean: Linear,
    logvar: Linear,
    decoder: Mlp3,
    d: usize,
    beta: f64,
    floor: f64,
}

impl Vpl {
    /// Builds the pair encoder (`vpl.pair.*`), attention (`vpl.wq`, `vpl.wk`, `vpl.wv`), the
    /// Gaussian heads (`vpl.mean`, `vpl.logvar`) and the decoder (`vpl.decoder.*`).
    pub fn new(vb: VarBuilder, h: usize, c: &BaselineConfig) -> Result<Self> {
        let d = c.vpl_latent;
        Ok(Self {
            pair: Mlp3::new(2 * h, c.vpl_hidden, d, vb.pp("pair"))?,
            wq: linear(d, d, vb.pp("wq"))?,
            wk: linear(d, d, vb.pp("wk"))?,
            wv: linear(d, d, vb.pp("wv"))?,
            mean: linear(d, d, vb.pp("mean"))?,
            logvar: linear(d, d, vb.pp("logvar"))?,
            decoder: Mlp3::new(h + d, c.vpl_hidden, 1, vb.pp("decoder"))?,
            d,
            beta: c.vpl_beta,
            floor: c.vpl_anneal_floor,
        })
    }

    /// Posterior `(μ, log σ²)` `[n_users, d]`, both clamped to [−1, 1], from each user's
    /// context pairs (detached states).
    pub fn encode(&self, ctx: &Batch) -> Result<(Tensor, Tensor)> {
        let (c, r) = ctx.pair_states()?;
        let x = self
            .pair
            .forward(&Tensor::cat(&[c.detach(), r.detach()], 1)?)?;
        let (q, k, v) = (
            self.wq.forward(&x)?,
            self.wk.forward(&x)?,
            self.wv.forward(&x)?,
        );
        // Attention within each user's pairs only: pairs of other users are masked out.
        let m = ctx.user.len();
        let mut mask = vec![0f32; m * m];
        for i in 0..m {
            for j in 0..m {
                if ctx.user[i] != ctx.user[j] {
                    mask[i * m + j] = -1e9;
                }
            }
        }
        let mask = Tensor::from_vec(mask, (m, m), x.device())?;
        let scores = (q.matmul(&k.t()?)? / (self.d as f64).sqrt())?.broadcast_add(&mask)?;
        let att = candle_nn::ops::softmax(&scores, D::Minus1)?.matmul(&v)?;
        let seg: Vec<usize> = ctx.user.iter().map(|&u| u as usize).collect();
        let a = assignment(&seg, ctx.n_users, x.device())?;
        let pooled = a
            .matmul(&att)?
            .broadcast_div(&a.sum_keepdim(D::Minus1)?.maximum(1.0)?)?;
        let mu = self.mean.forward(&pooled)?.clamp(-1f32, 1f32)?;
        let lv = self.logvar.forward(&pooled)?.clamp(-1f32, 1f32)?;
        Ok((mu, lv))
    }

    /// normalise(x) · √d, VPL's projection of z onto the sphere.
    fn sphere(&self, x: &Tensor) -> Result<Tensor> {
        Ok((normalize(x)? * (self.d as f64).sqrt())?)
    }

    /// The decoder's reward of states `e` `[N, H]` for latents `z` `[N, d]`, `[N]`.
    pub fn reward(&self, e: &Tensor, z: &Tensor) -> Result<Tensor> {
        Ok(self
            .decoder
            .forward(&Tensor::cat(&[e, z], 1)?)?
            .squeeze(D::Minus1)?)
    }

    /// KL weight at a step: β times a cosine ramp from the floor to 1 over the budget.
    pub fn beta_at(&self, step: usize, total: usize) -> f64 {
        let frac = step as f64 / total.max(1) as f64;
        let ramp = (1.0 - (std::f64::consts::PI * frac).cos()) / 2.0;
        self.beta * (self.floor + (1.0 - self.floor) * ramp)
    }
}

impl Baseline for Vpl {
    fn method(&self) -> Method {
        Method::Vpl
    }

    fn user_var(&self) -> Option<&'static str> {
        None
    }

    fn needs_context(&self) -> bool {
        true
    }

    fn train_loss(&self, b: &Batch, context: Option<&Batch>, at: StepInfo) -> Result<TrainOut> {
        let ctx = context.context("VPL steps need their users' reference pairs")?;
        let (mu, lv) = self.encode(ctx)?;
        let eps = seeded_randn(
            at.seed ^ at.step as u64,
            "vpl-noise",
            mu.dims2()?,
            mu.device(),
        )?;
        let z = self.sphere(&(&mu + ((lv.clone() * 0.5)?.exp()? * eps)?.affine(NOISE, 0.0)?)?)?;
        let m = self.margins(b, &z)?;
        let bt = vrf_trainer::loss::bt_loss(&m)?.mean_all()?;
        // KL(N(μ, σ²) ‖ N(0, I)) per user, summed over dimensions.
        let kl = ((mu.sqr()? + lv.exp()? - &lv)? - 1.0)?
            .sum(D::Minus1)?
            .mean_all()?
            .affine(0.5, 0.0)?;
        let beta = self.beta_at(at.step, at.total);
        let mut metrics = serde_json::Map::new();
        metrics.insert("bt".into(), json!(bt.to_scalar::<f32>()?));
        metrics.insert("kl".into(), json!(kl.to_scalar::<f32>()?));
        metrics.insert("beta".into(), json!(beta));
        Ok(TrainOut {
            loss: (bt + (kl * beta)?)?,
            margins: m,
            metrics,
        })
    }

    fn seen_reps(&self, refs: &Batch) -> Result<Tensor> {
        self.adapt(refs, 0)
    }

    fn adapt(&self, refs: &Batch, _seed: u64) -> Result<Tensor> {
        let (mu, _) = self.encode(refs)?;
        self.sphere(&mu)
    }

    fn margins(&self, b: &Batch, reps: &Tensor) -> Result<Tensor> {
        let (c, r) = b.pair_states()?;
        let z = rows(reps, &b.user)?;
        Ok((self.reward(&c, &z)? - self.reward(&r, &z)?)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;
    use vrf_trainer::vars::SeededVarMap;

    fn batch(e: Tensor, user: Vec<u32>, n_users: usize) -> Batch {
        let n = user.len();
        Batch {
            triplets: (0..n).collect(),
            texts: (0..2 * n).collect(),
            e,
            chosen: (0..n as u32).map(|i| 2 * i).collect(),
            rejected: (0..n as u32).map(|i| 2 * i + 1).collect(),
            user,
            seen_pos: vec![],
            n_users,
            prompts: None,
        }
    }

    /// A user's posterior depends on its own pairs only (attention is masked per user), and
    /// μ, log σ² stay in [−1, 1].
    #[test]
    fn encoder_is_per_user_and_clamped() -> Result<()> {
        let dev = Device::Cpu;
        let vars = SeededVarMap::new(3);
        let vpl = Vpl::new(vars.builder(&dev).pp("vpl"), 4, &BaselineConfig::default())?;
        let e = seeded_randn(5, "e", (10, 4), &dev)?;
        let (mu, lv) = vpl.encode(&batch(e.clone(), vec![0, 0, 1, 1, 1], 2))?;
        // The same first user alone.
        let (mu0, _) = vpl.encode(&batch(e.narrow(0, 0, 4)?, vec![0, 0], 1))?;
        let diff = (mu.narrow(0, 0, 1)? - mu0)?
            .abs()?
            .max_all()?
            .to_scalar::<f32>()?;
        assert!(
            diff < 1e-5,
            "user 0's posterior changed with user 1's pairs: {diff}"
        );
        for t in [mu, lv] {
            let v = t.abs()?.max_all()?.to_scalar::<f32>()?;
            assert!(v <= 1.0 + 1e-6);
        }
        Ok(())
    }
}
