//! Degenerate inputs get a clear error or a counted warning that names the user or line —
//! never a candle backtrace — both through the library and through the `vrf-trainer` binary.

use std::path::{Path, PathBuf};
use std::process::Command;

use candle_core::Device;
use vrf_data::{Dataset, Split, Triplet};
use vrf_trainer::config::RunConfig;
use vrf_trainer::run::{fit_run, FitOptions};
use vrf_trainer::train::FitOutcome;

fn row(user: &str, topic: usize, chosen: &str, rejected: &str, split: Split) -> Triplet {
    Triplet {
        user: user.into(),
        prompt: format!("What about topic {topic}?"),
        chosen: chosen.into(),
        rejected: rejected.into(),
        split,
    }
}

/// `seen` users with 2 ref + 3 target + 2 eval rows, `unseen` users with 2 ref + 2 eval rows.
fn rows(seen: usize, unseen: usize) -> Vec<Triplet> {
    let mut out = Vec::new();
    let users = (0..seen)
        .map(|u| (format!("s{u}"), true))
        .chain((0..unseen).map(|u| (format!("n{u}"), false)));
    for (i, (id, is_seen)) in users.enumerate() {
        let mut splits = vec![Split::Ref, Split::Ref];
        if is_seen {
            splits.extend([Split::Target; 3]);
        }
        splits.extend([Split::Eval, Split::Eval]);
        for (j, split) in splits.into_iter().enumerate() {
            let t = i + 3 * j;
            let good = format!("a warm sunny answer about {t}");
            let bad = format!("a cold moonlit answer about {t}");
            out.push(row(&id, t, &good, &bad, split));
        }
    }
    out
}

fn write(dir: &Path, name: &str, rows: &[Triplet]) -> PathBuf {
    let p = dir.join(name);
    vrf_data::write_jsonl(&p, rows).unwrap();
    p
}

fn tiny_cfg() -> RunConfig {
    let mut c = RunConfig::default();
    c.model.k = 2;
    c.model.d = 2;
    c.train.epochs = 1;
    c.train.max_len = 24;
    c.train.s2_epochs = 1;
    c.train.checkpoint_every = 0;
    c
}

fn fit(dir: &Path, data: &Path) -> anyhow::Result<vrf_trainer::eval::EvalReport> {
    let opts = FitOptions {
        resume: false,
        progress: false,
        external: None,
    };
    match fit_run(&dir.join("run"), &tiny_cfg(), data, &Device::Cpu, &opts)? {
        FitOutcome::Finished(r) => Ok(r),
        FitOutcome::Stopped(s) => anyhow::bail!("unexpected stop: {s}"),
    }
}

/// The message of a failed fit, with its whole cause chain.
fn fit_error(dir: &Path, data: &Path) -> String {
    match fit(dir, data) {
        Ok(_) => panic!("fit on {} should fail", data.display()),
        Err(e) => format!("{e:#}"),
    }
}

#[test]
fn no_seen_users_is_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let data = write(tmp.path(), "unseen_only.jsonl", &rows(0, 3));
    let msg = fit_error(tmp.path(), &data);
    assert!(msg.contains("no seen users"), "{msg}");
    assert!(msg.contains("unseen_only.jsonl"), "{msg}");
    assert!(!msg.contains("input_ids"), "{msg}");
}

#[test]
fn a_user_without_reference_rows_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let mut r = rows(2, 1);
    r.retain(|t| !(t.user == "s1" && t.split == Split::Ref));
    let data = write(tmp.path(), "no_ref.jsonl", &r);
    let msg = fit_error(tmp.path(), &data);
    assert!(msg.contains("s1") && msg.contains("`ref`"), "{msg}");
}

#[test]
fn identical_pairs_are_skipped_and_counted_with_their_lines() {
    let mut r = rows(2, 1);
    r[1].rejected = r[1].chosen.clone();
    r[7].rejected = r[7].chosen.clone();
    let tmp = tempfile::tempdir().unwrap();
    let data = write(tmp.path(), "ident.jsonl", &r);
    let ds = Dataset::load(&data).unwrap();
    assert_eq!(ds.triplets.len(), r.len() - 2);
    assert_eq!(ds.skipped.len(), 2);
    assert!(
        ds.skipped[0].place.ends_with("ident.jsonl: line 2"),
        "{:?}",
        ds.skipped
    );
    assert!(ds.skipped[1].place.ends_with("line 8"), "{:?}", ds.skipped);
    // Line numbers of the kept triplets still point at their own lines.
    assert_eq!(ds.lines[1], 3);
    let warnings = ds.check_trainable().unwrap();
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("skipped 2 triplet(s)") && w.contains("line 2")),
        "{warnings:?}"
    );
}

#[test]
fn all_identical_pairs_is_a_clear_error() {
    let mut r = rows(1, 1);
    for t in &mut r {
        t.rejected = t.chosen.clone();
    }
    let tmp = tempfile::tempdir().unwrap();
    let data = write(tmp.path(), "all_ident.jsonl", &r);
    let msg = fit_error(tmp.path(), &data);
    assert!(msg.contains("chosen == rejected"), "{msg}");
    assert!(msg.contains(&format!("all {} triplets", r.len())), "{msg}");
}

#[test]
fn a_text_that_tokenises_to_nothing_names_its_line_and_user() {
    let mut r = rows(2, 1);
    // With a template of placeholders only, an empty prompt + response renders to nothing.
    r[4].prompt = String::new();
    r[4].chosen = String::new();
    let tmp = tempfile::tempdir().unwrap();
    let data = write(tmp.path(), "empty.jsonl", &r);
    let mut c = tiny_cfg();
    c.template = "{prompt}{response}".into();
    let opts = FitOptions {
        resume: false,
        progress: false,
        external: None,
    };
    match fit_run(&tmp.path().join("run"), &c, &data, &Device::Cpu, &opts) {
        Ok(_) => panic!("an empty text should fail"),
        Err(e) => {
            let msg = format!("{e:#}");
            assert!(msg.contains("empty.jsonl: line 5"), "{msg}");
            assert!(msg.contains("user s0") && msg.contains("chosen"), "{msg}");
        }
    }
}

#[test]
fn no_unseen_users_is_a_warning_and_the_fit_completes() {
    let tmp = tempfile::tempdir().unwrap();
    let data = write(tmp.path(), "seen_only.jsonl", &rows(3, 0));
    let ds = Dataset::load(&data).unwrap();
    let w = ds.check_trainable().unwrap();
    assert!(w.iter().any(|w| w.contains("no unseen users")), "{w:?}");
    let r = fit(tmp.path(), &data).unwrap();
    assert!(r.seen_accuracy.is_finite());
}

fn trainer(args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_vrf-trainer"))
        .args(args)
        .env("RAYON_NUM_THREADS", "1")
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn the_binary_names_the_problem_once_without_a_backtrace() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("missing.jsonl");
    let out = tmp.path().join("out");
    let (ok, err) = trainer(&[
        "fit",
        "--data",
        missing.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(!ok);
    assert!(err.contains("missing.jsonl"), "{err}");
    assert_eq!(err.matches("os error 2").count(), 1, "{err}");
    assert!(
        !err.contains("backtrace") && !err.contains("panicked"),
        "{err}"
    );

    let data = write(tmp.path(), "unseen_only.jsonl", &rows(0, 2));
    let (ok, err) = trainer(&[
        "fit",
        "--data",
        data.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(!ok);
    assert!(
        err.contains("error: ") && err.contains("no seen users"),
        "{err}"
    );
    assert!(
        !err.contains("input_ids") && !err.contains("panicked"),
        "{err}"
    );
}

#[test]
fn a_configured_stop_is_not_an_error() {
    let tmp = tempfile::tempdir().unwrap();
    let data = write(tmp.path(), "d.jsonl", &rows(3, 1));
    let mut c = tiny_cfg();
    c.train.stop_after_steps = 2;
    let cfg = tmp.path().join("cfg.json");
    std::fs::write(&cfg, serde_json::to_vec(&c).unwrap()).unwrap();
    let out = tmp.path().join("out");
    let args = [
        "fit",
        "--data",
        data.to_str().unwrap(),
        "--config",
        cfg.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ];
    let (ok, err) = trainer(&args);
    assert!(ok, "a configured stop must exit 0: {err}");
    assert!(
        err.contains("stopped after 2 steps") && err.contains("--resume"),
        "{err}"
    );
    assert!(!err.contains("error"), "{err}");
}

#[test]
fn the_engine_refuses_a_baseline_method_before_writing_anything() {
    let tmp = tempfile::tempdir().unwrap();
    let data = write(tmp.path(), "d.jsonl", &rows(3, 1));
    let out = tmp.path().join("out");
    let (ok, err) = trainer(&[
        "fit",
        "--data",
        data.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--method",
        "lore",
    ]);
    assert!(!ok);
    assert!(
        err.contains("lore") && err.contains("vrf-bench fit --method lore"),
        "{err}"
    );
    assert!(!out.exists(), "a refused fit wrote {}", out.display());
}
