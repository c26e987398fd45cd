//! Where a fitted VRF model loses few-shot headroom (docs/features.md, "Where the inference
//! loses headroom"): for the few-shot draws of unseen users (scored on their eval pairs) and
//! the same draws of seen users (scored on their target pairs), it re-runs the posterior with
//! each pair's precision × c and the prior's × a (c = a = 1: the model as fitted); then it fits
//! each seen user's weights on the simplex directly to all their training pairs and scores them
//! on their eval pairs: what the basis rewards allow with plenty of answers.
//!
//! ```text
//! cargo run --release -p vrf-bench --example fewshot_diagnosis -- RUN_DIR
//! ```
//! If a smaller c helps at small k, the encoder's per-pair variances are overconfident for few
//! answers; if the simplex fit is itself far below the per-user ceiling, the loss is in the
//! basis rewards and the softmax (convex) combination, not in the inference.

use std::path::PathBuf;

use anyhow::Context;
use candle_core::{Device, Tensor};
use vrf_data::Split;
use vrf_trainer::checkpoint::read_json;
use vrf_trainer::config::RunConfig;
use vrf_trainer::encoder::{assignment, pool, Prior};
use vrf_trainer::eval::reference_draws;
use vrf_trainer::run::{prepare_trained, RunInfo};

/// Settings tried: each pair's precision × c, the prior's precision × a.
const SCALES: [(f64, f64); 9] = [
    (0.1, 1.0),
    (0.3, 1.0),
    (1.0, 1.0),
    (3.0, 1.0),
    (10.0, 1.0),
    (1.0, 3.0),
    (1.0, 10.0),
    (1.0, 30.0),
    (1.0, 100.0),
];

fn main() -> anyhow::Result<()> {
    let run = PathBuf::from(
        std::env::args()
            .nth(1)
            .context("usage: fewshot_diagnosis RUN_DIR")?,
    );
    vrf_trainer::threads::set(1);
    let dev = Device::Cpu;
    let cfg: RunConfig = read_json(&run.join("config.json"))?;
    let data = read_json::<RunInfo>(&run.join("run.json"))?.data;
    let p = prepare_trained(&run, &cfg, &data, &dev, "diagnose")?;
    let (m, ds, idx) = (&p.model, &p.ds, &p.corpus.index);
    let enc = m.encoder.as_ref().context("not a VRF run")?;
    let bases = m.bases()?;
    let all: Vec<usize> = (0..p.corpus.len()).collect();
    let e = p.corpus.embed(m, &all, 256)?;
    let phi = m.phi(&e)?;
    let text_rows = |tr: &[usize], chosen: bool| -> anyhow::Result<Tensor> {
        let ids: Vec<u32> = tr
            .iter()
            .map(|&i| if chosen { idx.chosen_text[i] } else { idx.rejected_text[i] } as u32)
            .collect();
        Ok(Tensor::from_vec(ids, tr.len(), &dev)?)
    };
    let delta = |tr: &[usize]| -> anyhow::Result<Vec<Vec<f32>>> {
        let d = (phi.index_select(&text_rows(tr, true)?, 0)?
            - phi.index_select(&text_rows(tr, false)?, 0)?)?;
        Ok(d.to_vec2()?)
    };
    // Seen users scored on their target pairs, with k of their references drawn as the
    // unseen users' are: what a precision scale fitted on training users would see.
    let seen_draws = reference_draws(ds, &ds.seen, 99);
    let groups = [
        (
            "unseen users, eval pairs",
            &ds.unseen,
            Split::Eval,
            // Draw 0 of the few-shot curve's draws.
            reference_draws(ds, &ds.unseen, 1234),
        ),
        (
            "seen users, target pairs",
            &ds.seen,
            Split::Target,
            seen_draws,
        ),
    ];
    let mut unseen_evals = Vec::new();
    for (name, users, split, draws_k) in groups {
        let evals: Vec<Vec<Vec<f32>>> = users
            .iter()
            .map(|&u| delta(ds.users[u].split(split)))
            .collect::<anyhow::Result<_>>()?;
        println!(
            "\n{name} ({}): accuracy (%) with each pair's precision × c and the prior's × a\n",
            users.len()
        );
        print!("| k |");
        for (c, a) in SCALES {
            print!(" c = {c}, a = {a} |");
        }
        println!("\n|---|{}", "---|".repeat(SCALES.len()));
        for (k, draws) in draws_k {
            let tr: Vec<usize> = draws.concat();
            let seg: Vec<usize> = draws
                .iter()
                .enumerate()
                .flat_map(|(u, r)| std::iter::repeat_n(u, r.len()))
                .collect();
            let ec = e.index_select(&text_rows(&tr, true)?, 0)?;
            let er = e.index_select(&text_rows(&tr, false)?, 0)?;
            let (mu, logvar) = enc.forward(&m.ref_features(&ec, &er)?)?;
            let a = assignment(&seg, draws.len(), &dev)?;
            print!("| {k} |");
            for (c, scale) in SCALES {
                // σ_i² / c: each pair's precision times c; the prior's times `scale`.
                let lv = (&logvar - c.ln())?;
                let prior = enc
                    .prior()
                    .map(|p| {
                        p.raw_log_var_scaled(scale).map(|log_var| Prior {
                            mean: p.mean.clone(),
                            log_var,
                        })
                    })
                    .transpose()?;
                let (mu_u, var_u) = pool(&mu, &lv, &a, cfg.model.pooling, prior.as_ref())?;
                let w: Vec<Vec<f32>> = bases.weights(&mu_u, &var_u)?.to_vec2()?;
                print!(" {:.2} |", accuracy(&w, &evals));
            }
            println!();
        }
        if unseen_evals.is_empty() {
            unseen_evals = evals;
        }
    }
    // The representation's ceiling: each seen user's weights on the simplex fitted to all of
    // their training pairs (references and targets), scored on their eval pairs — what the
    // basis rewards allow a user given plenty of answers (compare `true-map-all`).
    let k = cfg.model.k;
    let (mut fitted, mut held) = (Vec::new(), Vec::new());
    for &u in &ds.seen {
        let user = &ds.users[u];
        let train: Vec<usize> = user.refs.iter().chain(&user.targets).copied().collect();
        fitted.push(fit_simplex(&delta(&train)?, k));
        held.push(delta(user.split(Split::Eval))?);
    }
    println!(
        "\nseen users, weights on the simplex fitted to all their training pairs, on their eval pairs: {:.2}",
        accuracy(&fitted, &held)
    );
    let _ = unseen_evals;
    Ok(())
}

/// Softmax weights maximising Σ log σ(s·Δφ·w) on `pairs` (gradient ascent on the logits, with
/// a free scale s so the fit is not limited by the margins' size).
fn fit_simplex(pairs: &[Vec<f32>], k: usize) -> Vec<f32> {
    let (mut l, mut s) = (vec![0f64; k], 1f64);
    for _ in 0..2000 {
        let z: f64 = l.iter().map(|x| x.exp()).sum();
        let w: Vec<f64> = l.iter().map(|x| x.exp() / z).collect();
        let (mut gw, mut gs) = (vec![0f64; k], 0f64);
        for d in pairs {
            let m: f64 = d.iter().zip(&w).map(|(a, b)| f64::from(*a) * b).sum();
            let g = 1.0 / (1.0 + (s * m).exp()); // d/dm log σ(s m) = s (1 − σ(s m))
            gs += g * m;
            for (j, dj) in d.iter().enumerate() {
                gw[j] += g * s * f64::from(*dj);
            }
        }
        // Chain rule through the softmax: ∂/∂l_j = w_j (g_j − Σ w g).
        let avg: f64 = gw.iter().zip(&w).map(|(a, b)| a * b).sum();
        for j in 0..k {
            l[j] += 0.5 * w[j] * (gw[j] - avg);
        }
        s = (s + 0.1 * gs).clamp(1e-3, 1e3);
    }
    let z: f64 = l.iter().map(|x| x.exp()).sum();
    l.iter().map(|x| (x.exp() / z) as f32).collect()
}

/// Share (%) of the pairs whose reward difference under the user's weights is positive.
fn accuracy(w: &[Vec<f32>], evals: &[Vec<Vec<f32>>]) -> f64 {
    let (mut hit, mut n) = (0usize, 0usize);
    for (wu, ev) in w.iter().zip(evals) {
        for d in ev {
            let margin: f32 = d.iter().zip(wu).map(|(a, b)| a * b).sum();
            hit += usize::from(margin > 0.0);
            n += 1;
        }
    }
    100.0 * hit as f64 / n.max(1) as f64
}
