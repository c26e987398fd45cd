//! A closed-loop load driver for `vrf serve` (and, for reference, for direct library calls):
//! `clients` threads, each making its calls one after another, all started together; bounded in
//! count, so it stops by itself.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use super::http;

/// What one load run measured.
#[derive(Debug, Clone)]
pub struct LoadResult {
    /// Latency of every answered request.
    pub latencies: Vec<Duration>,
    /// Answers by status (0: no answer, a connection error).
    pub statuses: BTreeMap<u16, usize>,
    /// Wall time of the run.
    pub elapsed: Duration,
}

impl LoadResult {
    /// Requests per second over the run.
    pub fn throughput(&self) -> f64 {
        self.latencies.len() as f64 / self.elapsed.as_secs_f64()
    }

    /// The `q`-quantile latency (nearest rank), milliseconds.
    pub fn quantile_ms(&self, q: f64) -> f64 {
        quantile_ms(&self.latencies, q)
    }

    /// Answers with `status`.
    pub fn count(&self, status: u16) -> usize {
        self.statuses.get(&status).copied().unwrap_or(0)
    }
}

/// The `q`-quantile (nearest rank) of `latencies`, milliseconds.
pub fn quantile_ms(latencies: &[Duration], q: f64) -> f64 {
    let mut v: Vec<f64> = latencies.iter().map(|d| d.as_secs_f64() * 1e3).collect();
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        return f64::NAN;
    }
    let i = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1;
    v[i]
}

/// `clients` concurrent clients, each POSTing `body` to `path` `per_client` times.
pub fn drive(
    addr: SocketAddr,
    path: &str,
    body: &str,
    clients: usize,
    per_client: usize,
) -> LoadResult {
    let (path, body) = (Arc::new(path.to_string()), Arc::new(body.to_string()));
    run(clients, per_client, move || {
        let (path, body) = (Arc::clone(&path), Arc::clone(&body));
        move || http::request(addr, "POST", &path, Some(&body), &[]).map_or(0, |r| r.status)
    })
}

/// `clients` threads, all started together, each making `per_client` calls of the call
/// `client()` gives it, one after another; a call returns its status (0: no answer).
pub fn run<C, F>(clients: usize, per_client: usize, client: F) -> LoadResult
where
    F: Fn() -> C,
    C: FnMut() -> u16 + Send + 'static,
{
    let go = Arc::new(Barrier::new(clients + 1));
    let handles: Vec<_> = (0..clients)
        .map(|_| {
            let (go, mut call) = (Arc::clone(&go), client());
            std::thread::spawn(move || {
                go.wait();
                (0..per_client)
                    .map(|_| {
                        let t = Instant::now();
                        let status = call();
                        (status, t.elapsed())
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    go.wait();
    let started = Instant::now();
    let mut result = LoadResult {
        latencies: Vec::new(),
        statuses: BTreeMap::new(),
        elapsed: Duration::ZERO,
    };
    for h in handles {
        for (status, latency) in h.join().expect("a load client panicked") {
            *result.statuses.entry(status).or_default() += 1;
            if status != 0 {
                result.latencies.push(latency);
            }
        }
    }
    result.elapsed = started.elapsed();
    result
}
