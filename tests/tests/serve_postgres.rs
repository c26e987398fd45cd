//! `vrf serve` replicas over one PostgreSQL database (`scripts/with-postgres.sh` starts a
//! throw-away server and sets `$VRF_TEST_POSTGRES_URL`; without it these tests are skipped,
//! unless `VRF_REQUIRE_POSTGRES=1`, the test script, where they fail). Each replica is a `vrf
//! serve` process (the CLI binary) with its own connection pool, so only the database
//! serialises them:
//! - concurrent observes of one user spread over three replicas lose no update (the count and
//!   the natural parameters equal the sequential result);
//! - `kill -9` of a replica during a stream loses no acknowledged update, and the others serve;
//! - PostgreSQL stopped and restarted during a stream: 503 + Retry-After while it is down
//!   (never a 500, never past the deadline), scoring without the store keeps working, `/health`
//!   says so, no acknowledged update is lost, and the replicas recover without a restart.

mod common;
#[path = "common/http.rs"]
mod http;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, OnceLock, RwLock};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use vrf_runtime::serve::{PgOptions, PgStore, UserStore};
use vrf_runtime::{Reference, RuntimeOptions, VrfModel};
use vrf_trainer::export::{export, ExportOptions};

/// The restart test stops the shared server: it runs alone (write), the others together (read).
static SERVER: RwLock<()> = RwLock::new(());

/// The model every replica serves: fitted and exported once per test process.
fn model_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let root = tempfile::tempdir().unwrap().keep();
        let data = common::small_benchmark(&root).unwrap();
        let run = common::fit_small(&root, &data, &common::short_fit()).unwrap();
        let dir = root.join("model");
        export(&run, &dir, &ExportOptions::default()).unwrap();
        dir
    })
}

fn model() -> Arc<VrfModel> {
    static M: OnceLock<Arc<VrfModel>> = OnceLock::new();
    Arc::clone(M.get_or_init(|| {
        let opts = RuntimeOptions::new().with_threads(1).with_batch_size(16);
        Arc::new(VrfModel::load(model_dir(), &opts).unwrap())
    }))
}

/// The test server's admin URL, or `None` (skip).
fn admin_url() -> Option<String> {
    match std::env::var("VRF_TEST_POSTGRES_URL") {
        Ok(u) => Some(u),
        Err(_) if std::env::var("VRF_REQUIRE_POSTGRES").as_deref() == Ok("1") => {
            panic!("VRF_REQUIRE_POSTGRES=1 but VRF_TEST_POSTGRES_URL is unset: run under scripts/with-postgres.sh")
        }
        Err(_) => {
            eprintln!("skipped: VRF_TEST_POSTGRES_URL is unset (scripts/with-postgres.sh)");
            None
        }
    }
}

/// A new, empty database on the test server; its URL.
fn fresh_database(admin: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    let name = format!(
        "vrf_replicas_{}_{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let (client, conn) = tokio_postgres::connect(admin, tokio_postgres::NoTls)
            .await
            .unwrap();
        let task = tokio::spawn(conn);
        client
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .unwrap();
        drop(client);
        let _ = task.await;
    });
    let (base, _) = admin.rsplit_once('/').unwrap();
    format!("{base}/{name}")
}

/// Store bounds of the replicas: short, so an outage shows within a test's patience.
fn pg_options() -> PgOptions {
    let mut o = PgOptions::default();
    o.op_timeout = Duration::from_secs(2);
    o.connect_timeout = Duration::from_secs(1);
    o.max_connections = 4;
    o
}

const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// A replica process; killed when dropped.
struct Replica {
    child: Child,
    addr: SocketAddr,
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `vrf` binary next to this test's directory (`cargo test --workspace` builds it for
/// vrf-runtime's own CLI tests; alone: `cargo build -p vrf-runtime --bin vrf`).
fn vrf_binary() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .unwrap()
        .join(format!("vrf{}", std::env::consts::EXE_SUFFIX));
    assert!(
        bin.exists(),
        "{} is missing: build it with `cargo build -p vrf-runtime --bin vrf`",
        bin.display()
    );
    bin
}

/// Starts `n` `vrf serve` processes on the database `url`, each on a free loopback port (read
/// from its "listening on" line), with the store bounds of [`pg_options`].
fn replicas(url: &str, n: usize) -> Vec<Replica> {
    let _ = model(); // fit and export before the replicas load the model
    let o = pg_options();
    let mut started: Vec<(Child, std::sync::mpsc::Receiver<SocketAddr>)> = (0..n)
        .map(|_| {
            let mut child = Command::new(vrf_binary())
                .args(["serve", "--model"])
                .arg(model_dir())
                .args(["--store", url, "--bind", "127.0.0.1:0", "--threads", "1"])
                .arg("--timeout-ms")
                .arg(REQUEST_TIMEOUT.as_millis().to_string())
                .arg("--store-timeout-ms")
                .arg(o.op_timeout.as_millis().to_string())
                .arg("--store-connections")
                .arg(o.max_connections.to_string())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            let err = child.stderr.take().unwrap();
            let (tx, rx) = std::sync::mpsc::channel();
            // Reads the log to its end, so the replica never blocks on a full pipe.
            std::thread::spawn(move || {
                use std::io::BufRead;
                for line in std::io::BufReader::new(err).lines().map_while(Result::ok) {
                    if let Some(rest) = line.split("listening on http://").nth(1) {
                        let addr = rest.split_whitespace().next().unwrap_or_default();
                        let _ = tx.send(addr.parse().expect("the replica's address"));
                    }
                }
            });
            (child, rx)
        })
        .collect();
    let mut out = Vec::new();
    for (mut child, rx) in started.drain(..) {
        let addr = match rx.recv_timeout(Duration::from_secs(120)) {
            Ok(a) => a,
            Err(_) => {
                let status = child.try_wait().ok().flatten();
                panic!("a vrf serve replica did not start (exit: {status:?})");
            }
        };
        out.push(Replica { child, addr });
    }
    out
}

fn observe_body(i: usize) -> String {
    let r = Reference::new(
        format!("Question {i}: which answer is better?"),
        format!("A careful, complete answer number {i}."),
        "No.",
    );
    json!({ "references": [r] }).to_string()
}

/// The library's state after observing `texts` in order (what a single server would store).
fn sequential_state(indices: impl Iterator<Item = usize>) -> vrf_format::UserState {
    let m = model();
    let mut state = m.new_state();
    for i in indices {
        let r = Reference::new(
            format!("Question {i}: which answer is better?"),
            format!("A careful, complete answer number {i}."),
            "No.",
        );
        m.observe(&mut state, &[r]).unwrap();
    }
    state
}

fn assert_close(a: &[f32], b: &[f32], what: &str) {
    assert_eq!(a.len(), b.len(), "{what}");
    for (x, y) in a.iter().zip(b) {
        // The order of additions differs between replicas: equal up to rounding.
        assert!(
            (x - y).abs() <= 1e-4 * (1.0 + y.abs()),
            "{what}: {a:?} vs {b:?}"
        );
    }
}

fn store(url: &str) -> PgStore {
    PgStore::for_model(url, model().manifest(), &pg_options()).unwrap()
}

#[test]
fn concurrent_observes_over_three_replicas_lose_no_update() {
    let Some(admin) = admin_url() else { return };
    let _shared = SERVER.read().unwrap_or_else(|p| p.into_inner());
    let url = fresh_database(&admin);
    let reps = replicas(&url, 3);
    let addrs: Vec<SocketAddr> = reps.iter().map(|r| r.addr).collect();
    let (threads, each) = (6, 5);
    let go = Arc::new(Barrier::new(threads));
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let (go, addrs) = (Arc::clone(&go), addrs.clone());
            std::thread::spawn(move || {
                go.wait();
                for k in 0..each {
                    let i = t * each + k;
                    // Spread over the replicas: consecutive observes go to different ones.
                    let addr = addrs[i % addrs.len()];
                    let body = observe_body(i);
                    let r =
                        http::request(addr, "POST", "/v1/users/shared/observe", Some(&body), &[])
                            .unwrap();
                    assert_eq!(r.status, 200, "{}", r.body);
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let n = threads * each;
    for r in &reps {
        let got = http::request(r.addr, "GET", "/v1/users/shared", None, &[]).unwrap();
        assert_eq!(got.json()["count"], n, "{}", got.body);
    }
    let stored = store(&url).get("shared").unwrap().unwrap().state;
    let want = sequential_state(0..n);
    assert_eq!(stored.count, want.count);
    assert_close(&stored.a, &want.a, "a");
    assert_close(&stored.b, &want.b, "b");
}

/// Outcome of one observe of a stream.
enum Sent {
    /// 200 with the count the replica reported.
    Acked(u64),
    /// 503 with Retry-After (the store was down).
    Unavailable,
    /// No answer (the replica died): the update may or may not have been written.
    Lost,
}

fn send(addr: SocketAddr, user: &str, i: usize) -> Sent {
    let path = format!("/v1/users/{user}/observe");
    let started = Instant::now();
    let r = http::request(addr, "POST", &path, Some(&observe_body(i)), &[]);
    let Ok(r) = r else { return Sent::Lost };
    assert!(
        started.elapsed() < REQUEST_TIMEOUT + Duration::from_secs(2),
        "an observe took {:?}",
        started.elapsed()
    );
    match r.status {
        200 => Sent::Acked(r.json()["count"].as_u64().unwrap()),
        503 => {
            assert_eq!(r.json()["type"], "store_unavailable", "{}", r.body);
            assert!(r.header("retry-after").is_some(), "503 without Retry-After");
            Sent::Unavailable
        }
        s => panic!("status {s} (never a 500 or a hang): {}", r.body),
    }
}

/// Counts of a stream: acknowledged counts in order, and how many sends were not acknowledged.
#[derive(Default)]
struct Tally {
    acked: Vec<u64>,
    unacked: u64,
}

impl Tally {
    fn record(&mut self, s: Sent) -> bool {
        match s {
            Sent::Acked(c) => {
                // One client, one user, one request at a time: every acknowledged count is new
                // and larger (a lost update would repeat or skip back).
                if let Some(&last) = self.acked.last() {
                    assert!(c > last, "count {c} after {last}: an update was lost");
                }
                self.acked.push(c);
                true
            }
            Sent::Unavailable | Sent::Lost => {
                self.unacked += 1;
                false
            }
        }
    }

    /// The stored count holds every acknowledged update, and at most the unacknowledged ones
    /// more (a commit whose answer was cut off).
    fn check(&self, stored: u64) {
        let acked = self.acked.len() as u64;
        let last = self.acked.last().copied().unwrap_or(0);
        assert!(
            stored >= last && stored <= acked + self.unacked,
            "stored {stored}; acknowledged {acked} (last count {last}), unacknowledged {}",
            self.unacked
        );
    }
}

#[cfg(unix)]
#[test]
fn kill_9_of_a_replica_loses_no_acknowledged_update() {
    let Some(admin) = admin_url() else { return };
    let _shared = SERVER.read().unwrap_or_else(|p| p.into_inner());
    let url = fresh_database(&admin);
    let mut reps = replicas(&url, 3);
    let addrs: Vec<SocketAddr> = reps.iter().map(|r| r.addr).collect();
    let mut tally = Tally::default();
    let mut i = 0;
    let deadline = Instant::now() + Duration::from_secs(120);
    // A stream spread over the replicas.
    while tally.acked.len() < 15 {
        tally.record(send(addrs[i % 3], "d", i));
        i += 1;
        assert!(Instant::now() < deadline, "observes stalled");
    }
    // A second stream on replica 0 alone, killed while it has a request in flight.
    let in_flight = {
        let addr = addrs[0];
        let start = i;
        std::thread::spawn(move || {
            let mut t = Tally::default();
            for k in 0..1000 {
                let s = send(addr, "d2", start + k);
                if !t.record(s) || t.unacked > 0 {
                    break;
                }
            }
            t
        })
    };
    std::thread::sleep(Duration::from_millis(150));
    let mut victim = reps.remove(0);
    victim.child.kill().unwrap(); // SIGKILL
    victim.child.wait().unwrap();
    let side = in_flight.join().unwrap();
    // The survivors keep serving the stream.
    let before = tally.acked.len();
    while tally.acked.len() < before + 15 {
        let addr = addrs[1 + i % 2];
        assert!(
            tally.record(send(addr, "d", i)),
            "a surviving replica refused"
        );
        i += 1;
        assert!(Instant::now() < deadline, "observes stalled");
    }
    let s = store(&url);
    tally.check(s.get("d").unwrap().unwrap().state.count as u64);
    // The stream that was on the killed replica: its acknowledged updates all stored.
    assert!(
        !side.acked.is_empty(),
        "the killed replica acknowledged nothing"
    );
    side.check(s.get("d2").unwrap().map_or(0, |u| u.state.count as u64));
    drop(victim);
}

/// Runs `$VRF_TEST_PGCTL args…` (the test server's pg_ctl).
fn pg_ctl(args: &[&str]) {
    let ctl = std::env::var("VRF_TEST_PGCTL").expect("VRF_TEST_PGCTL (scripts/with-postgres.sh)");
    let status = Command::new(ctl)
        .args(args)
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "pg_ctl {args:?}: {status}");
}

/// Starts the server again if the test ends while it is stopped.
struct Restart(bool);
impl Drop for Restart {
    fn drop(&mut self) {
        if self.0 {
            pg_ctl(&["start"]);
        }
    }
}

fn health(addr: SocketAddr) -> Value {
    http::request(addr, "GET", "/health", None, &[])
        .unwrap()
        .json()
}

#[test]
fn postgres_restart_gives_503s_then_recovers_without_losing_acknowledged_updates() {
    let Some(admin) = admin_url() else { return };
    let _alone = SERVER.write().unwrap_or_else(|p| p.into_inner());
    let url = fresh_database(&admin);
    let reps = replicas(&url, 3);
    let addrs: Vec<SocketAddr> = reps.iter().map(|r| r.addr).collect();
    let mut tally = Tally::default();
    let mut i = 0;
    while tally.acked.len() < 10 {
        tally.record(send(addrs[i % 3], "r", i));
        i += 1;
    }
    assert_eq!(health(addrs[0])["store"], "ok");

    let mut guard = Restart(true);
    pg_ctl(&["stop", "-m", "fast"]);
    // While it is down: every observe is a 503 (or a commit already in flight), bounded in time.
    let mut down = 0;
    for _ in 0..9 {
        if let Sent::Unavailable = send(addrs[i % 3], "r", i) {
            down += 1;
            tally.unacked += 1;
        }
        i += 1;
    }
    assert!(
        down >= 8,
        "only {down} of 9 observes were 503 while the database was down"
    );
    for &a in &addrs {
        let h = health(a);
        assert_eq!(
            (h["status"].as_str(), h["store"].as_str()),
            (Some("degraded"), Some("unavailable")),
            "{h}"
        );
    }
    // Scoring that needs no store keeps working.
    let m = model();
    let seen = m.seen_posterior(m.seen_user_ids().next().unwrap()).unwrap();
    let body = json!({
        "prompt": "Explain ownership.",
        "responses": ["One owner.", "Dunno."],
        "posterior": {"mean": seen.mean.to_vec(), "var": seen.var.to_vec()},
    })
    .to_string();
    let r = http::request(addrs[1], "POST", "/v1/score", Some(&body), &[]).unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    // A stored user's lookup needs the store: 503 too.
    let r = http::request(addrs[2], "GET", "/v1/users/r", None, &[]).unwrap();
    assert_eq!(r.status, 503, "{}", r.body);
    let metrics = http::request(addrs[0], "GET", "/metrics", None, &[])
        .unwrap()
        .body;
    assert!(
        metrics
            .lines()
            .any(|l| l
                .starts_with("vrf_store_operations_total{op=\"update\",result=\"unavailable\"}")),
        "{metrics}"
    );
    if let Ok(password) = std::env::var("VRF_TEST_POSTGRES_PASSWORD") {
        assert!(!metrics.contains(&password) && !r.body.contains(&password));
    }

    pg_ctl(&["start"]);
    guard.0 = false;
    // The same replicas recover by themselves: each acknowledges observes again.
    let deadline = Instant::now() + Duration::from_secs(30);
    let before = tally.acked.len();
    let mut served = [false; 3];
    while tally.acked.len() < before + 9 || served.iter().any(|s| !s) {
        let k = i % 3;
        if tally.record(send(addrs[k], "r", i)) {
            served[k] = true;
        } else {
            std::thread::sleep(Duration::from_millis(100));
        }
        i += 1;
        assert!(Instant::now() < deadline, "the replicas did not recover");
    }
    for &a in &addrs {
        assert_eq!(health(a)["store"], "ok");
    }
    tally.check(store(&url).get("r").unwrap().unwrap().state.count as u64);
    drop(reps);
}
