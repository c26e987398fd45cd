//! Writes the wasm parity fixture: `vrf.json`, `user_model.safetensors` and `parity.json` (the
//! native runtime's outputs on random inputs).
//!
//! `cargo run -p vrf-wasm --example fixture -- --out DIR [--model MODEL_DIR] [--seed N]`
//! Without `--model`, the model is random (H = 64, encoder 64, d = 32, K = 8).

use std::path::PathBuf;

use vrf_format::fixture::{parity, random_model, write_atomic, Dims};
use vrf_format::manifest::{Manifest, MANIFEST_FILE, USER_MODEL_FILE};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (mut out, mut model, mut seed) = (None, None, 7u64);
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = || args.next().ok_or(format!("{a} needs a value"));
        match a.as_str() {
            "--out" => out = Some(PathBuf::from(value()?)),
            "--model" => model = Some(PathBuf::from(value()?)),
            "--seed" => seed = value()?.parse()?,
            _ => {
                return Err(format!(
                    "unknown argument {a:?}; usage: --out DIR [--model MODEL_DIR] [--seed N]"
                )
                .into())
            }
        }
    }
    let out = out.ok_or("--out DIR is required")?;
    let (manifest_json, bytes) = match model {
        Some(dir) => (
            std::fs::read(dir.join(MANIFEST_FILE))?,
            std::fs::read(dir.join(USER_MODEL_FILE))?,
        ),
        None => {
            let dims = Dims {
                hidden: 64,
                enc_hidden: 64,
                d: 32,
                k: 8,
            };
            let (m, b) = random_model(dims, seed);
            (m.to_json().into_bytes(), b)
        }
    };
    let manifest = Manifest::from_json(&manifest_json, MANIFEST_FILE)?;
    let p = parity(&manifest, &bytes, 10, 6, seed + 1)?;
    std::fs::create_dir_all(&out)?;
    write_atomic(out.join(MANIFEST_FILE), &manifest_json)?;
    write_atomic(out.join(USER_MODEL_FILE), &bytes)?;
    write_atomic(
        out.join("parity.json"),
        serde_json::to_string(&p)?.as_bytes(),
    )?;
    println!("wrote {}", out.display());
    Ok(())
}
