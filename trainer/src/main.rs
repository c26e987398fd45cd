//! `vrf-trainer`: the engine's CLI. `fit` trains one run directory on a JSONL file (VRF or the
//! BT baseline), `eval` re-evaluates it, `export` writes the portable model directory,
//! `features` a feature table of a backbone's pooled states. The experiment harness (the
//! embedded benchmark, baselines, ablations, comparisons) is `vrf-bench`.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};

use vrf_trainer::cli::{Overrides, Setup};
use vrf_trainer::config::Method;
use vrf_trainer::eval::format_report;
use vrf_trainer::export::{export, ExportOptions};
use vrf_trainer::run::{fit_run, FitOptions};
use vrf_trainer::train::FitOutcome;

// candle allocates a fresh buffer for every op; glibc's malloc returns large ones to the OS
// each time (page faults dominate small models), mimalloc keeps them.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "vrf-trainer",
    version,
    about = "Train, evaluate and export VRF personalised reward models"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Fit one run directory: VRF (or BT) on a JSONL file, then evaluate it (eval.json).
    Fit(Box<FitArgs>),
    /// Export a trained VRF run to a portable model directory (ONNX backbone + heads, tokenizer,
    /// encoder and bases, cached seen users, vrf.json manifest), checked against candle.
    Export {
        /// Run directory (holds config.json and checkpoint/).
        #[arg(long)]
        run: PathBuf,
        /// Model directory to write.
        #[arg(long)]
        out: PathBuf,
        /// Replace --out if it exists.
        #[arg(long)]
        force: bool,
        /// Largest max-abs difference between candle-onnx and candle the self-check accepts.
        #[arg(long, default_value_t = 1e-4)]
        tolerance: f32,
        /// Write weights as external data, tensor by tensor, above this many MiB of weights
        /// (protobuf's limit is 2 GiB; an inline graph is built whole in memory).
        #[arg(long, default_value_t = 256)]
        external_data_mib: usize,
        /// Weight storage: `none` (f32) or `int8` (linear layers with per-column int8 weights,
        /// activations quantized at run time by ONNX Runtime; checked with ONNX Runtime).
        #[arg(long, value_enum, default_value = "none")]
        quantize: vrf_trainer::quantize::Quantize,
        /// With --quantize int8: largest self-check difference from the f32 forward, relative to
        /// each output's largest magnitude.
        #[arg(long, default_value_t = vrf_trainer::export::INT8_TOLERANCE)]
        int8_tolerance: f32,
    },
    /// Re-evaluate a trained run directory and rewrite its eval.json.
    Eval(vrf_trainer::cli::EvalArgs),
    /// Write a feature table (docs/features.md) of a backbone's pooled states: one row per
    /// unique (prompt, response) of the data, resumable, for `fit --features`.
    Features(FeaturesArgs),
}

#[derive(Args)]
struct FeaturesArgs {
    /// The JSONL whose texts get a row.
    #[arg(long)]
    data: PathBuf,
    /// A fitted run directory: its backbone, tokenizer, template and max length.
    #[arg(
        long,
        required_unless_present = "backbone",
        conflicts_with = "backbone"
    )]
    run: Option<PathBuf>,
    /// A Hugging Face Qwen3 directory (config.json, safetensors, tokenizer.json).
    #[arg(long)]
    backbone: Option<PathBuf>,
    /// With --backbone: maximum tokens per text (a run uses its own).
    #[arg(long, default_value_t = 128, conflicts_with = "run")]
    max_len: usize,
    /// Output table: `.jsonl`, `.npy` (with `.ids.jsonl` beside it) or `.parquet`; rows go to
    /// OUT.partial first, and a rerun with the same arguments continues it.
    #[arg(long)]
    out: PathBuf,
    /// Texts per backbone call.
    #[arg(long, default_value_t = 32)]
    batch: usize,
    /// CPU threads for candle.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// cpu or cuda (cuda needs a build with `--features cuda`).
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Also a row for every unique (prompt, "") — PAL-B's prompt embedding.
    #[arg(long)]
    prompts: bool,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
}

fn features(a: &FeaturesArgs) -> anyhow::Result<()> {
    use vrf_trainer::features::{compute_features, BackboneFrom, FeaturesOptions};
    vrf_trainer::threads::set(a.threads);
    let dev = vrf_trainer::run::device(&a.device)?;
    let from = match (&a.run, &a.backbone) {
        (Some(run), _) => BackboneFrom::Run(run.clone()),
        (None, Some(dir)) => BackboneFrom::Hf {
            dir: dir.clone(),
            max_len: a.max_len,
        },
        (None, None) => anyhow::bail!("give --run RUN_DIR or --backbone HF_QWEN3_DIR"),
    };
    let opts = FeaturesOptions {
        batch: a.batch,
        prompts: a.prompts,
        progress: !a.quiet,
        stop_after: None,
    };
    let r = compute_features(&a.data, &from, &a.out, &opts, &dev)
        .with_context(|| format!("features of {}", a.data.display()))?;
    if r.resumed > 0 {
        eprintln!("continued after {} rows of an earlier attempt", r.resumed);
    }
    eprintln!(
        "wrote {} rows ({} prompt rows) of {} components to {}",
        r.rows,
        r.prompt_rows,
        r.dim,
        a.out.display()
    );
    Ok(())
}

#[derive(Args)]
struct FitArgs {
    /// Training/eval JSONL (docs/METHOD.md §7).
    #[arg(long)]
    data: PathBuf,
    /// Run directory to write (config.json, checkpoint/, metrics.jsonl, eval.json, ...).
    #[arg(long)]
    out: PathBuf,
    /// vrf or bt (the comparison baselines are fitted by `vrf-bench fit --method`).
    #[arg(long, value_enum, default_value = "vrf")]
    method: Method,
    #[command(flatten)]
    setup: Setup,
    /// Training seed (default: the config's, 0).
    #[arg(long)]
    seed: Option<u64>,
    /// Continue an interrupted run in OUT from its checkpoint.
    #[arg(long)]
    resume: bool,
    /// No progress bars.
    #[arg(long)]
    quiet: bool,
    #[command(flatten)]
    hp: Overrides,
}

fn fit(a: &FitArgs) -> anyhow::Result<()> {
    let mut cfg = a.setup.run_config(&a.hp, Some(a.method))?;
    if let Some(seed) = a.seed {
        cfg.train.seed = seed;
    }
    vrf_trainer::threads::set(cfg.op_threads());
    let dev = a.setup.device()?;
    let opts = FitOptions::new(a.resume, !a.quiet);
    match fit_run(&a.out, &cfg, &a.data, &dev, &opts)
        .with_context(|| format!("fitting {}", a.out.display()))?
    {
        FitOutcome::Finished(r) => print!("{}", format_report(&r)),
        FitOutcome::Stopped(stop) => eprintln!("{stop}"),
    }
    Ok(())
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match &cli.cmd {
        Cmd::Fit(a) => fit(a),
        Cmd::Export {
            run,
            out,
            force,
            tolerance,
            external_data_mib,
            quantize,
            int8_tolerance,
        } => {
            vrf_trainer::threads::set(1);
            let opts = ExportOptions {
                force: *force,
                tolerance: *tolerance,
                external_data_threshold: external_data_mib.saturating_mul(1 << 20),
                quantize: *quantize,
                int8_tolerance: *int8_tolerance,
                ..Default::default()
            };
            let r =
                export(run, out, &opts).with_context(|| format!("exporting {}", run.display()))?;
            let vectors = r.manifest.input.features_dim().is_some();
            for c in &r.checks {
                if vectors {
                    // A model on external features: random vectors through the heads alone.
                    println!(
                        "self-check batch {:>2} of random vectors: max abs error rewards {:.2e} (relative {:.2e})",
                        c.batch, c.rewards_err, c.relative_err()
                    );
                } else {
                    println!(
                        "self-check batch {:>2} × seq {:>3}: max abs error hidden {:.2e}, rewards {:.2e} (relative {:.2e})",
                        c.batch, c.seq, c.hidden_err, c.rewards_err, c.relative_err()
                    );
                }
            }
            if r.stage != "done" {
                eprintln!(
                    "warning: the run's checkpoint is at stage {:?}, not a finished fit",
                    r.stage
                );
            }
            let engine = r
                .manifest
                .source
                .get("self_check_engine")
                .map_or("", String::as_str);
            let bound = match quantize {
                vrf_trainer::quantize::Quantize::Int8 => format!(
                    "relative {:.2e} ≤ {int8_tolerance:.0e}",
                    r.checks
                        .iter()
                        .map(|c| c.relative_err())
                        .fold(0.0, f32::max)
                ),
                vrf_trainer::quantize::Quantize::None => {
                    format!("{:.2e} ≤ {tolerance:.0e}", r.max_err())
                }
            };
            println!(
                "exported {} (K = {}, d = {}, H = {}; self-check with {engine}: {bound}) to {}",
                run.display(),
                r.manifest.k,
                r.manifest.d,
                r.manifest.hidden,
                r.out.display()
            );
            Ok(())
        }
        Cmd::Eval(a) => a.run(None),
        Cmd::Features(a) => features(a),
    }
}

fn main() -> std::process::ExitCode {
    vrf_trainer::cli::exit_code(run(Cli::parse()))
}
