//! Fault injection into every write step (`vrf_format::fsutil::fault`, as a full or read-only
//! disk would fail a create, write, fsync or rename): a failed fit resumes to exactly the result
//! of an uninterrupted one; a failed export leaves the previous model directory intact and
//! nothing partial behind; a failed summary rewrite leaves the previous summary. One test
//! function: the fault switch is process-wide.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use candle_core::Device;
use vrf_bench::experiment::{self, run_rows, Plan, Variant};
use vrf_format::fsutil::fault;
use vrf_runtime::Manifest;
use vrf_trainer::export::{export, ExportOptions};
use vrf_trainer::run::{fit_run, FitOptions};
use vrf_trainer::train::FitOutcome;

/// Every file under `dir` with its bytes.
fn snapshot(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_file() {
            out.insert(
                p.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read(&p).unwrap(),
            );
        }
    }
    out
}

/// `n` points spread over `1..=total`, first and last included.
fn points(total: usize, n: usize) -> Vec<usize> {
    let mut v: Vec<usize> = (0..n)
        .map(|i| 1 + i * (total - 1) / (n - 1).max(1))
        .collect();
    v.dedup();
    v
}

#[test]
fn every_write_step_fails_cleanly_and_recovers() {
    let tmp = tempfile::tempdir().unwrap();
    let data = common::small_benchmark(tmp.path()).unwrap();
    let mut cfg = common::short_fit();
    cfg.train.checkpoint_every = 4;
    let fit = |dir: &Path, resume: bool| {
        fit_run(
            dir,
            &cfg,
            &data,
            &Device::Cpu,
            &FitOptions {
                resume,
                progress: false,
                external: None,
            },
        )
    };

    // The uninterrupted run, counting its write steps.
    fault::fail_at(0);
    let reference = match fit(&tmp.path().join("ref"), false).unwrap() {
        FitOutcome::Finished(r) => r,
        FitOutcome::Stopped(_) => panic!("the reference run stopped"),
    };
    let total = fault::steps();
    assert!(total > 20, "only {total} write steps counted");

    // A fault at each of several steps (checkpoints mid-stage, stage ends, eval.json,
    // posteriors.json): the fit fails with the injected error, and --resume finishes it with
    // exactly the uninterrupted result.
    for k in points(total, 6) {
        let dir = tmp.path().join(format!("fault-{k}"));
        fault::fail_at(k);
        let e = match fit(&dir, false) {
            Err(e) => e.to_string(),
            Ok(_) => panic!("a fault at write step {k} of {total} went unnoticed"),
        };
        assert!(!fault::armed());
        assert!(e.contains("injected fault"), "step {k}: {e}");
        fault::fail_at(0);
        match fit(&dir, true).unwrap() {
            FitOutcome::Finished(r) => assert_eq!(r, reference, "fault at step {k}, resumed"),
            FitOutcome::Stopped(_) => panic!("resume stopped"),
        }
        assert!(!dir.join("checkpoint.tmp").exists() || dir.join("checkpoint").exists());
    }

    // Summaries: a fault at each step of rewriting summary.md / summary.json leaves the previous
    // ones intact and no temporary file beside them.
    let plan = Plan {
        out: tmp.path().join("exp"),
        data: data.clone(),
        seeds: vec![0],
        resume: true,
        verbose: false,
        shard: None,
        jobs: 1,
    };
    let FitOutcome::Finished(rows) =
        run_rows(&plan, &[Variant::new("vrf", cfg.clone())], &Device::Cpu).unwrap()
    else {
        panic!("the experiment stopped")
    };
    experiment::save(&plan, "summary", &rows).unwrap();
    let files = |dir: &Path| -> BTreeMap<String, Vec<u8>> {
        snapshot(dir)
            .into_iter()
            .filter(|(n, _)| n.starts_with("summary") || n.starts_with('.'))
            .collect()
    };
    let before = files(&plan.out);
    assert_eq!(before.len(), 2, "{:?}", before.keys());
    fault::fail_at(0);
    experiment::save(&plan, "summary", &rows).unwrap();
    let save_steps = fault::steps();
    for k in 1..=save_steps {
        fault::fail_at(k);
        let e = experiment::save(&plan, "summary", &rows)
            .unwrap_err()
            .to_string();
        fault::fail_at(0);
        assert!(e.contains("injected fault"), "step {k}: {e}");
        assert_eq!(files(&plan.out), before, "summary fault at step {k}");
    }

    // Export: a good model directory first, then a fault at each step of a forced re-export.
    let run = tmp.path().join("ref");
    let out = tmp.path().join("models").join("m");
    fault::fail_at(0);
    export(&run, &out, &ExportOptions::default()).unwrap();
    let good = snapshot(&out);
    let force = ExportOptions {
        force: true,
        ..ExportOptions::default()
    };
    fault::fail_at(0);
    export(&run, &out, &force).unwrap();
    let export_steps = fault::steps();
    assert!(export_steps > 10, "only {export_steps} export write steps");
    for k in 1..=export_steps {
        fault::fail_at(k);
        let r = export(&run, &out, &force);
        assert!(!fault::armed(), "the re-export took fewer than {k} steps");
        fault::fail_at(0);
        let e = r
            .expect_err("an injected fault must fail the export")
            .to_string();
        assert!(e.contains("injected fault"), "step {k}: {e}");
        // `out` is still the complete previous model and no scratch directory is left beside it.
        assert_eq!(
            snapshot(&out),
            good,
            "export fault at step {k} of {export_steps}"
        );
        let m = Manifest::from_json(&good["vrf.json"], "vrf.json").unwrap();
        for (name, bytes) in &good {
            if name != "vrf.json" {
                m.verify(name, bytes).unwrap();
            }
        }
        let leftovers: Vec<String> = std::fs::read_dir(out.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n != "m")
            .collect();
        assert!(leftovers.is_empty(), "step {k}: left behind {leftovers:?}");
    }
}
