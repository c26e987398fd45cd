//! End-to-end parity: fit a tiny VRF model for a few steps, export it, load it in the runtime
//! (ONNX Runtime + ndarray) and compare everything with the trainer's candle computation.
//!
//! Set `VRF_PARITY_MODEL_OUT=DIR` to keep a copy of the exported model directory (the test
//! script checks it with the ONNX checker and the wasm parity test reuses it).

mod common;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use candle_core::{Device, Tensor};
use ndarray::{Array1, Array2, ArrayView2};
use vrf_data::{Dataset, Split};
use vrf_format::manifest::{
    FileEntry, BACKBONE_FILE, MANIFEST_FILE, TOKENIZER_FILE, USER_MODEL_FILE,
};
use vrf_runtime::text::PAD_CANDIDATES;
use vrf_runtime::{
    Checksums, ExecutionProvider, ModelError, Question, Reference, RuntimeError, RuntimeOptions,
    UserPosterior, VrfModel,
};
use vrf_trainer::export::{export, load_trained, ExportOptions, Trained};
use vrf_trainer::run::Posteriors;

struct Fixture {
    run: PathBuf,
    model_dir: PathBuf,
    data: Dataset,
}

/// One fit + export shared by every test of this file (kept for the process's lifetime).
fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let root = tempfile::tempdir().unwrap().keep();
        let data = common::small_benchmark(&root).unwrap();
        let mut cfg = common::short_fit();
        // Short enough that some synthetic texts are truncated (the runtime must do the same).
        cfg.train.max_len = 48;
        cfg.train.checkpoint_every = 0;
        let run = common::fit_small(&root, &data, &cfg).unwrap();
        let model_dir = root.join("model");
        let report = export(&run, &model_dir, &ExportOptions::default()).unwrap();
        assert!(report.max_err() <= 1e-4, "self-check {}", report.max_err());
        if let Some(keep) = std::env::var_os("VRF_PARITY_MODEL_OUT") {
            let keep = PathBuf::from(keep);
            let _ = std::fs::remove_dir_all(&keep);
            std::fs::create_dir_all(&keep).unwrap();
            for f in std::fs::read_dir(&model_dir).unwrap() {
                let f = f.unwrap().path();
                std::fs::copy(&f, keep.join(f.file_name().unwrap())).unwrap();
            }
            std::fs::copy(&data, keep.join("data.jsonl")).unwrap();
        }
        Fixture {
            run,
            model_dir,
            data: Dataset::load(&data).unwrap(),
        }
    })
}

fn runtime(dir: &Path) -> Result<VrfModel, RuntimeError> {
    VrfModel::load(
        dir,
        &RuntimeOptions::new().with_threads(1).with_batch_size(4),
    )
}

fn trained() -> Trained {
    load_trained(&fixture().run, &Device::Cpu).unwrap()
}

/// Max of |a − b| / max(1, |b|): absolute for small values, relative for large ones.
fn max_err(a: ArrayView2<'_, f32>, b: ArrayView2<'_, f32>) -> f32 {
    assert_eq!(a.dim(), b.dim());
    a.iter()
        .zip(b.iter())
        .map(|(x, y)| (x - y).abs() / y.abs().max(1.0))
        .fold(0.0, f32::max)
}

fn to_array(t: &Tensor) -> Array2<f32> {
    let (r, c) = t.dims2().unwrap();
    Array2::from_shape_vec((r, c), t.flatten_all().unwrap().to_vec1::<f32>().unwrap()).unwrap()
}

/// The trainer's hidden states and basis rewards of `texts`, one candle batch.
fn candle_features(t: &Trained, texts: &[(&str, &str)]) -> (Array2<f32>, Array2<f32>, Vec<usize>) {
    let b = t
        .encoder
        .as_ref()
        .expect("a text run")
        .encode_batch(texts)
        .unwrap();
    let ids = Tensor::from_vec(b.ids.clone(), (b.batch, b.seq_len), &Device::Cpu).unwrap();
    let e = t.model.embed(&ids, &b.lengths).unwrap();
    let phi = t.model.phi(&e).unwrap();
    (to_array(&e), to_array(&phi), b.truncated_rows)
}

fn sample_texts(ds: &Dataset, n: usize) -> Vec<(String, String)> {
    ds.triplets
        .iter()
        .take(n)
        .flat_map(|t| {
            [
                (t.prompt.clone(), t.chosen.clone()),
                (t.prompt.clone(), t.rejected.clone()),
            ]
        })
        .collect()
}

fn refs_of(ds: &Dataset, user: &str) -> Vec<Reference> {
    ds.triplets
        .iter()
        .filter(|t| t.user == user && t.split == Split::Ref)
        .map(|t| Reference::new(&t.prompt, &t.chosen, &t.rejected))
        .collect()
}

#[test]
fn hidden_states_and_basis_rewards_match_the_trainer_with_batching_and_truncation() {
    let f = fixture();
    let (t, rt) = (trained(), runtime(&f.model_dir).unwrap());
    let owned = sample_texts(&f.data, 9);
    let mut texts: Vec<(&str, &str)> = owned
        .iter()
        .map(|(p, r)| (p.as_str(), r.as_str()))
        .collect();
    texts.push(("Hi.", "Ok."));
    let (want_h, want_r, want_trunc) = candle_features(&t, &texts);
    let got = rt.features(&texts).unwrap();
    let (eh, er) = (
        max_err(got.hidden.view(), want_h.view()),
        max_err(got.rewards.view(), want_r.view()),
    );
    println!(
        "runtime vs candle over {} texts: hidden {eh:.2e}, rewards {er:.2e}",
        texts.len()
    );
    assert!(eh <= 1e-4 && er <= 1e-4, "hidden {eh}, rewards {er}");
    assert!(
        !want_trunc.is_empty(),
        "the fixture should include over-long texts"
    );
    assert_eq!(
        got.truncated, want_trunc,
        "the runtime truncates exactly the texts training truncated"
    );

    // Each text alone gives what it gave inside the padded, length-sorted batches.
    for (i, text) in texts.iter().enumerate() {
        let one = rt.features(std::slice::from_ref(text)).unwrap();
        let e = max_err(
            one.hidden.view(),
            got.hidden.slice(ndarray::s![i..i + 1, ..]),
        )
        .max(max_err(
            one.rewards.view(),
            got.rewards.slice(ndarray::s![i..i + 1, ..]),
        ));
        assert!(e <= 1e-5, "text {i}: alone vs batch {e}");
    }
}

#[test]
fn candle_onnx_and_onnx_runtime_agree_on_the_graph() {
    let f = fixture();
    let (t, rt) = (trained(), runtime(&f.model_dir).unwrap());
    let proto = candle_onnx::read_file(f.model_dir.join("backbone.onnx")).unwrap();
    let owned = sample_texts(&f.data, 3);
    let texts: Vec<(&str, &str)> = owned
        .iter()
        .map(|(p, r)| (p.as_str(), r.as_str()))
        .collect();
    let b = t
        .encoder
        .as_ref()
        .expect("a text run")
        .encode_batch(&texts)
        .unwrap();
    let ids: Vec<i64> = b.ids.iter().map(|&i| i64::from(i)).collect();
    let mask: Vec<i64> = b.mask.iter().map(|&m| i64::from(m)).collect();
    let inputs = std::collections::HashMap::from([
        (
            "input_ids".to_string(),
            Tensor::from_vec(ids, (b.batch, b.seq_len), &Device::Cpu).unwrap(),
        ),
        (
            "attention_mask".to_string(),
            Tensor::from_vec(mask, (b.batch, b.seq_len), &Device::Cpu).unwrap(),
        ),
    ]);
    let out = candle_onnx::simple_eval(&proto, inputs).unwrap();
    let rows: Vec<Vec<u32>> = (0..b.batch)
        .map(|i| b.ids[i * b.seq_len..i * b.seq_len + b.lengths[i]].to_vec())
        .collect();
    let ort = rt.features_from_ids(&rows).unwrap();
    let eh = max_err(ort.hidden.view(), to_array(&out["hidden"]).view());
    let er = max_err(ort.rewards.view(), to_array(&out["rewards"]).view());
    println!("ONNX Runtime vs candle-onnx: hidden {eh:.2e}, rewards {er:.2e}");
    assert!(eh <= 1e-4 && er <= 1e-4, "hidden {eh}, rewards {er}");
}

#[test]
fn unseen_user_posteriors_and_scores_match_the_trainer() {
    let f = fixture();
    let (t, rt) = (trained(), runtime(&f.model_dir).unwrap());
    let unseen: Vec<String> = f
        .data
        .users
        .iter()
        .filter(|u| !u.is_seen())
        .map(|u| u.id.clone())
        .collect();
    assert!(unseen.len() >= 3);
    for id in unseen.iter().take(3) {
        let refs = refs_of(&f.data, id);
        assert!(!refs.is_empty());
        // Trainer: candle embeddings → ref_features → PoG → W₂ softmax.
        let texts: Vec<(&str, &str)> = refs.iter().flat_map(Reference::texts).collect();
        let b = t
            .encoder
            .as_ref()
            .expect("a text run")
            .encode_batch(&texts)
            .unwrap();
        let ids = Tensor::from_vec(b.ids.clone(), (b.batch, b.seq_len), &Device::Cpu).unwrap();
        let e = t.model.embed(&ids, &b.lengths).unwrap();
        let m = refs.len();
        let pick = |off: u32| {
            Tensor::from_vec(
                (0..m as u32).map(|i| 2 * i + off).collect::<Vec<_>>(),
                m,
                &Device::Cpu,
            )
            .unwrap()
        };
        let (ec, er) = (
            e.index_select(&pick(0), 0).unwrap(),
            e.index_select(&pick(1), 0).unwrap(),
        );
        let feats = t.model.ref_features(&ec, &er).unwrap();
        let (mu, var) = t.model.posterior(&feats, &vec![0; m], 1).unwrap();
        let w = t.model.bases().unwrap().weights(&mu, &var).unwrap();

        let user = rt.posterior(&refs).unwrap();
        let row = |a: &Array1<f32>| a.view().insert_axis(ndarray::Axis(0)).to_owned();
        let (em, ev, ew) = (
            max_err(row(&user.mean).view(), to_array(&mu).view()),
            max_err(row(&user.var).view(), to_array(&var).view()),
            max_err(row(&user.weights).view(), to_array(&w).view()),
        );
        println!("user {id} ({m} refs): mean {em:.2e}, var {ev:.2e}, weights {ew:.2e}");
        assert!(
            em <= 1e-4 && ev <= 1e-4 && ew <= 1e-4,
            "{id}: mean {em}, var {ev}, weights {ew}"
        );

        // The one-at-a-time update reaches the same posterior.
        let mut state = rt.new_state();
        for r in &refs {
            rt.observe(&mut state, std::slice::from_ref(r)).unwrap();
        }
        let inc = rt.posterior_of(&state).unwrap();
        assert!(max_err(row(&inc.weights).view(), row(&user.weights).view()) <= 1e-5);

        // Personalised scores of candidates: candle φ·w against the runtime.
        let prompt = &refs[0].prompt;
        let cands = [
            refs[0].chosen.as_str(),
            refs[0].rejected.as_str(),
            "Short.",
            "A longer answer with some detail.",
        ];
        let pairs: Vec<(&str, &str)> = cands.iter().map(|c| (prompt.as_str(), *c)).collect();
        let (_, phi, _) = candle_features(&t, &pairs);
        let want = phi.dot(&to_array(&w).row(0));
        let got = rt.score(&user, prompt, &cands).unwrap();
        let es = max_err(
            got.scores.view().insert_axis(ndarray::Axis(0)),
            want.view().insert_axis(ndarray::Axis(0)),
        );
        assert!(es <= 1e-4, "{id}: scores {es}");
        let best = got.best();
        assert_eq!(
            got.scores[best],
            got.scores.iter().copied().fold(f32::MIN, f32::max)
        );
        let ranking = got.ranking();
        assert_eq!(ranking[0], best);
        assert!(ranking
            .windows(2)
            .all(|w| got.scores[w[0]] >= got.scores[w[1]]));
        let p = rt
            .preference_probability(&user, prompt, cands[0], cands[1])
            .unwrap();
        assert!((0.0..=1.0).contains(&p));
        assert_eq!(p > 0.5, got.scores[0] > got.scores[1]);
    }
}

#[test]
fn cached_seen_users_match_the_trainer() {
    let f = fixture();
    let rt = runtime(&f.model_dir).unwrap();
    let cached: Posteriors =
        serde_json::from_str(&std::fs::read_to_string(f.run.join("posteriors.json")).unwrap())
            .unwrap();
    assert_eq!(rt.seen_user_ids().count(), cached.users.len());
    assert!(!cached.users.is_empty());
    for u in &cached.users {
        let got = rt.seen_posterior(&u.id).unwrap();
        assert_eq!(got.mean.to_vec(), u.mean);
        assert_eq!(got.var.to_vec(), u.var);
        let ew = got
            .weights
            .iter()
            .zip(&u.weights)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max);
        assert!(ew <= 1e-5, "{}: weights differ by {ew}", u.id);
        assert!((got.uncertainty - u.uncertainty).abs() <= 1e-5 * u.uncertainty.max(1.0));
    }
    assert!(matches!(
        rt.seen_posterior("nobody").unwrap_err(),
        RuntimeError::UnknownUser(_)
    ));
}

/// A copy of the exported directory to damage.
fn copy_model(tag: &str) -> PathBuf {
    let src = &fixture().model_dir;
    let dst = src.with_file_name(format!("model-{tag}"));
    let _ = std::fs::remove_dir_all(&dst);
    std::fs::create_dir_all(&dst).unwrap();
    for f in std::fs::read_dir(src).unwrap() {
        let f = f.unwrap().path();
        std::fs::copy(&f, dst.join(f.file_name().unwrap())).unwrap();
    }
    dst
}

#[test]
fn broken_model_directories_and_inputs_give_clear_errors() {
    // A flipped byte: the checksum names the file. The graph too, hashed (streamed) while
    // ONNX Runtime creates its session: the checksum error wins over whatever ONNX Runtime
    // makes of the damage.
    for (case, file, at) in [
        ("corrupt", USER_MODEL_FILE, 0.999),
        ("corrupt-graph", BACKBONE_FILE, 0.5),
    ] {
        let d = copy_model(case);
        let mut bytes = std::fs::read(d.join(file)).unwrap();
        let n = ((bytes.len() as f64 * at) as usize).min(bytes.len() - 1);
        bytes[n] ^= 0x40;
        std::fs::write(d.join(file), bytes).unwrap();
        let e = runtime(&d).unwrap_err();
        assert!(
            matches!(e, RuntimeError::Model(ModelError::Checksum { .. })),
            "{case}: {e}"
        );
        assert!(e.to_string().contains(file), "{case}: {e}");
    }

    // A manifest from the future.
    let d = copy_model("version");
    let mut m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(d.join(MANIFEST_FILE)).unwrap()).unwrap();
    m["format_version"] = 99.into();
    std::fs::write(d.join(MANIFEST_FILE), m.to_string()).unwrap();
    let e = runtime(&d).unwrap_err();
    assert!(
        matches!(
            e,
            RuntimeError::Model(ModelError::FormatVersion { found: 99, .. })
        ),
        "{e}"
    );

    // A dimension that disagrees with the tensors.
    let d = copy_model("dims");
    let mut m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(d.join(MANIFEST_FILE)).unwrap()).unwrap();
    m["d"] = (m["d"].as_u64().unwrap() + 1).into();
    std::fs::write(d.join(MANIFEST_FILE), m.to_string()).unwrap();
    let e = runtime(&d).unwrap_err().to_string();
    assert!(
        e.contains("encoder.l2.weight") || e.contains("shape"),
        "{e}"
    );

    // A missing file.
    let d = copy_model("missing");
    std::fs::remove_file(d.join(TOKENIZER_FILE)).unwrap();
    let e = runtime(&d).unwrap_err();
    assert!(e.to_string().contains(TOKENIZER_FILE), "{e}");

    // Bad requests on a good model.
    let rt = runtime(&fixture().model_dir).unwrap();
    // No references: the exported population prior (cold start), never a made-up user.
    assert!(rt.has_prior());
    assert_eq!(rt.posterior(&[]).unwrap(), rt.cold_start().unwrap());
    let user_with = |weights: Vec<f32>| UserPosterior {
        mean: Array1::zeros(2),
        var: Array1::ones(2),
        weights: Array1::from(weights),
        uncertainty: 1.0,
    };
    let short = user_with(vec![0.5f32, 0.5]);
    let e = rt.score(&short, "p", &["a", "b"]).unwrap_err().to_string();
    assert!(e.contains("dimension mismatch"), "{e}");
    assert!(rt.score(&user_with(vec![1.0 / 8.0; 8]), "p", &[]).is_err());
}

/// The trained tokenizer pads with `<|endoftext|>`; renamed, it has none of the known pad
/// tokens, and the model still loads and runs with the manifest's `pad_id`.
#[test]
fn a_tokenizer_without_a_known_pad_token_uses_the_manifest_pad_id() {
    let d = copy_model("nopad");
    let mut tok: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(d.join(TOKENIZER_FILE)).unwrap()).unwrap();
    let renamed = |name: &str| format!("<|vrf-test-{}|>", name.trim_matches(['<', '>', '|']));
    let mut n = 0;
    for t in tok["added_tokens"].as_array_mut().unwrap() {
        let name = t["content"].as_str().unwrap().to_string();
        if PAD_CANDIDATES.contains(&name.as_str()) {
            t["content"] = renamed(&name).into();
            n += 1;
        }
    }
    let vocab = tok["model"]["vocab"].as_object_mut().unwrap();
    for name in PAD_CANDIDATES {
        if let Some(id) = vocab.remove(name) {
            vocab.insert(renamed(name), id);
        }
    }
    assert!(
        n > 0,
        "the trained tokenizer has a known pad token to rename"
    );
    tok["padding"] = serde_json::Value::Null;
    let bytes = tok.to_string().into_bytes();
    std::fs::write(d.join(TOKENIZER_FILE), &bytes).unwrap();
    let mut m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(d.join(MANIFEST_FILE)).unwrap()).unwrap();
    m["files"][TOKENIZER_FILE] = serde_json::to_value(FileEntry::of(&bytes)).unwrap();
    std::fs::write(d.join(MANIFEST_FILE), m.to_string()).unwrap();

    let (good, nopad) = (runtime(&fixture().model_dir).unwrap(), runtime(&d).unwrap());
    assert_eq!(
        nopad.text_encoder().unwrap().pad_id,
        good.manifest().text.as_ref().unwrap().pad_id
    );
    // Rows of different lengths, so one of them is padded.
    let texts = [
        ("What is rust?", "A language."),
        ("Hi", "Hello there, friend."),
    ];
    let (a, b) = (
        good.features(&texts).unwrap(),
        nopad.features(&texts).unwrap(),
    );
    assert_eq!(a.hidden, b.hidden);
    assert_eq!(a.rewards, b.rewards);
}

#[test]
fn one_model_serves_several_threads_and_cuda_is_never_a_silent_fallback() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<VrfModel>();
    let f = fixture();
    let rt = std::sync::Arc::new(runtime(&f.model_dir).unwrap());
    let texts = [
        ("What is rust?", "A language."),
        ("Hi", "Hello there, friend."),
    ];
    let want = rt.features(&texts).unwrap();
    let handles: Vec<_> = (0..3)
        .map(|_| {
            let rt = rt.clone();
            std::thread::spawn(move || rt.features(&texts).unwrap())
        })
        .collect();
    for h in handles {
        assert_eq!(h.join().unwrap(), want);
    }
    // This build has no `cuda` feature (or, with it, a CPU-only ONNX Runtime): CUDA is an error.
    let cuda = RuntimeOptions::new().with_provider(ExecutionProvider::Cuda { device_id: 0 });
    let e = VrfModel::load(&f.model_dir, &cuda).unwrap_err();
    assert!(matches!(e, RuntimeError::Cuda(_)), "{e}");
}

#[test]
fn external_data_export_loads_and_matches() {
    let f = fixture();
    let out = f.model_dir.with_file_name("model-external");
    let opts = ExportOptions {
        external_data_threshold: 0,
        force: true,
        ..ExportOptions::default()
    };
    let r = export(&f.run, &out, &opts).unwrap();
    assert_eq!(
        r.manifest.onnx.as_ref().unwrap().external_data.as_deref(),
        Some("backbone.onnx.data")
    );
    // Written tensor by tensor and checked with ONNX Runtime, not inlined for candle-onnx.
    assert_eq!(r.manifest.source["self_check_engine"], "onnxruntime");
    assert!(r.max_err() <= 1e-4, "{:?}", r.checks);
    assert!(std::fs::metadata(out.join("backbone.onnx")).unwrap().len() < 200_000);
    let (a, b) = (runtime(&f.model_dir).unwrap(), runtime(&out).unwrap());
    let texts = [
        ("What is rust?", "A language."),
        ("Hi", "Hello there, friend."),
    ];
    let (fa, fb) = (a.features(&texts).unwrap(), b.features(&texts).unwrap());
    assert_eq!(fa.hidden, fb.hidden);
    assert_eq!(fa.rewards, fb.rewards);
    // A checksum cache spares the second load the hashing and says so; a changed graph file
    // (same size, new mtime) is hashed again and refused.
    let cache = vrf_runtime::ChecksumCache::new(out.with_file_name("verified-cache.json"));
    let opts = RuntimeOptions::new()
        .with_threads(1)
        .with_checksum_cache(Some(cache));
    let load = || VrfModel::load(&out, &opts);
    assert_eq!(load().unwrap().checksums(), Checksums::Verified);
    assert_eq!(load().unwrap().checksums(), Checksums::VerifiedEarlier);
    let data = out.join("backbone.onnx.data");
    let mut bytes = std::fs::read(&data).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x55;
    std::fs::write(&data, &bytes).unwrap();
    let later = std::time::SystemTime::now() + std::time::Duration::from_secs(5);
    std::fs::File::options()
        .write(true)
        .open(&data)
        .unwrap()
        .set_modified(later)
        .unwrap();
    let e = load().unwrap_err();
    assert!(e.to_string().contains("backbone.onnx.data"), "{e}");
    bytes[last] ^= 0x55;
    std::fs::write(&data, &bytes).unwrap();
    // The restored data file is hashed again (and passes); the graph file is still vouched for.
    assert_eq!(load().unwrap().checksums(), Checksums::VerifiedEarlier);
    // Re-exporting without --force refuses to overwrite.
    assert!(export(&f.run, &out, &ExportOptions::default())
        .unwrap_err()
        .to_string()
        .contains("--force"));
}

/// `--quantize int8`: int8 linear layers in ONNX Runtime's dynamic-quantization pattern, the
/// heads and embeddings f32; the runtime loads it unchanged and its features stay close to the
/// f32 model's (relative tolerance), and a self-check tolerance too tight for int8 fails loudly.
#[test]
fn int8_export_runs_in_the_runtime_close_to_f32() {
    use candle_onnx::onnx::{tensor_proto::DataType, ModelProto};
    use prost::Message;
    use vrf_trainer::quantize::Quantize;
    let f = fixture();
    let out = f.model_dir.with_file_name("model-int8");
    let opts = ExportOptions {
        quantize: Quantize::Int8,
        force: true,
        ..ExportOptions::default()
    };
    let r = export(&f.run, &out, &opts).unwrap();
    assert_eq!(r.manifest.source["self_check_engine"], "onnxruntime");
    let rel = r
        .checks
        .iter()
        .map(|c| c.relative_err())
        .fold(0f32, f32::max);
    assert!(rel > 0.0 && rel <= 0.1, "relative self-check error {rel}");

    let proto = ModelProto::decode(&*std::fs::read(out.join(BACKBONE_FILE)).unwrap()).unwrap();
    let g = proto.graph.unwrap();
    let ops = |op: &str| g.node.iter().filter(|n| n.op_type == op).count();
    let layers = trained()
        .model
        .backbone_cfg
        .as_ref()
        .expect("a backbone run")
        .num_hidden_layers;
    // q, k, v, o, gate, up, down per layer; q/k/v and gate/up share their activation's quantizer.
    assert_eq!(ops("MatMulInteger"), 7 * layers);
    assert_eq!(ops("DynamicQuantizeLinear"), 4 * layers);
    let int8: Vec<&str> = g
        .initializer
        .iter()
        .filter(|t| t.data_type == DataType::Int8 as i32)
        .map(|t| t.name.as_str())
        .collect();
    assert_eq!(int8.len(), 7 * layers);
    assert!(int8.iter().all(|n| !n.starts_with("heads.")), "{int8:?}");
    let size = |d: &Path| std::fs::metadata(d.join(BACKBONE_FILE)).unwrap().len();
    assert!(size(&out) < size(&f.model_dir));

    let (a, b) = (runtime(&f.model_dir).unwrap(), runtime(&out).unwrap());
    let texts = [
        ("What is rust?", "A language."),
        ("Hi", "Hello there, friend. How are you today?"),
    ];
    let (fa, fb) = (a.features(&texts).unwrap(), b.features(&texts).unwrap());
    let scale = fa.rewards.iter().fold(0f32, |m, x| m.max(x.abs()));
    let diff = (&fa.rewards - &fb.rewards)
        .iter()
        .fold(0f32, |m, x| m.max(x.abs()));
    assert!(
        diff > 0.0 && diff <= 0.1 * scale,
        "rewards differ by {diff} (scale {scale})"
    );

    let strict = ExportOptions {
        int8_tolerance: 1e-7,
        ..opts
    };
    let e = export(&f.run, &out, &strict).unwrap_err().to_string();
    assert!(e.contains("self-check failed") && e.contains("int8"), "{e}");
}

/// What the `vrf` CLI reads per JSONL line (a reference triplet, a prompt with candidates),
/// mutated (`vrf_format::fixture::mutate`), then served by the exported model: `Ok` or a typed
/// error, never a panic — NUL bytes, invalid UTF-8 made lossy, empty and over-long texts included.
#[test]
fn mutated_cli_inputs_are_served_or_refused_never_panic() {
    use vrf_format::fixture::{mutate, random_mutations};
    let model = runtime(&fixture().model_dir).unwrap();
    let line = br#"{"prompt":"How do I brew tea?","chosen":"Warm the pot first. In short: patience.","rejected":"whatever"}"#;
    let long = "word ".repeat(5_000);
    let mut served = 0;
    for ops in random_mutations(5, 64) {
        let m = mutate(line.to_vec(), &ops);
        let Ok(r) = serde_json::from_str::<Reference>(&String::from_utf8_lossy(&m)) else {
            continue;
        };
        if let Ok(user) = model.posterior(std::slice::from_ref(&r)) {
            served += 1;
            let texts = [r.chosen.as_str(), r.rejected.as_str(), "", long.as_str()];
            let _ = model.score(&user, &r.prompt, &texts);
        }
    }
    // Mutations inside the strings keep the line valid: those reach the backbone.
    assert!(
        served >= 8,
        "only {served} of 64 mutated lines reached the model"
    );
}

#[test]
fn question_values_on_the_exported_model_weigh_the_observations_the_answers_would_add() {
    let f = fixture();
    let rt = runtime(&f.model_dir).unwrap();
    let id = f
        .data
        .users
        .iter()
        .find(|u| !u.is_seen())
        .unwrap()
        .id
        .clone();
    let refs = refs_of(&f.data, &id);
    assert!(refs.len() >= 3);
    let questions: Vec<Question> = refs
        .iter()
        .map(|r| Question::new(&r.prompt, &r.chosen, &r.rejected))
        .collect();
    let mut state = rt.new_state();
    let first = rt.question_values(&state, &questions).unwrap();
    assert_eq!(first.len(), questions.len());
    assert!(first
        .iter()
        .all(|v| v.information_gain.is_finite() && v.information_gain >= 0.0));
    rt.observe(&mut state, &refs[..1]).unwrap();
    let values = rt.question_values(&state, &questions).unwrap();
    // Question 1 by hand: the two posteriors its answers would give, weighted by P(a ≻ b).
    let q = &questions[1];
    let user = rt.posterior_of(&state).unwrap();
    let p = rt
        .preference_probability(&user, &q.prompt, &q.a, &q.b)
        .unwrap();
    // The posteriors include the model's population prior.
    let latent = |u: UserPosterior| vrf_format::math::Posterior::new(u.mean, u.var).unwrap();
    let now = latent(user.clone());
    let kl = |a_preferred: bool| {
        let mut s = state.clone();
        rt.observe(&mut s, &[q.answered(a_preferred)]).unwrap();
        vrf_format::math::kl_diag(&latent(rt.posterior_of(&s).unwrap()), &now).unwrap()
    };
    let want = p * kl(true) + (1.0 - p) * kl(false);
    let got = values[1].information_gain;
    assert!(
        (got - want).abs() <= 1e-3 * want.max(1e-3),
        "{got} vs {want}"
    );
    assert!((values[1].p_first - p).abs() < 1e-4);
    assert!(vrf_format::math::best_question(&values).is_some());
    assert!(rt.question_values(&state, &[]).is_err());
}
