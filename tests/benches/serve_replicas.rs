//! `vrf serve` over PostgreSQL, measured (prints figures; not a timed test): 32 clients on
//! loopback, each alternating an observe (one reference pair) and a score (8 candidates) of its
//! own stored user, spread round robin over 1, 2 and 3 replicas on one PostgreSQL database,
//! against 1 replica on SQLite; bounded in count, so it stops by itself. Per row: requests/s,
//! p50 / p99 latency, and the store's time (mean per update and per read, and per request),
//! from the replicas' own `vrf_store_duration_seconds`. Each replica is a `Server` with its own
//! model session, batcher and connection pool, in this process.
//!
//! ```text
//! scripts/with-postgres.sh cargo bench -p vrf-tests --bench serve_replicas [-- --model DIR --clients 32 --per-client 64]
//! ```

#[path = "../tests/common/mod.rs"]
mod common;
#[allow(dead_code)]
#[path = "../tests/common/http.rs"]
mod http;
#[allow(dead_code)]
#[path = "../tests/common/load.rs"]
mod load;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use common::arg;
use serde_json::json;
use vrf_runtime::serve::{PgOptions, PgStore, ServeOptions, Server, SqliteStore, UserStore};
use vrf_runtime::{Reference, RuntimeOptions, VrfModel};
use vrf_trainer::export::{export, ExportOptions};

/// A new database on the server `admin` names; its URL.
fn fresh_database(admin: &str, name: &str) -> anyhow::Result<String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let (client, conn) = tokio_postgres::connect(admin, tokio_postgres::NoTls).await?;
        let task = tokio::spawn(conn);
        // Two statements: DROP DATABASE cannot run in the implicit transaction of a batch.
        client
            .batch_execute(&format!("DROP DATABASE IF EXISTS {name}"))
            .await?;
        client
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await?;
        drop(client);
        let _ = task.await;
        anyhow::Ok(())
    })?;
    let (base, _) = admin
        .rsplit_once('/')
        .context("a URL with a database name")?;
    Ok(format!("{base}/{name}"))
}

/// `sum` and `count` of a histogram series in Prometheus text.
fn histogram(metrics: &str, name: &str, labels: &str) -> (f64, f64) {
    let get = |suffix: &str| {
        let key = format!("{name}_{suffix}{{{labels}}} ");
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(&key))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (get("sum"), get("count"))
}

/// One row: `stores` replicas (one per store), 32 clients, `per_client` requests each.
fn row(
    clients: usize,
    name: &str,
    model_dir: &std::path::Path,
    stores: Vec<Arc<dyn UserStore>>,
    per_client: usize,
) -> anyhow::Result<()> {
    let servers: Vec<Server> = stores
        .into_iter()
        .map(|store| {
            let opts = RuntimeOptions::new().with_threads(1).with_batch_size(8);
            let model = Arc::new(VrfModel::load(model_dir, &opts)?);
            let mut o = ServeOptions::default();
            o.bind = SocketAddr::from(([127, 0, 0, 1], 0));
            // Room for every client's request: this measures the store, not the 503 bound.
            o.batch.queue = 2 * clients;
            Ok(Server::start(model, store, o)?)
        })
        .collect::<anyhow::Result<_>>()?;
    let addrs: Vec<SocketAddr> = servers.iter().map(Server::local_addr).collect();
    let prompt = "Explain how ownership works in Rust, briefly.";
    let cands: Vec<String> = (0..8)
        .map(|i| {
            format!(
                "Answer {i}: each value has one owner, and {} more.",
                "so on ".repeat(i)
            )
        })
        .collect();
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let r = load::run(clients, per_client, || {
        let c = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let (addrs, cands) = (addrs.clone(), cands.clone());
        let mut i = 0usize;
        move || {
            let addr = addrs[(c + i) % addrs.len()];
            let user = format!("user-{c}");
            i += 1;
            let (path, body) = if i % 2 == 1 {
                let r = Reference::new(
                    format!("Question {i} of {user}?"),
                    "A careful, complete answer.",
                    "No.",
                );
                (
                    format!("/v1/users/{user}/observe"),
                    json!({ "references": [r] }),
                )
            } else {
                (
                    "/v1/score".to_string(),
                    json!({"user": user, "prompt": prompt, "responses": cands}),
                )
            };
            let body = body.to_string();
            http::request(addr, "POST", &path, Some(&body), &[]).map_or(0, |r| r.status)
        }
    });
    let (mut up, mut get) = ((0.0, 0.0), (0.0, 0.0));
    for &a in &addrs {
        let m = http::request(a, "GET", "/metrics", None, &[])?.body;
        let u = histogram(&m, "vrf_store_duration_seconds", "op=\"update\"");
        let g = histogram(&m, "vrf_store_duration_seconds", "op=\"get\"");
        up = (up.0 + u.0, up.1 + u.1);
        get = (get.0 + g.0, get.1 + g.1);
    }
    let requests = r.latencies.len() as f64;
    println!(
        "| {name} | {:.1} | {:.1} / {:.1} | {:.2} | {:.2} | {:.2} | {:?} |",
        r.throughput(),
        r.quantile_ms(0.5),
        r.quantile_ms(0.99),
        1e3 * up.0 / up.1.max(1.0),
        1e3 * get.0 / get.1.max(1.0),
        1e3 * (up.0 + get.0) / requests.max(1.0),
        r.statuses
    );
    for s in servers {
        s.shutdown()?;
    }
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let per_client: usize = arg(&args, "--per-client").map_or(Ok(64), |v| v.parse())?;
    let clients: usize = arg(&args, "--clients").map_or(Ok(32), |v| v.parse())?;
    let admin = std::env::var("VRF_TEST_POSTGRES_URL")
        .context("VRF_TEST_POSTGRES_URL: run under scripts/with-postgres.sh")?;
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
    let manifest = VrfModel::load(&model_dir, &RuntimeOptions::new())?
        .manifest()
        .clone();
    println!(
        "{} logical CPUs; {clients} clients × {per_client} requests (observe and score alternating)",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    println!("| store, replicas | req/s | p50 / p99 ms | store ms per update | per read | store ms per request | statuses |");
    println!("|---|---|---|---|---|---|---|");
    let sqlite: Arc<dyn UserStore> = Arc::new(SqliteStore::for_model(
        tmp.path().join("users.sqlite"),
        &manifest,
    )?);
    row(clients, "SQLite, 1", &model_dir, vec![sqlite], per_client)?;
    for n in 1..=3 {
        let url = fresh_database(&admin, &format!("vrf_bench_{n}"))?;
        let stores = (0..n)
            .map(|_| {
                let s = PgStore::for_model(&url, &manifest, &PgOptions::default())?;
                Ok(Arc::new(s) as Arc<dyn UserStore>)
            })
            .collect::<anyhow::Result<_>>()?;
        row(
            clients,
            &format!("PostgreSQL, {n}"),
            &model_dir,
            stores,
            per_client,
        )?;
    }
    Ok(())
}
