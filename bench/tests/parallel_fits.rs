//! Fits side by side (`Plan::jobs`) give exactly what one after the other gives: the same
//! reports and bit-identical checkpoints, rows in the plan's order.

use std::path::Path;

use candle_core::Device;
use vrf_bench::experiment::{run_rows, Plan, Row, Variant};
use vrf_data::synth::{generate, SynthConfig};
use vrf_trainer::config::{Method, RunConfig};
use vrf_trainer::train::FitOutcome;

fn rows(out: &Path, data: &Path, variants: &[Variant], jobs: usize) -> Vec<Row> {
    let plan = Plan {
        out: out.to_path_buf(),
        data: data.to_path_buf(),
        seeds: vec![0, 1],
        resume: false,
        verbose: false,
        shard: None,
        jobs,
    };
    match run_rows(&plan, variants, &Device::Cpu).unwrap() {
        FitOutcome::Finished(r) => r,
        FitOutcome::Stopped(s) => panic!("stopped: {s}"),
    }
}

#[test]
fn side_by_side_fits_match_sequential_ones_bit_for_bit() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data.jsonl");
    let synth = SynthConfig {
        seen_users: 6,
        unseen_users: 4,
        train_prompts: 12,
        eval_prompts: 6,
        ref_per_user: 3,
        target_per_user: 5,
        seen_eval_per_user: 3,
        unseen_eval_per_user: 3,
        ..SynthConfig::default()
    };
    generate(&synth).unwrap().write(&data).unwrap();
    let mut cfg = RunConfig::default();
    cfg.train.epochs = 1;
    cfg.train.s2_epochs = 1;
    cfg.train.checkpoint_every = 0;
    let mut bt = cfg.clone();
    bt.method = Method::Bt;
    let variants = [Variant::new("vrf", cfg), Variant::new("bt", bt)];

    let one = rows(&tmp.path().join("one"), &data, &variants, 1);
    let three = rows(&tmp.path().join("three"), &data, &variants, 3);
    assert_eq!(one.len(), 2);
    for (a, b) in one.iter().zip(&three) {
        assert_eq!(a.name, b.name);
        // EvalReport's equality leaves out the timings.
        assert_eq!(a.runs, b.runs, "{}", a.name);
    }
    for run in ["vrf-seed0", "vrf-seed1", "bt-seed0", "bt-seed1"] {
        let ck = |root: &str| tmp.path().join(root).join(run).join("checkpoint");
        let mut files = 0;
        for e in std::fs::read_dir(ck("one")).unwrap() {
            let name = e.unwrap().file_name();
            let (a, b) = (
                std::fs::read(ck("one").join(&name)).unwrap(),
                std::fs::read(ck("three").join(&name)).unwrap(),
            );
            assert!(a == b, "{run}/{} differs", name.to_string_lossy());
            files += 1;
        }
        assert!(
            ck("one").join("model.safetensors").exists() && files >= 2,
            "{run}"
        );
    }
}
