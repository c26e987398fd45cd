//! `vrf serve` load benchmark (prints figures; not a timed test), loopback only, bounded in
//! count: score requests (one prompt, 8 candidates, a stored user) from 1, 8 and 32 concurrent
//! clients, throughput and p50 / p99 latency, against direct library calls measured in the
//! same run (one caller, and as many callers as clients, each call its own backbone run) and
//! against the server without gathering (one backbone call per request); then 32 clients
//! against a queue of 4, where the excess must be 503s.
//!
//! ```text
//! cargo bench -p vrf-tests --bench serve                          # a tiny model fitted here
//! cargo bench -p vrf-tests --bench serve -- --model DIR [--requests N] [--threads T] [--wait-ms W] [--max-texts M] [--chunk C]
//! ```

#[path = "../tests/common/mod.rs"]
mod common;
// The benchmark uses part of the tests' client (no header or JSON accessors).
#[allow(dead_code)]
#[path = "../tests/common/http.rs"]
mod http;
#[path = "../tests/common/load.rs"]
mod load;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use common::arg;
use serde_json::json;
use vrf_runtime::serve::{BatchOptions, ServeOptions, Server, SqliteStore, UserStore};
use vrf_runtime::{Reference, RuntimeOptions, VrfModel};
use vrf_trainer::export::{export, ExportOptions};

/// Direct library calls: `callers` threads, `per_caller` calls each, as the load driver does.
fn direct(
    model: &Arc<VrfModel>,
    user: &vrf_runtime::UserPosterior,
    prompt: &str,
    cands: &[String],
    callers: usize,
    per_caller: usize,
) -> load::LoadResult {
    load::run(callers, per_caller, || {
        let (model, user) = (Arc::clone(model), user.clone());
        let (prompt, cands) = (prompt.to_string(), cands.to_vec());
        move || {
            let refs: Vec<&str> = cands.iter().map(String::as_str).collect();
            model.score(&user, &prompt, &refs).expect("library score");
            200
        }
    })
}

fn row(name: &str, r: &load::LoadResult) {
    println!(
        "{name:<34} {:>8.1} req/s   p50 {:>7.2} ms   p99 {:>7.2} ms   statuses {:?}",
        r.throughput(),
        r.quantile_ms(0.5),
        r.quantile_ms(0.99),
        r.statuses
    );
}

fn main() -> anyhow::Result<()> {
    std::env::set_var("RAYON_NUM_THREADS", "1");
    let args: Vec<String> = std::env::args().collect();
    let requests: usize = arg(&args, "--requests").map_or(Ok(192), |v| v.parse())?;
    let threads: usize = arg(&args, "--threads").map_or(Ok(1), |v| v.parse())?;
    let mut batch = BatchOptions::default();
    if let Some(n) = arg(&args, "--max-texts") {
        batch.max_texts = n.parse()?;
    }
    if let Some(ms) = arg(&args, "--wait-ms") {
        batch.max_wait = Duration::from_millis(ms.parse()?);
    }
    let tmp = tempfile::tempdir()?;
    let model_dir = match arg(&args, "--model") {
        Some(m) => PathBuf::from(m),
        None => {
            eprintln!("no --model given: fitting a small model (default architecture, few steps)");
            let data = common::small_benchmark(tmp.path())?;
            let run = common::fit_small(tmp.path(), &data, &common::short_fit())?;
            let dir = tmp.path().join("model");
            export(&run, &dir, &ExportOptions::default())?;
            dir
        }
    };
    // Two cores: one ONNX Runtime thread per backbone call, two HTTP workers.
    // Texts per ONNX Runtime call inside a gathered batch (sorted by length first).
    let chunk: usize = arg(&args, "--chunk").map_or(Ok(8), |v| v.parse())?;
    let opts = RuntimeOptions::new()
        .with_threads(threads)
        .with_batch_size(chunk);
    let model = Arc::new(VrfModel::load(&model_dir, &opts)?);
    let m = model.manifest();
    println!(
        "machine: {} logical CPUs; model: H = {}, K = {}, d = {}, max_len = {}; {requests} requests per row",
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        m.hidden,
        m.k,
        m.d,
        m.text.as_ref().map_or(0, |t| t.max_len)
    );

    let prompt = "Explain how ownership works in Rust, briefly.";
    let cands: Vec<String> = (0..8)
        .map(|i| {
            format!(
                "Answer {i}: each value has exactly one owner, and {}",
                "it is dropped when the owner goes. ".repeat(1 + i % 3)
            )
        })
        .collect();
    let refs = vec![
        Reference::new(
            "Explain ownership.",
            "Each value has one owner.",
            "No idea.",
        ),
        Reference::new("Name a colour.", "Blue, like the sky at noon.", "Blue."),
    ];
    let body = json!({"user": "bench", "prompt": prompt, "responses": cands}).to_string();

    let start = |batch: BatchOptions,
                 dir: &std::path::Path|
     -> anyhow::Result<(Server, SocketAddr)> {
        let store = SqliteStore::for_model(dir.join("users.sqlite"), m)?;
        let mut o = ServeOptions::default();
        o.bind = SocketAddr::from(([127, 0, 0, 1], 0));
        o.batch = batch;
        let server = Server::start(Arc::clone(&model), Arc::new(store) as Arc<dyn UserStore>, o)?;
        let addr = server.local_addr();
        let r = http::request(
            addr,
            "POST",
            "/v1/users/bench/observe",
            Some(&json!({"references": refs}).to_string()),
            &[],
        )?;
        anyhow::ensure!(r.status == 200, "observe: {}", r.body);
        Ok((server, addr))
    };

    let mut state = model.new_state();
    model.observe(&mut state, &refs)?;
    let user = model.posterior_of(&state)?;
    println!(
        "ONNX Runtime threads per call: {threads}, texts per call {chunk}; server: batches of up to {} texts, {} ms gathering wait, queue {}",
        batch.max_texts,
        batch.max_wait.as_millis(),
        batch.queue
    );
    let (server, addr) = start(batch, tmp.path())?;
    // Warm-up: the first calls pay for ONNX Runtime's allocations.
    load::drive(addr, "/v1/score", &body, 2, 8);
    direct(&model, &user, prompt, &cands, 1, 8);
    for clients in [1, 8, 32] {
        let per = (requests / clients).max(1);
        let lib = direct(&model, &user, prompt, &cands, clients, per);
        let srv = load::drive(addr, "/v1/score", &body, clients, per);
        println!("-- {clients} concurrent client(s), {per} requests each");
        row("library VrfModel::score", &lib);
        row("vrf serve POST /v1/score", &srv);
        println!(
            "   server / library throughput: {:.2}x",
            srv.throughput() / lib.throughput()
        );
    }
    let metrics = http::request(addr, "GET", "/metrics", None, &[])?.body;
    let mean_batch = {
        let get = |name: &str| {
            metrics
                .lines()
                .find_map(|l| {
                    l.strip_prefix(name)
                        .and_then(|v| v.trim().parse::<f64>().ok())
                })
                .unwrap_or(f64::NAN)
        };
        get("vrf_batch_texts_sum ") / get("vrf_batch_texts_count ")
    };
    println!("mean texts per backbone call over the run: {mean_batch:.1} (8 per request)");
    server.shutdown()?;

    // The same server without gathering: one backbone call per request.
    let dir = tmp.path().join("unbatched");
    std::fs::create_dir_all(&dir)?;
    let (server, addr) = start(
        BatchOptions {
            max_texts: 1,
            ..batch
        },
        &dir,
    )?;
    for clients in [8, 32] {
        let r = load::drive(
            addr,
            "/v1/score",
            &body,
            clients,
            (requests / clients).max(1),
        );
        row(&format!("one call per request, {clients} clients"), &r);
    }
    server.shutdown()?;

    // Above the bound: a queue of 4 and 32 clients; every answer is 200 or 503.
    let small = BatchOptions { queue: 4, ..batch };
    let dir = tmp.path().join("small-queue");
    std::fs::create_dir_all(&dir)?;
    let (server, addr) = start(small, &dir)?;
    let r = load::drive(addr, "/v1/score", &body, 32, (requests / 32).max(1));
    row("queue 4, 32 clients", &r);
    let others: usize = r
        .statuses
        .iter()
        .filter(|(s, _)| **s != 200 && **s != 503)
        .map(|(_, n)| n)
        .sum();
    println!(
        "   {} answered, {} refused with 503, {others} other",
        r.count(200),
        r.count(503)
    );
    server.shutdown()?;
    anyhow::ensure!(
        others == 0,
        "statuses other than 200 / 503: {:?}",
        r.statuses
    );
    Ok(())
}
