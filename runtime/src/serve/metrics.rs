//! Prometheus metrics of `vrf serve`, in the text exposition format (`GET /metrics`): requests
//! and their latency by route and status, backbone batch sizes and times, queue depth, store
//! operations.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

/// Latency buckets in seconds (1 ms to 10 s).
const SECONDS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// Texts per backbone call.
const TEXTS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0];

#[derive(Debug, Clone)]
struct Histogram {
    bounds: &'static [f64],
    /// Per bucket, not cumulative (rendering accumulates).
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Self {
        Self {
            bounds,
            counts: vec![0; bounds.len()],
            sum: 0.0,
            count: 0,
        }
    }

    fn observe(&mut self, v: f64) {
        if let Some(i) = self.bounds.iter().position(|b| v <= *b) {
            self.counts[i] += 1;
        }
        self.sum += v;
        self.count += 1;
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        let mut acc = 0;
        for (b, c) in self.bounds.iter().zip(&self.counts) {
            acc += c;
            let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{b}\"}} {acc}");
        }
        let _ = writeln!(
            out,
            "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {}",
            self.count
        );
        let braces = |s: &str| {
            if s.is_empty() {
                String::new()
            } else {
                format!("{{{s}}}")
            }
        };
        let _ = writeln!(out, "{name}_sum{} {}", braces(labels), self.sum);
        let _ = writeln!(out, "{name}_count{} {}", braces(labels), self.count);
    }
}

#[derive(Debug)]
struct Inner {
    requests: BTreeMap<(String, u16), u64>,
    latency: BTreeMap<String, Histogram>,
    batch_texts: Histogram,
    batch_seconds: Histogram,
    queue_rejected: u64,
    store_ops: BTreeMap<(&'static str, &'static str), u64>,
    store_seconds: BTreeMap<&'static str, Histogram>,
}

/// The service's counters and histograms.
#[derive(Debug)]
pub struct Metrics {
    inner: Mutex<Inner>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            inner: Mutex::new(Inner {
                requests: BTreeMap::new(),
                latency: BTreeMap::new(),
                batch_texts: Histogram::new(TEXTS),
                batch_seconds: Histogram::new(SECONDS),
                queue_rejected: 0,
                store_ops: BTreeMap::new(),
                store_seconds: BTreeMap::new(),
            }),
        }
    }
}

/// A Prometheus label value: backslash, quote and newline escaped.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

impl Metrics {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// One answered request: its route template (`/v1/users/{id}`), status and latency.
    pub fn observe_request(&self, route: &str, status: u16, elapsed: Duration) {
        let mut m = self.lock();
        *m.requests.entry((route.to_string(), status)).or_default() += 1;
        m.latency
            .entry(route.to_string())
            .or_insert_with(|| Histogram::new(SECONDS))
            .observe(elapsed.as_secs_f64());
    }

    /// One backbone call of `texts` texts.
    pub fn observe_batch(&self, texts: usize, elapsed: Duration) {
        let mut m = self.lock();
        m.batch_texts.observe(texts as f64);
        m.batch_seconds.observe(elapsed.as_secs_f64());
    }

    /// One request refused because the queue was full.
    pub fn queue_rejected(&self) {
        self.lock().queue_rejected += 1;
    }

    /// One store operation (`get`, `update`, `delete`, `ping`): `ok`, or the error's kind
    /// ([`super::StoreError::kind`]: `unavailable`, `busy`, …).
    pub fn observe_store(&self, op: &'static str, result: &'static str, elapsed: Duration) {
        let mut m = self.lock();
        *m.store_ops.entry((op, result)).or_default() += 1;
        m.store_seconds
            .entry(op)
            .or_insert_with(|| Histogram::new(SECONDS))
            .observe(elapsed.as_secs_f64());
    }

    /// The exposition text; `queue_depth` is read at scrape time.
    pub fn render(&self, queue_depth: usize) -> String {
        let m = self.lock();
        let mut out = String::new();
        out.push_str("# HELP vrf_requests_total HTTP requests answered, by route and status.\n");
        out.push_str("# TYPE vrf_requests_total counter\n");
        for ((route, status), n) in &m.requests {
            let _ = writeln!(
                out,
                "vrf_requests_total{{route=\"{}\",status=\"{status}\"}} {n}",
                label(route)
            );
        }
        out.push_str("# HELP vrf_request_duration_seconds Request latency, by route.\n");
        out.push_str("# TYPE vrf_request_duration_seconds histogram\n");
        for (route, h) in &m.latency {
            let l = format!("route=\"{}\"", label(route));
            h.render(&mut out, "vrf_request_duration_seconds", &l);
        }
        out.push_str("# HELP vrf_batch_texts Texts per backbone call (dynamic batching).\n");
        out.push_str("# TYPE vrf_batch_texts histogram\n");
        m.batch_texts.render(&mut out, "vrf_batch_texts", "");
        out.push_str("# HELP vrf_batch_duration_seconds Time of one backbone call.\n");
        out.push_str("# TYPE vrf_batch_duration_seconds histogram\n");
        m.batch_seconds
            .render(&mut out, "vrf_batch_duration_seconds", "");
        out.push_str("# HELP vrf_queue_depth Requests waiting for the backbone.\n");
        out.push_str("# TYPE vrf_queue_depth gauge\n");
        let _ = writeln!(out, "vrf_queue_depth {queue_depth}");
        out.push_str("# HELP vrf_queue_rejected_total Requests refused with 503: queue full.\n");
        out.push_str("# TYPE vrf_queue_rejected_total counter\n");
        let _ = writeln!(out, "vrf_queue_rejected_total {}", m.queue_rejected);
        out.push_str("# HELP vrf_store_operations_total User store operations, by result (ok or error kind).\n");
        out.push_str("# TYPE vrf_store_operations_total counter\n");
        for ((op, result), n) in &m.store_ops {
            let _ = writeln!(
                out,
                "vrf_store_operations_total{{op=\"{op}\",result=\"{result}\"}} {n}"
            );
        }
        out.push_str("# HELP vrf_store_duration_seconds User store operation latency.\n");
        out.push_str("# TYPE vrf_store_duration_seconds histogram\n");
        for (op, h) in &m.store_seconds {
            h.render(
                &mut out,
                "vrf_store_duration_seconds",
                &format!("op=\"{op}\""),
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_are_cumulative_and_labels_escaped() {
        let m = Metrics::default();
        m.observe_request("/v1/score", 200, Duration::from_millis(3));
        m.observe_request("/v1/score", 200, Duration::from_millis(30));
        m.observe_request("/v1/score", 422, Duration::from_micros(10));
        m.observe_batch(5, Duration::from_millis(4));
        m.observe_store("update", "ok", Duration::from_millis(1));
        m.observe_store("get", "unavailable", Duration::from_millis(1));
        let t = m.render(3);
        assert!(
            t.contains("vrf_requests_total{route=\"/v1/score\",status=\"200\"} 2"),
            "{t}"
        );
        assert!(
            t.contains("vrf_request_duration_seconds_bucket{route=\"/v1/score\",le=\"0.005\"} 2"),
            "{t}"
        );
        assert!(
            t.contains("vrf_request_duration_seconds_bucket{route=\"/v1/score\",le=\"+Inf\"} 3"),
            "{t}"
        );
        assert!(t.contains("vrf_batch_texts_bucket{le=\"8\"} 1"), "{t}");
        assert!(t.contains("vrf_batch_texts_count 1"), "{t}");
        assert!(t.contains("vrf_queue_depth 3"), "{t}");
        assert!(
            t.contains("vrf_store_operations_total{op=\"update\",result=\"ok\"} 1"),
            "{t}"
        );
        assert!(
            t.contains("vrf_store_operations_total{op=\"get\",result=\"unavailable\"} 1"),
            "{t}"
        );
        assert_eq!(label("a\"b\\c\n"), "a\\\"b\\\\c\\n");
    }
}
