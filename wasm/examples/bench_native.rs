//! Native side of the wasm benchmark (scripts/bench-wasm.sh): µs per `observe` of one pair and
//! per posterior/weights call with N = 10 pairs, median of 21 runs, on three models: the parity
//! fixture's (random weights, H = 64, d = 32, K = 8, no prior) and, given an exported model
//! directory (the demo page's `wasm/www/data-export` by default in the script), that model as
//! exported and, when it carries a population prior, with the prior switched off, so the prior's
//! cost per user is read in one run. Prints one JSON line per model.
//!
//!   cargo run --release -p vrf-wasm --example bench_native -- [MODEL_DIR]

use std::path::Path;
use std::time::Instant;

use ndarray::{Array2, ArrayView2, Axis};
use vrf_format::fixture::Parity;
use vrf_format::manifest::Manifest;
use vrf_format::UserModel;

const MANIFEST: &str = include_str!("../tests/fixtures/random/vrf.json");
const MODEL: &[u8] = include_bytes!("../tests/fixtures/random/user_model.safetensors");
const PARITY: &str = include_str!("../tests/fixtures/random/parity.json");
const RUNS: usize = 21;
const ITERS: usize = 2000;
const PAIRS: usize = 10;

fn median_us(mut f: impl FnMut() -> usize) -> f64 {
    let mut per_call: Vec<f64> = (0..RUNS)
        .map(|_| {
            let t = Instant::now();
            let calls = f();
            t.elapsed().as_secs_f64() * 1e6 / calls as f64
        })
        .collect();
    per_call.sort_by(f64::total_cmp);
    per_call[RUNS / 2]
}

/// One JSON line of timings for `model` on the pair features `pairs` `[N, F]`.
fn bench(
    name: &str,
    model: &UserModel,
    pairs: ArrayView2<'_, f32>,
) -> Result<(), Box<dyn std::error::Error>> {
    let n = pairs.nrows();
    let observe = median_us(|| {
        for _ in 0..ITERS / n {
            let mut s = model.new_state();
            for row in pairs.rows() {
                model.observe(&mut s, row.insert_axis(Axis(0))).unwrap();
            }
            std::hint::black_box(&s);
        }
        (ITERS / n) * n
    });
    let mut state = model.new_state();
    model.observe(&mut state, pairs)?;
    let posterior = median_us(|| {
        for _ in 0..ITERS {
            std::hint::black_box(model.posterior_of(&state).unwrap());
        }
        ITERS
    });
    println!(
        "{{\"model\": \"{name}\", \"observe_us\": {observe:.3}, \"posterior_us\": {posterior:.3}, \"weights_us\": {posterior:.3}, \"pairs\": {n}, \"d\": {}, \"k\": {}, \"prior\": {}}}",
        model.d(),
        model.k(),
        model.prior().is_some()
    );
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let manifest = Manifest::from_json(MANIFEST.as_bytes(), "vrf.json")?;
    let model = UserModel::from_bytes(&manifest, MODEL)?;
    let p: Parity = serde_json::from_str(PARITY)?;
    let f = model.feature_dim();
    bench(
        "fixture",
        &model,
        ArrayView2::from_shape((p.features.len() / f, f), &p.features)?,
    )?;

    let Some(dir) = std::env::args().nth(1) else {
        return Ok(());
    };
    let dir = Path::new(&dir);
    let read = |name: &str| {
        std::fs::read(dir.join(name)).map_err(|e| format!("{}: {e}", dir.join(name).display()))
    };
    let manifest_bytes = read("vrf.json")?;
    let model_bytes = read("user_model.safetensors")?;
    let demo = Manifest::from_json(&manifest_bytes, &dir.join("vrf.json").display().to_string())?;
    let exported = UserModel::from_bytes(&demo, &model_bytes)?;
    // The model's own pair features are backbone outputs; any fixed rows time the same.
    let pairs = Array2::from_shape_fn((PAIRS, exported.feature_dim()), |(i, j)| {
        ((i * 31 + j * 7) % 13) as f32 / 13.0 - 0.5
    });
    if exported.prior().is_none() {
        return bench("export", &exported, pairs.view());
    }
    bench("export, prior", &exported, pairs.view())?;
    let mut demo = demo;
    demo.encoder.prior = false;
    let without = UserModel::from_bytes(&demo, &model_bytes)?;
    bench("export, prior off", &without, pairs.view())
}
