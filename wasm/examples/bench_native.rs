//! Native side of the wasm benchmark (scripts/bench-wasm.sh): µs per `observe` of one pair and
//! per posterior/weights call, on the parity fixture's model (H = 64, d = 32, K = 8) with
//! N = 10 pairs; median of 21 runs. Prints one JSON line.

use std::time::Instant;

use ndarray::{ArrayView2, Axis};
use vrf_format::fixture::Parity;
use vrf_format::manifest::Manifest;
use vrf_format::UserModel;

const MANIFEST: &str = include_str!("../tests/fixtures/random/vrf.json");
const MODEL: &[u8] = include_bytes!("../tests/fixtures/random/user_model.safetensors");
const PARITY: &str = include_str!("../tests/fixtures/random/parity.json");
const RUNS: usize = 21;
const ITERS: usize = 2000;

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

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let manifest = Manifest::from_json(MANIFEST.as_bytes(), "vrf.json")?;
    let model = UserModel::from_bytes(&manifest, MODEL)?;
    let p: Parity = serde_json::from_str(PARITY)?;
    let f = model.feature_dim();
    let pairs = ArrayView2::from_shape((p.features.len() / f, f), &p.features)?;
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
        "{{\"observe_us\": {observe:.3}, \"posterior_us\": {posterior:.3}, \"weights_us\": {posterior:.3}, \"pairs\": {n}, \"d\": {}, \"k\": {}}}",
        model.d(),
        model.k()
    );
    Ok(())
}
