//! The flags every fitting command shares (the engine's `vrf-trainer fit` and the harness's
//! `vrf-bench fit`, `ablate`, `compare`): hyperparameter overrides on top of a config file.

use std::path::PathBuf;
use std::process::ExitCode;

use candle_core::Device;
use clap::Args;

use crate::checkpoint::read_json;
use crate::config::{
    BackboneSource, BaseInit, Batching, Matmul, Method, Objective, Parallel, Pooling, Prior,
    Recompute, RunConfig, Schedule, StageOneUsers, StageTwoPool,
};
use crate::error::{Result, TrainError};
use crate::eval::format_report;
use crate::run::{device, eval_run, ExternalMethod};

/// Hyperparameter overrides; unset flags keep the config's value.
#[derive(Args)]
pub struct Overrides {
    /// CPU threads for candle.
    #[arg(long)]
    threads: Option<usize>,
    /// Epochs.
    #[arg(long)]
    epochs: Option<usize>,
    /// Peak learning rate.
    #[arg(long)]
    lr: Option<f64>,
    /// Learning-rate multiplier of encoder, bases and free user logits.
    #[arg(long)]
    latent_lr_mult: Option<f64>,
    /// Number of bases K.
    #[arg(long)]
    k: Option<usize>,
    /// Latent dimension d.
    #[arg(long)]
    d: Option<usize>,
    /// Softmax temperature τ.
    #[arg(long)]
    tau: Option<f64>,
    /// KL weight β (0 = ablation c).
    #[arg(long)]
    beta: Option<f64>,
    /// Diversity weight λ_div (0 = ablation b).
    #[arg(long)]
    lambda_div: Option<f64>,
    /// Diversity margin δ.
    #[arg(long)]
    delta: Option<f64>,
    /// va or bt (ablation a).
    #[arg(long, value_enum)]
    objective: Option<Objective>,
    /// mog or std-normal (ablation d).
    #[arg(long, value_enum)]
    prior: Option<Prior>,
    /// pog or mean (ablation e).
    #[arg(long, value_parser = parse_pooling)]
    pooling: Option<Pooling>,
    /// end-to-end or staged.
    #[arg(long, value_enum)]
    schedule: Option<Schedule>,
    /// A learned population prior in every user's posterior (cold start; PoG only).
    #[arg(long)]
    population_prior: Option<bool>,
    /// Give the encoder each reference pair's Δφ.
    #[arg(long)]
    enc_phi: Option<bool>,
    /// Remedy: KL warm-up fraction.
    #[arg(long)]
    kl_warmup: Option<f64>,
    /// Remedy: margin from the initial basis spread.
    #[arg(long)]
    delta_auto: Option<bool>,
    /// Remedy: basis-reward correlation penalty weight.
    #[arg(long)]
    lambda_phi: Option<f64>,
    /// Remedy: usage-balancing weight.
    #[arg(long)]
    lambda_bal: Option<f64>,
    /// Remedy: weight-entropy weight.
    #[arg(long)]
    lambda_ent: Option<f64>,
    /// Stage 2: weight of the term that makes σ² track the subset posterior's error.
    #[arg(long)]
    lambda_var: Option<f64>,
    /// randn or orthogonal basis means.
    #[arg(long, value_enum)]
    base_init: Option<BaseInit>,
    /// Epochs of causal-LM pretraining of the backbone on the training texts (0: none).
    #[arg(long)]
    lm_epochs: Option<usize>,
    /// Epochs of heads + free user logits on the frozen backbone after stage 1 (0: none).
    #[arg(long)]
    s1_head_epochs: Option<usize>,
    /// Stage 1 users: softmax weights, or free vectors turned into archetypes afterwards.
    #[arg(long, value_enum)]
    s1_users: Option<StageOneUsers>,
    /// Stage 1 with user vectors: L2 weight on the vectors.
    #[arg(long)]
    s1_vector_l2: Option<f64>,
    /// Stage 2 reference subsets from the reference pairs only, or from reference + target pairs.
    #[arg(long, value_enum)]
    s2_pool: Option<StageTwoPool>,
    /// Stage 2: folds of held-out seen users that choose the prior's precision.
    #[arg(long)]
    s2_calib_folds: Option<usize>,
    /// Stage-2 epochs (staged fit).
    #[arg(long)]
    s2_epochs: Option<usize>,
    /// Stage-3 epochs (staged fit).
    #[arg(long)]
    s3_epochs: Option<usize>,
    /// End-to-end batching: prompts or users.
    #[arg(long, value_enum)]
    batching: Option<Batching>,
    /// Users per step (end to end, user batching).
    #[arg(long)]
    users_per_step: Option<usize>,
    /// Prompts per step (BT and stage 1).
    #[arg(long)]
    prompts_per_step: Option<usize>,
    /// Maximum tokens per text.
    #[arg(long)]
    max_len: Option<usize>,
    /// Recompute the backbone's activations layer by layer in the backward (auto: for a
    /// Hugging Face backbone) instead of keeping them: memory for one layer, one extra forward.
    #[arg(long, value_enum)]
    recompute: Option<Recompute>,
    /// Texts per recomputed micro-batch (0: all of a step's texts at once).
    #[arg(long)]
    micro_batch: Option<usize>,
    /// How a step uses `--threads`: `ops` splits each operation, `batch` splits the step's texts
    /// (each thread runs the backbone on its share, every operation on one thread); auto:
    /// `batch`.
    #[arg(long, value_enum)]
    parallel: Option<Parallel>,
    /// LoRA rank on the backbone's attention and MLP projections, the rest of the backbone
    /// frozen (0: full fine-tuning); export merges the adapters into the graph.
    #[arg(long)]
    lora_rank: Option<usize>,
    /// LoRA scale numerator α (updates are scaled by α / rank).
    #[arg(long)]
    lora_alpha: Option<f64>,
    /// Precision of the backbone's matrix products: f32; bf16 with f32 weights, gradients and
    /// optimizer state (for CUDA's tensor cores; slower than f32 on the CPU); or tf32 (f32
    /// tensors on CUDA's TF32 tensor cores; CUDA only).
    #[arg(long, value_enum)]
    matmul: Option<Matmul>,
}

impl Overrides {
    /// Sets every given flag in `c`.
    pub fn apply(&self, c: &mut RunConfig) {
        macro_rules! set {
            ($flag:expr, $field:expr) => {
                if let Some(v) = $flag {
                    $field = v;
                }
            };
        }
        set!(self.threads, c.train.threads);
        set!(self.epochs, c.train.epochs);
        set!(self.lr, c.train.lr);
        set!(self.latent_lr_mult, c.train.latent_lr_mult);
        set!(self.k, c.model.k);
        set!(self.d, c.model.d);
        set!(self.tau, c.model.tau);
        set!(self.beta, c.loss.beta);
        set!(self.lambda_div, c.loss.lambda_div);
        set!(self.delta, c.loss.delta);
        set!(self.objective, c.loss.objective);
        set!(self.prior, c.loss.prior);
        set!(self.pooling, c.model.pooling);
        set!(self.schedule, c.train.schedule);
        set!(self.enc_phi, c.model.enc_phi);
        set!(self.population_prior, c.model.prior);
        set!(self.kl_warmup, c.loss.kl_warmup);
        set!(self.delta_auto, c.loss.delta_auto);
        set!(self.lambda_phi, c.loss.lambda_phi);
        set!(self.lambda_bal, c.loss.lambda_bal);
        set!(self.lambda_ent, c.loss.lambda_ent);
        set!(self.lambda_var, c.loss.lambda_var);
        set!(self.base_init, c.model.base_init);
        set!(self.lm_epochs, c.train.lm_epochs);
        set!(self.s1_head_epochs, c.train.s1_head_epochs);
        set!(self.s1_users, c.train.s1_users);
        set!(self.s1_vector_l2, c.train.s1_vector_l2);
        set!(self.s2_pool, c.train.s2_pool);
        set!(self.s2_calib_folds, c.train.s2_calib_folds);
        set!(self.s2_epochs, c.train.s2_epochs);
        set!(self.s3_epochs, c.train.s3_epochs);
        set!(self.batching, c.train.batching);
        set!(self.users_per_step, c.train.users_per_step);
        set!(self.prompts_per_step, c.train.prompts_per_step);
        set!(self.max_len, c.train.max_len);
        set!(self.recompute, c.train.recompute);
        set!(self.micro_batch, c.train.micro_batch);
        set!(self.parallel, c.train.parallel);
        set!(self.lora_rank, c.lora.rank);
        set!(self.lora_alpha, c.lora.alpha);
        set!(self.matmul, c.train.matmul);
    }
}

/// Where every fitting command starts: a config file, the backbone and the device (the flags
/// `vrf-trainer fit` and `vrf-bench fit`, `ablate` and `compare` share).
#[derive(Args)]
pub struct Setup {
    /// Start from this JSON config (fields as in a run's config.json); flags override it.
    #[arg(long)]
    config: Option<PathBuf>,
    /// `tiny` (from scratch) or a Hugging Face Qwen3 directory.
    #[arg(long, default_value = "tiny")]
    backbone: String,
    /// Fit on this table of frozen feature vectors (`.jsonl`, `.npy` + `.ids.jsonl`,
    /// `.parquet`; docs/features.md) instead of a backbone.
    #[arg(long, conflicts_with = "backbone")]
    features: Option<PathBuf>,
    /// cpu or cuda (cuda needs a build with `--features cuda`).
    #[arg(long, default_value = "cpu")]
    device: String,
}

impl Setup {
    /// The run configuration of `--config` (or the defaults) with the flag overrides `hp`,
    /// `method` when given and `--backbone` applied, validated.
    pub fn run_config(&self, hp: &Overrides, method: Option<Method>) -> Result<RunConfig> {
        let table = match &self.features {
            // Absolute, so that `--resume` and `eval` find it from any working directory.
            Some(f) => {
                let abs = std::fs::canonicalize(f).map_err(|e| TrainError::io(f, e))?;
                let path = abs.to_str().ok_or_else(|| {
                    TrainError::Config(format!("--features {}: not a UTF-8 path", f.display()))
                })?;
                Some(path.to_string())
            }
            None => None,
        };
        self.run_config_on(hp, method, table)
    }

    /// [`Setup::run_config`] on the feature table at `features` (the harness's own tables);
    /// without `--config`, a table brings [`RunConfig::on_features`]'s defaults, which flags
    /// override.
    pub fn run_config_on(
        &self,
        hp: &Overrides,
        method: Option<Method>,
        features: Option<String>,
    ) -> Result<RunConfig> {
        let mut cfg: RunConfig = match (&self.config, &features) {
            (Some(p), _) => read_json(p)?,
            (None, Some(path)) => RunConfig::on_features(path.clone()),
            (None, None) => RunConfig::default(),
        };
        if let Some(path) = features {
            if self.backbone != "tiny" {
                return Err(TrainError::Config(
                    "--backbone and a feature table exclude each other: a run on features has no backbone".into(),
                ));
            }
            cfg.backbone = BackboneSource::Features { path };
        }
        hp.apply(&mut cfg);
        if let Some(m) = method {
            cfg.method = m;
        }
        if self.backbone != "tiny" {
            cfg.backbone = BackboneSource::Hf {
                path: self.backbone.clone(),
            };
        }
        cfg.validate()?;
        Ok(cfg)
    }

    /// The compute device of `--device`.
    pub fn device(&self) -> Result<Device> {
        device(&self.device)
    }
}

/// `--pooling` takes the manifest's names (`pog`, `mean`).
pub fn parse_pooling(s: &str) -> Result<Pooling, String> {
    Pooling::from_name(s).ok_or_else(|| format!("unknown pooling {s:?}: expected pog or mean"))
}

/// `eval`: re-evaluate a trained run directory and rewrite its eval.json.
#[derive(Args)]
pub struct EvalArgs {
    /// Run directory (holds config.json and checkpoint/).
    #[arg(long)]
    run: PathBuf,
    /// Evaluate on this JSONL instead of the run's own data.
    #[arg(long)]
    data: Option<PathBuf>,
    /// cpu or cuda.
    #[arg(long, default_value = "cpu")]
    device: String,
    /// CPU threads.
    #[arg(long, default_value_t = 1)]
    threads: usize,
}

impl EvalArgs {
    /// Evaluates and prints the report; `external` evaluates the methods the engine does not.
    pub fn run(&self, external: Option<&dyn ExternalMethod>) -> anyhow::Result<()> {
        crate::threads::set(self.threads);
        let dev = device(&self.device)?;
        let r = eval_run(&self.run, self.data.as_deref(), &dev, external)?;
        print!("{}", format_report(&r));
        Ok(())
    }
}

/// A binary's exit: success, or the whole cause chain on one line with no backtrace noise (the
/// library's errors print their cause in their message and do not expose it again as source()).
pub fn exit_code(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
