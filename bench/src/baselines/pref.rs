//! PReF (Shenfeld et al., 2025): linear basis features φ(x, y) = A e(x, y) ∈ R^J and free user
//! vectors u, r_u = φᵀu; trained by BCE with an L2 penalty on the pair features, initialised
//! from an SVD of the imputed user × pair preference matrix.
//!
//! Following PReF's reference code (`idanshen/PReF_code`): the seen users' training pairs form a
//! pairs × users matrix of labels in {0, 1} (1: the user preferred the pair's first response;
//! missing entries imputed with 0.5, then re-imputed `pref_svd_iters` times from the rank-J
//! reconstruction, clipped to [0, 1], `SVD_for_sparse_matrix`); the user vectors start at
//! V_J √S_J and φ is first regressed (MSE) onto the pair factors U_J √S_J ("SVD train"), then
//! the likelihood phase minimises BCE + λ·mean‖φ(c) − φ(r)‖₂ (`regularization="l2"`, λ = 0.02).
//! An unseen user is a logistic regression of its reference labels on φ-differences: u ~ N(0, I)
//! and 1000 steps of gradient descent at 0.01 (`MLE_user_weight`).
//!
//! Differences: the SVD-regression phase takes the first `pref_svd_fit_frac` of the same step
//! budget (PReF runs it as extra iterations), so all methods train equally long; φ reads the
//! tiny backbone's pooled state (PReF: Qwen2.5-0.5B's last token), fine-tuned at the same rate
//! as every method here; the seen users' vectors learn at `train.latent_lr_mult` × that rate.

use std::collections::HashMap;

use candle_core::{Module, Tensor, D};
use candle_nn::{linear_no_bias, Linear, VarBuilder};
use serde_json::json;

use super::{
    fit_user_params, seeded_randn, seen_users, weighted_bt, Baseline, BaselineConfig, Batch,
    StepInfo, TrainOut, UserOptim,
};
use vrf_data::{Dataset, Split};
use vrf_trainer::config::Method;
use vrf_trainer::corpus::{rows, Corpus};
use vrf_trainer::error::Result;

/// Name of the seen users' vectors `[n_seen, J]`.
pub const USERS: &str = "pref.users";

/// PReF's parameters and its SVD targets.
pub struct Pref {
    phi: Linear,
    users: Tensor,
    j: usize,
    l2: f64,
    svd_iters: usize,
    svd_fit_frac: f64,
    adapt_steps: usize,
    adapt_lr: f64,
    /// Pair factor (U_J √S_J row) of each (lower, higher) text-id pair of the training data.
    targets: HashMap<(usize, usize), Vec<f32>>,
}

impl Pref {
    /// Builds φ (`pref.phi.weight`, `[J, H]`) and the seen users' vectors (`pref.users`).
    pub fn new(vb: VarBuilder, h: usize, n_seen: usize, c: &BaselineConfig) -> Result<Self> {
        let phi = linear_no_bias(h, c.pref_j, vb.pp("phi"))?;
        let users = seen_users(&vb, n_seen, c.pref_j)?;
        Ok(Self {
            phi,
            users,
            j: c.pref_j,
            l2: c.pref_l2,
            svd_iters: c.pref_svd_iters,
            svd_fit_frac: c.pref_svd_fit_frac,
            adapt_steps: c.pref_adapt_steps,
            adapt_lr: c.pref_adapt_lr,
            targets: HashMap::new(),
        })
    }

    /// φ(c) − φ(r) `[triplets, J]`.
    pub fn pair_features(&self, b: &Batch) -> Result<Tensor> {
        Ok(self.phi.forward(&b.delta_e()?)?)
    }

    /// The SVD targets of a batch's triplets, oriented chosen − rejected, with a mask of the
    /// triplets that have one (`[triplets, J]`, `[triplets, 1]`).
    fn svd_targets(&self, b: &Batch) -> Result<(Tensor, Tensor)> {
        let n = b.triplets.len();
        let mut t = vec![0f32; n * self.j];
        let mut mask = vec![0f32; n];
        for i in 0..n {
            let (c, r) = (
                b.texts[b.chosen[i] as usize],
                b.texts[b.rejected[i] as usize],
            );
            let (key, sign) = if c < r { ((c, r), 1.0) } else { ((r, c), -1.0) };
            if let Some(row) = self.targets.get(&key) {
                for (d, v) in row.iter().enumerate() {
                    t[i * self.j + d] = sign * v;
                }
                mask[i] = 1.0;
            }
        }
        let dev = b.e.device();
        Ok((
            Tensor::from_vec(t, (n, self.j), dev)?,
            Tensor::from_vec(mask, (n, 1), dev)?,
        ))
    }
}

impl Baseline for Pref {
    fn method(&self) -> Method {
        Method::Pref
    }

    fn user_var(&self) -> Option<&'static str> {
        Some(USERS)
    }

    /// The imputed-SVD initialisation of the user vectors and the pair-factor targets.
    fn init(&mut self, ds: &Dataset, corpus: &Corpus) -> Result<()> {
        let idx = &corpus.index;
        let mut pair_row: HashMap<(usize, usize), usize> = HashMap::new();
        // (row, seen user) → (sum of labels, count).
        let mut obs: HashMap<(usize, usize), (f64, f64)> = HashMap::new();
        for (su, &u) in ds.seen.iter().enumerate() {
            for &i in ds.users[u]
                .split(Split::Ref)
                .iter()
                .chain(ds.users[u].split(Split::Target))
            {
                let (c, r) = (idx.chosen_text[i], idx.rejected_text[i]);
                let (key, label) = if c < r { ((c, r), 1.0) } else { ((r, c), 0.0) };
                let n = pair_row.len();
                let row = *pair_row.entry(key).or_insert(n);
                let e = obs.entry((row, su)).or_insert((0.0, 0.0));
                e.0 += label;
                e.1 += 1.0;
            }
        }
        let (m, n) = (pair_row.len(), ds.seen.len());
        let mut a = vec![f64::NAN; m * n];
        for (&(row, su), &(s, c)) in &obs {
            a[row * n + su] = s / c;
        }
        let (u, v) = imputed_svd(&a, m, n, self.j, self.svd_iters);
        let dev = self.users.device().clone();
        let users: Vec<f32> = v.iter().map(|&x| x as f32).collect();
        let var = Tensor::from_vec(users, (n, self.j), &dev)?;
        self.users_set(&var)?;
        self.targets = pair_row
            .into_iter()
            .map(|(key, row)| {
                let t = u[row * self.j..(row + 1) * self.j]
                    .iter()
                    .map(|&x| x as f32)
                    .collect();
                (key, t)
            })
            .collect();
        Ok(())
    }

    fn train_loss(&self, b: &Batch, _: Option<&Batch>, at: StepInfo) -> Result<TrainOut> {
        let f = self.pair_features(b)?;
        let reps = self.seen_reps(b)?;
        let m = (&f * b.user_rows(&reps)?)?.sum(D::Minus1)?;
        let mut metrics = serde_json::Map::new();
        let svd_steps = (self.svd_fit_frac * at.total as f64).round() as usize;
        let loss = if at.step < svd_steps && !self.targets.is_empty() {
            // PReF's "SVD train": φ-differences regress onto the pair factors.
            let (t, mask) = self.svd_targets(b)?;
            let se = (f - t)?.sqr()?.broadcast_mul(&mask)?.sum_all()?;
            let count = (mask.sum_all()? * self.j as f64)?.maximum(1.0)?;
            let mse = (se / count)?;
            metrics.insert("svd_mse".into(), json!(mse.to_scalar::<f32>()?));
            mse
        } else {
            let bce = vrf_trainer::loss::bt_loss(&m)?.mean_all()?;
            let norm = (f.sqr()?.sum(D::Minus1)? + 1e-12)?.sqrt()?.mean_all()?;
            metrics.insert("bce".into(), json!(bce.to_scalar::<f32>()?));
            metrics.insert("phi_norm".into(), json!(norm.to_scalar::<f32>()?));
            (bce + (norm * self.l2)?)?
        };
        Ok(TrainOut {
            loss,
            margins: m,
            metrics,
        })
    }

    fn seen_reps(&self, refs: &Batch) -> Result<Tensor> {
        Ok(rows(&self.users, &refs.seen_pos)?)
    }

    fn adapt(&self, refs: &Batch, seed: u64) -> Result<Tensor> {
        let f = self.pair_features(refs)?.detach();
        let init = seeded_randn(seed, "pref-adapt", (refs.n_users, self.j), refs.e.device())?;
        let weights = refs.per_user_weights(refs.e.device())?;
        fit_user_params(
            &init,
            self.adapt_steps,
            self.adapt_lr,
            UserOptim::Sgd,
            |u| weighted_bt(&(&f * rows(u, &refs.user)?)?.sum(D::Minus1)?, &weights),
        )
    }

    fn margins(&self, b: &Batch, reps: &Tensor) -> Result<Tensor> {
        Ok((self.pair_features(b)? * b.user_rows(reps)?)?.sum(D::Minus1)?)
    }
}

impl Pref {
    /// Overwrites the seen users' vectors in place (the variable keeps its storage).
    fn users_set(&self, v: &Tensor) -> Result<()> {
        // `users` is the variable's own tensor (see SeededVarMap::get), so `slice_set` into it
        // changes the trained parameter.
        self.users.slice_set(v, 0, 0)?;
        Ok(())
    }
}

/// PReF's imputed SVD of a row-major `m × n` matrix with NaN for missing entries: missing
/// entries start at 0.5 and are replaced `iters` times by the rank-`j` reconstruction (clipped
/// to [0, 1]). Returns the pair factors U_j √S_j (`m × j`) and the user factors V_j √S_j
/// (`n × j`), row-major; columns beyond the matrix rank are 0.
pub fn imputed_svd(a: &[f64], m: usize, n: usize, j: usize, iters: usize) -> (Vec<f64>, Vec<f64>) {
    let observed: Vec<bool> = a.iter().map(|x| !x.is_nan()).collect();
    let mut x: Vec<f64> = a
        .iter()
        .map(|&v| if v.is_nan() { 0.5 } else { v })
        .collect();
    let mut fac = truncated_svd(&x, m, n, j);
    for _ in 0..iters {
        let (u, s, v) = &fac;
        for r in 0..m {
            for c in 0..n {
                if !observed[r * n + c] {
                    let mut y = 0.0;
                    for k in 0..j {
                        y += u[r * j + k] * s[k] * v[c * j + k];
                    }
                    x[r * n + c] = y.clamp(0.0, 1.0);
                }
            }
        }
        fac = truncated_svd(&x, m, n, j);
    }
    let (u, s, v) = fac;
    let scale = |f: &[f64], rows: usize| -> Vec<f64> {
        (0..rows * j)
            .map(|i| f[i] * s[i % j].max(0.0).sqrt())
            .collect()
    };
    (scale(&u, m), scale(&v, n))
}

/// The top-`j` singular triplets of a row-major `m × n` matrix: `(U m × j, S j, V n × j)`,
/// from the eigen-decomposition of the smaller Gram matrix (Jacobi rotations).
pub fn truncated_svd(a: &[f64], m: usize, n: usize, j: usize) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    // Work with B = A (m ≥ n) or B = Aᵀ, so the Gram matrix BᵀB is the smaller one.
    let transposed = m < n;
    let (rows_b, cols_b) = if transposed { (n, m) } else { (m, n) };
    let b = |r: usize, c: usize| {
        if transposed {
            a[c * n + r]
        } else {
            a[r * n + c]
        }
    };
    let mut g = vec![0f64; cols_b * cols_b];
    for r in 0..rows_b {
        for p in 0..cols_b {
            let x = b(r, p);
            if x == 0.0 {
                continue;
            }
            for q in p..cols_b {
                g[p * cols_b + q] += x * b(r, q);
            }
        }
    }
    for p in 0..cols_b {
        for q in 0..p {
            g[p * cols_b + q] = g[q * cols_b + p];
        }
    }
    let (vals, vecs) = jacobi_eigen(g, cols_b);
    let mut order: Vec<usize> = (0..cols_b).collect();
    order.sort_by(|&x, &y| vals[y].total_cmp(&vals[x]));
    let mut s = vec![0f64; j];
    let mut vb = vec![0f64; cols_b * j];
    let mut ub = vec![0f64; rows_b * j];
    for (k, &o) in order.iter().take(j).enumerate() {
        let sigma = vals[o].max(0.0).sqrt();
        s[k] = sigma;
        for p in 0..cols_b {
            vb[p * j + k] = vecs[p * cols_b + o];
        }
        if sigma > 1e-10 {
            for r in 0..rows_b {
                let mut y = 0.0;
                for p in 0..cols_b {
                    y += b(r, p) * vb[p * j + k];
                }
                ub[r * j + k] = y / sigma;
            }
        } else {
            s[k] = 0.0;
        }
    }
    if transposed {
        (vb, s, ub)
    } else {
        (ub, s, vb)
    }
}

/// Eigenvalues and eigenvectors (columns of a row-major `n × n` matrix) of a symmetric matrix
/// by cyclic Jacobi rotations.
fn jacobi_eigen(mut a: Vec<f64>, n: usize) -> (Vec<f64>, Vec<f64>) {
    let mut v = vec![0f64; n * n];
    for i in 0..n {
        v[i * n + i] = 1.0;
    }
    let scale: f64 = a.iter().map(|x| x * x).sum::<f64>().sqrt().max(1e-300);
    for _sweep in 0..100 {
        let off: f64 = (0..n)
            .flat_map(|p| (0..n).filter(move |&q| q != p).map(move |q| (p, q)))
            .map(|(p, q)| a[p * n + q] * a[p * n + q])
            .sum::<f64>()
            .sqrt();
        if off <= 1e-13 * scale {
            break;
        }
        for p in 0..n {
            for q in p + 1..n {
                let apq = a[p * n + q];
                if apq.abs() <= 1e-300 {
                    continue;
                }
                let theta = (a[q * n + q] - a[p * n + p]) / (2.0 * apq);
                let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
                let t = if theta == 0.0 { 1.0 } else { t };
                let c = 1.0 / (t * t + 1.0).sqrt();
                let s = t * c;
                for k in 0..n {
                    let (akp, akq) = (a[k * n + p], a[k * n + q]);
                    a[k * n + p] = c * akp - s * akq;
                    a[k * n + q] = s * akp + c * akq;
                }
                for k in 0..n {
                    let (apk, aqk) = (a[p * n + k], a[q * n + k]);
                    a[p * n + k] = c * apk - s * aqk;
                    a[q * n + k] = s * apk + c * aqk;
                }
                for k in 0..n {
                    let (vkp, vkq) = (v[k * n + p], v[k * n + q]);
                    v[k * n + p] = c * vkp - s * vkq;
                    v[k * n + q] = s * vkp + c * vkq;
                }
            }
        }
    }
    ((0..n).map(|i| a[i * n + i]).collect(), v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;
    use vrf_trainer::vars::SeededVarMap;

    /// The SVD initialisation writes the seen users' vectors into the trained variable itself.
    #[test]
    fn setting_the_users_writes_the_variable() -> Result<()> {
        let dev = Device::Cpu;
        let vars = SeededVarMap::new(0);
        let c = BaselineConfig {
            pref_j: 2,
            ..Default::default()
        };
        let p = Pref::new(vars.builder(&dev).pp("pref"), 4, 3, &c)?;
        let v = Tensor::new(&[[1f32, 2.0], [3.0, 4.0], [5.0, 6.0]], &dev)?;
        p.users_set(&v)?;
        let stored = vars.vars_with_prefix(&[USERS])[0]
            .1
            .as_tensor()
            .to_vec2::<f32>()?;
        assert_eq!(stored, v.to_vec2::<f32>()?);
        Ok(())
    }

    fn product(u: &[f64], v: &[f64], m: usize, n: usize, j: usize) -> Vec<f64> {
        let mut x = vec![0.0; m * n];
        for r in 0..m {
            for c in 0..n {
                x[r * n + c] = (0..j).map(|k| u[r * j + k] * v[c * j + k]).sum();
            }
        }
        x
    }

    /// A rank-2 matrix is reproduced by its rank-2 factors, both orientations (m > n, m < n).
    #[test]
    fn svd_init_reproduces_a_rank_j_matrix() {
        for (m, n) in [(9, 5), (4, 7)] {
            let a: Vec<f64> = (0..m * 2).map(|i| ((i * 7 % 11) as f64) / 11.0).collect();
            let b: Vec<f64> = (0..n * 2)
                .map(|i| ((i * 5 % 13) as f64) / 13.0 - 0.3)
                .collect();
            let x = product(&a, &b, m, n, 2);
            let (uf, vf) = imputed_svd(&x, m, n, 2, 0);
            let y = product(&uf, &vf, m, n, 2);
            let err = x
                .iter()
                .zip(&y)
                .map(|(p, q)| (p - q).abs())
                .fold(0.0, f64::max);
            assert!(err < 1e-9, "{m}×{n}: max error {err}");
        }
    }

    /// With missing entries, the imputation re-fills them from the low-rank fit (close to the
    /// rank-1 truth here) instead of leaving them at 0.5.
    #[test]
    fn imputation_fills_missing_entries_from_the_low_rank_fit() {
        let (m, n) = (8, 6);
        let u: Vec<f64> = (0..m).map(|r| 0.2 + 0.1 * r as f64).collect();
        let v: Vec<f64> = (0..n).map(|c| 0.3 + 0.1 * c as f64).collect();
        let mut x = product(&u, &v, m, n, 1);
        x[3 * n + 2] = f64::NAN; // truth 0.5 · 0.5 = 0.25
        let (uf, vf) = imputed_svd(&x, m, n, 1, 50);
        let filled = uf[3] * vf[2];
        assert!((filled - 0.25).abs() < 0.01, "filled {filled}");
    }
}
