//! Runtime benchmark (prints figures; not a timed test):
//! - user posterior per user from pair features (N = 10 pairs, the model's d, K and H),
//! - backbone throughput in preference pairs per second at batch 1 and 16 through ONNX Runtime,
//! - the same backbone forward through candle, for comparison.
//!
//! Each figure is the median of repeated runs.
//!
//! ```text
//! cargo bench -p vrf-tests --bench runtime                         # a tiny model fitted here
//! cargo bench -p vrf-tests --bench runtime -- --run runs/vrf-seed0 # a trained run
//! ```

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::Instant;

use candle_core::{Device, Tensor};
use common::median;
use vrf_data::Dataset;
use vrf_runtime::{RuntimeOptions, VrfModel};
use vrf_trainer::export::{export, load_trained, ExportOptions};

/// Median over `reps` runs of the seconds one call of `f` takes (each run averages `inner` calls).
fn time(reps: usize, inner: usize, mut f: impl FnMut()) -> f64 {
    f(); // warm-up
    median(
        (0..reps)
            .map(|_| {
                let t = Instant::now();
                for _ in 0..inner {
                    f();
                }
                t.elapsed().as_secs_f64() / inner as f64
            })
            .collect(),
    )
}

/// A backbone call on one batch of `(prompt, response)` texts.
type Call<'a> = dyn FnMut(&[(&str, &str)]) + 'a;

fn main() -> anyhow::Result<()> {
    // candle reads its thread count from RAYON_NUM_THREADS before its first parallel op.
    std::env::set_var("RAYON_NUM_THREADS", "1");
    let args: Vec<String> = std::env::args().collect();
    let run_arg = common::path_arg(&args, "--run");
    let tmp = tempfile::tempdir()?;
    let data_path = common::small_benchmark(tmp.path())?;
    let run = match run_arg {
        Some(r) => r,
        None => {
            eprintln!("no --run given: fitting a small model (default architecture, few steps) to benchmark");
            let cfg = common::short_fit();
            common::fit_small(tmp.path(), &data_path, &cfg)?
        }
    };
    let model_dir = tmp.path().join("model");
    export(&run, &model_dir, &ExportOptions::default())?;
    let trained = load_trained(&run, &Device::Cpu)?;
    let ds = Dataset::load(&data_path)?;
    let m = trained.model.backbone_cfg.clone().expect("a backbone run");
    println!(
        "machine: {} logical CPUs; model: Qwen3 H = {}, {} layers, K = {}, d = {}, max_len = {}",
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        m.hidden_size,
        m.num_hidden_layers,
        trained.model.heads.k(),
        trained.cfg.model.d,
        trained.encoder.as_ref().expect("a text run").max_len
    );

    // 1. User posterior from N = 10 pair features.
    let rt = VrfModel::load(
        &model_dir,
        &RuntimeOptions::new().with_threads(1).with_batch_size(32),
    )?;
    let um = rt.user_model();
    let feats = ndarray::Array2::from_shape_fn((10, um.feature_dim()), |(i, j)| {
        ((i * 31 + j * 7) % 13) as f32 / 13.0 - 0.5
    });
    let t_user = time(21, 2000, || {
        std::hint::black_box(um.posterior(feats.view()).unwrap());
    });
    println!(
        "user posterior (N = 10 pairs, F = {}, d = {}, K = {}, prior: {}): {:.2} µs per user (median of 21 × 2000)",
        um.feature_dim(),
        um.d(),
        um.k(),
        um.prior().is_some(),
        t_user * 1e6
    );
    if um.prior().is_some() {
        // The same model with its population prior off (format 1's posterior): the prior's cost.
        let bytes = std::fs::read(model_dir.join(vrf_format::manifest::USER_MODEL_FILE))?;
        let mut manifest = rt.manifest().clone();
        manifest.encoder.prior = false;
        let off = vrf_format::UserModel::from_bytes(&manifest, &bytes)?;
        let t_off = time(21, 2000, || {
            std::hint::black_box(off.posterior(feats.view()).unwrap());
        });
        println!(
            "the same, prior off: {:.2} µs per user (prior ÷ prior off: {:.3})",
            t_off * 1e6,
            t_user / t_off
        );
    }

    // 2./3. Backbone throughput: ONNX Runtime vs candle on the same texts.
    let texts: Vec<(String, String)> = ds
        .triplets
        .iter()
        .take(64)
        .flat_map(|t| {
            [
                (t.prompt.clone(), t.chosen.clone()),
                (t.prompt.clone(), t.rejected.clone()),
            ]
        })
        .collect();
    let mean_tokens = texts
        .iter()
        .map(|(p, r)| {
            trained
                .encoder
                .as_ref()
                .expect("a text run")
                .encode(p, r)
                .map(|v| {
                    v.len()
                        .min(trained.encoder.as_ref().expect("a text run").max_len)
                })
                .unwrap_or(0)
        })
        .sum::<usize>() as f64
        / texts.len() as f64;
    println!(
        "texts: synthetic benchmark responses, mean {mean_tokens:.0} tokens after the template"
    );
    println!(
        "| pairs per call | ONNX Runtime, 1 thread | ONNX Runtime, 2 threads | candle, 1 thread |"
    );
    println!("|---|---|---|---|");
    let rt2 = VrfModel::load(
        &model_dir,
        &RuntimeOptions::new().with_threads(2).with_batch_size(32),
    )?;
    for pairs in [1usize, 16] {
        let calls: Vec<Vec<(&str, &str)>> = texts
            .chunks(2 * pairs)
            .filter(|c| c.len() == 2 * pairs)
            .map(|c| c.iter().map(|(p, r)| (p.as_str(), r.as_str())).collect())
            .collect();
        let mut i = 0;
        let mut per_pair = |f: &mut Call| {
            time(7, calls.len().min(8), || {
                f(&calls[i % calls.len()]);
                i += 1;
            }) / pairs as f64
        };
        let ort1 = per_pair(&mut |c| {
            std::hint::black_box(rt.features(c).unwrap());
        });
        let ort2 = per_pair(&mut |c| {
            std::hint::black_box(rt2.features(c).unwrap());
        });
        let cand = per_pair(&mut |c| {
            let b = trained
                .encoder
                .as_ref()
                .expect("a text run")
                .encode_batch(c)
                .unwrap();
            let ids = Tensor::from_vec(b.ids, (b.batch, b.seq_len), &Device::Cpu).unwrap();
            let e = trained.model.embed(&ids, &b.lengths).unwrap();
            std::hint::black_box(trained.model.phi(&e).unwrap());
        });
        println!(
            "| {pairs} | {:.0} pairs/s | {:.0} pairs/s | {:.0} pairs/s |",
            1.0 / ort1,
            1.0 / ort2,
            1.0 / cand
        );
    }
    Ok(())
}
