//! Which per-user uncertainty predicts a user's error (docs/results.md, "What σ² can say"): for
//! the unseen users' mixed-k draw of evaluation (k uniform in 1…|R| per user), Spearman ρ
//! between each user's error rate on their eval pairs and
//! - σ² (the mean posterior variance the model reports),
//! - σ² pushed to the basis weights: tr Cov(w) by the delta method and by Monte Carlo
//!   (z ~ N(μ, σ²), 128 draws, w(z) the W₂ softmax at the posterior's σ),
//! - σ² weighted per latent dimension by the spread of the basis means along it,
//! - the posterior's flip rate: the share of Monte Carlo draws whose weights rank an eval pair
//!   the other way than the mean's (uses the pairs scored, not their labels),
//! - the entropy of w (how mixed the user is), and −k (the number of answers alone),
//! - the misfit (the Eq. 8 loss of the k answers under their own posterior) and σ² × misfit
//!   (σ² scaled by that residual, as with an unknown noise scale),
//! - three oracles that read the user's other answers, which no uncertainty can see: how far
//!   the k-answer posterior is from the all-answers one (in z, and in w by KL), and the user's
//!   own error with all answers (what the model cannot get right for them however much it knows).
//!
//! Before the table it prints the accuracy of the Monte Carlo mean weights E[w(z)] (Bayesian
//! model averaging over the posterior) beside that of the posterior mean's weights w(μ), which
//! every surface serves.
//!
//! ```text
//! cargo run --release -p vrf-bench --example uncertainty_diagnosis -- RUN_DIR
//! ```

use std::path::PathBuf;

use anyhow::Context;
use candle_core::Device;
use ndarray::Array2;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};
use vrf_format::math;
use vrf_trainer::checkpoint::read_json;
use vrf_trainer::config::RunConfig;
use vrf_trainer::eval::{mixed_k_draw, posteriors, Features};
use vrf_trainer::metrics::spearman;
use vrf_trainer::run::{prepare_trained, RunInfo};

/// Monte Carlo draws per user.
const DRAWS: usize = 128;

fn main() -> anyhow::Result<()> {
    let run = PathBuf::from(
        std::env::args()
            .nth(1)
            .context("usage: uncertainty_diagnosis RUN_DIR")?,
    );
    vrf_trainer::threads::set(1);
    let dev = Device::Cpu;
    let cfg: RunConfig = read_json(&run.join("config.json"))?;
    let data = read_json::<RunInfo>(&run.join("run.json"))?.data;
    let p = prepare_trained(&run, &cfg, &data, &dev, "diagnose")?;
    let (m, ds, corpus) = (&p.model, &p.ds, &p.corpus);
    anyhow::ensure!(m.encoder.is_some(), "not a VRF run");
    let f = Features::of_users(m, corpus, ds)?;
    let bases = m.bases()?;
    let means: Vec<Vec<f64>> = to_f64(bases.means.to_vec2()?);
    let (k, d) = (means.len(), means[0].len());
    let scale = 1.0 / (cfg.model.tau * d as f64);
    // w = softmax_k(−W₂²(N(z, σ²), b_k)/(τ d)): the runtime's math.
    let shared = math::Bases::new(
        Array2::from_shape_vec((k, d), bases.means.flatten_all()?.to_vec1::<f32>()?)?,
        Array2::from_shape_vec((k, d), bases.log_var.flatten_all()?.to_vec1::<f32>()?)?,
    )?;
    let tau = cfg.model.tau as f32;
    let weights = |mu: &[f64], var: &[f64]| -> anyhow::Result<Vec<f64>> {
        let q = math::Posterior::new(
            mu.iter().map(|&x| x as f32).collect(),
            var.iter().map(|&x| x as f32).collect(),
        )?;
        Ok(shared
            .weights(&q, tau)?
            .iter()
            .map(|&x| f64::from(x))
            .collect())
    };
    let spread: Vec<f64> = (0..d)
        .map(|j| {
            let c = (0..k).map(|b| means[b][j]).sum::<f64>() / k as f64;
            (0..k).map(|b| (means[b][j] - c).powi(2)).sum::<f64>() / k as f64
        })
        .collect();
    let spread_sum: f64 = spread.iter().sum();

    let draws = mixed_k_draw(ds);
    let (mu, var, w) = posteriors(m, &f, corpus, &draws)?;
    let (mu, var, w) = (
        to_f64(mu.to_vec2()?),
        to_f64(var.to_vec2()?),
        to_f64(w.to_vec2()?),
    );
    let all_refs: Vec<Vec<usize>> = ds
        .unseen
        .iter()
        .map(|&u| ds.users[u].refs.clone())
        .collect();
    let (mu_all, _, w_all) = posteriors(m, &f, corpus, &all_refs)?;
    let (mu_all, w_all) = (to_f64(mu_all.to_vec2()?), to_f64(w_all.to_vec2()?));
    let names = [
        "σ² (mean posterior variance, reported)",
        "tr Cov(w), delta method",
        "tr Cov(w), Monte Carlo",
        "σ² weighted by the bases' spread",
        "posterior flip rate on the scored pairs",
        "entropy of w",
        "−k (number of answers)",
        "misfit: Eq. 8 loss of the k answers under their own posterior",
        "σ² × misfit (σ² scaled by the answers' residual, as with an unknown noise scale)",
        "oracle: ‖μ_k − μ_all‖²/d",
        "oracle: KL(w_all ‖ w_k)",
        "oracle: the user's error with all answers",
    ];
    let mut cols = vec![Vec::new(); names.len()];
    let mut error = Vec::new();
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    // Eval pairs right with w(μ), right with the Monte Carlo mean weights, and scored.
    let mut acc_bma = (0.0, 0.0, 0.0);
    for (ui, &u) in ds.unseen.iter().enumerate() {
        let delta = to_f64(f.delta(corpus, &ds.users[u].evals)?.to_vec2()?);
        let (mu_u, v_u, w_u) = (&mu[ui], &var[ui], &w[ui]);
        let sd_u: Vec<f64> = v_u.iter().map(|v| v.sqrt()).collect();
        let m0: Vec<f64> = delta.iter().map(|dd| dot(dd, w_u)).collect();
        error.push(m0.iter().filter(|&&x| x <= 0.0).count() as f64 / m0.len().max(1) as f64);
        cols[0].push(v_u.iter().sum::<f64>() / d as f64);
        // ∂w_k/∂μ_j = w_k (g_kj − Σ_l w_l g_lj), g_kj = −2 (μ_j − m_kj)/(τ d).
        let mut tr = 0.0;
        for j in 0..d {
            let g: Vec<f64> = (0..k)
                .map(|b| -2.0 * (mu_u[j] - means[b][j]) * scale)
                .collect();
            let avg = dot(&g, w_u);
            tr += (0..k).map(|b| (w_u[b] * (g[b] - avg)).powi(2)).sum::<f64>() * v_u[j];
        }
        cols[1].push(tr);
        let samples: Vec<Vec<f64>> = (0..DRAWS)
            .map(|_| {
                let z: Vec<f64> = (0..d)
                    .map(|j| {
                        let e: f64 = StandardNormal.sample(&mut rng);
                        mu_u[j] + sd_u[j] * e
                    })
                    .collect();
                weights(&z, v_u)
            })
            .collect::<anyhow::Result<_>>()?;
        let w_bar: Vec<f64> = (0..k)
            .map(|b| samples.iter().map(|x| x[b]).sum::<f64>() / DRAWS as f64)
            .collect();
        cols[2].push(
            samples
                .iter()
                .map(|x| (0..k).map(|b| (x[b] - w_bar[b]).powi(2)).sum::<f64>())
                .sum::<f64>()
                / DRAWS as f64,
        );
        cols[3].push((0..d).map(|j| v_u[j] * spread[j]).sum::<f64>() / spread_sum);
        let flips: usize = delta
            .iter()
            .zip(&m0)
            .map(|(dd, &m)| {
                samples
                    .iter()
                    .filter(|x| (dot(dd, x) > 0.0) != (m > 0.0))
                    .count()
            })
            .sum();
        cols[4].push(flips as f64 / (DRAWS * delta.len().max(1)) as f64);
        cols[5].push(-w_u.iter().map(|x| x * x.max(1e-300).ln()).sum::<f64>());
        cols[6].push(-(draws[ui].len() as f64));
        let own = to_f64(f.delta(corpus, &draws[ui])?.to_vec2()?);
        let w32: Vec<f32> = w_u.iter().map(|&x| x as f32).collect();
        let mut misfit = 0.0;
        for dd in &own {
            let d32: Vec<f32> = dd.iter().map(|&x| x as f32).collect();
            misfit += f64::from(math::va_loss(
                ndarray::ArrayView1::from(&w32[..]),
                ndarray::ArrayView1::from(&d32[..]),
            )?);
        }
        misfit /= own.len().max(1) as f64;
        cols[7].push(misfit);
        let mb: Vec<f64> = delta.iter().map(|dd| dot(dd, &w_bar)).collect();
        acc_bma.0 += m0.iter().filter(|&&x| x > 0.0).count() as f64;
        acc_bma.1 += mb.iter().filter(|&&x| x > 0.0).count() as f64;
        acc_bma.2 += m0.len() as f64;
        let var_mean = cols[0][ui];
        cols[8].push(var_mean * misfit);
        cols[9].push(
            (0..d)
                .map(|j| (mu_u[j] - mu_all[ui][j]).powi(2))
                .sum::<f64>()
                / d as f64,
        );
        cols[10].push(
            (0..k)
                .map(|b| w_all[ui][b] * (w_all[ui][b].max(1e-300) / w_u[b].max(1e-300)).ln())
                .sum::<f64>(),
        );
        let ma: Vec<f64> = delta.iter().map(|dd| dot(dd, &w_all[ui])).collect();
        cols[11].push(ma.iter().filter(|&&x| x <= 0.0).count() as f64 / ma.len().max(1) as f64);
    }
    println!(
        "unseen users, k uniform in 1…|R| (evaluation's mixed-k draw): {} users, mean error {:.4}\n",
        error.len(),
        error.iter().sum::<f64>() / error.len().max(1) as f64
    );
    println!(
        "accuracy with the posterior mean's weights w(μ) {:.4}; with the Monte Carlo mean of w(z), z ~ N(μ, σ²) {:.4}\n",
        acc_bma.0 / acc_bma.2.max(1.0),
        acc_bma.1 / acc_bma.2.max(1.0)
    );
    println!("| per-user quantity | Spearman ρ with the error |\n|---|---|");
    for (name, c) in names.iter().zip(&cols) {
        println!("| {name} | {:.3} |", spearman(c, &error));
    }
    Ok(())
}

fn to_f64(x: Vec<Vec<f32>>) -> Vec<Vec<f64>> {
    x.into_iter()
        .map(|r| r.into_iter().map(f64::from).collect())
        .collect()
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}
