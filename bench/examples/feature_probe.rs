//! Linear probe of a trained run's backbone states: how much of each of the synthetic
//! benchmark's ten style measures (and the shared quality) a ridge regression on the pooled
//! state `e` recovers on the eval prompts' responses, after fitting on the training prompts'.
//! A style the probe cannot read is one no basis reward can specialise on.
//!
//!     cargo run --release -p vrf-bench --example feature_probe -- RUN_DIR [DATA.jsonl]

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use vrf_data::synth::{quality, scorers, N_SCORERS, SCORER_NAMES};
use vrf_data::Split;
use vrf_trainer::config::RunConfig;
use vrf_trainer::run::{device, prepare_trained};

/// Solves (XᵀX + λI) b = Xᵀy for every column of y; X has a leading 1 column (not penalised).
fn ridge(x: &[Vec<f64>], ys: &[Vec<f64>], lambda: f64) -> Vec<Vec<f64>> {
    let p = x[0].len();
    let mut a = vec![vec![0.0; p]; p];
    for row in x {
        for i in 0..p {
            for j in 0..p {
                a[i][j] += row[i] * row[j];
            }
        }
    }
    for (i, r) in a.iter_mut().enumerate().skip(1) {
        r[i] += lambda;
    }
    ys.iter()
        .map(|y| {
            let mut m = a.clone();
            let mut b: Vec<f64> = (0..p)
                .map(|i| x.iter().zip(y).map(|(r, v)| r[i] * v).sum())
                .collect();
            // Gaussian elimination with partial pivoting.
            for c in 0..p {
                let piv = (c..p)
                    .max_by(|&i, &j| m[i][c].abs().total_cmp(&m[j][c].abs()))
                    .unwrap_or(c);
                m.swap(c, piv);
                b.swap(c, piv);
                let d = m[c][c];
                if d.abs() < 1e-12 {
                    continue;
                }
                let pivot = m[c].clone();
                for r in c + 1..p {
                    let f = m[r][c] / d;
                    for (x, y) in m[r][c..].iter_mut().zip(&pivot[c..]) {
                        *x -= f * y;
                    }
                    b[r] -= f * b[c];
                }
            }
            let mut sol = vec![0.0; p];
            for c in (0..p).rev() {
                let s: f64 = (c + 1..p).map(|k| m[c][k] * sol[k]).sum();
                sol[c] = if m[c][c].abs() < 1e-12 {
                    0.0
                } else {
                    (b[c] - s) / m[c][c]
                };
            }
            sol
        })
        .collect()
}

fn r2(x: &[Vec<f64>], y: &[f64], b: &[f64]) -> f64 {
    let mean = y.iter().sum::<f64>() / y.len() as f64;
    let (mut ss_res, mut ss_tot) = (0.0, 0.0);
    for (row, v) in x.iter().zip(y) {
        let pred: f64 = row.iter().zip(b).map(|(a, c)| a * c).sum();
        ss_res += (v - pred).powi(2);
        ss_tot += (v - mean).powi(2);
    }
    1.0 - ss_res / ss_tot.max(1e-12)
}

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let Some(run) = args.next().map(PathBuf::from) else {
        bail!("usage: feature_probe RUN_DIR [DATA.jsonl]");
    };
    let cfg: RunConfig = serde_json::from_str(
        &std::fs::read_to_string(run.join("config.json"))
            .with_context(|| format!("{}", run.join("config.json").display()))?,
    )?;
    let data = match args.next() {
        Some(d) => PathBuf::from(d),
        None => {
            let info: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(run.join("run.json"))?)?;
            PathBuf::from(info["data"].as_str().context("run.json: data")?)
        }
    };
    std::env::set_var("RAYON_NUM_THREADS", "1");
    let dev = device("cpu")?;
    let p = prepare_trained(&run, &cfg, Path::new(&data), &dev, "probe")?;
    // Texts of training triplets vs texts of eval prompts only.
    let idx = &p.corpus.index;
    let mut train = HashSet::new();
    let mut test = HashSet::new();
    for (i, t) in p.ds.triplets.iter().enumerate() {
        let set = if t.split == Split::Eval {
            &mut test
        } else {
            &mut train
        };
        set.insert(idx.chosen_text[i]);
        set.insert(idx.rejected_text[i]);
    }
    test.retain(|t| !train.contains(t));
    let mut train: Vec<usize> = train.into_iter().collect();
    let mut test: Vec<usize> = test.into_iter().collect();
    train.sort_unstable();
    test.sort_unstable();
    let feats = |ids: &[usize]| -> anyhow::Result<Vec<Vec<f64>>> {
        let e = p.corpus.embed(&p.model, ids, 64)?.to_vec2::<f32>()?;
        Ok(e.into_iter()
            .map(|r| {
                std::iter::once(1.0)
                    .chain(r.into_iter().map(f64::from))
                    .collect()
            })
            .collect())
    };
    let targets = |ids: &[usize]| -> Vec<Vec<f64>> {
        let mut cols: Vec<Vec<f64>> = (0..=N_SCORERS)
            .map(|_| Vec::with_capacity(ids.len()))
            .collect();
        for &t in ids {
            let text = &idx.texts[t].1;
            let s = scorers(text);
            for j in 0..N_SCORERS {
                cols[j].push(s[j]);
            }
            cols[N_SCORERS].push(quality(text));
        }
        cols
    };
    let (xtr, xte) = (feats(&train)?, feats(&test)?);
    let (ytr, yte) = (targets(&train), targets(&test));
    println!(
        "{}: {} train texts, {} eval texts, H = {}",
        run.display(),
        train.len(),
        test.len(),
        xtr[0].len() - 1
    );
    for lambda in [1e-3, 1e-1, 10.0] {
        let b = ridge(&xtr, &ytr, lambda);
        let mut line = format!("λ={lambda:<6}");
        let mut sum = 0.0;
        for j in 0..=N_SCORERS {
            let name = if j < N_SCORERS {
                SCORER_NAMES[j]
            } else {
                "quality"
            };
            let (a, c) = (r2(&xtr, &ytr[j], &b[j]), r2(&xte, &yte[j], &b[j]));
            sum += c;
            line += &format!(" {name}={a:.2}/{c:.2}");
        }
        println!("{line}  mean eval R² {:.3}", sum / (N_SCORERS + 1) as f64);
    }
    Ok(())
}
