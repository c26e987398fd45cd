//! Native checks of the wasm parity fixture: `fixtures/random/parity.json` must be exactly what
//! the native runtime computes today, so the wasm tests compare against current native numbers.
#![cfg(not(target_arch = "wasm32"))]

use vrf_format::fixture::{parity, random_model, Dims, Parity};
use vrf_format::manifest::Manifest;

const MANIFEST: &str = include_str!("fixtures/random/vrf.json");
const MODEL: &[u8] = include_bytes!("fixtures/random/user_model.safetensors");
const PARITY: &str = include_str!("fixtures/random/parity.json");

#[test]
fn committed_parity_fixture_is_the_native_runtimes_output() {
    let manifest = Manifest::from_json(MANIFEST.as_bytes(), "vrf.json").unwrap();
    let committed: Parity = serde_json::from_str(PARITY).unwrap();
    let now = parity(&manifest, MODEL, 10, 6, 8).unwrap();
    assert_eq!(
        now, committed,
        "regenerate: cargo run -p vrf-wasm --example fixture -- --out wasm/tests/fixtures/random"
    );
}

#[test]
fn the_random_model_regenerates_bit_for_bit() {
    let dims = Dims {
        hidden: 64,
        enc_hidden: 64,
        d: 32,
        k: 8,
    };
    let (manifest, bytes) = random_model(dims, 7);
    assert_eq!(bytes, MODEL);
    assert_eq!(
        manifest,
        Manifest::from_json(MANIFEST.as_bytes(), "vrf.json").unwrap()
    );
}

#[test]
fn committed_exported_parity_fixture_is_the_native_runtimes_output() {
    let dir = "fixtures/exported";
    let manifest = Manifest::from_json(include_bytes!("fixtures/exported/vrf.json"), dir).unwrap();
    assert_eq!(
        manifest.source.get("generator"),
        None,
        "{dir} holds a trainer export"
    );
    let committed: Parity =
        serde_json::from_str(include_str!("fixtures/exported/parity.json")).unwrap();
    let model = include_bytes!("fixtures/exported/user_model.safetensors");
    assert_eq!(
        parity(&manifest, model, 10, 6, 8).unwrap(),
        committed,
        "regenerate: cargo run -p vrf-wasm --example fixture -- --model MODEL_DIR --out wasm/tests/fixtures/exported"
    );
}
