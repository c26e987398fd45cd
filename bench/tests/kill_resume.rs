//! `kill -9` of a real `vrf-bench fit` process at several moments (during training steps,
//! checkpoint writes, stage changes, evaluation), then `--resume`: every resumed run ends with
//! exactly the uninterrupted run's evaluation and training log. Bounded: five kills of a fit of a few seconds.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use serde_json::Value;
use vrf_data::synth::{generate, SynthConfig};
use vrf_trainer::config::RunConfig;

fn fit_cmd(data: &Path, cfg: &Path, out: &Path, resume: bool) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_vrf-bench"));
    c.args(["fit", "--baseline", "none", "--quiet", "--threads", "1"])
        .arg("--data")
        .arg(data)
        .arg("--config")
        .arg(cfg)
        .arg("--out")
        .arg(out)
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    if resume {
        c.arg("--resume");
    }
    c
}

/// A small synthetic benchmark in `dir/data.jsonl` (10 seen, 5 unseen users).
fn small_data(dir: &Path) -> PathBuf {
    let synth = SynthConfig {
        seen_users: 10,
        unseen_users: 5,
        train_prompts: 20,
        eval_prompts: 6,
        ref_per_user: 4,
        target_per_user: 8,
        seen_eval_per_user: 3,
        unseen_eval_per_user: 3,
        ..SynthConfig::default()
    };
    let data = dir.join("data.jsonl");
    generate(&synth).unwrap().write(&data).unwrap();
    data
}

fn eval(out: &Path) -> Value {
    let text = std::fs::read_to_string(out.join("vrf-seed0/eval.json")).unwrap();
    let mut v: Value = serde_json::from_str(&text).unwrap();
    // Wall-clock fields differ between runs; everything else must match.
    if let Some(o) = v.as_object_mut() {
        o.retain(|k, _| k != "cost" && !k.contains("seconds") && !k.ends_with("_s"));
    }
    v
}

/// The training log without its wall-clock fields: one (stage, step, loss, …) record a line.
fn metrics(out: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(out.join("vrf-seed0/metrics.jsonl")).unwrap();
    text.lines()
        .map(|l| {
            let mut v: Value = serde_json::from_str(l).unwrap();
            if let Some(o) = v.as_object_mut() {
                o.retain(|k, _| !k.contains("elapsed") && !k.ends_with("_s"));
            }
            v
        })
        .collect()
}

#[test]
fn killed_fits_resume_to_the_uninterrupted_result() {
    let tmp = tempfile::tempdir().unwrap();
    let data = small_data(tmp.path());
    let mut cfg = RunConfig::default();
    cfg.train.epochs = 2;
    cfg.train.s2_epochs = 3;
    cfg.train.checkpoint_every = 2;
    cfg.train.max_len = 48;
    let cfg_path = tmp.path().join("config.json");
    std::fs::write(&cfg_path, serde_json::to_string(&cfg).unwrap()).unwrap();

    let reference = tmp.path().join("ref");
    let t0 = Instant::now();
    let out = fit_cmd(&data, &cfg_path, &reference, false)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let total = t0.elapsed();
    let want = eval(&reference);
    let want_log = metrics(&reference);

    for (i, frac) in [0.1, 0.3, 0.5, 0.7, 0.9].into_iter().enumerate() {
        let dir = tmp.path().join(format!("killed-{i}"));
        let mut child = fit_cmd(&data, &cfg_path, &dir, false).spawn().unwrap();
        std::thread::sleep(total.mul_f64(frac));
        // SIGKILL: no destructor, no flush, no lock release but the kernel's.
        let _ = child.kill();
        let _ = child.wait();
        let out = fit_cmd(&data, &cfg_path, &dir, true).output().unwrap();
        assert!(
            out.status.success(),
            "resume after a kill at {:.0} % failed: {}",
            frac * 100.0,
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            eval(&dir),
            want,
            "killed at {:.0} % of the run",
            frac * 100.0
        );
        assert_eq!(
            metrics(&dir),
            want_log,
            "metrics.jsonl after a kill at {:.0} %",
            frac * 100.0
        );
    }
}

/// Two `fit` processes on one `--out`: the second is refused while the first trains (the run
/// directory's lock), and the first finishes undisturbed.
#[test]
fn a_second_fit_process_on_the_same_out_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let data = small_data(tmp.path());
    let mut cfg = RunConfig::default();
    cfg.train.epochs = 3;
    cfg.train.max_len = 48;
    let cfg_path = tmp.path().join("config.json");
    std::fs::write(&cfg_path, serde_json::to_string(&cfg).unwrap()).unwrap();
    let out = tmp.path().join("out");
    let first = fit_cmd(&data, &cfg_path, &out, false).spawn().unwrap();
    // Wait until the first holds the run directory's lock (its config.json is written under it).
    let t0 = Instant::now();
    while !out.join("vrf-seed0/config.json").exists() {
        assert!(t0.elapsed().as_secs() < 60, "the first fit never started");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let second = fit_cmd(&data, &cfg_path, &out, false).output().unwrap();
    let err = String::from_utf8_lossy(&second.stderr);
    let done = first.wait_with_output().unwrap();
    assert!(
        done.status.success(),
        "{}",
        String::from_utf8_lossy(&done.stderr)
    );
    assert!(!second.status.success(), "the second fit ran too");
    assert!(err.contains("another process"), "{err}");
}
