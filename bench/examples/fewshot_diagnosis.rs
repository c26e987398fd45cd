//! Where a fitted VRF model loses few-shot headroom (docs/features.md, "Where the inference
//! loses headroom"): for the unseen users' few-shot draws it re-runs the posterior with each
//! pair's precision scaled by `c` (c < 1: each answer says less; c = 1: the model as fitted),
//! and fits each user's weights on the simplex directly to their own eval pairs (the best any
//! posterior could do with these basis rewards: the representation's ceiling).
//!
//! ```text
//! cargo run --release -p vrf-bench --example fewshot_diagnosis -- RUN_DIR
//! ```
//! If a smaller `c` helps at small k, the encoder's per-pair variances are overconfident for
//! few answers; if no `c` closes the gap to the ceiling, the loss is downstream (W₂ → softmax,
//! K); if the representation's ceiling itself is low, it is the basis rewards.

use std::path::PathBuf;

use anyhow::Context;
use candle_core::{Device, Tensor};
use vrf_data::Split;
use vrf_trainer::checkpoint::{load_checkpoint, read_json};
use vrf_trainer::config::RunConfig;
use vrf_trainer::encoder::{assignment, pool};
use vrf_trainer::eval::few_shot_draws;
use vrf_trainer::run::{prepare, RunInfo};

/// Precision scales tried.
const SCALES: [f64; 7] = [0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0];

fn main() -> anyhow::Result<()> {
    let run = PathBuf::from(std::env::args().nth(1).context("usage: fewshot_diagnosis RUN_DIR")?);
    vrf_trainer::threads::set(1);
    let dev = Device::Cpu;
    let cfg: RunConfig = read_json(&run.join("config.json"))?;
    let data = read_json::<RunInfo>(&run.join("run.json"))?.data;
    let p = prepare(&run, &cfg, &data, &dev)?;
    let ck = load_checkpoint(&run, &dev)?.context("no checkpoint")?;
    for (name, t) in &ck.weights {
        p.model.vars.insert(name, t.clone())?;
    }
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
    let unseen = &ds.unseen;
    let evals: Vec<Vec<Vec<f32>>> = unseen
        .iter()
        .map(|&u| delta(ds.users[u].split(Split::Eval)))
        .collect::<anyhow::Result<_>>()?;
    let accuracy = |w: &[Vec<f32>]| -> f64 {
        let (mut hit, mut n) = (0usize, 0usize);
        for (wu, ev) in w.iter().zip(&evals) {
            for d in ev {
                let margin: f32 = d.iter().zip(wu).map(|(a, b)| a * b).sum();
                hit += usize::from(margin > 0.0);
                n += 1;
            }
        }
        100.0 * hit as f64 / n.max(1) as f64
    };

    println!("unseen users: {}; accuracy (%) on their eval pairs\n", unseen.len());
    print!("| k |");
    for c in SCALES {
        print!(" c = {c} |");
    }
    println!("\n|---|{}", "---|".repeat(SCALES.len()));
    for (k, draws) in few_shot_draws(ds) {
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
        for c in SCALES {
            // σ_i² / c: each pair's precision times c.
            let lv = (&logvar - c.ln())?;
            let (mu_u, var_u) = pool(&mu, &lv, &a, cfg.model.pooling, enc.prior())?;
            let w: Vec<Vec<f32>> = bases.weights(&mu_u, &var_u)?.to_vec2()?;
            print!(" {:.2} |", accuracy(&w));
        }
        println!();
    }
    // The representation's ceiling: each user's weights on the simplex fitted to their own eval
    // pairs (in-sample logistic fit of softmax logits).
    let k = cfg.model.k;
    let oracle: Vec<Vec<f32>> = evals.iter().map(|ev| fit_simplex(ev, k)).collect();
    println!(
        "\nbest weights on the simplex, fitted to each user's own eval pairs: {:.2}",
        accuracy(&oracle)
    );
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
