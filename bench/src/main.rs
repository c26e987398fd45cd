//! `vrf-bench`: the experiment harness's CLI. `fit` with no arguments is the main job: generate
//! the embedded benchmark, fit VRF and the BT baseline, evaluate them beside the reference
//! rankers. `ablate`, `compare`, `synth`, `data`, `reference`, `features` and `eval` (baselines
//! included).

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Args, Parser, Subcommand};

use vrf_bench::compare::{CompareOutcome, ComparePlan};
use vrf_bench::experiment::{self, run_rows, Plan, Row, Variant};
use vrf_bench::reference::feature_table::{ensure_table, Source};
use vrf_bench::Baselines;
use vrf_data::synth::{generate, PairMode, SynthConfig};
use vrf_trainer::cli::{Overrides, Setup};
use vrf_trainer::config::{Method, RunConfig};
use vrf_trainer::train::FitOutcome;

// candle allocates a fresh buffer for every op; glibc's malloc returns large ones to the OS
// each time (page faults dominate small models), mimalloc keeps them.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "vrf-bench",
    version,
    about = "The VRF experiment harness: the embedded benchmark, baselines, ablations, comparisons"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Fit a model (default: VRF and the BT baseline on the embedded synthetic benchmark).
    Fit(Box<FitArgs>),
    /// Fit the ablation suite (docs/METHOD.md §3 ablations (a)–(e) and the §3b remedies) and print a table.
    Ablate(Box<FitArgs>),
    /// Compare methods on the synthetic benchmark at several α over several seeds: Table 1, the
    /// few-shot curve, accuracy by VRF's uncertainty, adaptation time, best-of-N against the true
    /// utilities, and figures (OUT/compare.md, OUT/compare.json, OUT/figures/).
    Compare(Box<CompareArgs>),
    /// Re-evaluate a trained run directory (VRF, BT or a baseline) and rewrite its eval.json.
    Eval(vrf_trainer::cli::EvalArgs),
    /// Write the synthetic PersonalLLM-style benchmark (docs/METHOD.md §6) as JSONL.
    Synth(SynthArgs),
    /// Convert a published dataset (PersonalLLM, TL;DR, PRISM) to the trainer's JSONL with the
    /// paper's protocol; prints and writes (`<stem>.stats.json`) its Table 3 statistics.
    #[command(subcommand)]
    Data(DataCmd),
    /// Fit the reference rankers (bag of words; true scorers: global, per user, MAP, oracle) on
    /// a generated benchmark and print their accuracies and the few-shot ceiling per k.
    Reference {
        /// Benchmark JSONL (with its `*.synth_meta.json` side-file).
        #[arg(long)]
        data: PathBuf,
    },
    /// Write a frozen feature table (docs/features.md) of a benchmark's texts from the reference
    /// rankers' features: the true scorers, the true scorers plus noise, or the bag of words.
    Features(FeaturesArgs),
}

/// Where `vrf-bench features` takes its vectors from.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum FeatureSource {
    /// The generator's normalised true scorers (needs the `*.synth_meta.json` side-file).
    True,
    /// The true scorers plus Gaussian noise at `--snr`.
    Noisy,
    /// The bag-of-words ranker's features, the `--max-dims` most frequent.
    Bow,
}

#[derive(Args)]
struct FeaturesArgs {
    /// Benchmark JSONL (for `true` and `noisy`, with its `*.synth_meta.json` side-file).
    #[arg(long)]
    data: PathBuf,
    /// Which vectors.
    #[arg(long, value_enum)]
    source: FeatureSource,
    /// Output table: `.jsonl`, `.npy` (with `.ids.jsonl` beside it) or `.parquet`.
    #[arg(long)]
    out: PathBuf,
    /// Signal-to-noise ratio of `noisy`: noise variance = mean per-component variance of the
    /// true vectors / SNR.
    #[arg(long)]
    snr: Option<f64>,
    /// Seed of `noisy`'s noise.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Most bag-of-words components kept (the ones in the most training texts).
    #[arg(long, default_value_t = 512)]
    max_dims: usize,
    /// Also a row for every unique (prompt, "") — PAL-B's prompt embedding (`--prompts false`
    /// leaves them out).
    #[arg(long, default_value_t = true, num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set)]
    prompts: bool,
}

/// `vrf-bench data <dataset>`.
#[derive(Subcommand)]
enum DataCmd {
    /// PersonalLLM: the `train` and `test` tables (parquet or JSON lines) → synthetic users.
    PersonalLlm {
        /// The train table.
        #[arg(long)]
        train: PathBuf,
        /// The test table (eval prompts).
        #[arg(long)]
        test: PathBuf,
        /// Output JSONL (true user weights go to `<stem>.user_weights.json`).
        #[arg(long)]
        out: PathBuf,
        /// Dirichlet concentration α (the paper: 0.1, 1, 10).
        #[arg(long, default_value_t = 0.1)]
        alpha: f64,
        /// Seed.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Seen users.
        #[arg(long, default_value_t = 1000)]
        seen_users: usize,
        /// Unseen users.
        #[arg(long, default_value_t = 1000)]
        unseen_users: usize,
    },
    /// TL;DR: OpenAI summarize_from_feedback `comparisons` (files or directories of JSON lines).
    Tldr {
        /// Comparison files or directories holding them.
        #[arg(long, required = true, num_args = 1..)]
        input: Vec<PathBuf>,
        /// Output JSONL.
        #[arg(long)]
        out: PathBuf,
        /// Seed.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Target comparisons per seen user (the paper: 50 or 100).
        #[arg(long, default_value_t = 50)]
        target: usize,
        /// Seen users (and as many unseen).
        #[arg(long, default_value_t = 20)]
        users: usize,
        /// Keep workers with at least this many comparisons.
        #[arg(long, default_value_t = 50)]
        min_comparisons: usize,
    },
    /// PRISM: `conversations.jsonl` → highest- vs lowest-scored response per turn.
    Prism {
        /// `conversations.jsonl` (or a parquet export of it).
        #[arg(long)]
        input: PathBuf,
        /// Output JSONL.
        #[arg(long)]
        out: PathBuf,
        /// Seed.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Use every conversation, not only the balanced subset.
        #[arg(long)]
        all_users: bool,
    },
}

fn data(cmd: &DataCmd) -> anyhow::Result<()> {
    use vrf_data::convert::{output, personal_llm, prism, tldr};
    let (out, triplets, report) = match cmd {
        DataCmd::PersonalLlm {
            train,
            test,
            out,
            alpha,
            seed,
            seen_users,
            unseen_users,
        } => {
            let opt = personal_llm::PersonalLlmOptions {
                alpha: *alpha,
                seed: *seed,
                seen_users: *seen_users,
                unseen_users: *unseen_users,
                ..Default::default()
            };
            let (t, r, w) = personal_llm::convert(train, test, &opt)?;
            output::write_json(&personal_llm::weights_path(out), &w)?;
            (out, t, r)
        }
        DataCmd::Tldr {
            input,
            out,
            seed,
            target,
            users,
            min_comparisons,
        } => {
            let opt = tldr::TldrOptions {
                seed: *seed,
                n_target: *target,
                seen_users: *users,
                unseen_users: *users,
                min_comparisons: *min_comparisons,
                ..Default::default()
            };
            let (t, r) = tldr::convert(input, &opt)?;
            (out, t, r)
        }
        DataCmd::Prism {
            input,
            out,
            seed,
            all_users,
        } => {
            let opt = prism::PrismOptions {
                seed: *seed,
                balanced_only: !*all_users,
                ..Default::default()
            };
            let (t, r) = prism::convert(input, &opt)?;
            (out, t, r)
        }
    };
    output::write(out, &triplets, &report)?;
    print!("{}", output::table(&report));
    eprintln!(
        "wrote {} triplets to {} (statistics in {})",
        triplets.len(),
        out.display(),
        output::stats_path(out).display()
    );
    Ok(())
}

#[derive(Args, Clone)]
struct SynthArgs {
    /// Output JSONL path.
    #[arg(long, default_value = "data/synth.jsonl")]
    out: PathBuf,
    /// Seen (training) users.
    #[arg(long, default_value_t = 200)]
    seen_users: usize,
    /// Unseen (held-out) users.
    #[arg(long, default_value_t = 200)]
    unseen_users: usize,
    /// Dirichlet concentration α of user weights (0.1 very diverse … 10 near uniform).
    #[arg(long, default_value_t = 0.1)]
    alpha: f64,
    /// Generator seed.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Prompts in the training pool (reference and target rows).
    #[arg(long, default_value_t = SynthConfig::default().train_prompts)]
    train_prompts: usize,
    /// Prompts in the eval pool (eval rows only).
    #[arg(long, default_value_t = SynthConfig::default().eval_prompts)]
    eval_prompts: usize,
    /// Pairs: best-worst (highest vs lowest of each prompt's responses) or random (two random
    /// responses of different scores, the higher chosen: a harder benchmark).
    #[arg(long, value_enum, default_value = "best-worst")]
    pairs: PairMode,
}

/// The synthetic benchmark's size and seed, shared by `fit`, `ablate` and `compare`.
#[derive(Args)]
struct BenchArgs {
    /// Synthetic data: seen users.
    #[arg(long, default_value_t = 200)]
    seen_users: usize,
    /// Synthetic data: unseen users.
    #[arg(long, default_value_t = 200)]
    unseen_users: usize,
    /// Synthetic data: generator seed.
    #[arg(long, default_value_t = 0)]
    data_seed: u64,
    /// Synthetic data: training prompts.
    #[arg(long, default_value_t = SynthConfig::default().train_prompts)]
    train_prompts: usize,
    /// Synthetic data: eval prompts.
    #[arg(long, default_value_t = SynthConfig::default().eval_prompts)]
    eval_prompts: usize,
    /// Fit on the benchmark's own features instead of a backbone: `true` (the generator's
    /// scorers), `noisy:SNR` (plus Gaussian noise) or `bow[:MAX_DIMS]`; the table is written
    /// next to each data set once (docs/features.md).
    #[arg(long, conflicts_with = "features")]
    feature_source: Option<Source>,
}

impl BenchArgs {
    /// The generator configuration at α and pair mode `pairs`.
    fn synth(&self, alpha: f64, pairs: PairMode) -> SynthConfig {
        SynthConfig {
            seen_users: self.seen_users,
            unseen_users: self.unseen_users,
            alpha,
            seed: self.data_seed,
            train_prompts: self.train_prompts,
            eval_prompts: self.eval_prompts,
            pairs,
            ..Default::default()
        }
    }
}

/// How many independent fits run at once.
#[derive(Args)]
struct Jobs {
    /// Fits run at once, each on `--threads` CPU threads (default: the machine's cores ÷
    /// `--threads`, at least 1; 1 on CUDA). Results are the same as one after the other.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    jobs: Option<u64>,
}

impl Jobs {
    /// The number for fits of `threads` threads each on `dev`.
    fn resolve(&self, threads: usize, dev: &candle_core::Device) -> usize {
        match self.jobs {
            Some(n) => usize::try_from(n).unwrap_or(usize::MAX),
            None if dev.is_cpu() => vrf_bench::parallel::default_jobs(threads),
            // One GPU: fits side by side would share it and its memory.
            None => 1,
        }
    }
}

#[derive(Args)]
struct CompareArgs {
    /// Output directory: OUT/alpha-<α>/{data.jsonl, <method>-seed<S>/}, the tables and figures.
    #[arg(long, default_value = "runs/compare")]
    out: PathBuf,
    /// Methods, comma-separated (BT is the best-of-N opponent, VRF gives the uncertainty bins).
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "vrf,bt,lore,pref,pal,vpl"
    )]
    methods: Vec<Method>,
    /// Dirichlet concentrations α of the benchmark, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "0.1,1,10")]
    alphas: Vec<f64>,
    /// Training seeds, comma-separated.
    #[arg(long, alias = "seed", value_delimiter = ',', default_value = "0,1,2")]
    seeds: Vec<u64>,
    #[command(flatten)]
    setup: Setup,
    /// Reuse finished runs and continue interrupted ones.
    #[arg(long)]
    resume: bool,
    /// Fit only share I of N of each α's (method, seed) jobs, then stop; a final call with
    /// `--resume` and no shard analyses everything.
    #[arg(long, value_parser = parse_shard)]
    shard: Option<(usize, usize)>,
    /// No progress bars.
    #[arg(long)]
    quiet: bool,
    #[command(flatten)]
    jobs: Jobs,
    /// Synthetic data: best-worst or random pairs (use another --out for each).
    #[arg(long, value_enum, default_value = "best-worst")]
    pairs: PairMode,
    #[command(flatten)]
    bench: BenchArgs,
    #[command(flatten)]
    hp: Overrides,
}

#[derive(Args)]
struct FitArgs {
    /// Training/eval JSONL (docs/METHOD.md §7); default: the synthetic benchmark, generated into OUT.
    #[arg(long)]
    data: Option<PathBuf>,
    /// Output directory (one sub-directory per method).
    #[arg(long, default_value = "runs/default")]
    out: PathBuf,
    /// Model to fit.
    #[arg(long, value_enum, default_value = "vrf")]
    method: Method,
    /// Also fit the BT baseline with the same backbone, data and budget (`none` to skip).
    #[arg(long, default_value = "bt", value_parser = ["bt", "none"])]
    baseline: String,
    #[command(flatten)]
    setup: Setup,
    /// Training seed(s), comma-separated; several give mean ± std (docs/METHOD.md §5). Default: the
    /// config's seed (0).
    #[arg(long, alias = "seed", value_delimiter = ',')]
    seeds: Option<Vec<u64>>,
    /// Continue interrupted runs in OUT (finished ones are reused).
    #[arg(long)]
    resume: bool,
    /// Run only share I of N of the (run, seed) jobs, e.g. `0/2` and `1/2` in two processes;
    /// then `--resume` without it collects the table.
    #[arg(long, value_parser = parse_shard)]
    shard: Option<(usize, usize)>,
    /// No progress bars.
    #[arg(long)]
    quiet: bool,
    #[command(flatten)]
    jobs: Jobs,
    /// Synthetic data: α of the default benchmark.
    #[arg(long, default_value_t = 0.1)]
    alpha: f64,
    #[command(flatten)]
    bench: BenchArgs,
    /// Synthetic data: best-worst or random pairs; random data and runs go to OUT/random-pairs.
    #[arg(
        long,
        value_enum,
        default_value = "best-worst",
        conflicts_with = "data"
    )]
    pairs: PairMode,
    #[command(flatten)]
    hp: Overrides,
}

fn synth(a: &SynthArgs) -> anyhow::Result<()> {
    let cfg = SynthConfig {
        seen_users: a.seen_users,
        unseen_users: a.unseen_users,
        alpha: a.alpha,
        seed: a.seed,
        train_prompts: a.train_prompts,
        eval_prompts: a.eval_prompts,
        pairs: a.pairs,
        ..Default::default()
    };
    write_synth(&cfg, &a.out)
}

/// `vrf-bench features`: one row per unique (prompt, response) of the data, and per unique
/// (prompt, "") unless `--prompts false`.
fn features(a: &FeaturesArgs) -> anyhow::Result<()> {
    use vrf_bench::reference::feature_table::{feature_table, Source};
    let source = match a.source {
        FeatureSource::True => Source::True,
        FeatureSource::Noisy => Source::Noisy {
            snr: a
                .snr
                .context("--source noisy needs --snr (signal-to-noise ratio, > 0)")?,
            seed: a.seed,
        },
        FeatureSource::Bow => Source::Bow {
            max_dims: a.max_dims,
        },
    };
    let ds = vrf_data::Dataset::load(&a.data)?;
    let meta = vrf_bench::reference::load_meta(&a.data)?;
    if meta.is_none() && !matches!(source, Source::Bow { .. }) {
        anyhow::bail!(
            "{}: no benchmark side-file {} (the true scorers come from it; `vrf-bench synth` writes both, or use --source bow)",
            a.data.display(),
            vrf_data::synth::meta_path(&a.data).display()
        );
    }
    let table = feature_table(&ds, meta.as_ref(), source, a.prompts, &a.out)
        .with_context(|| format!("features of {}", a.data.display()))?;
    table.write(&a.out)?;
    eprintln!(
        "wrote {} rows of {} components to {}",
        table.len(),
        table.dim(),
        a.out.display()
    );
    Ok(())
}

/// Generates the benchmark `cfg` into `out` (and its meta file beside it).
fn write_synth(cfg: &SynthConfig, out: &Path) -> anyhow::Result<()> {
    let s = generate(cfg)?;
    let meta = s
        .write(out)
        .with_context(|| format!("writing {}", out.display()))?;
    eprintln!(
        "wrote {} triplets to {} (true user weights in {})",
        s.triplets.len(),
        out.display(),
        meta.display()
    );
    Ok(())
}

fn base_config(a: &FitArgs) -> anyhow::Result<RunConfig> {
    match a.bench.feature_source {
        Some(source) => {
            let table = ensure_table(&data_path(a)?, source)?;
            Ok(a.setup
                .run_config_on(&a.hp, Some(a.method), Some(path_string(&table)?))?)
        }
        None => Ok(a.setup.run_config(&a.hp, Some(a.method))?),
    }
}

/// A table's path as the run configuration stores it (UTF-8).
fn path_string(p: &Path) -> anyhow::Result<String> {
    p.to_str()
        .map(str::to_string)
        .with_context(|| format!("{}: not a UTF-8 path", p.display()))
}

/// Where fit writes: OUT, or OUT/random-pairs for the random-pair benchmark, so its data and
/// runs never mix with the default benchmark's.
fn fit_out(a: &FitArgs) -> PathBuf {
    match a.pairs {
        PairMode::BestWorst => a.out.clone(),
        PairMode::Random => a.out.join("random-pairs"),
    }
}

/// The data file: `--data`, or the synthetic benchmark generated into [`fit_out`] once.
fn data_path(a: &FitArgs) -> anyhow::Result<PathBuf> {
    let out = fit_out(a);
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    match &a.data {
        Some(p) => Ok(p.clone()),
        None => {
            let p = out.join("data.jsonl");
            if !p.exists() {
                write_synth(&a.bench.synth(a.alpha, a.pairs), &p)?;
            }
            Ok(p)
        }
    }
}

fn plan(a: &FitArgs, cfg: &RunConfig, dev: &candle_core::Device) -> anyhow::Result<Plan> {
    let seeds = a.seeds.clone().unwrap_or_else(|| vec![cfg.train.seed]);
    Ok(Plan {
        jobs: a.jobs.resolve(cfg.train.threads, dev),
        out: fit_out(a),
        data: data_path(a)?,
        seeds,
        resume: a.resume || a.shard.is_some(),
        verbose: !a.quiet,
        shard: a.shard,
    })
}

fn parse_shard(s: &str) -> Result<(usize, usize), String> {
    let (i, n) = s.split_once('/').ok_or("expected I/N, e.g. 0/2")?;
    let (i, n): (usize, usize) = (
        i.parse().map_err(|_| "I must be a number")?,
        n.parse().map_err(|_| "N must be a number")?,
    );
    if n == 0 || i >= n {
        return Err(format!("need 0 ≤ I < N, got {i}/{n}"));
    }
    Ok((i, n))
}

fn fit(a: &FitArgs) -> anyhow::Result<()> {
    let cfg = base_config(a)?;
    vrf_trainer::threads::set(cfg.op_threads());
    let dev = a.setup.device()?;
    let mut configs = vec![Variant::new(a.method.name(), cfg.clone())];
    if a.baseline == "bt" && a.method != Method::Bt {
        let mut c = cfg.clone();
        c.method = Method::Bt;
        configs.push(Variant::new("bt", c));
    }
    let p = plan(a, &cfg, &dev)?;
    let Some(rows) = finished_rows(run_rows(&p, &configs, &dev)?) else {
        return Ok(());
    };
    println!("\n{}", experiment::save(&p, "summary", &rows)?);
    println!(
        "({} thread(s) per fit, {} fit(s) at a time; tables in {})",
        cfg.train.threads,
        p.jobs,
        p.out.join("summary.md").display()
    );
    Ok(())
}

/// The rows of a finished plan; for a run stopped as configured (`train.stop_after_steps`), a
/// notice instead (no evaluation, not an error).
fn finished_rows(outcome: FitOutcome<Vec<Row>>) -> Option<Vec<Row>> {
    match outcome {
        FitOutcome::Finished(rows) => Some(rows),
        FitOutcome::Stopped(stop) => {
            eprintln!("{stop}");
            None
        }
    }
}

fn ablate(a: &FitArgs) -> anyhow::Result<()> {
    let mut cfg = base_config(a)?;
    cfg.method = Method::Vrf;
    vrf_trainer::threads::set(cfg.op_threads());
    let dev = a.setup.device()?;
    let mut configs = experiment::ablations(&cfg);
    if a.baseline == "bt" {
        let mut c = cfg.clone();
        c.method = Method::Bt;
        configs.push(Variant {
            id: "bt".into(),
            label: "BT baseline".into(),
            cfg: c,
        });
    }
    let p = plan(a, &cfg, &dev)?;
    let Some(rows) = finished_rows(run_rows(&p, &configs, &dev)?) else {
        return Ok(());
    };
    println!("\n{}", experiment::save(&p, "ablation", &rows)?);
    Ok(())
}

fn compare(a: &CompareArgs) -> anyhow::Result<()> {
    let cfg = match a.bench.feature_source {
        // Each α's own table replaces the path (compare::run).
        Some(_) => a.setup.run_config_on(&a.hp, None, Some(String::new()))?,
        None => a.setup.run_config(&a.hp, None)?,
    };
    vrf_trainer::threads::set(cfg.op_threads());
    let dev = a.setup.device()?;
    let jobs = a.jobs.resolve(cfg.train.threads, &dev);
    let plan = ComparePlan {
        out: a.out.clone(),
        methods: a.methods.clone(),
        alphas: a.alphas.clone(),
        seeds: a.seeds.clone(),
        base: cfg,
        // α is set per benchmark by the plan.
        synth: a.bench.synth(SynthConfig::default().alpha, a.pairs),
        feature_source: a.bench.feature_source,
        resume: a.resume,
        shard: a.shard,
        verbose: !a.quiet,
        jobs,
    };
    match vrf_bench::compare::run(&plan, &dev)? {
        CompareOutcome::Done(r) => {
            print!("{}", vrf_bench::compare::table::markdown(&r));
            println!(
                "\n(tables in {}, figures in {})",
                a.out.join("compare.md").display(),
                a.out.join("figures").display()
            );
        }
        CompareOutcome::Sharded => eprintln!(
            "this shard's fits are done; run `vrf-bench compare --resume` with the same \
             settings and no --shard to analyse every run"
        ),
        CompareOutcome::Stopped(stop) => eprintln!("{stop}"),
    }
    Ok(())
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match &cli.cmd {
        Cmd::Synth(a) => synth(a),
        Cmd::Data(d) => data(d),
        Cmd::Reference { data } => {
            let r = vrf_bench::reference::for_data(data)?
                .with_context(|| format!("{} has no synth meta side-file", data.display()))?;
            print!("{}", r.table());
            print!(
                "\nFew-shot ceiling: per-user MAP on the true scorers (prior at {}) on the few-shot \
                 draws of k reference pairs per unseen user (k = 0: {}):\n\n{}",
                vrf_bench::reference::TRUE_GLOBAL,
                vrf_bench::reference::TRUE_GLOBAL,
                r.ceiling_table()
            );
            Ok(())
        }
        Cmd::Features(a) => features(a),
        Cmd::Fit(a) => fit(a),
        Cmd::Ablate(a) => ablate(a),
        Cmd::Compare(a) => compare(a),
        Cmd::Eval(a) => a.run(Some(&Baselines)),
    }
}

fn main() -> std::process::ExitCode {
    vrf_trainer::cli::exit_code(run(Cli::parse()))
}
