//! The JS-facing API compiled to wasm32, run by wasm-bindgen-test in node and (with
//! `WASM_BINDGEN_USE_BROWSER=1`) in headless Chromium: parity with the native runtime's numbers
//! in `fixtures/random/parity.json`, state round trips, and the errors bad input throws.
#![cfg(target_arch = "wasm32")]

use js_sys::Error;
use vrf_format::fixture::{demo_model, synthetic_demo, Expected, Parity};
use vrf_format::manifest::{FileEntry, Manifest, FORMAT_VERSION, MANIFEST_FILE, USER_MODEL_FILE};
use vrf_wasm::{Posterior, VrfUser};
use wasm_bindgen::{JsCast, JsError, JsValue};
use wasm_bindgen_test::wasm_bindgen_test;

/// A model and the native runtime's outputs on it (written by `examples/fixture.rs`).
struct Fixture {
    name: &'static str,
    manifest: &'static str,
    model: &'static [u8],
    parity: &'static str,
}

/// A random model, and the user model of a tiny run exported by `vrf-trainer export` (the
/// export parity test's model directory, `vrf.json` and `user_model.safetensors`).
const FIXTURES: [Fixture; 2] = [
    Fixture {
        name: "random",
        manifest: include_str!("fixtures/random/vrf.json"),
        model: include_bytes!("fixtures/random/user_model.safetensors"),
        parity: include_str!("fixtures/random/parity.json"),
    },
    Fixture {
        name: "exported",
        manifest: include_str!("fixtures/exported/vrf.json"),
        model: include_bytes!("fixtures/exported/user_model.safetensors"),
        parity: include_str!("fixtures/exported/parity.json"),
    },
];
const MANIFEST: &str = FIXTURES[0].manifest;
const MODEL: &[u8] = FIXTURES[0].model;

/// Parity tolerance: the wasm numbers equal the native ones within 1e-6 (relative above 1).
const TOL: f32 = 1e-6;

fn parity_of(fx: &Fixture) -> Parity {
    serde_json::from_str(fx.parity).expect("parity.json parses")
}

fn parity() -> Parity {
    parity_of(&FIXTURES[0])
}

fn user_of(fx: &Fixture) -> VrfUser {
    VrfUser::new(fx.manifest, fx.model).unwrap_or_else(|e| panic!("{}: {}", fx.name, message(e)))
}

fn user() -> VrfUser {
    user_of(&FIXTURES[0])
}

/// The message of the JS `Error` a call threw (and that it is an `Error` at all).
fn message(e: JsError) -> String {
    let v = JsValue::from(e);
    let err: Error = v.dyn_into().expect("the API throws JS Error objects");
    String::from(err.message())
}

fn throws<T>(r: Result<T, JsError>) -> String {
    match r {
        Ok(_) => panic!("expected an error"),
        Err(e) => message(e),
    }
}

fn close(what: &str, got: &[f32], want: &[f32]) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= TOL * w.abs().max(1.0),
            "{what}[{i}]: wasm {g}, native {w}"
        );
    }
}

fn matches(what: &str, p: &Posterior, want: &Expected) {
    assert_eq!(p.count(), want.count, "{what}: count");
    close(&format!("{what} mean"), &p.mean(), &want.mean);
    close(&format!("{what} var"), &p.var(), &want.var);
    close(&format!("{what} weights"), &p.weights(), &want.weights);
    close(
        &format!("{what} uncertainty"),
        &[p.uncertainty()],
        &[want.uncertainty],
    );
}

#[wasm_bindgen_test]
fn posterior_after_each_observation_matches_native() {
    for fx in &FIXTURES {
        let p = parity_of(fx);
        let mut u = user_of(fx);
        assert_eq!(
            (u.k(), u.d(), u.hidden(), u.feature_dim()),
            (8, 32, 64, 136)
        );
        assert!(u.uses_dphi());
        for (i, (row, want)) in p.features.chunks(u.feature_dim()).zip(&p.steps).enumerate() {
            u.observe(row).unwrap();
            matches(
                &format!("{} step {i}", fx.name),
                &u.posterior().unwrap(),
                want,
            );
            close("weights()", &u.weights().unwrap(), &want.weights);
            close(
                "uncertainty()",
                &[u.uncertainty().unwrap()],
                &[want.uncertainty],
            );
        }
        assert_eq!(u.count(), p.steps.len());
    }
}

#[wasm_bindgen_test]
fn a_batch_of_pairs_equals_one_at_a_time() {
    for fx in &FIXTURES {
        let p = parity_of(fx);
        let mut u = user_of(fx);
        u.observe(&p.features).unwrap();
        matches("batch", &u.posterior().unwrap(), p.steps.last().unwrap());
    }
}

#[wasm_bindgen_test]
fn hidden_state_pairs_match_native() {
    for fx in &FIXTURES {
        let p = parity_of(fx);
        let mut u = user_of(fx);
        u.observe_hidden(
            &p.h_chosen,
            &p.h_rejected,
            Some(p.rewards_chosen.clone()),
            Some(p.rewards_rejected.clone()),
        )
        .unwrap();
        matches("hidden", &u.posterior().unwrap(), &p.hidden_posterior);
    }
}

#[wasm_bindgen_test]
fn scores_best_and_preference_match_native() {
    for fx in &FIXTURES {
        let p = parity_of(fx);
        let mut u = user_of(fx);
        u.observe(&p.features).unwrap();
        let s = u.score(&p.candidates).unwrap();
        close("scores", &s.scores(), &p.scores);
        assert_eq!(s.best(), p.best);
        let k = u.k();
        let pr = u
            .preference_probability(&p.candidates[..k], &p.candidates[k..2 * k])
            .unwrap();
        close("P(0 ≻ 1)", &[pr], &[p.preference_0_over_1]);
    }
}

#[wasm_bindgen_test]
fn the_manifest_prior_and_temperature_are_read() {
    // A manifest that promises a population prior the file does not hold: the tensor is named.
    let with_prior = MANIFEST.replace(
        "\"pooling\": \"pog\"",
        "\"pooling\": \"pog\",\n    \"prior\": true",
    );
    assert_ne!(with_prior, MANIFEST);
    let m = throws(VrfUser::new(&with_prior, MODEL));
    assert!(m.contains("prior.mean"), "{m}");
    // A calibration temperature T: P(a ≻ b) = σ(z / T), so T = 0.5 doubles the logit.
    let sharp = MANIFEST.replace("\"tau\": 1.0,", "\"tau\": 1.0,\n  \"temperature\": 0.5,");
    assert_ne!(sharp, MANIFEST);
    let p = parity();
    let (mut plain, mut hot) = (user(), VrfUser::new(&sharp, MODEL).unwrap());
    plain.observe(&p.features).unwrap();
    hot.observe(&p.features).unwrap();
    let k = plain.k();
    let (a, b) = (&p.candidates[..k], &p.candidates[k..2 * k]);
    let logit = |q: f32| (q / (1.0 - q)).ln();
    let (p1, p2) = (
        plain.preference_probability(a, b).unwrap(),
        hot.preference_probability(a, b).unwrap(),
    );
    close("logit at T = 0.5", &[logit(p2)], &[2.0 * logit(p1)]);
    // Without a prior, no answers is still an error.
    assert!(!user().has_prior());
    assert!(throws(user().posterior()).contains("reference"));
}

#[wasm_bindgen_test]
fn state_round_trips_through_json_and_reset_forgets() {
    for fx in &FIXTURES {
        let p = parity_of(fx);
        let mut u = user_of(fx);
        u.observe(&p.features).unwrap();
        let json = u.save_state();
        assert_eq!(json, p.state_json, "same serialisation as native");
        let before = u.posterior().unwrap();

        let mut v = user_of(fx);
        v.load_state(&json).unwrap();
        assert_eq!(v.count(), p.steps.len());
        let after = v.posterior().unwrap();
        assert_eq!(after.mean(), before.mean());
        assert_eq!(after.weights(), before.weights());

        v.reset();
        assert_eq!(v.count(), 0);
        assert!(throws(v.posterior()).contains("empty reference set"));
        // The restored state keeps accumulating like the original.
        u.observe(&p.features[..u.feature_dim()]).unwrap();
        v.load_state(&json).unwrap();
        v.observe(&p.features[..v.feature_dim()]).unwrap();
        assert_eq!(u.posterior().unwrap().var(), v.posterior().unwrap().var());
    }
}

#[wasm_bindgen_test]
fn bad_input_throws_errors_that_say_what_is_wrong() {
    let p = parity();
    let mut u = user();
    let f = u.feature_dim();

    let m = throws(u.observe(&p.features[..f - 1]));
    assert!(
        m.contains("features") && m.contains("135") && m.contains("136"),
        "{m}"
    );
    assert!(throws(u.observe(&[])).contains("features"));
    let mut nan = p.features[..f].to_vec();
    nan[3] = f32::NAN;
    let m = throws(u.observe(&nan));
    assert!(m.contains("non-finite") && m.contains("index 3"), "{m}");
    assert_eq!(u.count(), 0, "a refused observation changes nothing");

    assert!(throws(u.score(&p.candidates)).contains("empty reference set"));
    u.observe(&p.features[..f]).unwrap();
    let mut inf = p.candidates.clone();
    inf[1] = f32::INFINITY;
    assert!(throws(u.score(&inf)).contains("non-finite"));
    assert!(throws(u.score(&p.candidates[..7])).contains("multiple of 8"));
    assert!(
        throws(u.preference_probability(&p.candidates[..7], &p.candidates[..8])).contains("K = 8")
    );

    let h = u.hidden();
    let m = throws(u.observe_hidden(&p.h_chosen[..h], &p.h_rejected[..h], None, None));
    assert!(m.contains("basis rewards"), "{m}");
    let m = throws(u.observe_hidden(
        &p.h_chosen[..h],
        &p.h_rejected[..h],
        Some(vec![0.0; 8]),
        None,
    ));
    assert!(m.contains("both"), "{m}");

    assert!(throws(u.load_state("{")).contains("malformed state JSON"));
    let short = r#"{"pooling":"pog","count":1,"a":[1.0],"b":[0.0]}"#;
    assert!(throws(u.load_state(short)).contains("latent dimension is 32"));
    assert_eq!(u.count(), 1, "a refused state leaves the current one");
}

#[wasm_bindgen_test]
fn bad_model_files_throw() {
    // The version after this crate's: refused by name.
    let (now, next) = (FORMAT_VERSION, FORMAT_VERSION + 1);
    let future = MANIFEST.replace(
        &format!("\"format_version\": {now}"),
        &format!("\"format_version\": {next}"),
    );
    assert_ne!(future, MANIFEST);
    let m = throws(VrfUser::new(&future, MODEL));
    assert!(
        m.contains(&format!("format_version {next} is not supported")) && m.contains(MANIFEST_FILE),
        "{m}"
    );

    let mut corrupt = MODEL.to_vec();
    let last = corrupt.len() - 1;
    corrupt[last] ^= 1;
    assert!(throws(VrfUser::new(MANIFEST, &corrupt)).contains("SHA-256 mismatch"));
    assert!(throws(VrfUser::new("not json", MODEL)).contains("manifest"));
}

/// The fixture's manifest listing `bytes` as the user model (so the checksum passes and the
/// bytes' own defects are what is reported).
fn manifest_for(bytes: &[u8]) -> String {
    let mut m = Manifest::from_json(MANIFEST.as_bytes(), MANIFEST_FILE).unwrap();
    m.files.insert(USER_MODEL_FILE.into(), FileEntry::of(bytes));
    m.to_json()
}

#[wasm_bindgen_test]
fn malformed_files_read_by_the_js_json_parser_throw() {
    // The manifest: a missing field, a field of the wrong type.
    let no_tau = MANIFEST.replace("\"tau\": 1.0,", "");
    assert_ne!(no_tau, MANIFEST);
    let m = throws(VrfUser::new(&no_tau, MODEL));
    assert!(m.contains("manifest") && m.contains("`tau`"), "{m}");
    let k_text = MANIFEST.replace("\"k\": 8,", "\"k\": \"8\",");
    assert_ne!(k_text, MANIFEST);
    assert!(throws(VrfUser::new(&k_text, MODEL)).contains("`k`"));

    // The safetensors bytes: a header length past the end, a header that is not JSON, a tensor
    // that is not f32, a tensor whose data lies outside the file.
    let mut long = MODEL.to_vec();
    long[..8].copy_from_slice(&u64::MAX.to_le_bytes());
    let m = throws(VrfUser::new(&manifest_for(&long), &long));
    assert!(m.contains("header length"), "{m}");
    let mut garbled = MODEL.to_vec();
    garbled[8] = b'#';
    let m = throws(VrfUser::new(&manifest_for(&garbled), &garbled));
    assert!(m.contains(USER_MODEL_FILE) && m.contains("header"), "{m}");
    let header_len = u64::from_le_bytes(MODEL[..8].try_into().unwrap()) as usize;
    let header = std::str::from_utf8(&MODEL[8..8 + header_len]).unwrap();
    for (from, to, want) in [
        ("\"dtype\":\"F32\"", "\"dtype\":\"F16\"", "dtype F16"),
        ("[0,1024]", "[0,9999999]", "data_offsets"),
        ("[8,32]", "[8,33]", "shape [8, 33]"),
    ] {
        let edited = header.replacen(from, to, 1);
        assert_ne!(edited, header);
        let mut bytes = (edited.len() as u64).to_le_bytes().to_vec();
        bytes.extend_from_slice(edited.as_bytes());
        bytes.extend_from_slice(&MODEL[8 + header_len..]);
        let m = throws(VrfUser::new(&manifest_for(&bytes), &bytes));
        assert!(m.contains(want), "{from} → {to}: {m}");
    }
    // The unedited bytes load through the same path.
    VrfUser::new(&manifest_for(MODEL), MODEL).unwrap();

    // A saved state with a negative count or a non-numeric entry.
    let mut u = user();
    for bad in [
        r#"{"pooling":"pog","count":-1,"a":[],"b":[]}"#,
        r#"{"pooling":"pog","count":0,"a":["x"],"b":[0.0]}"#,
        r#"[1,2]"#,
    ] {
        let m = throws(u.load_state(bad));
        assert!(m.contains("malformed state JSON"), "{bad}: {m}");
    }
}

#[wasm_bindgen_test]
fn choosing_one_style_raises_its_weight_and_shrinks_uncertainty() {
    // The demo page's model and data, answered by a person who ranks the styles in the order of
    // the bases (concise first), as the page test does.
    let (manifest, bytes) = demo_model();
    let demo = synthetic_demo(&manifest, &bytes, 11).unwrap();
    let mut u = VrfUser::new(&manifest.to_json(), &bytes).unwrap();
    let mut last = f32::INFINITY;
    for q in &demo.questions {
        let style = |r: &[f32]| (0..r.len()).fold(0, |b, i| if r[i] > r[b] { i } else { b });
        let prefer_a = style(&q.a.rewards) < style(&q.b.rewards);
        u.observe(if prefer_a { &q.a_over_b } else { &q.b_over_a })
            .unwrap();
        let unc = u.uncertainty().unwrap();
        assert!(unc < last, "uncertainty {unc} after {last}");
        last = unc;
    }
    let w = u.weights().unwrap();
    let top = (0..w.len()).fold(0, |b, i| if w[i] > w[b] { i } else { b });
    assert_eq!(top, 0, "weights {w:?}");
    let flat: Vec<f32> = demo
        .candidates
        .responses
        .iter()
        .flat_map(|r| r.rewards.clone())
        .collect();
    assert_eq!(
        u.score(&flat).unwrap().best(),
        0,
        "the concise candidate ranks first"
    );
}

#[wasm_bindgen_test]
fn mutated_states_manifests_and_model_files_throw_or_load_never_trap() {
    use vrf_format::fixture::{mutate, random_mutations};
    let p = parity();
    for ops in &random_mutations(11, 150) {
        // A panic would trap the module and fail the test; errors are fine.
        let mut u = user();
        let state = mutate(p.state_json.as_bytes().to_vec(), ops);
        let _ = u.load_state(&String::from_utf8_lossy(&state));
        let manifest = mutate(MANIFEST.as_bytes().to_vec(), ops);
        let _ = VrfUser::new(&String::from_utf8_lossy(&manifest), MODEL);
        let model = mutate(MODEL.to_vec(), ops);
        if let Ok(mut v) = VrfUser::new(&manifest_for(&model), &model) {
            let _ = v.observe(&p.features[..v.feature_dim()]);
            let _ = v.posterior();
        }
    }
}

#[wasm_bindgen_test]
fn question_values_and_forgetting_match_the_runtime_math() {
    use vrf_format::UserModel;
    for fx in &FIXTURES {
        let p = parity_of(fx);
        let manifest = Manifest::from_json(fx.manifest.as_bytes(), MANIFEST_FILE).unwrap();
        let model = UserModel::from_bytes(&manifest, fx.model).unwrap();
        let mut u = user_of(fx);
        let (f, k) = (u.feature_dim(), u.k());
        let q = p.features.len() / f;
        // Questions: the parity features in order with `a` chosen, reversed with `b` chosen.
        let ab = p.features.clone();
        let ba: Vec<f32> = p.features.chunks(f).rev().flatten().copied().collect();
        let n = p.candidates.len() / k;
        let delta: Vec<f32> = (0..q)
            .flat_map(|i| {
                let (a, b) = (i % n, (i + 1) % n);
                (0..k).map(move |j| (a, b, j))
            })
            .map(|(a, b, j)| p.candidates[a * k + j] - p.candidates[b * k + j])
            .collect();
        let view = |v: &[f32], c: usize| {
            ndarray::ArrayView2::from_shape((v.len() / c, c), v)
                .unwrap()
                .to_owned()
        };
        let (ab2, ba2, d2) = (view(&ab, f), view(&ba, f), view(&delta, k));
        let mut state = model.new_state();
        for step in 0..2 {
            let got = u.question_values(&ab, &ba, &delta).unwrap();
            let want: Vec<f32> = model
                .question_values(&state, ab2.view(), ba2.view(), d2.view())
                .unwrap()
                .iter()
                .map(|v| v.information_gain)
                .collect();
            assert_eq!(got, want, "{} step {step}", fx.name);
            assert!(got.iter().all(|g| g.is_finite() && *g >= 0.0), "{got:?}");
            u.observe(&p.features[..f]).unwrap();
            model
                .observe(&mut state, ab2.slice(ndarray::s![0..1, ..]))
                .unwrap();
        }
        let before = u.posterior().unwrap().var();
        u.forget(0.5).unwrap();
        let after = u.posterior().unwrap().var();
        close(
            "var after forget(0.5)",
            &after,
            &before.iter().map(|v| v * 2.0).collect::<Vec<_>>(),
        );
        assert!(throws(u.forget(0.0)).contains("decay factor"));
        assert!(throws(u.question_values(&ab, &ba[..f], &delta)).contains("features_ba"));
    }
}
