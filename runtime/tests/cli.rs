//! The `vrf` binary's error output.

use std::process::Command;

/// A missing model directory: one line naming the file, with the OS error once (not repeated
/// by the error chain).
#[cfg(unix)]
#[test]
fn missing_model_prints_the_os_error_once() {
    let out = Command::new(env!("CARGO_BIN_EXE_vrf"))
        .args(["user", "--model", "/nonexistent/vrf-model", "--seen", "u0"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("/nonexistent/vrf-model/vrf.json"), "{err}");
    assert_eq!(err.matches("os error 2").count(), 1, "{err}");
}

/// A model on external features: `vrf user`, `score`, `rank`, `features` and `pair-features`
/// take vectors and agree with the library; text lines are refused saying what the model takes.
#[test]
fn a_model_on_features_takes_vector_lines() {
    use vrf_format::fixture::{write_features_model_dir, Dims};
    use vrf_runtime::{RuntimeOptions, VectorReference, VrfModel};

    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("m");
    let dims = Dims {
        hidden: 5,
        enc_hidden: 7,
        d: 3,
        k: 4,
    };
    write_features_model_dir(&dir, dims, true, 1, 3).unwrap();
    let model = VrfModel::load(&dir, &RuntimeOptions::new().with_threads(1)).unwrap();
    let v = |s: f32| -> Vec<f32> { (0..5).map(|j| s * (j as f32 - 2.0) + 0.1).collect() };
    let refs = [
        VectorReference::new(v(1.0), v(-0.5)),
        VectorReference::new(v(0.3), v(0.7)),
    ];
    let refs_path = tmp.path().join("refs.jsonl");
    let lines: Vec<String> = refs
        .iter()
        .map(|r| serde_json::json!({"chosen": r.chosen, "rejected": r.rejected}).to_string())
        .collect();
    std::fs::write(&refs_path, lines.join("\n")).unwrap();
    let run = |args: &[&str], stdin: Option<&str>| -> std::process::Output {
        use std::io::Write;
        let mut child = Command::new(env!("CARGO_BIN_EXE_vrf"))
            .args(args)
            .arg("--model")
            .arg(&dir)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut input = child.stdin.take().unwrap();
        input.write_all(stdin.unwrap_or("").as_bytes()).unwrap();
        drop(input);
        child.wait_with_output().unwrap()
    };
    let close = |a: &[f32], b: &[f32]| {
        assert_eq!(a.len(), b.len());
        assert!(
            a.iter().zip(b).all(|(x, y)| (x - y).abs() <= 1e-6),
            "{a:?} vs {b:?}"
        );
    };
    let floats = |v: &serde_json::Value| -> Vec<f32> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap() as f32)
            .collect()
    };

    let out = run(&["user", "--refs", refs_path.to_str().unwrap()], None);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let user: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let want = model.posterior_vectors(&refs).unwrap();
    close(&floats(&user["weights"]), want.weights.as_slice().unwrap());
    let user_path = tmp.path().join("user.json");
    std::fs::write(&user_path, &out.stdout).unwrap();

    let cands = vec![v(0.2), v(-1.0), v(2.0)];
    let line = serde_json::json!({ "features": cands }).to_string();
    let out = run(
        &["score", "--user", user_path.to_str().unwrap()],
        Some(&line),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let s = model.score_vectors(&want, &cands).unwrap();
    close(&floats(&got["scores"]), s.scores.as_slice().unwrap());
    let out = run(
        &["rank", "--user", user_path.to_str().unwrap()],
        Some(&line),
    );
    let got: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(got["ranking"][0]["index"], s.best());

    let line = serde_json::json!({ "vector": v(0.5) }).to_string();
    let out = run(&["features"], Some(&line));
    let got: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let f = model.features_of_vectors(&[v(0.5)]).unwrap();
    close(
        &floats(&got["rewards"]),
        f.rewards.row(0).as_slice().unwrap(),
    );

    // Texts to this model: refused, saying what it takes.
    let text = tmp.path().join("text.jsonl");
    std::fs::write(&text, r#"{"prompt": "p", "chosen": "a", "rejected": "b"}"#).unwrap();
    let out = run(&["user", "--refs", text.to_str().unwrap()], None);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("text.jsonl:1") && err.contains("takes feature vectors of dimension 5"),
        "{err}"
    );
}
