//! The runtime's side of `scripts/bench-runtime.sh` (prints figures; not a timed test): load time
//! of a model directory (every checksum hashed, overlapped with ONNX Runtime's session creation;
//! then unverified; then with the graph found in the checksum cache), backbone tokens per second
//! at batch 1 and 16 on fixed token ids, and peak RSS.
//! `scripts/bench-ort.py` measures raw onnxruntime on the same graph and ids.
//!
//! ```text
//! cargo run --release -p vrf-runtime --example score_bench -- --model DIR [--threads 2] [--len 128]
//! ```

use std::time::Instant;

use vrf_runtime::{ChecksumCache, RuntimeOptions, VrfModel};

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .cloned()
}

fn args_has(name: &str) -> bool {
    std::env::args().any(|a| a == name)
}

fn peak_rss_gib() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let kb: f64 = s
        .lines()
        .find(|l| l.starts_with("VmHWM:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some(kb / (1024.0 * 1024.0))
}

/// The ids both sides run: row b, token t (never 0, so never a pad-only row).
pub fn ids(batch: usize, len: usize, vocab: u32) -> Vec<Vec<u32>> {
    (0..batch)
        .map(|b| {
            (0..len)
                .map(|t| ((b * 7919 + t * 104_729) as u32 % (vocab - 1)) + 1)
                .collect()
        })
        .collect()
}

fn main() -> anyhow::Result<()> {
    let model = arg("--model").ok_or_else(|| anyhow::anyhow!("--model DIR is required"))?;
    let threads: usize = arg("--threads").map_or(Ok(2), |t| t.parse())?;
    let len: usize = arg("--len").map_or(Ok(128), |t| t.parse())?;
    let budget: f64 = arg("--budget-s").map_or(Ok(20.0), |t| t.parse())?;
    // A fresh checksum cache: the first load hashes every file, the last finds the graph in it.
    let cache_dir = tempfile::tempdir()?;
    let opts = RuntimeOptions::new()
        .with_threads(threads)
        .with_batch_size(64)
        .with_checksum_cache(Some(ChecksumCache::new(
            cache_dir.path().join("verified.json"),
        )));
    let load = |opts: &RuntimeOptions| -> anyhow::Result<VrfModel> {
        let t = Instant::now();
        let rt = VrfModel::load(&model, opts)?;
        println!(
            "runtime load {:.2} s (checksums: {:?})",
            t.elapsed().as_secs_f64(),
            rt.checksums()
        );
        Ok(rt)
    };
    drop(load(&opts)?);
    drop(load(&opts.clone().with_verify_checksums(false))?);
    let rt = load(&opts)?;
    if args_has("--load-only") {
        return Ok(());
    }
    let vocab = (rt.text_encoder()?.vocab_size() as u32).min(1000);
    for batch in [1, 16] {
        let rows = ids(batch, len, vocab);
        rt.features_from_ids(&rows)?; // warm-up
        let mut times = Vec::new();
        let start = Instant::now();
        while times.len() < 3 || (start.elapsed().as_secs_f64() < budget && times.len() < 100) {
            let t = Instant::now();
            std::hint::black_box(rt.features_from_ids(&rows)?);
            times.push(t.elapsed().as_secs_f64());
        }
        times.sort_by(f64::total_cmp);
        let med = times[times.len() / 2];
        println!(
            "runtime batch {batch:>2} x {len}: {:.1} ms/call, {:.0} tokens/s ({} calls)",
            med * 1e3,
            (batch * len) as f64 / med,
            times.len()
        );
    }
    if let Some(p) = peak_rss_gib() {
        println!("runtime peak RSS {p:.2} GiB");
    }
    Ok(())
}
