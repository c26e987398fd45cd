//! A model fitted on external feature vectors (format version 3, `input.kind = "features"`):
//! the runtime loads it without ONNX Runtime or a tokenizer, its vector entry points agree with
//! the per-user math on the same vectors, and each wrong input gets a named error.

use std::path::Path;

use ndarray::Array2;
use vrf_format::fixture::{write_features_model_dir, Dims, Rng};
use vrf_format::manifest::{InputSpec, MANIFEST_FILE};
use vrf_runtime::{
    ModelError, Reference, RuntimeError, RuntimeOptions, VectorQuestion, VectorReference, VrfModel,
};

const DIMS: Dims = Dims {
    hidden: 6,
    enc_hidden: 5,
    d: 3,
    k: 4,
};

/// Options that name an ONNX Runtime library that does not exist: a features model must not
/// need one.
fn no_ort() -> RuntimeOptions {
    RuntimeOptions::new()
        .with_threads(1)
        .with_ort_library("/nonexistent/libonnxruntime.so")
        .with_checksum_cache(None)
}

fn load(dir: &Path) -> VrfModel {
    VrfModel::load(dir, &no_ort()).unwrap()
}

fn vecs(rng: &mut Rng, n: usize) -> Vec<Vec<f32>> {
    (0..n).map(|_| rng.normal_vec(DIMS.hidden, 1.0)).collect()
}

fn stack(v: &[Vec<f32>]) -> Array2<f32> {
    Array2::from_shape_vec((v.len(), DIMS.hidden), v.concat()).unwrap()
}

#[test]
fn vector_entry_points_match_the_per_user_math() {
    let tmp = tempfile::tempdir().unwrap();
    let manifest = write_features_model_dir(tmp.path(), DIMS, true, 2, 11).unwrap();
    assert_eq!(manifest.input, InputSpec::Features { dim: 6 });
    let model = load(tmp.path());
    assert_eq!(model.input(), InputSpec::Features { dim: 6 });
    assert!(model.backbone().is_none());
    let um = model.user_model();
    let heads = um.heads().expect("a features model has heads");

    let mut rng = Rng::new(3);
    let (chosen, rejected) = (vecs(&mut rng, 3), vecs(&mut rng, 3));
    let refs: Vec<VectorReference> = chosen
        .iter()
        .zip(&rejected)
        .map(|(c, r)| VectorReference::new(c.clone(), r.clone()))
        .collect();
    // By hand: φ = heads(e), pair features [mean | diff | Δφ], then the encoder and PoG.
    let (c, r) = (stack(&chosen), stack(&rejected));
    let (pc, pr) = (
        heads.forward(c.view()).unwrap(),
        heads.forward(r.view()).unwrap(),
    );
    let f = um
        .pair_features(c.view(), r.view(), Some((pc.view(), pr.view())))
        .unwrap();
    let want = um.posterior(f.view()).unwrap();
    let got = model.posterior_vectors(&refs).unwrap();
    assert_eq!(got, want);

    // Incremental: observing one at a time ends at the one-pass posterior.
    let mut state = model.new_state();
    for r in &refs {
        model
            .observe_vectors(&mut state, std::slice::from_ref(r))
            .unwrap();
    }
    let inc = model.posterior_of(&state).unwrap();
    for (a, b) in inc.mean.iter().zip(want.mean.iter()) {
        assert!(
            (a - b).abs() <= 1e-5 * (1.0 + b.abs()),
            "{inc:?} vs {want:?}"
        );
    }

    // Scores are φ(candidate)·w.
    let cands = vecs(&mut rng, 5);
    let s = model.score_vectors(&got, &cands).unwrap();
    let phi = heads.forward(stack(&cands).view()).unwrap();
    let by_hand = phi.dot(&got.weights);
    for (a, b) in s.scores.iter().zip(by_hand.iter()) {
        assert!((a - b).abs() <= 1e-5 * (1.0 + b.abs()), "{a} vs {b}");
    }
    assert!(s.truncated.is_empty());
    assert_eq!(model.features_of_vectors(&cands).unwrap().rewards, phi);
    assert_eq!(
        model
            .features_of_array(stack(&cands).view())
            .unwrap()
            .rewards,
        phi
    );
    let p = model
        .preference_probability_vectors(&got, &cands[0], &cands[1])
        .unwrap();
    assert!(p > 0.0 && p < 1.0);

    // Question values: the same as from the Features of the interleaved vectors.
    let qs: Vec<VectorQuestion> = (0..3)
        .map(|i| VectorQuestion::new(cands[i].clone(), cands[i + 1].clone()))
        .collect();
    let values = model.question_values_vectors(&state, &qs).unwrap();
    assert_eq!(values.len(), 3);
    let interleaved: Vec<Vec<f32>> = qs.iter().flat_map(|q| [q.a.clone(), q.b.clone()]).collect();
    let again = model
        .question_values_of(&state, &model.features_of_vectors(&interleaved).unwrap())
        .unwrap();
    assert_eq!(values, again);

    // Seen users and the cold start work as for a text model.
    assert_eq!(model.seen_user_ids().count(), 2);
    model.seen_posterior("user-1").unwrap();
    assert_eq!(
        model.posterior_vectors(&[]).unwrap(),
        model.cold_start().unwrap()
    );
}

#[test]
fn each_wrong_input_gets_a_named_error() {
    let tmp = tempfile::tempdir().unwrap();
    write_features_model_dir(tmp.path(), DIMS, false, 1, 12).unwrap();
    let model = load(tmp.path());
    let mut rng = Rng::new(5);
    let good = vecs(&mut rng, 2);
    let user = model.seen_posterior("user-0").unwrap();

    // Texts to a features model: the typed error says what the model takes.
    let e = model.score(&user, "p", &["a", "b"]).unwrap_err();
    assert!(
        matches!(e, RuntimeError::Model(ModelError::WrongInput { .. })),
        "{e}"
    );
    assert_eq!(
        e.to_string(),
        "this model takes feature vectors of dimension 6, not texts"
    );
    let e = model
        .posterior(&[Reference::new("p", "a", "b")])
        .unwrap_err();
    assert!(e.to_string().contains("takes feature vectors"), "{e}");
    assert!(model.text_encoder().is_err());

    // A vector of the wrong length, a non-finite value: field and row are named.
    let mut short = good.clone();
    short[1].pop();
    let e = model.score_vectors(&user, &short).unwrap_err();
    assert!(matches!(e, RuntimeError::Vector { .. }), "{e}");
    assert_eq!(
        e.to_string(),
        "`candidates[1]`: 5 values; this model's feature vectors have dimension 6"
    );
    let mut nan = good.clone();
    nan[0][2] = f32::NAN;
    let refs = [
        VectorReference::new(good[0].clone(), good[1].clone()),
        VectorReference::new(good[1].clone(), nan[0].clone()),
    ];
    let e = model.posterior_vectors(&refs).unwrap_err();
    assert_eq!(
        e.to_string(),
        "`references[1].rejected`: value 2 is not finite"
    );
    let mut a = stack(&good);
    a[[1, 3]] = f32::INFINITY;
    let e = model.features_of_array(a.view()).unwrap_err();
    assert_eq!(e.to_string(), "`vectors[1]`: value 3 is not finite");
    let e = model
        .features_of_array(Array2::zeros((1, 7)).view())
        .unwrap_err();
    assert!(e.to_string().contains("dimension 6"), "{e}");
    assert!(model.score_vectors(&user, &[]).is_err());
    assert!(model
        .question_values_vectors(&model.new_state(), &[])
        .is_err());

    // A features model has no backbone to replace.
    #[derive(Debug)]
    struct Never;
    impl vrf_runtime::Backbone for Never {
        fn run(
            &self,
            _: Vec<i64>,
            _: Vec<i64>,
            _: usize,
            _: usize,
        ) -> Result<vrf_runtime::BackboneOutput, RuntimeError> {
            unreachable!("a features model runs no backbone")
        }
    }
    let e = VrfModel::with_backbone(tmp.path(), &no_ort(), Box::new(Never)).unwrap_err();
    assert!(e.to_string().contains("no backbone"), "{e}");
}

#[test]
fn a_manifest_that_mixes_the_two_kinds_is_refused_by_field() {
    let tmp = tempfile::tempdir().unwrap();
    write_features_model_dir(tmp.path(), DIMS, false, 0, 13).unwrap();
    let path = tmp.path().join(MANIFEST_FILE);
    let mut v: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    v["input"]["dim"] = 7.into();
    std::fs::write(&path, v.to_string()).unwrap();
    let e = VrfModel::load(tmp.path(), &no_ort()).unwrap_err();
    assert!(e.to_string().contains("`input.dim` is 7"), "{e}");
    v["input"]["dim"] = 6.into();
    v["format_version"] = 2.into();
    std::fs::write(&path, v.to_string()).unwrap();
    let e = VrfModel::load(tmp.path(), &no_ort()).unwrap_err();
    assert!(e.to_string().contains("needs format_version 3"), "{e}");
}

// Only part of the HTTP helper is used here.
#[allow(dead_code)]
#[path = "common/http.rs"]
mod http;

mod service {
    use std::net::SocketAddr;
    use std::sync::Arc;

    use serde_json::{json, Value};
    use vrf_runtime::serve::{ServeOptions, Server, SqliteStore, UserStore};

    use super::*;

    fn call(addr: SocketAddr, method: &str, path: &str, body: &Value) -> http::Response {
        http::request(addr, method, path, Some(&body.to_string()), &[]).unwrap()
    }

    fn floats(v: &Value) -> Vec<f32> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap() as f32)
            .collect()
    }

    fn close(a: &[f32], b: &[f32], what: &str) {
        assert_eq!(a.len(), b.len(), "{what}");
        for (x, y) in a.iter().zip(b) {
            assert!(
                (x - y).abs() <= 1e-5 * (1.0 + y.abs()),
                "{what}: {a:?} vs {b:?}"
            );
        }
    }

    #[test]
    fn the_service_takes_vectors_and_matches_the_library() {
        let tmp = tempfile::tempdir().unwrap();
        let manifest = write_features_model_dir(&tmp.path().join("m"), DIMS, true, 1, 21).unwrap();
        let model = Arc::new(load(&tmp.path().join("m")));
        let store =
            Arc::new(SqliteStore::for_model(tmp.path().join("u.sqlite"), &manifest).unwrap());
        let mut opts = ServeOptions::default();
        opts.bind = SocketAddr::from(([127, 0, 0, 1], 0));
        let server = Server::start(Arc::clone(&model), store as Arc<dyn UserStore>, opts).unwrap();
        let addr = server.local_addr();

        let h = http::request(addr, "GET", "/health", None, &[])
            .unwrap()
            .json();
        assert_eq!(h["input"], json!({"kind": "features", "dim": 6}));

        let mut rng = Rng::new(8);
        let v = vecs(&mut rng, 6);
        let refs = vec![
            VectorReference::new(v[0].clone(), v[1].clone()),
            VectorReference::new(v[2].clone(), v[3].clone()),
        ];
        // observe → the library's incremental state.
        let r = call(
            addr,
            "POST",
            "/v1/users/alice/observe",
            &json!({ "references": refs }),
        );
        assert_eq!(r.status, 200, "{}", r.body);
        let mut state = model.new_state();
        model.observe_vectors(&mut state, &refs).unwrap();
        let want = model.posterior_of(&state).unwrap();
        close(
            &floats(&r.json()["mean"]),
            want.mean.as_slice().unwrap(),
            "observe mean",
        );
        close(
            &floats(&r.json()["weights"]),
            want.weights.as_slice().unwrap(),
            "weights",
        );

        // score by stored user, and by inline references.
        let cands = vecs(&mut rng, 4);
        let r = call(
            addr,
            "POST",
            "/v1/score",
            &json!({"user": "alice", "features": cands}),
        );
        assert_eq!(r.status, 200, "{}", r.body);
        let s = model.score_vectors(&want, &cands).unwrap();
        close(
            &floats(&r.json()["scores"]),
            s.scores.as_slice().unwrap(),
            "score",
        );
        assert_eq!(r.json()["best"], s.best());
        let r = call(
            addr,
            "POST",
            "/v1/rank",
            &json!({"references": refs, "features": cands}),
        );
        assert_eq!(r.status, 200, "{}", r.body);
        let one_pass = model.posterior_vectors(&refs).unwrap();
        let s = model.score_vectors(&one_pass, &cands).unwrap();
        let ranked: Vec<usize> = r.json()["ranking"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x["index"].as_u64().unwrap() as usize)
            .collect();
        assert_eq!(ranked, s.ranking());

        // next-question → the library's question values.
        let qs = vec![
            VectorQuestion::new(v[4].clone(), v[5].clone()),
            VectorQuestion::new(v[0].clone(), v[5].clone()),
        ];
        let r = call(
            addr,
            "POST",
            "/v1/users/alice/next-question",
            &json!({ "questions": qs }),
        );
        assert_eq!(r.status, 200, "{}", r.body);
        let values = model.question_values_vectors(&state, &qs).unwrap();
        let got: Vec<f32> = r.json()["values"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x["information_gain"].as_f64().unwrap() as f32)
            .collect();
        let lib: Vec<f32> = values.iter().map(|q| q.information_gain).collect();
        close(&got, &lib, "information gain");

        // Every bad input: 422 with a message naming the problem; nothing stored for bob.
        let text_ref = json!({"prompt": "p", "chosen": "a", "rejected": "b"});
        let long = vec![0.5f32; 7];
        let cases: Vec<(&str, Value, &str)> = vec![
            (
                "/v1/users/bob/observe",
                json!({"references": [text_ref]}),
                "`references[0].prompt`: this model takes feature vectors",
            ),
            (
                "/v1/users/bob/observe",
                json!({"references": [{"chosen": "a", "rejected": v[1]}]}),
                "`references[0].chosen` is a text",
            ),
            (
                "/v1/users/bob/observe",
                json!({"references": [{"chosen": long, "rejected": v[1]}]}),
                "`references[0].chosen` has 7 values",
            ),
            (
                "/v1/users/bob/observe",
                json!({"references": [{"chosen": v[1], "rejected": v[1]}]}),
                "same vector",
            ),
            (
                "/v1/users/bob/observe",
                json!({"references": [{"chosen": [1e39, 0, 0, 0, 0, 0], "rejected": v[1]}]}),
                "`references[0].chosen[0]`",
            ),
            (
                "/v1/users/bob/observe",
                json!({"references": [{"chosen": ["x"], "rejected": v[1]}]}),
                "expected f64",
            ),
            (
                "/v1/users/bob/observe",
                json!({"references": [{"chosen": v[0], "rejected": v[1], "extra": 1}]}),
                "unknown field",
            ),
            (
                "/v1/users/bob/observe",
                json!({"references": []}),
                "`references` is empty",
            ),
            (
                "/v1/score",
                json!({"user": "alice", "prompt": "p", "responses": ["a"]}),
                "this model takes feature vectors of dimension 6, not texts",
            ),
            (
                "/v1/score",
                json!({"user": "alice", "features": cands, "prompt": "p"}),
                "not texts",
            ),
            (
                "/v1/score",
                json!({"user": "alice"}),
                "`features` is missing",
            ),
            (
                "/v1/score",
                json!({"user": "alice", "features": [long]}),
                "`features[0]` has 7 values",
            ),
            (
                "/v1/score",
                json!({"user": "alice", "features": []}),
                "`features` is empty",
            ),
            (
                "/v1/users/bob/next-question",
                json!({"questions": [{"prompt": "p", "a": "x", "b": "y"}]}),
                "`questions[0].prompt`",
            ),
            (
                "/v1/users/bob/next-question",
                json!({"questions": [{"a": v[0], "b": long}]}),
                "`questions[0].b` has 7 values",
            ),
        ];
        for (path, body, want) in cases {
            let r = call(addr, "POST", path, &body);
            assert_eq!(r.status, 422, "{path} {body}: {}", r.body);
            assert_eq!(r.json()["type"], "validation", "{}", r.body);
            let msg = r.json()["error"].as_str().unwrap().to_string();
            assert!(msg.contains(want), "{path} {body}: {msg}");
        }
        let r = http::request(addr, "GET", "/v1/users/bob", None, &[]).unwrap();
        assert_eq!(r.status, 404, "{}", r.body);
        server.shutdown().unwrap();
    }
}
