//! int8 against f32 exports of the same run (prints figures; not a timed test), both through the
//! runtime (ONNX Runtime, CPU):
//! - size of the graph files, self-check error against the candle f32 forward;
//! - backbone tokens per second at batch 1 and 16 (random ids, `--len` tokens each, median);
//! - personalised pairwise accuracy on the data's eval pairs (each user's posterior from their
//!   reference pairs, as for an unseen user), seen and unseen users, and the change in points.
//!
//! ```text
//! cargo bench -p vrf-tests --bench quantize                                # a small model fitted here
//! cargo bench -p vrf-tests --bench quantize -- --run RUN --data FILE       # a trained run
//! cargo bench -p vrf-tests --bench quantize -- --run RUN --no-accuracy     # speed only (e.g. random 0.6B)
//! ```

#[path = "../tests/common/mod.rs"]
mod common;

use std::path::Path;
use std::time::Instant;

use common::{arg, median, path_arg};
use vrf_data::Dataset;
use vrf_runtime::{Reference, RuntimeOptions, VrfModel};
use vrf_trainer::export::{export, ExportOptions};
use vrf_trainer::quantize::Quantize;

/// Bytes of the backbone graph and its external data.
fn graph_bytes(dir: &Path) -> u64 {
    ["backbone.onnx", "backbone.onnx.data"]
        .iter()
        .filter_map(|f| std::fs::metadata(dir.join(f)).ok())
        .map(|m| m.len())
        .sum()
}

/// Median seconds of one backbone call on `batch` random rows of `len` tokens.
fn time_batch(model: &VrfModel, batch: usize, len: usize, budget_s: f64) -> anyhow::Result<f64> {
    let vocab = 1000u32
        .min(model.text_encoder()?.vocab_size() as u32)
        .max(2);
    let rows: Vec<Vec<u32>> = (0..batch)
        .map(|b| {
            (0..len)
                .map(|t| ((b * 131 + t * 31) as u32 % (vocab - 1)) + 1)
                .collect()
        })
        .collect();
    model.features_from_ids(&rows)?; // warm-up
    let mut times = Vec::new();
    let start = Instant::now();
    while times.len() < 3 || (start.elapsed().as_secs_f64() < budget_s && times.len() < 50) {
        let t = Instant::now();
        std::hint::black_box(model.features_from_ids(&rows)?);
        times.push(t.elapsed().as_secs_f64());
    }
    Ok(median(times))
}

/// Mean per-user accuracy on eval pairs, posterior from the user's references: (seen, unseen).
fn accuracy(model: &VrfModel, ds: &Dataset) -> anyhow::Result<(f64, f64)> {
    let um = model.user_model();
    let mut acc = [Vec::new(), Vec::new()];
    for (group, users) in [&ds.seen, &ds.unseen].into_iter().enumerate() {
        for &u in users {
            let ud = &ds.users[u];
            if ud.refs.is_empty() || ud.evals.is_empty() {
                continue;
            }
            let triplet = |i: &usize| {
                let t = &ds.triplets[*i];
                Reference::new(t.prompt.clone(), t.chosen.clone(), t.rejected.clone())
            };
            let refs: Vec<Reference> = ud.refs.iter().map(triplet).collect();
            let user = model.posterior(&refs)?;
            let evals: Vec<Reference> = ud.evals.iter().map(triplet).collect();
            let texts: Vec<(&str, &str)> = evals.iter().flat_map(Reference::texts).collect();
            let scores = um.score(&user, model.features(&texts)?.rewards.view())?;
            let right = (0..evals.len())
                .filter(|&i| scores[2 * i] > scores[2 * i + 1])
                .count();
            acc[group].push(right as f64 / evals.len() as f64);
        }
    }
    let mean = |v: &[f64]| 100.0 * v.iter().sum::<f64>() / v.len().max(1) as f64;
    Ok((mean(&acc[0]), mean(&acc[1])))
}

fn main() -> anyhow::Result<()> {
    std::env::set_var("RAYON_NUM_THREADS", "1");
    let args: Vec<String> = std::env::args().collect();
    let threads: usize = arg(&args, "--threads").map_or(Ok(2), |t| t.parse())?;
    let len: usize = arg(&args, "--len").map_or(Ok(128), |t| t.parse())?;
    let budget: f64 = arg(&args, "--budget-s").map_or(Ok(10.0), |t| t.parse())?;
    let with_accuracy = !args.iter().any(|a| a == "--no-accuracy");
    let tmp = tempfile::tempdir()?;
    let (run, data) = match (path_arg(&args, "--run"), path_arg(&args, "--data")) {
        (Some(r), d) => (r, d),
        (None, None) => {
            eprintln!("no --run given: fitting a small model on a small benchmark");
            let data = common::small_benchmark(tmp.path())?;
            let run = common::fit_small(tmp.path(), &data, &common::short_fit())?;
            (run, Some(data))
        }
        (None, Some(_)) => anyhow::bail!("--data needs --run"),
    };
    let ds = match (&data, with_accuracy) {
        (Some(d), true) => Some(Dataset::load(d)?),
        (None, true) => anyhow::bail!("accuracy needs --data FILE (or pass --no-accuracy)"),
        _ => None,
    };
    println!(
        "machine: {} logical CPUs; ONNX Runtime with {threads} intra-op threads; run {}",
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        run.display()
    );
    let mut rows = Vec::new();
    for (name, q) in [("f32", Quantize::None), ("int8", Quantize::Int8)] {
        let dir = tmp.path().join(format!("model-{name}"));
        let t = Instant::now();
        let report = export(
            &run,
            &dir,
            &ExportOptions {
                quantize: q,
                ..ExportOptions::default()
            },
        )?;
        let export_s = t.elapsed().as_secs_f64();
        let t = Instant::now();
        let model = VrfModel::load(&dir, &RuntimeOptions::new().with_threads(threads))?;
        let load_s = t.elapsed().as_secs_f64();
        let b1 = time_batch(&model, 1, len, budget)?;
        let b16 = time_batch(&model, 16, len, budget)?;
        let acc = match &ds {
            Some(ds) => Some(accuracy(&model, ds)?),
            None => None,
        };
        let rel = report
            .checks
            .iter()
            .map(|c| c.relative_err())
            .fold(0f32, f32::max);
        println!(
            "{name:>4}: graph {:.1} MB, export {export_s:.1} s, load {load_s:.2} s, self-check max abs {:.2e} (relative {rel:.2e}); \
             batch 1: {:.0} tokens/s, batch 16: {:.0} tokens/s{}",
            graph_bytes(&dir) as f64 / 1e6,
            report.max_err(),
            len as f64 / b1,
            16.0 * len as f64 / b16,
            acc.map_or(String::new(), |(s, u)| format!("; accuracy seen {s:.2}, unseen {u:.2}"))
        );
        rows.push((graph_bytes(&dir), b1, b16, acc));
        drop(model);
        std::fs::remove_dir_all(&dir)?;
    }
    let (f, i) = (&rows[0], &rows[1]);
    println!(
        "int8 / f32: size {:.2}×, speed batch 1 {:.2}×, batch 16 {:.2}×{}",
        i.0 as f64 / f.0 as f64,
        f.1 / i.1,
        f.2 / i.2,
        match (f.3, i.3) {
            (Some((fs, fu)), Some((is, iu))) => format!(
                "; accuracy change seen {:+.2} pt, unseen {:+.2} pt",
                is - fs,
                iu - fu
            ),
            _ => String::new(),
        }
    );
    Ok(())
}
