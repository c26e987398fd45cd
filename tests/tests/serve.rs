//! `vrf serve` end to end on a loopback port: every endpoint against the library's own answers,
//! auth, each kind of bad input (a JSON error with the right status, nothing stored), no lost
//! update under concurrent observes, 503 beyond the queue bound, timeouts, graceful shutdown,
//! and `kill -9` during a stream of observes (every acknowledged update survives).

mod common;
#[path = "common/http.rs"]
mod http;
#[path = "common/load.rs"]
mod load;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, OnceLock};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use vrf_runtime::serve::{
    BatchOptions, Limits, ServeOptions, Server, SqliteStore, Token, UserStore,
};
use vrf_runtime::{
    Backbone, BackboneOutput, Question, Reference, RuntimeError, RuntimeOptions, VrfModel,
};
use vrf_trainer::export::{export, ExportOptions};

/// The model every test serves: fitted and exported once per process.
fn model_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        // The kill -9 test's child process serves the parent's model.
        if let Some(dir) = std::env::var_os("VRF_SERVE_CHILD_MODEL") {
            return dir.into();
        }
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

fn open_store(path: &Path) -> SqliteStore {
    SqliteStore::for_model(path, model().manifest()).unwrap()
}

/// A server on a free loopback port with a store in `dir`.
fn start(dir: &Path, opts: ServeOptions) -> (Server, Arc<SqliteStore>) {
    let store = Arc::new(open_store(&dir.join("users.sqlite")));
    let server = Server::start(model(), Arc::clone(&store) as Arc<dyn UserStore>, opts).unwrap();
    (server, store)
}

fn options() -> ServeOptions {
    let mut o = ServeOptions::default();
    o.bind = SocketAddr::from(([127, 0, 0, 1], 0));
    o
}

fn call(addr: SocketAddr, method: &str, path: &str, body: Option<&Value>) -> http::Response {
    let text = body.map(Value::to_string);
    http::request(addr, method, path, text.as_deref(), &[]).unwrap()
}

fn refs() -> Vec<Reference> {
    vec![
        Reference::new(
            "Explain ownership.",
            "Each value has one owner.",
            "No idea.",
        ),
        Reference::new("Name a colour.", "Blue, like the sky at noon.", "Blue."),
    ]
}

fn refs_json(refs: &[Reference]) -> Value {
    json!({ "references": refs })
}

fn floats(v: &Value) -> Vec<f32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}

fn assert_close(a: &[f32], b: &[f32], tol: f32, what: &str) {
    assert_eq!(a.len(), b.len(), "{what}");
    for (x, y) in a.iter().zip(b) {
        assert!(
            (x - y).abs() <= tol * (1.0 + y.abs()),
            "{what}: {a:?} vs {b:?}"
        );
    }
}

/// Whether the metrics text has exactly this line (not just a line starting with it).
fn has_line(metrics: &str, line: &str) -> bool {
    metrics.lines().any(|l| l == line)
}

/// The error body every refusal must have.
fn assert_error(r: &http::Response, status: u16, kind: &str) {
    assert_eq!(r.status, status, "{}", r.body);
    let j = r.json();
    assert_eq!(j["type"], kind, "{}", r.body);
    assert!(
        j["error"].as_str().is_some_and(|m| !m.is_empty()),
        "{}",
        r.body
    );
}

#[test]
fn every_endpoint_matches_the_library() {
    let tmp = tempfile::tempdir().unwrap();
    let (server, _store) = start(tmp.path(), options());
    let addr = server.local_addr();
    let m = model();

    let h = call(addr, "GET", "/health", None);
    assert_eq!(h.status, 200);
    assert_eq!(h.json()["model_digest"], m.manifest().digest());

    assert_error(&call(addr, "GET", "/v1/users/u1", None), 404, "not_found");

    // Observe twice; the stored state equals the library's incremental one.
    let (first, second) = (
        refs(),
        vec![Reference::new("Say hi.", "Hello there!", "hi")],
    );
    let r = call(
        addr,
        "POST",
        "/v1/users/u1/observe",
        Some(&refs_json(&first)),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["count"], 2);
    let r = call(
        addr,
        "POST",
        "/v1/users/u1/observe",
        Some(&refs_json(&second)),
    );
    let mut state = m.new_state();
    m.observe(&mut state, &first).unwrap();
    m.observe(&mut state, &second).unwrap();
    let want = m.posterior_of(&state).unwrap();
    let user = r.json();
    assert_eq!(user["count"], 3);
    assert_eq!(user["source"], "store");
    assert_close(
        &floats(&user["mean"]),
        want.mean.as_slice().unwrap(),
        1e-5,
        "mean",
    );
    assert_close(
        &floats(&user["weights"]),
        want.weights.as_slice().unwrap(),
        1e-5,
        "w",
    );
    let got = call(addr, "GET", "/v1/users/u1", None).json();
    assert_eq!(got["count"], 3);
    assert!(got["updated_at_ms"].as_i64().unwrap() >= got["created_at_ms"].as_i64().unwrap());

    // Score and rank: a stored user, a seen user, an inline posterior, inline references.
    let (prompt, responses) = (
        "Explain ownership.",
        ["Ownership: one owner.", "Dunno.", "Owners own."],
    );
    let lib = |u: &vrf_runtime::UserPosterior| m.score(u, prompt, &responses).unwrap();
    let seen_id = m.seen_user_ids().next().unwrap().to_string();
    let seen = m.seen_posterior(&seen_id).unwrap();
    let cases = [
        (json!({"user": "u1"}), lib(&want)),
        (json!({"user": seen_id}), lib(&seen)),
        (
            json!({"posterior": {"mean": seen.mean.to_vec(), "var": seen.var.to_vec()}}),
            lib(&seen),
        ),
        (
            json!({"references": first}),
            lib(&m.posterior(&first).unwrap()),
        ),
    ];
    for (who, want) in cases {
        let mut body = json!({"prompt": prompt, "responses": responses});
        body.as_object_mut()
            .unwrap()
            .extend(who.as_object().unwrap().clone());
        let s = call(addr, "POST", "/v1/score", Some(&body));
        assert_eq!(s.status, 200, "{}", s.body);
        let s = s.json();
        assert_close(
            &floats(&s["scores"]),
            want.scores.as_slice().unwrap(),
            1e-4,
            &who.to_string(),
        );
        assert_eq!(s["best"], want.best());
        let r = call(addr, "POST", "/v1/rank", Some(&body)).json();
        let order: Vec<usize> = r["ranking"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["index"].as_u64().unwrap() as usize)
            .collect();
        assert_eq!(order, want.ranking(), "{who}");
    }

    // Next question, for the stored user and for one not stored yet.
    let questions = vec![
        Question::new("Pick a pet.", "A cat, calm and clean.", "Dog."),
        Question::new(
            "Explain ownership.",
            "Each value has one owner.",
            "It is a game.",
        ),
    ];
    for (id, st) in [("u1", state.clone()), ("nobody", m.new_state())] {
        let r = call(
            addr,
            "POST",
            &format!("/v1/users/{id}/next-question"),
            Some(&json!({"questions": questions})),
        );
        assert_eq!(r.status, 200, "{}", r.body);
        let r = r.json();
        let want = m.question_values(&st, &questions).unwrap();
        let got: Vec<f32> = r["values"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v["information_gain"].as_f64().unwrap() as f32)
            .collect();
        let gains: Vec<f32> = want.iter().map(|v| v.information_gain).collect();
        assert_close(&got, &gains, 1e-3, id);
        assert_eq!(r["best"], vrf_format::math::best_question(&want).unwrap());
    }
    // Asking does not store anyone.
    assert_error(
        &call(addr, "GET", "/v1/users/nobody", None),
        404,
        "not_found",
    );

    // Delete forgets entirely.
    assert_eq!(call(addr, "DELETE", "/v1/users/u1", None).status, 204);
    assert_error(&call(addr, "GET", "/v1/users/u1", None), 404, "not_found");
    assert_error(
        &call(addr, "DELETE", "/v1/users/u1", None),
        404,
        "not_found",
    );

    let metrics = call(addr, "GET", "/metrics", None);
    assert_eq!(metrics.status, 200);
    for needle in [
        "vrf_requests_total{route=\"/v1/users/{id}/observe\",status=\"200\"} 2",
        "vrf_request_duration_seconds_bucket{route=\"/v1/score\",le=\"+Inf\"} 4",
        "vrf_queue_depth 0",
        "vrf_store_operations_total{op=\"update\",result=\"ok\"} 2",
        "vrf_store_operations_total{op=\"delete\",result=\"ok\"} 2",
    ] {
        assert!(
            has_line(&metrics.body, needle),
            "{needle} missing:\n{}",
            metrics.body
        );
    }
    let calls = metrics
        .body
        .lines()
        .find_map(|l| l.strip_prefix("vrf_batch_texts_count "))
        .and_then(|v| v.parse::<u64>().ok());
    assert!(calls.is_some_and(|n| n > 0), "{}", metrics.body);
    server.shutdown().unwrap();
}

/// A backbone with no graph: deterministic features from the token ids, and a count of calls.
#[derive(Debug)]
struct StubBackbone {
    hidden: usize,
    k: usize,
    calls: Arc<AtomicUsize>,
}

impl Backbone for StubBackbone {
    fn run(
        &self,
        ids: Vec<i64>,
        mask: Vec<i64>,
        batch: usize,
        seq: usize,
    ) -> Result<BackboneOutput, RuntimeError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let row_seed = |b: usize| -> f32 {
            let row = (b * seq)..((b + 1) * seq);
            row.map(|i| (ids[i] * mask[i]) as f32).sum::<f32>()
        };
        let hidden = ndarray::Array2::from_shape_fn((batch, self.hidden), |(b, j)| {
            (row_seed(b) * 0.37 + j as f32).sin()
        });
        let rewards = ndarray::Array2::from_shape_fn((batch, self.k), |(b, c)| {
            (row_seed(b) * 0.11 + 1.3 * c as f32).cos()
        });
        Ok(BackboneOutput { hidden, rewards })
    }
}

#[test]
fn a_stub_backbone_serves_through_the_same_routes() {
    let m = model();
    let calls = Arc::new(AtomicUsize::new(0));
    let stub = StubBackbone {
        hidden: m.manifest().hidden,
        k: m.manifest().k,
        calls: Arc::clone(&calls),
    };
    let opts = RuntimeOptions::new().with_threads(1).with_batch_size(16);
    let stubbed = Arc::new(VrfModel::with_backbone(model_dir(), &opts, Box::new(stub)).unwrap());
    let tmp = tempfile::tempdir().unwrap();
    let store =
        Arc::new(SqliteStore::for_model(tmp.path().join("u.sqlite"), stubbed.manifest()).unwrap());
    let server =
        Server::start(Arc::clone(&stubbed), store as Arc<dyn UserStore>, options()).unwrap();
    let addr = server.local_addr();

    let (prompt, responses) = ("Explain ownership.", ["Ownership: one owner.", "Dunno."]);
    let seen_id = m.seen_user_ids().next().unwrap().to_string();
    let seen = m.seen_posterior(&seen_id).unwrap();
    let body = json!({"prompt": prompt, "responses": responses, "user": seen_id});
    let s = call(addr, "POST", "/v1/score", Some(&body));
    assert_eq!(s.status, 200, "{}", s.body);
    let got = floats(&s.json()["scores"]);
    // The service's scores are the stub's rewards under the user's weights, not the graph's.
    let want = stubbed.score(&seen, prompt, &responses).unwrap();
    assert_close(&got, want.scores.as_slice().unwrap(), 1e-5, "stub scores");
    let onnx = m.score(&seen, prompt, &responses).unwrap();
    assert!(
        got.iter()
            .zip(onnx.scores.iter())
            .any(|(a, b)| (a - b).abs() > 1e-3),
        "the stub's scores equal the ONNX graph's: the stub was not used"
    );
    assert!(
        calls.load(Ordering::SeqCst) >= 2,
        "the stub backbone was never called"
    );
    server.shutdown().unwrap();
}

#[test]
fn an_unknown_user_gets_the_population_prior_when_asked() {
    let tmp = tempfile::tempdir().unwrap();
    let (server, _store) = start(tmp.path(), options());
    let addr = server.local_addr();
    let m = model();
    assert!(m.has_prior(), "the default fit exports a population prior");
    let (prompt, responses) = ("Name a colour.", ["Blue, like the sky.", "Blue."]);
    let body = |cold: Option<bool>| {
        let mut b = json!({"prompt": prompt, "responses": responses, "user": "nobody-yet"});
        if let Some(c) = cold {
            b["cold_start"] = c.into();
        }
        b
    };
    // Not asked for: still 404, so a mistyped id is never silently the population.
    assert_error(
        &call(addr, "POST", "/v1/score", Some(&body(None))),
        404,
        "not_found",
    );
    let s = call(addr, "POST", "/v1/score", Some(&body(Some(true))));
    assert_eq!(s.status, 200, "{}", s.body);
    let s = s.json();
    assert_eq!(s["cold_start"], true);
    let want = m
        .score(&m.cold_start().unwrap(), prompt, &responses)
        .unwrap();
    assert_close(
        &floats(&s["scores"]),
        want.scores.as_slice().unwrap(),
        1e-4,
        "prior scores",
    );
    assert_close(
        &floats(&s["weights"]),
        m.cold_start().unwrap().weights.as_slice().unwrap(),
        1e-6,
        "prior weights",
    );
    let r = call(addr, "POST", "/v1/rank", Some(&body(Some(true)))).json();
    assert_eq!(r["cold_start"], true);
    // A user with answers is not flagged, with or without the switch.
    let seen_id = m.seen_user_ids().next().unwrap().to_string();
    let mut b = body(Some(true));
    b["user"] = seen_id.into();
    let s = call(addr, "POST", "/v1/score", Some(&b)).json();
    assert_eq!(s["cold_start"], false);
    // The switch without a user id is a validation error.
    let bad = json!({"prompt": prompt, "responses": responses,
                     "references": refs_json(&refs())["references"], "cold_start": true});
    assert_error(
        &call(addr, "POST", "/v1/score", Some(&bad)),
        422,
        "validation",
    );
    server.shutdown().unwrap();
}

#[test]
fn bad_inputs_get_json_errors_and_store_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let mut o = options();
    o.limits = Limits {
        max_body_bytes: 4096,
        max_candidates: 3,
        max_references: 3,
        max_questions: 3,
        max_text_chars: 200,
    };
    let (server, store) = start(tmp.path(), o);
    let addr = server.local_addr();
    let d = model().manifest().d;
    let raw = |method: &str, path: &str, body: &str, headers: &[(&str, &str)]| {
        http::request(addr, method, path, Some(body), headers).unwrap()
    };
    let score = |extra: Value| {
        let mut b = json!({"prompt": "p", "responses": ["a", "b"], "user": "nobody"});
        for (k, v) in extra.as_object().unwrap() {
            if v.is_null() {
                b.as_object_mut().unwrap().remove(k);
            } else {
                b[k] = v.clone();
            }
        }
        call(addr, "POST", "/v1/score", Some(&b))
    };
    let observe = "/v1/users/u/observe";
    let one = json!({"prompt": "p", "chosen": "a", "rejected": "b"});
    let cases: Vec<(&str, http::Response, u16, &str)> = vec![
        (
            "malformed JSON",
            raw("POST", observe, "{\"references\": [", &[]),
            400,
            "invalid_json",
        ),
        (
            "NaN",
            raw(
                "POST",
                "/v1/score",
                r#"{"prompt":"p","responses":["a"],"posterior":{"mean":[NaN],"var":[1]}}"#,
                &[],
            ),
            400,
            "invalid_json",
        ),
        (
            "wrong type",
            call(addr, "POST", observe, Some(&json!({"references": "abc"}))),
            422,
            "validation",
        ),
        (
            "unknown field",
            call(
                addr,
                "POST",
                observe,
                Some(&json!({"references": [one], "extra": 1})),
            ),
            422,
            "validation",
        ),
        (
            "missing field",
            call(
                addr,
                "POST",
                observe,
                Some(&json!({"references": [{"prompt": "p", "chosen": "a"}]})),
            ),
            422,
            "validation",
        ),
        (
            "empty references",
            call(addr, "POST", observe, Some(&json!({"references": []}))),
            422,
            "validation",
        ),
        (
            "identical pair",
            call(
                addr,
                "POST",
                observe,
                Some(&json!({"references": [{"prompt": "p", "chosen": "a", "rejected": "a"}]})),
            ),
            422,
            "validation",
        ),
        (
            "too many references",
            call(
                addr,
                "POST",
                observe,
                Some(&json!({"references": [one, one, one, one]})),
            ),
            422,
            "validation",
        ),
        (
            "text too long",
            call(
                addr,
                "POST",
                observe,
                Some(
                    &json!({"references": [{"prompt": "p".repeat(201), "chosen": "a", "rejected": "b"}]}),
                ),
            ),
            422,
            "validation",
        ),
        (
            "non-UTF-8 user id",
            call(addr, "GET", "/v1/users/%FF", None),
            400,
            "invalid_path",
        ),
        (
            "bad user id",
            call(
                addr,
                "POST",
                "/v1/users/a%20b/observe",
                Some(&json!({"references": [one]})),
            ),
            422,
            "validation",
        ),
        (
            "oversized body",
            raw(
                "POST",
                observe,
                &format!("{{\"references\": [], \"pad\": \"{}\"}}", "x".repeat(5000)),
                &[],
            ),
            413,
            "payload_too_large",
        ),
        (
            "no content type",
            raw(
                "POST",
                observe,
                &json!({"references": [one]}).to_string(),
                &[("Content-Type", "text/plain")],
            ),
            415,
            "unsupported_media_type",
        ),
        ("unknown user", score(json!({})), 404, "not_found"),
        (
            "too many candidates",
            score(json!({"responses": ["a", "b", "c", "d"]})),
            422,
            "validation",
        ),
        (
            "no candidates",
            score(json!({"responses": []})),
            422,
            "validation",
        ),
        (
            "two users",
            score(json!({"references": [one]})),
            422,
            "validation",
        ),
        ("no user", score(json!({"user": null})), 422, "validation"),
        (
            "posterior of the wrong size",
            score(
                json!({"user": null, "posterior": {"mean": vec![0.0; d + 1], "var": vec![1.0; d + 1]}}),
            ),
            422,
            "validation",
        ),
        (
            "negative variance",
            score(json!({"user": null, "posterior": {"mean": vec![0.0; d], "var": vec![-1.0; d]}})),
            422,
            "validation",
        ),
        (
            "overflowing number",
            raw(
                "POST",
                "/v1/score",
                &format!(
                    r#"{{"prompt":"p","responses":["a"],"posterior":{{"mean":[{}],"var":[{}]}}}}"#,
                    vec!["1e39"; d].join(","),
                    vec!["1"; d].join(",")
                ),
                &[],
            ),
            422,
            "validation",
        ),
        (
            "no questions",
            call(
                addr,
                "POST",
                "/v1/users/u/next-question",
                Some(&json!({"questions": []})),
            ),
            422,
            "validation",
        ),
        (
            "unknown route",
            call(addr, "GET", "/v2/nothing", None),
            404,
            "not_found",
        ),
        (
            "wrong method",
            call(addr, "PUT", "/v1/score", None),
            405,
            "method_not_allowed",
        ),
    ];
    for (what, r, status, kind) in &cases {
        assert_eq!(r.status, *status, "{what}: {}", r.body);
        assert_error(r, *status, kind);
    }
    assert_eq!(store.len().unwrap(), 0, "a refused request stored a user");
    server.shutdown().unwrap();
}

/// What a Schemathesis run against docs/openapi.yaml found (issue 31): each is refused with 422
/// `validation` naming what is wrong, and nothing is stored.
#[test]
fn vector_requests_to_a_text_model_are_422_saying_it_takes_texts() {
    let tmp = tempfile::tempdir().unwrap();
    let (server, store) = start(tmp.path(), options());
    let addr = server.local_addr();
    let h = call(addr, "GET", "/health", None).json();
    assert_eq!(h["input"], json!({"kind": "text"}), "{h}");
    let v = |x: f32| json!([x, 0.5, -1.0]);
    let d = model().manifest().d;
    let cases = [
        (
            "/v1/users/u/observe",
            json!({"references": [{"chosen": v(1.0), "rejected": v(2.0)}]}),
            "`references[0].prompt` is missing (this model takes texts)",
        ),
        (
            "/v1/users/u/observe",
            json!({"references": [{"prompt": "p", "chosen": v(1.0), "rejected": "b"}]}),
            "`references[0].chosen` is a feature vector; this model takes texts",
        ),
        (
            "/v1/score",
            json!({"user": "u", "features": [v(1.0), v(2.0)]}),
            "this model takes texts, not feature vectors",
        ),
        (
            "/v1/rank",
            json!({"posterior": {"mean": vec![0.0; d], "var": vec![1.0; d]}, "features": [v(1.0)]}),
            "this model takes texts, not feature vectors",
        ),
        (
            "/v1/score",
            json!({"user": "u", "prompt": "p", "responses": ["a"], "features": [v(1.0)]}),
            "this model takes texts, not feature vectors",
        ),
        (
            "/v1/users/u/next-question",
            json!({"questions": [{"a": v(1.0), "b": v(2.0)}]}),
            "`questions[0].prompt` is missing (this model takes texts)",
        ),
        (
            "/v1/users/u/next-question",
            json!({"questions": [{"prompt": "p", "a": "x", "b": v(2.0)}]}),
            "`questions[0].b` is a feature vector; this model takes texts",
        ),
    ];
    for (path, body, want) in cases {
        let r = call(addr, "POST", path, Some(&body));
        assert_error(&r, 422, "validation");
        let msg = r.json()["error"].as_str().unwrap().to_string();
        assert!(msg.contains(want), "{path} {body}: {msg}");
    }
    // Nothing was stored for the user the vector requests named.
    assert!(store.get("u").unwrap().is_none());
    server.shutdown().unwrap();
}

#[test]
fn requests_outside_the_openapi_contract_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let (server, store) = start(tmp.path(), options());
    let addr = server.local_addr();
    let raw = |method: &str, path: &str, body: &str| {
        http::request(addr, method, path, Some(body), &[]).unwrap()
    };
    let d = model().manifest().d;
    let observe = "/v1/users/u/observe";
    let one = json!({"prompt": "p", "chosen": "x", "rejected": "y"});
    // (what, response, a text the message must contain)
    let cases: Vec<(&str, http::Response, &str)> = vec![
        (
            "unknown field in a reference",
            raw(
                "POST",
                observe,
                r#"{"references":[{"prompt":"p","chosen":"x","rejected":"y","weight":5}]}"#,
            ),
            "weight",
        ),
        (
            "unknown field in an inline reference",
            raw(
                "POST",
                "/v1/score",
                r#"{"prompt":"p","responses":["a"],"references":[{"prompt":"p","chosen":"x","rejected":"y","w":1}]}"#,
            ),
            "`w`",
        ),
        (
            "unknown field in a question",
            raw(
                "POST",
                "/v1/users/u/next-question",
                r#"{"questions":[{"prompt":"p","a":"x","b":"y","extra":true}]}"#,
            ),
            "extra",
        ),
        (
            "a question as an array",
            raw(
                "POST",
                "/v1/users/u/next-question",
                r#"{"questions":[["p","x","y"]]}"#,
            ),
            "`questions[0]`",
        ),
        (
            "the observe body as an array",
            raw("POST", observe, r#"[[["p","x","y"]]]"#),
            "JSON object",
        ),
        (
            "a reference as an array",
            raw("POST", observe, r#"{"references":[["p","x","y"]]}"#),
            "`references[0]`",
        ),
        (
            "a reference as a too long array (was 400 trailing characters)",
            raw("POST", observe, r#"{"references":[["p","x","y","z"]]}"#),
            "`references[0]`",
        ),
        (
            "the score body as an array",
            raw("POST", "/v1/score", r#"["p",["a","b"],"s0001",null,null]"#),
            "JSON object",
        ),
        (
            "a too long array body (was 400 trailing characters)",
            raw("POST", "/v1/score", r#"["p",["a"],"s0001",null,null,false,1]"#),
            "JSON object",
        ),
        (
            "a posterior as an array",
            raw(
                "POST",
                "/v1/score",
                &json!({"prompt": "p", "responses": ["a"], "posterior": [vec![0.0; d], vec![1.0; d]]})
                    .to_string(),
            ),
            "`posterior`",
        ),
        (
            "a null user",
            raw(
                "POST",
                "/v1/score",
                &json!({"prompt": "p", "responses": ["a"], "user": null, "references": [one]})
                    .to_string(),
            ),
            "`user`",
        ),
        (
            "a number body",
            raw("POST", "/v1/score", "5"),
            "JSON object",
        ),
        (
            "a number beyond f64 (well-formed JSON)",
            raw(
                "POST",
                "/v1/score",
                r#"{"prompt":"p","responses":["a"],"posterior":{"mean":[1e400],"var":[1]}}"#,
            ),
            "number out of range",
        ),
        (
            "JSON nested deeper than the parser goes (well-formed)",
            raw(
                "POST",
                observe,
                &format!("{{\"references\": {}{}}}", "[".repeat(200), "]".repeat(200)),
            ),
            "recursion limit",
        ),
        (
            "cold start with a posterior",
            raw(
                "POST",
                "/v1/score",
                &json!({"prompt": "p", "responses": ["a"], "cold_start": true,
                        "posterior": {"mean": vec![0.0; d], "var": vec![1.0; d]}})
                .to_string(),
            ),
            "cold_start",
        ),
        (
            "a posterior variance out of range",
            raw(
                "POST",
                "/v1/score",
                &json!({"prompt": "p", "responses": ["a"],
                        "posterior": {"mean": vec![0.0; d], "var": vec![1e7; d]}})
                .to_string(),
            ),
            "posterior.var",
        ),
    ];
    for (what, r, text) in &cases {
        assert_error(r, 422, "validation");
        assert!(r.body.contains(text), "{what}: {}", r.body);
    }
    // The ids `.` and `..` (URL-normalising clients cannot reach them), in every route with one.
    let body = json!({"references": [one]}).to_string();
    let questions = json!({"questions": [{"prompt": "p", "a": "x", "b": "y"}]}).to_string();
    for id in [".", "..", "%2E", "%2e%2E"] {
        let path = format!("/v1/users/{id}");
        for r in [
            raw("GET", &path, ""),
            raw("DELETE", &path, ""),
            raw("POST", &format!("{path}/observe"), &body),
            raw("POST", &format!("{path}/next-question"), &questions),
        ] {
            assert_error(&r, 422, "validation");
            assert!(r.body.contains("`.` and `..`"), "{id}: {}", r.body);
        }
    }
    for id in [".", ".."] {
        let r = raw(
            "POST",
            "/v1/score",
            &json!({"prompt": "p", "responses": ["a"], "user": id, "cold_start": true}).to_string(),
        );
        assert_error(&r, 422, "validation");
    }
    assert_eq!(store.len().unwrap(), 0, "a refused request stored a user");
    // A legal id that starts with dots is usable.
    let r = raw("POST", "/v1/users/.../observe", &body);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(store.len().unwrap(), 1);
    server.shutdown().unwrap();
}

#[test]
fn the_token_guards_every_route_but_health() {
    let tmp = tempfile::tempdir().unwrap();
    let secret = "s3cret-token-0123456789";
    let mut o = options();
    o.token = Some(Token::new(secret).unwrap());
    let (server, store) = start(tmp.path(), o);
    let addr = server.local_addr();
    let get =
        |headers: &[(&str, &str)]| http::request(addr, "GET", "/metrics", None, headers).unwrap();
    let r = get(&[]);
    assert_error(&r, 401, "unauthorized");
    assert_eq!(r.header("www-authenticate"), Some("Bearer"));
    assert_error(
        &get(&[("Authorization", "Bearer wrong-token-0123456789")]),
        401,
        "unauthorized",
    );
    assert_error(&get(&[("Authorization", secret)]), 401, "unauthorized");
    let bearer = format!("Bearer {secret}");
    assert_eq!(get(&[("Authorization", &bearer)]).status, 200);
    assert_eq!(call(addr, "GET", "/health", None).status, 200);
    let body = refs_json(&refs()).to_string();
    let r = http::request(addr, "POST", "/v1/users/u/observe", Some(&body), &[]).unwrap();
    assert_error(&r, 401, "unauthorized");
    assert!(
        store.is_empty().unwrap(),
        "an unauthorised observe was stored"
    );
    // Unknown routes too: no probing without the token.
    assert_error(
        &call(addr, "GET", "/v2/anything", None),
        401,
        "unauthorized",
    );
    server.shutdown().unwrap();

    // Any address but loopback needs a token.
    let mut o = options();
    o.bind = SocketAddr::from(([0, 0, 0, 0], 0));
    let store = Arc::new(open_store(&tmp.path().join("other.sqlite")));
    let e = Server::start(model(), store, o).unwrap_err();
    assert!(e.to_string().contains("token"), "{e}");
}

#[test]
fn concurrent_observes_of_one_user_lose_no_update() {
    let tmp = tempfile::tempdir().unwrap();
    let (server, store) = start(tmp.path(), options());
    let addr = server.local_addr();
    let (threads, each) = (8, 4);
    let go = Arc::new(Barrier::new(threads));
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let go = Arc::clone(&go);
            std::thread::spawn(move || {
                go.wait();
                for i in 0..each {
                    let r =
                        Reference::new(format!("Question {t}.{i}?"), "A careful answer.", "No.");
                    let resp = call(
                        addr,
                        "POST",
                        "/v1/users/shared/observe",
                        Some(&refs_json(&[r])),
                    );
                    assert_eq!(resp.status, 200, "{}", resp.body);
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    assert_eq!(
        store.get("shared").unwrap().unwrap().state.count,
        threads * each
    );
    server.shutdown().unwrap();
}

#[test]
fn a_full_queue_answers_503_with_retry_after() {
    let tmp = tempfile::tempdir().unwrap();
    let mut o = options();
    // One waiting request at most, each request its own backbone call.
    o.batch = BatchOptions {
        max_texts: 1,
        max_wait: Duration::ZERO,
        queue: 1,
    };
    let (server, _store) = start(tmp.path(), o);
    let addr = server.local_addr();
    let clients = 16;
    let go = Arc::new(Barrier::new(clients));
    let handles: Vec<_> = (0..clients)
        .map(|_| {
            let go = Arc::clone(&go);
            std::thread::spawn(move || {
                go.wait();
                // Enough texts that one backbone call outlasts the other requests' arrival.
                let responses: Vec<String> = (0..32)
                    .map(|i| format!("Answer {i}: {}", "words ".repeat(8)))
                    .collect();
                let body = json!({"prompt": "p", "responses": responses, "references": refs()});
                call(addr, "POST", "/v1/score", Some(&body))
            })
        })
        .collect();
    let responses: Vec<http::Response> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let overloaded: Vec<_> = responses.iter().filter(|r| r.status == 503).collect();
    assert!(
        !overloaded.is_empty(),
        "no 503 with {clients} clients and a queue of 1"
    );
    for r in &overloaded {
        assert_error(r, 503, "overloaded");
        assert_eq!(r.header("retry-after"), Some("1"));
    }
    assert!(responses.iter().all(|r| r.status == 200 || r.status == 503));
    assert!(responses.iter().any(|r| r.status == 200));
    let metrics = call(addr, "GET", "/metrics", None).body;
    assert!(
        has_line(
            &metrics,
            &format!("vrf_queue_rejected_total {}", overloaded.len())
        ),
        "{metrics}"
    );
    server.shutdown().unwrap();
}

#[test]
fn slow_requests_time_out_and_shutdown_drains_in_flight_ones() {
    let tmp = tempfile::tempdir().unwrap();
    let body = json!({"prompt": "p", "responses": ["a", "b"], "references": refs()});

    let mut o = options();
    o.batch.max_wait = Duration::from_millis(400);
    o.batch.max_texts = 1000;
    o.request_timeout = Duration::from_millis(100);
    let (server, store) = start(tmp.path(), o.clone());
    let addr = server.local_addr();
    assert_error(
        &call(addr, "POST", "/v1/score", Some(&body)),
        504,
        "timeout",
    );
    // An observe past its deadline answers 504 and writes nothing.
    let r = call(
        addr,
        "POST",
        "/v1/users/late/observe",
        Some(&refs_json(&refs())),
    );
    assert_error(&r, 504, "timeout");
    std::thread::sleep(Duration::from_millis(500)); // the batcher finishes its wait
    assert!(
        store.get("late").unwrap().is_none(),
        "a timed-out observe was stored"
    );
    server.shutdown().unwrap();

    // A request waiting in the batcher when shutdown starts still gets its answer.
    o.request_timeout = Duration::from_secs(30);
    let drain = tmp.path().join("drain");
    std::fs::create_dir_all(&drain).unwrap();
    let (server, _store) = start(&drain, o);
    let addr = server.local_addr();
    let client = std::thread::spawn(move || call(addr, "POST", "/v1/score", Some(&body)));
    // Shut down only once the request is in the batcher's hands (waiting its 400 ms).
    let waited = Instant::now();
    while call(addr, "GET", "/health", None).json()["queue_depth"] == 0 {
        assert!(
            waited.elapsed() < Duration::from_secs(10),
            "the request never arrived"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let t = Instant::now();
    server.shutdown().unwrap();
    let r = client.join().unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(
        t.elapsed() >= Duration::from_millis(50),
        "shutdown did not wait"
    );
}

#[test]
fn a_slow_client_is_cut_off_and_connections_are_capped() {
    use std::io::{Read, Write};
    let tmp = tempfile::tempdir().unwrap();
    let mut o = options();
    o.conn.header_timeout = Duration::from_millis(300);
    o.conn.max_connections = 1;
    let (server, _store) = start(tmp.path(), o);
    let addr = server.local_addr();
    // A request head that never ends: the server closes the connection after the timeout.
    let mut slow = std::net::TcpStream::connect(addr).unwrap();
    slow.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    slow.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    // Meanwhile the one connection slot is taken: a second client waits for it.
    let t = Instant::now();
    let waiting = std::thread::spawn(move || call(addr, "GET", "/health", None).status);
    let mut rest = Vec::new();
    let closed = slow.read_to_end(&mut rest);
    assert!(
        closed.is_ok(),
        "the slow connection was not closed: {closed:?}"
    );
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "closed only after {:?}",
        t.elapsed()
    );
    assert_eq!(waiting.join().unwrap(), 200);
    assert!(
        t.elapsed() >= Duration::from_millis(250),
        "the cap did not hold the second client"
    );
    server.shutdown().unwrap();
}

/// The load benchmark's small version (benches/serve.rs prints the figures): 1, 8 and 32
/// concurrent clients below the queue bound get no error.
#[test]
fn load_below_the_queue_bound_has_no_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let (server, _store) = start(tmp.path(), options());
    let addr = server.local_addr();
    let body = json!({"prompt": "Explain ownership.", "responses": ["One owner.", "Dunno.", "Owners own."], "references": refs()}).to_string();
    for clients in [1, 8, 32] {
        let r = load::drive(addr, "/v1/score", &body, clients, 3);
        assert_eq!(
            r.count(200),
            clients * 3,
            "{clients} clients: {:?}",
            r.statuses
        );
        // For the log only (benches/serve.rs measures): timings are not asserted.
        eprintln!(
            "{clients} clients: {:.0} req/s, p50 {:.1} ms, p99 {:.1} ms",
            r.throughput(),
            r.quantile_ms(0.5),
            r.quantile_ms(0.99)
        );
    }
    let metrics = call(addr, "GET", "/metrics", None).body;
    assert!(
        has_line(&metrics, "vrf_queue_rejected_total 0"),
        "{metrics}"
    );
    server.shutdown().unwrap();
}

/// Run in a child process by the kill -9 test: serves the model until killed, writing the
/// bound address to `$VRF_SERVE_CHILD_ADDR`.
#[test]
#[ignore = "a child process of acknowledged_updates_survive_kill_9"]
fn serve_child() {
    let (Some(store), Some(addr_file)) = (
        std::env::var_os("VRF_SERVE_CHILD_STORE"),
        std::env::var_os("VRF_SERVE_CHILD_ADDR"),
    ) else {
        return;
    };
    let store = Arc::new(open_store(Path::new(&store)));
    let server = Server::start(model(), store, options()).unwrap();
    let tmp = PathBuf::from(&addr_file).with_extension("tmp");
    std::fs::write(&tmp, server.local_addr().to_string()).unwrap();
    std::fs::rename(&tmp, &addr_file).unwrap();
    server.wait().unwrap();
}

#[cfg(unix)]
#[test]
fn acknowledged_updates_survive_kill_9() {
    let tmp = tempfile::tempdir().unwrap();
    let store_path = tmp.path().join("users.sqlite");
    let addr_file = tmp.path().join("addr");
    // Fit and export before the child starts, so it finds the model ready.
    let _ = model();
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "serve_child",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("VRF_SERVE_CHILD_STORE", &store_path)
        .env("VRF_SERVE_CHILD_ADDR", &addr_file)
        .env("VRF_SERVE_CHILD_MODEL", model_dir())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(600);
    let addr: SocketAddr = loop {
        if let Ok(a) = std::fs::read_to_string(&addr_file) {
            break a.parse().unwrap();
        }
        assert!(Instant::now() < deadline, "the child server did not start");
        std::thread::sleep(Duration::from_millis(50));
    };
    let acked = Arc::new(AtomicUsize::new(0));
    let stream = {
        let acked = Arc::clone(&acked);
        std::thread::spawn(move || {
            for i in 0.. {
                let r = Reference::new(format!("Prompt {i}?"), "A full answer.", "Meh.");
                let body = refs_json(&[r]).to_string();
                match http::request(addr, "POST", "/v1/users/d/observe", Some(&body), &[]) {
                    Ok(resp) if resp.status == 200 => {
                        assert_eq!(resp.json()["count"], i + 1);
                        acked.fetch_add(1, Ordering::SeqCst);
                    }
                    _ => break,
                }
            }
        })
    };
    while acked.load(Ordering::SeqCst) < 20 {
        assert!(Instant::now() < deadline, "observes stalled");
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    stream.join().unwrap();
    let acked = acked.load(Ordering::SeqCst);
    let stored = open_store(&store_path)
        .get("d")
        .unwrap()
        .unwrap()
        .state
        .count;
    // Every acknowledged update is there; at most the one in flight went further.
    assert!(
        stored == acked || stored == acked + 1,
        "stored {stored}, acknowledged {acked}"
    );
    // And the restarted server serves it.
    let (server, _store) = start(tmp.path(), options());
    let got = call(server.local_addr(), "GET", "/v1/users/d", None).json();
    assert_eq!(got["count"], stored);
    server.shutdown().unwrap();
}
