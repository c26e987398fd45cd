//! Loss terms on basis-reward differences (docs/METHOD.md §3) and the collapse remedies (docs/METHOD.md §3b).

use std::f64::consts::PI;

use candle_core::{Result, Tensor, D};

use crate::config::Objective;

/// Moment matching (Eq. 7): μ_Δ = Σ_k w_k Δ_k, σ_Δ² = Σ_k w_k (Δ_k − μ_Δ)², each `[T]`.
pub fn moments(w: &Tensor, delta: &Tensor) -> Result<(Tensor, Tensor)> {
    let mu = (w * delta)?.sum(D::Minus1)?;
    let dev = delta.broadcast_sub(&mu.unsqueeze(1)?)?;
    let var = (w * dev.sqr()?)?.sum(D::Minus1)?;
    Ok((mu, var))
}

/// softplus(x) = max(x, 0) + log(1 + exp(−|x|)), stable for large |x|.
pub fn softplus(x: &Tensor) -> Result<Tensor> {
    x.relu()? + (x.abs()?.neg()?.exp()? + 1.0)?.log()?
}

/// MacKay's attenuated logit z = μ_Δ / sqrt(1 + π σ_Δ²/8).
pub fn attenuated_logit(mu: &Tensor, var: &Tensor) -> Result<Tensor> {
    mu / ((var * (PI / 8.0))? + 1.0)?.sqrt()?
}

/// Per-pair loss `[T]`: L_VA = softplus(−z) (Eq. 8), or plain BT softplus(−μ_Δ) (ablation a).
pub fn pair_loss(w: &Tensor, delta: &Tensor, objective: Objective) -> Result<Tensor> {
    let (mu, var) = moments(w, delta)?;
    match objective {
        Objective::Va => softplus(&attenuated_logit(&mu, &var)?.neg()?),
        Objective::Bt => softplus(&mu.neg()?),
    }
}

/// Plain Bradley–Terry loss for a scalar reward difference `[T]`: softplus(−Δ).
pub fn bt_loss(delta: &Tensor) -> Result<Tensor> {
    softplus(&delta.neg()?)
}

/// Mean squared off-diagonal correlation of the K basis rewards over a batch `phi` `[N, K]`.
///
/// Remedy for heads that collapse onto one reward; 0 when K = 1 or N < 2. The correlation is the
/// one the collapse diagnostic reports ([`metrics`](crate::metrics)).
pub fn phi_correlation_penalty(phi: &Tensor) -> Result<Tensor> {
    crate::metrics::mean_sq_offdiag_corr(phi)
}

/// Usage balancing: KL(mean batch weights ‖ uniform) = log K + Σ w̄ log w̄ (≥ 0).
pub fn usage_balance(w: &Tensor) -> Result<Tensor> {
    let k = w.dim(D::Minus1)?;
    let wbar = w.mean(0)?;
    (&wbar * (&wbar + 1e-12)?.log()?)?.sum_all()? + (k as f64).ln()
}

/// Mean per-user entropy of the weights, −Σ w log w (minimised to sharpen users' weights).
pub fn weight_entropy(w: &Tensor) -> Result<Tensor> {
    (w * (w + 1e-12)?.log()?)?.sum(D::Minus1)?.neg()?.mean_all()
}

/// Variance tracking: −corr(log σ̄²_u, log e_u) over the users `keep`, σ̄²_u the mean of a row
/// of `var` `[U, d]` and `e_u > 0` a constant error per user. Scale-free, so it orders the users'
/// variances by their errors without fixing the variances' scale (which the W₂ weights use);
/// 0 with fewer than 3 users.
pub fn variance_tracking(var: &Tensor, keep: &[u32], err: &[f64]) -> Result<Tensor> {
    if keep.len() < 3 {
        return Tensor::zeros((), var.dtype(), var.device());
    }
    let idx = Tensor::new(keep, var.device())?;
    let a = var.index_select(&idx, 0)?.mean(D::Minus1)?.log()?;
    let a = a.broadcast_sub(&a.mean_all()?)?;
    let le: Vec<f64> = err.iter().map(|e| e.ln()).collect();
    let mean = le.iter().sum::<f64>() / le.len() as f64;
    let sd = le.iter().map(|x| (x - mean).powi(2)).sum::<f64>().sqrt();
    if sd < 1e-12 {
        return Tensor::zeros((), var.dtype(), var.device());
    }
    let b: Vec<f32> = le.iter().map(|x| ((x - mean) / sd) as f32).collect();
    let b = Tensor::new(b.as_slice(), var.device())?;
    // The ε bounds the gradient where every variance is the same (the correlation is undefined
    // there): at most 100·b, against spreads of log σ̄² of order 1 over a step's users.
    let norm = (a.sqr()?.sum_all()? + 1e-4)?.sqrt()?;
    ((a * b)?.sum_all()? / norm)?.neg()
}

/// Distillation loss KL(w_target ‖ w) per user, mean over users, from `log_w` `[U, K]`.
pub fn distill_kl(w_target: &Tensor, log_w: &Tensor) -> Result<Tensor> {
    let lt = (w_target + 1e-12)?.log()?;
    (w_target * (lt - log_w)?)?.sum(D::Minus1)?.mean_all()
}
