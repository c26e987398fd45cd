//! Property tests: every parser of outside input, fed valid examples after random mutation
//! (`vrf_format::fixture::mutate`: flipped bytes, truncation, duplicated and deleted ranges, NaN /
//! huge numbers / NUL / invalid UTF-8 / deep nesting spliced in), returns `Ok` or a typed error — never a panic, a hang or an
//! unbounded allocation. Inputs that once failed live in `tests/corpus/hostile/` and are replayed
//! first. Case counts are bounded (`PROPTEST_CASES` overrides) so CI stays fast.

use std::path::{Path, PathBuf};

use proptest::prelude::*;
use proptest::test_runner::Config;
use vrf_data::convert::{personal_llm, prism, table, tldr};
use vrf_data::{self, Dataset, Split, Triplet};
use vrf_format::fixture::{mutate as apply, random_model, Dims, Mutation};
use vrf_format::manifest::SeenUsers;
use vrf_runtime::{Manifest, Pooling, UserModel, UserState};
use vrf_trainer::checkpoint::TrainState;
use vrf_trainer::config::RunConfig;
use vrf_trainer::train::{check_position, Stage};

fn mutations() -> impl Strategy<Value = Vec<Mutation>> {
    prop::collection::vec(
        (any::<u8>(), any::<usize>(), any::<usize>(), any::<usize>()),
        1..5,
    )
}

fn cases(n: u32) -> Config {
    let n = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(n);
    Config {
        cases: n,
        failure_persistence: None,
        ..Config::default()
    }
}

/// The regression corpus: every file under `tests/corpus/hostile/<kind>*`.
fn corpus(kind: &str) -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus/hostile");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    files.sort();
    files
        .into_iter()
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(kind))
        })
        .map(|p| std::fs::read(p).unwrap())
        .collect()
}

/// A JSON value nested `depth` deep, the classic stack-overflow input.
fn deep(depth: usize) -> Vec<u8> {
    let mut v = vec![b'['; depth];
    v.extend(std::iter::repeat_n(b']', depth));
    v
}

// ---------------------------------------------------------------- valid examples

fn dims() -> Dims {
    Dims {
        hidden: 4,
        enc_hidden: 5,
        d: 3,
        k: 2,
    }
}

fn training_jsonl() -> Vec<u8> {
    let t = |user: &str, p: &str, split| Triplet {
        user: user.into(),
        prompt: p.into(),
        chosen: format!("good answer to {p}"),
        rejected: format!("bad answer to {p}"),
        split,
    };
    let rows = vec![
        t("s0", "a?", Split::Ref),
        t("s0", "b?", Split::Target),
        t("s0", "c?", Split::Eval),
        t("u0", "d?", Split::Ref),
        t("u0", "e?", Split::Eval),
    ];
    vrf_data::to_jsonl(&rows).unwrap().into_bytes()
}

fn manifest_json() -> (Vec<u8>, Vec<u8>) {
    let (m, bytes) = random_model(dims(), 7);
    (m.to_json().into_bytes(), bytes)
}

fn model() -> UserModel {
    let (m, bytes) = random_model(dims(), 7);
    UserModel::from_bytes(&m, &bytes).unwrap()
}

fn state_json() -> Vec<u8> {
    let m = model();
    let mut s = m.new_state();
    let f = ndarray::Array2::from_elem((2, m.feature_dim()), 0.25f32);
    m.observe(&mut s, f.view()).unwrap();
    s.to_json().into_bytes()
}

fn seen_users_json() -> Vec<u8> {
    br#"{"users":[{"id":"s0","mean":[0.1,0.2,0.3],"var":[1.0,0.5,0.25]},{"id":"s1","mean":[0,0,0],"var":[1,1,1]}]}"#.to_vec()
}

fn prism_jsonl() -> Vec<u8> {
    let mut out = String::new();
    for u in 0..4 {
        let history: Vec<serde_json::Value> = (0..2)
            .flat_map(|turn| {
                let mut e = vec![serde_json::json!({"turn": turn, "role": "user", "content": format!("q{u}{turn}")})];
                for k in 0..2 {
                    e.push(serde_json::json!({"turn": turn, "role": "model", "content": format!("a{u}{turn}{k}"),
                        "score": 10 * k + turn, "if_chosen": k == 1, "within_turn_id": k}));
                }
                e
            })
            .collect();
        out.push_str(
            &serde_json::json!({"conversation_id": u, "user_id": format!("p{u}"),
                "included_in_balanced_subset": true, "conversation_history": history})
            .to_string(),
        );
        out.push('\n');
    }
    out.into_bytes()
}

fn tldr_jsonl() -> Vec<u8> {
    let mut out = String::new();
    for w in 0..4 {
        for i in 0..4 {
            out.push_str(
                &serde_json::json!({
                "info": {"post": format!("post {w}{i}"), "title": "t", "subreddit": "r"},
                "summaries": [{"text": format!("x{w}{i}")}, {"text": format!("y{w}{i}")}],
                "choice": i % 2, "worker": format!("w{w}")})
                .to_string(),
            );
            out.push('\n');
        }
    }
    out.into_bytes()
}

// ---------------------------------------------------------------- the parsers

fn check_training_jsonl(bytes: &[u8]) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("data.jsonl");
    std::fs::write(&path, bytes).unwrap();
    // From a file (invalid UTF-8 included) and from text.
    if let Ok(ds) = Dataset::load(&path) {
        let _ = ds.check_trainable();
        let _ = ds.summary();
    }
    let _ = vrf_data::parse_jsonl(&String::from_utf8_lossy(bytes), &path);
}

fn check_manifest(bytes: &[u8], user_model: &[u8]) {
    if let Ok(m) = Manifest::from_json(bytes, "vrf.json") {
        let _ = m.validate("vrf.json");
        if let Ok(um) = UserModel::from_bytes(&m, user_model) {
            let _ = um.new_state();
        }
    }
}

fn check_user_model(bytes: &[u8]) {
    let (m, _) = random_model(dims(), 7);
    if let Ok(um) = UserModel::from_unverified_bytes(&m, bytes) {
        let f = ndarray::Array2::from_elem((1, um.feature_dim()), 0.5f32);
        let _ = um.posterior(f.view());
    }
}

fn check_state(bytes: &[u8], m: &UserModel) {
    if let Ok(s) = serde_json::from_slice::<UserState>(bytes) {
        if s.validate(Pooling::Pog, m.d()).is_ok() {
            let _ = m.posterior_of(&s);
            let _ = s.to_json();
        }
    }
}

fn check_seen_users(bytes: &[u8]) {
    let _ = SeenUsers::from_json(bytes, 3, "seen_users.json");
}

fn check_train_state(bytes: &[u8]) {
    if let Ok((state, _t)) = serde_json::from_slice::<(TrainState, usize)>(bytes) {
        let seq = Stage::sequence(&RunConfig::default());
        let _ = check_position(&state, &seq, |_| 40);
    }
}

fn check_run_config(bytes: &[u8]) {
    if let Ok(c) = serde_json::from_slice::<RunConfig>(bytes) {
        let _ = c.validate();
    }
}

/// Three PersonalLLM rows as JSON lines (the parquet reader yields the same JSON objects).
fn personal_llm_jsonl() -> Vec<u8> {
    let mut out = String::new();
    for p in 0..3 {
        let mut r = serde_json::Map::new();
        r.insert("prompt".into(), serde_json::json!(format!("q{p}")));
        for k in 1..=personal_llm::RESPONSES {
            r.insert(
                format!("response_{k}"),
                serde_json::json!(format!("a{p}{k}")),
            );
            for (m, rm) in personal_llm::REWARD_MODELS.iter().enumerate() {
                r.insert(
                    format!("response_{k}_{rm}"),
                    serde_json::json!(((p * 8 + k) * 10 + m) as f64 * 0.37 % 3.0),
                );
            }
        }
        out.push_str(&serde_json::Value::Object(r).to_string());
        out.push('\n');
    }
    out.into_bytes()
}

fn check_personal_llm(bytes: &[u8]) {
    let dir = tempfile::tempdir().unwrap();
    let (train, test) = (
        dir.path().join("train.jsonl"),
        dir.path().join("test.jsonl"),
    );
    std::fs::write(&train, bytes).unwrap();
    std::fs::write(&test, personal_llm_jsonl()).unwrap();
    let opt = personal_llm::PersonalLlmOptions {
        seen_users: 2,
        unseen_users: 1,
        n_ref: 1,
        n_target: 1,
        seen_eval: 1,
        unseen_eval: 1,
        ..Default::default()
    };
    let _ = personal_llm::convert(&train, &test, &opt);
}

fn check_converters(prism_bytes: &[u8], tldr_bytes: &[u8]) {
    let dir = tempfile::tempdir().unwrap();
    let (p, t) = (dir.path().join("conv.jsonl"), dir.path().join("cmp.jsonl"));
    std::fs::write(&p, prism_bytes).unwrap();
    std::fs::write(&t, tldr_bytes).unwrap();
    let _ = table::read_rows(&p);
    let _ = prism::convert(&p, &prism::PrismOptions::default());
    let opt = tldr::TldrOptions {
        min_comparisons: 2,
        seen_users: 1,
        unseen_users: 1,
        n_ref: 1,
        n_target: 1,
        ..Default::default()
    };
    let _ = tldr::convert(&[t], &opt);
}

// ---------------------------------------------------------------- properties

#[test]
fn corpus_and_deep_nesting_are_errors_not_crashes() {
    let m = model();
    let (_, um) = manifest_json();
    for depth in [1_000, 100_000] {
        let d = deep(depth);
        check_training_jsonl(&d);
        check_manifest(&d, &um);
        check_state(&d, &m);
        check_seen_users(&d);
        check_run_config(&d);
        check_train_state(&d);
        check_converters(&d, &d);
        check_personal_llm(&d);
    }
    for b in corpus("jsonl") {
        check_training_jsonl(&b);
    }
    for b in corpus("manifest") {
        check_manifest(&b, &um);
    }
    for b in corpus("state") {
        check_state(&b, &m);
    }
    for b in corpus("config") {
        check_run_config(&b);
    }
    for b in corpus("usermodel") {
        check_user_model(&b);
    }
}

#[test]
fn user_model_header_lengths_are_refused_before_allocating() {
    let (_, mut bytes) = manifest_json();
    // Header length fields of 2⁴⁰ and u64::MAX, and one past the end of the file.
    for len in [1u64 << 40, u64::MAX, bytes.len() as u64] {
        bytes[..8].copy_from_slice(&len.to_le_bytes());
        let (m, _) = random_model(dims(), 7);
        assert!(UserModel::from_unverified_bytes(&m, &bytes).is_err());
    }
}

proptest! {
    #![proptest_config(cases(192))]

    #[test]
    fn training_jsonl_never_panics(ops in mutations()) {
        check_training_jsonl(&apply(training_jsonl(), &ops));
    }

    #[test]
    fn manifests_never_panic(ops in mutations()) {
        let (json, um) = manifest_json();
        check_manifest(&apply(json, &ops), &um);
    }

    #[test]
    fn user_model_safetensors_never_panic(ops in mutations()) {
        let (_, um) = manifest_json();
        check_user_model(&apply(um, &ops));
    }

    #[test]
    fn saved_user_states_never_panic(ops in mutations()) {
        check_state(&apply(state_json(), &ops), &model());
    }

    #[test]
    fn seen_users_never_panic(ops in mutations()) {
        check_seen_users(&apply(seen_users_json(), &ops));
    }

    #[test]
    fn checkpoint_states_never_panic(ops in mutations()) {
        let state = TrainState {
            stage: "s1".into(),
            step: 3,
            global_step: 10,
            finished: vec!["bt".into()],
            s2_best_epoch: Some(2),
            s2_prior_scale: Some(1.5),
            delta: Some(0.5),
        };
        check_train_state(&apply(serde_json::to_vec(&(state, 7usize)).unwrap(), &ops));
    }

    #[test]
    fn run_configs_never_panic(ops in mutations()) {
        let json = serde_json::to_vec(&RunConfig::default()).unwrap();
        check_run_config(&apply(json, &ops));
    }

    #[test]
    fn personal_llm_tables_never_panic(ops in mutations()) {
        check_personal_llm(&apply(personal_llm_jsonl(), &ops));
    }

    #[test]
    fn converter_inputs_never_panic(a in mutations(), b in mutations()) {
        check_converters(&apply(prism_jsonl(), &a), &apply(tldr_jsonl(), &b));
    }
}
