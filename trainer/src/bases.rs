//! Probabilistic preference bases b_k = N(m_k, diag(s_k²)), their W₂² to user posteriors, the
//! softmax weights, the diversity hinge and the KL to the prior (docs/METHOD.md §2–3).

use std::f64::consts::{E, PI};

use candle_core::{Result, Tensor, D};
use candle_nn::{Init, VarBuilder};

use crate::config::{BaseInit, ModelConfig, Prior};

/// The K Gaussian bases: means `[K, d]` and log variances `[K, d]`.
#[derive(Clone, Debug)]
pub struct Bases {
    /// m_k.
    pub means: Tensor,
    /// log s_k².
    pub log_var: Tensor,
    tau: f64,
}

impl Bases {
    /// Builds the bases under `vb` (`means`, `log_var`) with the configured initialisation.
    pub fn new(cfg: &ModelConfig, vb: VarBuilder) -> Result<Self> {
        let (k, d) = (cfg.k, cfg.d);
        // Orthogonal means are written by the model builder once the variable exists
        // (see `orthogonal_means`); a zero init keeps a fresh variable harmless until then.
        let init = match cfg.base_init {
            BaseInit::Randn => Init::Randn {
                mean: 0.0,
                stdev: 1.0,
            },
            BaseInit::Orthogonal => Init::Const(0.0),
        };
        let means = vb.get_with_hints((k, d), "means", init)?;
        let log_var = vb.get_with_hints((k, d), "log_var", Init::Const(0.0))?;
        Ok(Self {
            means,
            log_var,
            tau: cfg.tau,
        })
    }

    /// m_k = r·e_(k mod d): orthogonal directions (up to d), pairwise W₂² = 2r².
    pub fn orthogonal_means(
        k: usize,
        d: usize,
        r: f64,
        dev: &candle_core::Device,
    ) -> Result<Tensor> {
        let mut m = vec![0f32; k * d];
        for i in 0..k {
            m[i * d + i % d] = r as f32;
        }
        Tensor::from_vec(m, (k, d), dev)
    }

    /// Number of bases.
    pub fn k(&self) -> Result<usize> {
        self.means.dim(0)
    }

    /// Latent dimension.
    pub fn d(&self) -> Result<usize> {
        self.means.dim(1)
    }

    /// Standard deviations s_k `[K, d]`.
    pub fn std(&self) -> Result<Tensor> {
        (&self.log_var * 0.5)?.exp()
    }

    /// W₂²(q_u, b_k) = ‖μ_u − m_k‖² + ‖σ_u − s_k‖² for users `[U, d]` → `[U, K]`.
    pub fn w2_sq(&self, mu: &Tensor, var: &Tensor) -> Result<Tensor> {
        let sigma = var.sqrt()?;
        let dm = mu.unsqueeze(1)?.broadcast_sub(&self.means.unsqueeze(0)?)?;
        let ds = sigma
            .unsqueeze(1)?
            .broadcast_sub(&self.std()?.unsqueeze(0)?)?;
        dm.sqr()?.sum(D::Minus1)? + ds.sqr()?.sum(D::Minus1)?
    }

    /// log w_u = log softmax_k(−W₂²/(τ·d)), `[U, K]`.
    pub fn log_weights(&self, mu: &Tensor, var: &Tensor) -> Result<Tensor> {
        let d = self.d()? as f64;
        let logits = (self.w2_sq(mu, var)? * (-1.0 / (self.tau * d)))?;
        candle_nn::ops::log_softmax(&logits, D::Minus1)
    }

    /// w_u = softmax_k(−W₂²/(τ·d)), `[U, K]` (Eq. 6).
    pub fn weights(&self, mu: &Tensor, var: &Tensor) -> Result<Tensor> {
        self.log_weights(mu, var)?.exp()
    }

    /// Pairwise W₂²(b_k, b_j)/d for k < j, as a flat vector.
    pub fn pairwise_w2_over_d(&self) -> Result<Tensor> {
        let k = self.k()?;
        let d = self.d()? as f64;
        let s = self.std()?;
        let dm = self
            .means
            .unsqueeze(1)?
            .broadcast_sub(&self.means.unsqueeze(0)?)?;
        let ds = s.unsqueeze(1)?.broadcast_sub(&s.unsqueeze(0)?)?;
        let w = ((dm.sqr()?.sum(D::Minus1)? + ds.sqr()?.sum(D::Minus1)?)? / d)?;
        let idx: Vec<u32> = (0..k)
            .flat_map(|i| ((i + 1)..k).map(move |j| (i * k + j) as u32))
            .collect();
        if idx.is_empty() {
            return Tensor::zeros(0, w.dtype(), w.device());
        }
        let idx = Tensor::from_vec(idx.clone(), idx.len(), w.device())?;
        w.flatten_all()?.index_select(&idx, 0)
    }

    /// L_div = mean_{k<j} max(0, δ − W₂²(b_k, b_j)/d); 0 when K = 1.
    pub fn diversity_loss(&self, delta: f64) -> Result<Tensor> {
        let p = self.pairwise_w2_over_d()?;
        if p.elem_count() == 0 {
            return Tensor::zeros((), p.dtype(), p.device());
        }
        (p.neg()? + delta)?.relu()?.mean_all()
    }

    /// Per-user KL(q_u ‖ p) `[U]` by reparameterised Monte Carlo with noise `eps` `[S, U, d]`.
    ///
    /// KL = −H(q) − E_q[log p(z)], H(q) = ½ Σ_j log(2πe σ_j²), z = μ + σ ε.
    pub fn kl(&self, mu: &Tensor, var: &Tensor, eps: &Tensor, prior: Prior) -> Result<Tensor> {
        let d = self.d()?;
        let s = eps.dim(0)?;
        let entropy = ((var.log()? + (2.0 * PI * E).ln())?.sum(D::Minus1)? * 0.5)?;
        let z = eps
            .broadcast_mul(&var.sqrt()?.unsqueeze(0)?)?
            .broadcast_add(&mu.unsqueeze(0)?)?; // [S,U,d]
        let log_p = match prior {
            Prior::StdNormal => ((z.sqr()? + (2.0 * PI).ln())?.sum(D::Minus1)? * -0.5)?, // [S,U]
            Prior::Mog => {
                let k = self.k()?;
                let s2 = self.log_var.exp()?; // [K,d]
                let diff = z
                    .unsqueeze(2)?
                    .broadcast_sub(&self.means.reshape((1, 1, k, d))?)?; // [S,U,K,d]
                let quad = diff.sqr()?.broadcast_div(&s2.reshape((1, 1, k, d))?)?;
                let norm = (&self.log_var + (2.0 * PI).ln())?.reshape((1, 1, k, d))?;
                let comp =
                    ((quad.broadcast_add(&norm)?.sum(D::Minus1)? * -0.5)? - (k as f64).ln())?; // [S,U,K]
                log_sum_exp(&comp, D::Minus1)?
            }
        };
        let e_log_p = (log_p.sum(0)? / s as f64)?;
        (entropy.neg()? - e_log_p)?.contiguous()
    }
}

/// Numerically stable, differentiable log Σ exp along `dim` (the max is detached).
pub fn log_sum_exp(x: &Tensor, dim: D) -> Result<Tensor> {
    let m = x.max_keepdim(dim)?.detach();
    let s = x.broadcast_sub(&m)?.exp()?.sum_keepdim(dim)?.log()?;
    (s + m)?.squeeze(dim)
}
