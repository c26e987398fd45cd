//! The comparison baselines (LoRe, PReF, PAL-B, VPL) end to end on a tiny hand-made dataset:
//! each fits, evaluates seen and unseen users (its unseen-user path and the few-shot curve),
//! reports its costs, overfits data it can represent, and re-evaluates from its checkpoint.
//! The data is `common::tiny_data` mixed: half the users prefer "sun" answers, half "moon"
//! answers, so only a personalised model can rank both.

use std::path::Path;

use candle_core::Device;
use vrf_trainer::config::{Method, RunConfig};
use vrf_trainer::eval::EvalReport;
use vrf_trainer::run::{eval_run, fit_run, FitOptions};
use vrf_trainer::train::FitOutcome;

#[path = "../../trainer/tests/common/mod.rs"]
mod common;
use common::tiny_data;

const METHODS: [Method; 4] = [Method::Lore, Method::Pref, Method::Pal, Method::Vpl];

/// Small shapes for seconds-long fits.
fn cfg(method: Method) -> RunConfig {
    let mut c = RunConfig {
        method,
        ..Default::default()
    };
    c.train.epochs = 2;
    c.train.max_len = 32;
    c.train.prompts_per_step = 4;
    c.train.checkpoint_every = 0;
    let b = &mut c.baseline;
    b.lore_k = 3;
    b.pref_j = 3;
    b.pal_k = 2;
    b.pal_dim = 8;
    b.vpl_latent = 4;
    b.vpl_hidden = 16;
    b.adapt_steps = 200;
    b.pref_adapt_steps = 300;
    c
}

fn fit(dir: &Path, c: &RunConfig, data: &Path) -> EvalReport {
    let opts = FitOptions {
        resume: false,
        progress: false,
        external: Some(&vrf_bench::Baselines),
    };
    match fit_run(dir, c, data, &Device::Cpu, &opts).unwrap() {
        FitOutcome::Finished(r) => r,
        FitOutcome::Stopped(s) => panic!("unexpected stop: {s}"),
    }
}

#[test]
fn each_baseline_fits_evaluates_unseen_users_and_reports_costs() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tiny_data(tmp.path(), true, false);
    for m in METHODS {
        let dir = tmp.path().join(m.name());
        let r = fit(&dir, &cfg(m), &data);
        assert_eq!(r.method, m.name());
        assert_eq!((r.seen_users, r.unseen_users), (6, 4));
        for a in [r.seen_accuracy, r.unseen_accuracy, r.overall_accuracy] {
            assert!((0.0..=1.0).contains(&a), "{}: accuracy {a}", m.name());
        }
        // Unseen users have 3 reference pairs: the curve has k = 1 and 3.
        let ks: Vec<usize> = r.few_shot.iter().map(|(k, _)| *k).collect();
        assert_eq!(ks, vec![1, 3], "{}", m.name());
        assert!(r.few_shot.iter().all(|(_, a)| (0.0..=1.0).contains(a)));
        let c = &r.cost;
        assert!(
            c.train_seconds.is_some_and(|s| s > 0.0),
            "{}: {c:?}",
            m.name()
        );
        assert!(
            c.adapt_seconds.is_some_and(|s| s >= 0.0),
            "{}: {c:?}",
            m.name()
        );
        assert!(c.adapt_seconds_per_user.is_some(), "{}: {c:?}", m.name());
        let saved: EvalReport =
            serde_json::from_str(&std::fs::read_to_string(dir.join("eval.json")).unwrap()).unwrap();
        assert_eq!(saved, r);
        // 2 epochs over the training prompts, 4 per step, one metrics line each.
        let lines = std::fs::read_to_string(dir.join("metrics.jsonl")).unwrap();
        assert!(lines.lines().count() >= 2, "{}", m.name());
    }
}

#[test]
fn each_baseline_overfits_a_tiny_dataset_it_can_represent() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tiny_data(tmp.path(), true, true);
    for m in METHODS {
        let mut c = cfg(m);
        c.train.epochs = 40;
        c.train.lr = 3e-3;
        let r = fit(&tmp.path().join(m.name()), &c, &data);
        assert!(
            r.seen_accuracy >= 0.95,
            "{}: training-set accuracy {}",
            m.name(),
            r.seen_accuracy
        );
    }
}

#[test]
fn a_baseline_run_re_evaluates_from_its_checkpoint() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tiny_data(tmp.path(), true, false);
    for m in [Method::Pal, Method::Vpl] {
        let dir = tmp.path().join(m.name());
        let r = fit(&dir, &cfg(m), &data);
        let again = eval_run(&dir, None, &Device::Cpu, Some(&vrf_bench::Baselines)).unwrap();
        assert_eq!(
            (again.seen_accuracy, again.unseen_accuracy, &again.few_shot),
            (r.seen_accuracy, r.unseen_accuracy, &r.few_shot),
            "{}",
            m.name()
        );
        assert_eq!(again.cost.train_seconds, r.cost.train_seconds);
        // --resume on a finished run evaluates it again without training.
        let opts = FitOptions {
            resume: true,
            progress: false,
            external: Some(&vrf_bench::Baselines),
        };
        let FitOutcome::Finished(resumed) =
            fit_run(&dir, &cfg(m), &data, &Device::Cpu, &opts).unwrap()
        else {
            panic!("stopped")
        };
        assert_eq!(resumed.seen_accuracy, r.seen_accuracy);
    }
}

/// PAL-B on a feature table: it needs the `(prompt, "")` rows, and says so when they are absent.
#[test]
fn pal_on_features_needs_prompt_rows() {
    use vrf_bench::reference::feature_table::{feature_table, Source};
    let tmp = tempfile::tempdir().unwrap();
    let data = tiny_data(tmp.path(), true, false);
    let ds = vrf_data::Dataset::load(&data).unwrap();
    let on = |table: &Path, dir: &str| {
        let mut c = cfg(Method::Pal);
        c.backbone = vrf_trainer::config::BackboneSource::Features {
            path: table.to_string_lossy().into_owned(),
        };
        let opts = FitOptions {
            resume: false,
            progress: false,
            external: Some(&vrf_bench::Baselines),
        };
        fit_run(&tmp.path().join(dir), &c, &data, &Device::Cpu, &opts)
    };
    let bow = Source::Bow { max_dims: 16 };
    let without = tmp.path().join("without.jsonl");
    feature_table(&ds, None, bow, false, &without)
        .unwrap()
        .write(&without)
        .unwrap();
    let Err(e) = on(&without, "without") else {
        panic!("PAL-B fitted without prompt rows");
    };
    let msg = e.to_string();
    assert!(msg.contains("PAL-B") && msg.contains("prompt"), "{msg}");
    // The missing row is named: the first prompt of the data with an empty response.
    let first = format!("prompt {:?} / response \"\"", ds.triplets[0].prompt);
    assert!(msg.contains(&first), "{msg}");
    assert!(msg.contains("without.jsonl"), "{msg}");

    let with = tmp.path().join("with.jsonl");
    feature_table(&ds, None, bow, true, &with)
        .unwrap()
        .write(&with)
        .unwrap();
    match on(&with, "with").unwrap() {
        FitOutcome::Finished(r) => assert_eq!(r.method, "pal"),
        FitOutcome::Stopped(s) => panic!("unexpected stop: {s}"),
    }
}
