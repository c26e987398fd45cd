//! Variational encoder and the pooling of per-pair Gaussians into a user posterior (docs/METHOD.md §2).
//!
//! The encoder's inputs are detached backbone features, so it never sends gradient into the
//! backbone. Pooling is written with a [users × pairs] assignment matrix so that a whole batch of
//! users is pooled by two matmuls.

use candle_core::{DType, Device, Module, Result, Tensor, D};
use candle_nn::{linear, Linear, VarBuilder};

use crate::config::Pooling;

/// Pair feature `[(e_c + e_r)/2 ; e_c − e_r (; Δφ)]` for M pairs: `[M, 2H (+K)]`.
pub fn pair_features(e_c: &Tensor, e_r: &Tensor, dphi: Option<&Tensor>) -> Result<Tensor> {
    let mean = ((e_c + e_r)? * 0.5)?;
    let diff = (e_c - e_r)?;
    match dphi {
        Some(dp) => Tensor::cat(&[&mean, &diff, dp], D::Minus1),
        None => Tensor::cat(&[&mean, &diff], D::Minus1),
    }
}

/// The learned population prior `p₀ = N(m₀, diag(exp(ℓ₀)))` (docs/METHOD.md §2): one more
/// Gaussian in every user's product, so few answers shrink towards the population and none
/// gives the prior itself. Trained with the encoder (stage 2 draws reference subsets of 0…|R|).
#[derive(Clone, Debug)]
pub struct Prior {
    /// Mean `m₀` `[d]`.
    pub mean: Tensor,
    /// Log-variance `ℓ₀ = log s₀²` `[d]`, bounded like the encoder's.
    pub log_var: Tensor,
}

impl Prior {
    /// Variables `mean` (0) and `log_var` (`log_var_init`, `model.prior_log_var_init`) under `vb`.
    pub fn new(d: usize, log_var_init: f64, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            mean: vb.get_with_hints(d, "mean", candle_nn::Init::Const(0.0))?,
            log_var: vb.get_with_hints(d, "log_var", candle_nn::Init::Const(log_var_init))?,
        })
    }

    /// Precision `1/s₀²` `[1, d]`, with ℓ₀ bounded to the encoder's range.
    fn precision(&self) -> Result<Tensor> {
        self.bounded_log_var()?.neg()?.exp()?.unsqueeze(0)
    }

    /// Log-variance as used and exported: ℓ₀ bounded like the encoder's ℓ_i.
    pub fn bounded_log_var(&self) -> Result<Tensor> {
        bound_log_var(&self.log_var)
    }

    /// The raw log-variance whose bounded value gives the prior `a` times its precision
    /// (`b·tanh(ℓ/b)` inverted; clamped just inside the bound).
    pub fn raw_log_var_scaled(&self, a: f64) -> Result<Tensor> {
        let b = f64::from(vrf_format::math::LOGVAR_BOUND);
        let x = ((self.bounded_log_var()? - a.ln())? / b)?.clamp(-0.999_999, 0.999_999)?;
        // atanh(x) = ½ ln((1 + x)/(1 − x))
        let atanh = (((&x + 1.0)? / (x.neg()? + 1.0)?)?.log()? * 0.5)?;
        atanh * b
    }

    /// `(μ, σ²)` `[n, d]` of `n` users with no answers: the prior, repeated.
    pub fn repeat(&self, n: usize) -> Result<(Tensor, Tensor)> {
        let var = self.precision()?.recip()?;
        let d = self.mean.dim(0)?;
        Ok((
            self.mean.unsqueeze(0)?.broadcast_as((n, d))?.contiguous()?,
            var.broadcast_as((n, d))?.contiguous()?,
        ))
    }
}

/// MLP `in → H → 2d` (gelu) giving each pair's μ_i and bounded log σ_i², and optionally the
/// population prior the pairs' Gaussians are multiplied with.
#[derive(Clone, Debug)]
pub struct Encoder {
    pub(crate) l1: Linear,
    pub(crate) l2: Linear,
    d: usize,
    mu_scale: f64,
    prior: Option<Prior>,
}

impl Encoder {
    /// Builds the encoder under `vb` (`l1`, `l2`).
    pub fn new(
        input: usize,
        hidden: usize,
        d: usize,
        mu_scale: f64,
        vb: VarBuilder,
    ) -> Result<Self> {
        Ok(Self {
            l1: linear(input, hidden, vb.pp("l1"))?,
            l2: linear(hidden, 2 * d, vb.pp("l2"))?,
            d,
            mu_scale,
            prior: None,
        })
    }

    /// Adds the population prior (variables `prior.mean`, `prior.log_var` under `vb`).
    pub fn with_prior(mut self, log_var_init: f64, vb: VarBuilder) -> Result<Self> {
        self.prior = Some(Prior::new(self.d, log_var_init, vb.pp("prior"))?);
        Ok(self)
    }

    /// The population prior, when the model has one.
    pub fn prior(&self) -> Option<&Prior> {
        self.prior.as_ref()
    }

    /// Latent dimension d.
    pub fn d(&self) -> usize {
        self.d
    }

    /// Factor applied to μ after the last layer.
    pub fn mu_scale(&self) -> f64 {
        self.mu_scale
    }

    /// Per-pair `(μ_i, ℓ_i)`, each `[M, d]`, with ℓ bounded smoothly to [−10, 10].
    pub fn forward(&self, h: &Tensor) -> Result<(Tensor, Tensor)> {
        let out = self.l2.forward(&self.l1.forward(h)?.gelu_erf()?)?;
        let mu = out.narrow(D::Minus1, 0, self.d)?;
        let mu = if self.mu_scale == 1.0 {
            mu
        } else {
            (mu * self.mu_scale)?
        };
        let l = bound_log_var(&out.narrow(D::Minus1, self.d, self.d)?)?;
        Ok((mu, l))
    }
}

/// `b·tanh(ℓ / b)` with `b` the runtime's `LOGVAR_BOUND`: log-variances smoothly bounded to
/// `[−b, b]`, so the trainer and the exported model agree on their range.
fn bound_log_var(l: &Tensor) -> Result<Tensor> {
    let b = f64::from(vrf_format::math::LOGVAR_BOUND);
    (l / b)?.tanh()? * b
}

/// One-hot `[users, pairs]` matrix assigning pair i to user `seg[i]`.
pub fn assignment(seg: &[usize], n_users: usize, dev: &Device) -> Result<Tensor> {
    let mut a = vec![0f32; n_users * seg.len()];
    for (i, &u) in seg.iter().enumerate() {
        a[u * seg.len() + i] = 1.0;
    }
    Tensor::from_vec(a, (n_users, seg.len()), dev)
}

/// Pools per-pair Gaussians into per-user `(μ_u, σ_u²)`, each `[users, d]`.
///
/// PoG (Eq. 5): λ = Σ exp(−ℓ_i), σ² = 1/λ, μ = σ² Σ exp(−ℓ_i) μ_i; with a population prior the
/// prior is one more factor (λ += 1/s₀², η += m₀/s₀²), so a user with no pairs gets the prior.
/// Mean pooling (ablation e): the mean of μ_i and the mean of σ_i².
pub fn pool(
    mu: &Tensor,
    logvar: &Tensor,
    assign: &Tensor,
    pooling: Pooling,
    prior: Option<&Prior>,
) -> Result<(Tensor, Tensor)> {
    match pooling {
        Pooling::Pog => {
            let prec = logvar.neg()?.exp()?;
            let mut lam = assign.matmul(&prec)?;
            let mut eta = assign.matmul(&(&prec * mu)?)?;
            if let Some(p0) = prior {
                let prec0 = p0.precision()?;
                lam = lam.broadcast_add(&prec0)?;
                eta = eta.broadcast_add(&(&prec0 * p0.mean.unsqueeze(0)?)?)?;
            }
            let var = lam.recip()?;
            let mean = (&var * eta)?;
            Ok((mean, var))
        }
        Pooling::Mean => {
            let counts = assign.sum_keepdim(D::Minus1)?;
            // `mu` is a column slice of the encoder's output; MKL's matmul needs unit-stride rows.
            let mean = assign.matmul(&mu.contiguous()?)?.broadcast_div(&counts)?;
            let var = assign.matmul(&logvar.exp()?)?.broadcast_div(&counts)?;
            Ok((mean, var))
        }
    }
}

/// Segment ids for users with `lens[u]` pairs each.
pub fn segments(lens: &[usize]) -> Vec<usize> {
    lens.iter()
        .enumerate()
        .flat_map(|(u, &n)| std::iter::repeat_n(u, n))
        .collect()
}

/// Float tensor helper used by tests and callers that build inputs on the host.
pub fn host_tensor(v: Vec<f32>, shape: (usize, usize), dev: &Device) -> Result<Tensor> {
    Tensor::from_vec(v, shape, dev)?.to_dtype(DType::F32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scaling_the_prior_multiplies_its_bounded_precision() {
        let dev = Device::Cpu;
        let log_var = Tensor::new(&[-3f32, 0.0, 2.5, 9.0], &dev).unwrap();
        let p = Prior {
            mean: Tensor::zeros(4, DType::F32, &dev).unwrap(),
            log_var,
        };
        let before = p.bounded_log_var().unwrap().to_vec1::<f32>().unwrap();
        for a in [0.5, 1.0, 2.0, 13.0] {
            let scaled = Prior {
                mean: p.mean.clone(),
                log_var: p.raw_log_var_scaled(a).unwrap(),
            };
            let after = scaled.bounded_log_var().unwrap().to_vec1::<f32>().unwrap();
            for (b, c) in before.iter().zip(&after) {
                // Precision × a: the bounded log-variance moves by −ln a.
                assert!((b - a.ln() as f32 - c).abs() < 1e-3, "a = {a}: {b} → {c}");
            }
        }
    }
}
