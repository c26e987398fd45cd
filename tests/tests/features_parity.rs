//! End-to-end parity on external features: a VRF fit on the benchmark's true-feature table
//! (`vrf-bench features --source true`), exported (heads in `user_model.safetensors`, no ONNX),
//! loaded by the runtime without ONNX Runtime, and served by `vrf serve`: the trainer's candle
//! posteriors, weights and rewards, the runtime's and the service's agree within 1e-5.

// Only part of each shared helper is used here.
#[allow(dead_code)]
mod common;
#[allow(dead_code)]
#[path = "common/http.rs"]
mod http;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use candle_core::{Device, Tensor};
use serde_json::{json, Value};
use vrf_bench::reference::feature_table::{ensure_table, Source};
use vrf_data::{Dataset, FeatureTable, Split};
use vrf_format::manifest::{InputSpec, BACKBONE_FILE, TOKENIZER_FILE};
use vrf_runtime::serve::{ServeOptions, Server, SqliteStore, UserStore};
use vrf_runtime::{RuntimeOptions, VectorReference, VrfModel};
use vrf_trainer::config::{BackboneSource, RunConfig};
use vrf_trainer::export::{export, load_trained, ExportOptions};

struct Fixture {
    run: PathBuf,
    model_dir: PathBuf,
    data: Dataset,
    table: FeatureTable,
    root: PathBuf,
}

/// One fit + export on the true features, shared by the tests of this file.
fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let root = tempfile::tempdir().unwrap().keep();
        let data = common::small_benchmark(&root).unwrap();
        let table_path = ensure_table(&data, Source::True).unwrap();
        let mut cfg = RunConfig::on_features(table_path.to_str().unwrap());
        cfg.train.epochs = 3;
        cfg.train.s2_epochs = 3;
        cfg.train.checkpoint_every = 0;
        let run = common::fit_small(&root, &data, &cfg).unwrap();
        let model_dir = root.join("model");
        let report = export(&run, &model_dir, &ExportOptions::default()).unwrap();
        assert!(report.max_err() <= 1e-5, "self-check {}", report.max_err());
        Fixture {
            run,
            model_dir,
            data: Dataset::load(&data).unwrap(),
            table: FeatureTable::read(&table_path).unwrap(),
            root,
        }
    })
}

/// The runtime on the exported directory, with a library path that does not exist: a model on
/// features must not need ONNX Runtime.
fn runtime() -> VrfModel {
    let opts = RuntimeOptions::new()
        .with_threads(1)
        .with_ort_library("/nonexistent/libonnxruntime.so");
    VrfModel::load(&fixture().model_dir, &opts).unwrap()
}

fn vector(t: &FeatureTable, prompt: &str, response: &str) -> Vec<f32> {
    let texts = [(prompt.to_string(), response.to_string())];
    t.matrix(&texts, &|p, r| format!("{p}{r}")).unwrap()
}

/// An unseen user's reference pairs as vectors.
fn refs_of(f: &Fixture, user: &str) -> Vec<VectorReference> {
    let u = f.data.users.iter().find(|u| u.id == user).unwrap();
    u.split(Split::Ref)
        .iter()
        .map(|&i| {
            let t = &f.data.triplets[i];
            VectorReference::new(
                vector(&f.table, &t.prompt, &t.chosen),
                vector(&f.table, &t.prompt, &t.rejected),
            )
        })
        .collect()
}

fn rows(v: &[Vec<f32>]) -> Tensor {
    let flat: Vec<f32> = v.concat();
    Tensor::from_vec(flat, (v.len(), v[0].len()), &Device::Cpu).unwrap()
}

fn flat(t: &Tensor) -> Vec<f32> {
    t.flatten_all().unwrap().to_vec1().unwrap()
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

fn unseen(f: &Fixture) -> Vec<String> {
    f.data
        .users
        .iter()
        .filter(|u| !u.is_seen())
        .map(|u| u.id.clone())
        .take(3)
        .collect()
}

#[test]
fn the_export_has_no_backbone_and_says_it_takes_features() {
    let f = fixture();
    let rt = runtime();
    let m = rt.manifest();
    assert_eq!(m.input, InputSpec::Features { dim: f.table.dim() });
    assert!(m.text.is_none() && m.onnx.is_none());
    for absent in [BACKBONE_FILE, TOKENIZER_FILE] {
        assert!(!f.model_dir.join(absent).exists(), "{absent} was written");
    }
    let cfg: RunConfig =
        serde_json::from_slice(&std::fs::read(f.run.join("config.json")).unwrap()).unwrap();
    assert!(matches!(cfg.backbone, BackboneSource::Features { .. }));
    // Text input to this model is refused, saying what it takes.
    let user = rt.cold_start().unwrap();
    let err = rt
        .score(&user, "A prompt", &["an answer"])
        .unwrap_err()
        .to_string();
    assert!(err.contains("feature vectors"), "{err}");
}

#[test]
fn trainer_runtime_and_service_agree_on_unseen_users() {
    let f = fixture();
    let t = load_trained(&f.run, &Device::Cpu).unwrap();
    let rt = Arc::new(runtime());
    let store =
        Arc::new(SqliteStore::for_model(f.root.join("users.sqlite"), rt.manifest()).unwrap());
    let mut opts = ServeOptions::default();
    opts.bind = SocketAddr::from(([127, 0, 0, 1], 0));
    let server = Server::start(Arc::clone(&rt), store as Arc<dyn UserStore>, opts).unwrap();
    let addr = server.local_addr();
    let call = |path: &str, body: &Value| -> Value {
        let r = http::request(addr, "POST", path, Some(&body.to_string()), &[]).unwrap();
        assert_eq!(r.status, 200, "{path}: {}", r.body);
        r.json()
    };
    let floats = |v: &Value| -> Vec<f32> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap() as f32)
            .collect()
    };

    for id in unseen(f) {
        let refs = refs_of(f, &id);
        let m = refs.len();
        // Trainer: the table's rows → ref_features → PoG with the prior → W₂ softmax.
        let ec = rows(&refs.iter().map(|r| r.chosen.clone()).collect::<Vec<_>>());
        let er = rows(&refs.iter().map(|r| r.rejected.clone()).collect::<Vec<_>>());
        let feats = t.model.ref_features(&ec, &er).unwrap();
        let (mu, var) = t.model.posterior(&feats, &vec![0; m], 1).unwrap();
        let w = t.model.bases().unwrap().weights(&mu, &var).unwrap();

        let user = rt.posterior_vectors(&refs).unwrap();
        close(user.mean.as_slice().unwrap(), &flat(&mu), "mean");
        close(user.var.as_slice().unwrap(), &flat(&var), "var");
        close(user.weights.as_slice().unwrap(), &flat(&w), "weights");

        // Personalised rewards of candidates: candle φ·w against the runtime and the service.
        let u = f.data.users.iter().find(|u| u.id == id).unwrap();
        let cands: Vec<Vec<f32>> = u
            .split(Split::Eval)
            .iter()
            .flat_map(|&i| {
                let tr = &f.data.triplets[i];
                [
                    vector(&f.table, &tr.prompt, &tr.chosen),
                    vector(&f.table, &tr.prompt, &tr.rejected),
                ]
            })
            .collect();
        let phi = t.model.phi(&rows(&cands)).unwrap();
        let want = phi.matmul(&w.t().unwrap()).unwrap();
        let got = rt.score_vectors(&user, &cands).unwrap();
        close(got.scores.as_slice().unwrap(), &flat(&want), "scores");

        let observed = call(
            &format!("/v1/users/{id}/observe"),
            &json!({ "references": refs }),
        );
        close(&floats(&observed["weights"]), &flat(&w), "service weights");
        let scored = call("/v1/score", &json!({"user": id, "features": cands}));
        close(&floats(&scored["scores"]), &flat(&want), "service scores");
    }
}
