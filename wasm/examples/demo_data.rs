//! Writes the demo page's data (`vrf.json`, `user_model.safetensors`, `demo.json`) for the
//! synthetic interpretable model, until a trained export and the runtime CLI provide them.
//!
//! `cargo run -p vrf-wasm --example demo_data -- --out wasm/www/data`

use std::path::PathBuf;

use vrf_format::fixture::{demo_model, synthetic_demo, write_atomic};
use vrf_format::manifest::{MANIFEST_FILE, USER_MODEL_FILE};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let out = match (args.next().as_deref(), args.next()) {
        (Some("--out"), Some(dir)) => PathBuf::from(dir),
        _ => return Err("usage: demo_data --out DIR".into()),
    };
    let (manifest, bytes) = demo_model();
    let demo = synthetic_demo(&manifest, &bytes, 11)?;
    std::fs::create_dir_all(&out)?;
    write_atomic(out.join(MANIFEST_FILE), manifest.to_json().as_bytes())?;
    write_atomic(out.join(USER_MODEL_FILE), &bytes)?;
    write_atomic(
        out.join("demo.json"),
        serde_json::to_string(&demo)?.as_bytes(),
    )?;
    println!("wrote {}", out.display());
    Ok(())
}
