//! What the parity test and the benchmarks share: a small synthetic benchmark, a short fit of
//! the default (staged) configuration, and the benchmarks' argument and median helpers.

use std::path::{Path, PathBuf};

use candle_core::Device;
use vrf_data::synth::{generate, SynthConfig};
use vrf_trainer::config::RunConfig;
use vrf_trainer::run::{fit_run, FitOptions};

/// Writes a small synthetic benchmark (12 seen, 6 unseen users) to `dir/data.jsonl`.
pub fn small_benchmark(dir: &Path) -> anyhow::Result<PathBuf> {
    let synth = SynthConfig {
        seen_users: 12,
        unseen_users: 6,
        train_prompts: 24,
        eval_prompts: 8,
        ref_per_user: 5,
        target_per_user: 10,
        seen_eval_per_user: 4,
        unseen_eval_per_user: 4,
        ..SynthConfig::default()
    };
    let data = dir.join("data.jsonl");
    generate(&synth)?.write(&data)?;
    Ok(data)
}

/// The default configuration, shortened to one epoch of stage 1 and two of stage 2.
pub fn short_fit() -> RunConfig {
    let mut cfg = RunConfig::default();
    cfg.train.epochs = 1;
    cfg.train.s2_epochs = 2;
    cfg.train.checkpoint_every = 0;
    cfg
}

/// Fits `cfg` on the benchmark at `data` into `root/run`, without progress output.
// Not every file that includes this module fits (write_faults drives fit_run itself).
#[allow(dead_code)]
pub fn fit_small(root: &Path, data: &Path, cfg: &RunConfig) -> anyhow::Result<PathBuf> {
    let run = root.join("run");
    fit_run(
        &run,
        cfg,
        data,
        &Device::Cpu,
        &FitOptions {
            resume: false,
            progress: false,
            external: None,
        },
    )?;
    Ok(run)
}

/// The value after `name` in `args`.
#[allow(dead_code)]
pub fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .cloned()
}

/// [`arg`] as a path; a relative one is taken from the workspace root (`cargo bench` runs in
/// the package directory).
#[allow(dead_code)]
pub fn path_arg(args: &[String], name: &str) -> Option<PathBuf> {
    arg(args, name).map(|p| {
        let p = PathBuf::from(p);
        if p.is_absolute() {
            p
        } else {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..").join(p)
        }
    })
}

/// The median of `v` (the upper one of an even count).
#[allow(dead_code)]
pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}
