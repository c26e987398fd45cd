//! A run directory from start to finish: tokenizer, backbone, fit, evaluation, saved results.
//!
//! Layout of `DIR`: `config.json` (the [`RunConfig`]), `run.json` (data path), `tokenizer.json`,
//! `backbone_config.json` (HF Qwen3 config; a run on external features has `features.json`
//! instead, and no tokenizer), `checkpoint/` (weights, optimiser, state),
//! `metrics.jsonl`, `eval.json`, `posteriors.json` (cached seen-user posteriors).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use candle_core::Device;
use serde::{Deserialize, Serialize};

use crate::backbone::{load_hf_dir, BackboneOptions, Qwen3Config};
use crate::checkpoint::{load_checkpoint, read_json, write_json};
use crate::config::{BackboneSource, RunConfig};
use crate::corpus::{Corpus, TextSource};
use crate::error::{Result, TrainError};
use crate::eval::{evaluate, EvalReport, UserPosterior};
use crate::lock::DirLock;
use crate::model::{ModelInput, RewardModel};
use crate::tokenize::{train_bpe, TextEncoder, TextTemplate, DEFAULT_VOCAB_SIZE};
use crate::train::{free_logit_count, FitOutcome, Trainer};
use crate::vars::SeededVarMap;
use vrf_data::{Dataset, FeatureTable};

/// Where a run's data came from; written to `DIR/run.json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RunInfo {
    /// The JSONL file the run trained and evaluates on.
    pub data: PathBuf,
}

/// A run on external features: its table; written to `DIR/features.json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct FeaturesInfo {
    /// The feature table the run reads.
    pub path: PathBuf,
    /// Feature dimension (the heads' input width).
    pub dim: usize,
    /// Rows of the table.
    pub rows: usize,
}

/// File name of [`FeaturesInfo`] in a run directory.
pub const FEATURES_FILE: &str = "features.json";

/// The cached seen-user posteriors; written to `DIR/posteriors.json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Posteriors {
    /// Number of bases.
    pub k: usize,
    /// Latent dimension.
    pub d: usize,
    /// One entry per seen user, sorted by id.
    pub users: Vec<UserPosterior>,
}

/// Picks the compute device; `cuda` needs the `cuda` feature.
pub fn device(name: &str) -> Result<Device> {
    match name {
        "cpu" => Ok(Device::Cpu),
        "cuda" => {
            #[cfg(feature = "cuda")]
            {
                Device::new_cuda(0)
                    .map_err(|e| TrainError::Other(format!("opening CUDA device 0: {e}")))
            }
            #[cfg(not(feature = "cuda"))]
            {
                Err(TrainError::Config(
                    "this vrf-trainer was built without CUDA support; rebuild with \
                     `cargo build --release -p vrf-trainer --features cuda` (needs the CUDA toolkit with nvcc) \
                     or use --device cpu"
                        .into(),
                ))
            }
        }
        other => Err(TrainError::Config(format!(
            "unknown device {other:?}: use cpu or cuda"
        ))),
    }
}

/// Everything needed to train or evaluate: data, text source, tokenised corpus, model.
pub struct Prepared {
    /// The dataset.
    pub ds: Dataset,
    /// Tokenizer + template, or the external feature table.
    pub source: TextSource,
    /// Tokenised (or looked-up) unique texts.
    pub corpus: Corpus,
    /// The model (weights from the checkpoint when one exists).
    pub model: RewardModel,
}

/// Loads (or, for a new run, creates) the tokenizer, backbone and model of run `dir`.
pub fn prepare(dir: &Path, cfg: &RunConfig, data: &Path, dev: &Device) -> Result<Prepared> {
    cfg.validate()?;
    let ds = Dataset::load(data)?;
    let template = TextTemplate::new(cfg.template.clone())?;
    let vars = SeededVarMap::new(cfg.train.seed);
    let tok_path = dir.join("tokenizer.json");
    let (encoder, backbone_cfg) = match &cfg.backbone {
        BackboneSource::Features { path } => {
            return prepare_features(dir, cfg, ds, path, template, vars, dev)
        }
        BackboneSource::Hf { path } => {
            let p = Path::new(path);
            let enc =
                TextEncoder::from_file(p.join("tokenizer.json"), template, cfg.train.max_len)?;
            let bc = load_hf_dir(p, &vars, dev)?;
            if !tok_path.exists() {
                enc.save(&tok_path)?;
            }
            (enc, bc)
        }
        BackboneSource::Tiny => {
            let enc = if tok_path.exists() {
                TextEncoder::from_file(&tok_path, template, cfg.train.max_len)?
            } else {
                // The synthetic benchmark has no pretrained tokenizer: learn a byte-level BPE on
                // the run's own texts and keep it with the run.
                let texts = ds
                    .triplets
                    .iter()
                    .flat_map(|t| [t.prompt.clone(), t.chosen.clone(), t.rejected.clone()]);
                let tok = train_bpe(texts, DEFAULT_VOCAB_SIZE)?;
                let enc = TextEncoder::new(tok, template, cfg.train.max_len)?;
                enc.save(&tok_path)?;
                enc
            };
            let bc_path = dir.join("backbone_config.json");
            let bc = if bc_path.exists() {
                read_json(&bc_path)?
            } else {
                Qwen3Config::tiny(enc.vocab_size())
            };
            (enc, bc)
        }
    };
    if backbone_cfg.vocab_size < encoder.vocab_size() {
        return Err(TrainError::Config(format!(
            "tokenizer has {} tokens but the backbone's vocab_size is {}",
            encoder.vocab_size(),
            backbone_cfg.vocab_size
        )));
    }
    write_json(&dir.join("backbone_config.json"), &backbone_cfg)?;
    let source = TextSource::Tokens(Box::new(encoder));
    let corpus = Corpus::build(&ds, &source)?;
    let input = ModelInput::Backbone(backbone_cfg);
    let model = RewardModel::new(cfg, input, vars, free_logit_count(cfg, &ds), dev)?;
    Ok(Prepared {
        ds,
        source,
        corpus,
        model,
    })
}

/// [`prepare`] for a run on external features: no backbone, no tokenizer; the heads read the
/// table's vectors.
fn prepare_features(
    dir: &Path,
    cfg: &RunConfig,
    ds: Dataset,
    path: &str,
    template: TextTemplate,
    vars: SeededVarMap,
    dev: &Device,
) -> Result<Prepared> {
    let table = Arc::new(FeatureTable::read(path)?);
    let dim = table.dim();
    // What `export` needs to rebuild the model without reading the table again.
    write_json(
        &dir.join(FEATURES_FILE),
        &FeaturesInfo {
            path: PathBuf::from(path),
            dim,
            rows: table.len(),
        },
    )?;
    let source = TextSource::Features { table, template };
    let corpus = Corpus::build(&ds, &source)?;
    let input = ModelInput::Features { dim };
    let model = RewardModel::new(cfg, input, vars, free_logit_count(cfg, &ds), dev)?;
    Ok(Prepared {
        ds,
        source,
        corpus,
        model,
    })
}

/// Options of [`fit_run`].
pub struct FitOptions<'a> {
    /// Continue from `DIR/checkpoint` if present.
    pub resume: bool,
    /// Show progress bars.
    pub progress: bool,
    /// Trains the methods the engine does not (the comparison baselines, from vrf-bench);
    /// without it such a method is refused.
    pub external: Option<&'a dyn ExternalMethod>,
}

impl FitOptions<'_> {
    /// Engine-only options: VRF and BT, no external methods.
    pub fn new(resume: bool, progress: bool) -> Self {
        Self {
            resume,
            progress,
            external: None,
        }
    }
}

/// A method trained in its own loop on the engine's prepared run (data, tokenised corpus,
/// backbone): the paper's comparison baselines live in vrf-bench and come in through this, so
/// the engine keeps one run directory format without depending on them.
pub trait ExternalMethod {
    /// Trains prepared run `dir` (continuing its checkpoint with `resume`) and evaluates it.
    fn fit(&self, dir: &Path, p: &Prepared, resume: bool, progress: bool) -> Result<EvalReport>;
    /// Re-evaluates trained run `dir`; `train_seconds` is what its earlier `eval.json` recorded.
    fn evaluate(&self, dir: &Path, p: &Prepared, train_seconds: Option<f64>) -> Result<EvalReport>;
}

/// Trains run `dir` on `data` with `cfg`, then evaluates it and writes `eval.json` and
/// `posteriors.json` (not when `train.stop_after_steps` stops it). With `resume`, the run's saved
/// config is used and training continues.
pub fn fit_run(
    dir: &Path,
    cfg: &RunConfig,
    data: &Path,
    dev: &Device,
    opts: &FitOptions,
) -> Result<FitOutcome<EvalReport>> {
    // Refused before anything is written: the engine alone trains VRF and BT.
    if cfg.method.is_baseline() && opts.external.is_none() {
        return Err(TrainError::NotEngineMethod(cfg.method.name()));
    }
    std::fs::create_dir_all(dir).map_err(|e| TrainError::io(dir, e))?;
    // Held to the end of the run: a second process on the same directory is refused.
    let _lock = DirLock::acquire(dir)?;
    let cfg_path = dir.join("config.json");
    let resume = opts.resume && dir.join("checkpoint").exists();
    let cfg = if resume {
        read_json::<RunConfig>(&cfg_path)?
    } else {
        if dir.join("checkpoint").exists() {
            return Err(TrainError::Config(format!(
                "{} already holds a run; use --resume to continue it or choose another --out",
                dir.display()
            )));
        }
        // A new run: forget metrics of an earlier, abandoned attempt.
        let _ = std::fs::remove_file(dir.join("metrics.jsonl"));
        cfg.clone()
    };
    BackboneOptions::of(&cfg)
        .check_training_device(dev)
        .map_err(TrainError::Config)?;
    write_json(&cfg_path, &cfg)?;
    write_json(
        &dir.join("run.json"),
        &RunInfo {
            data: absolute(data),
        },
    )?;
    let t0 = std::time::Instant::now();
    let mut p = prepare(dir, &cfg, data, dev)?;
    p.model.split_texts(cfg.split_threads());
    for w in p.ds.check_trainable()? {
        eprintln!("warning: {w}");
    }
    if opts.progress {
        eprintln!(
            "prepared {} in {:.1} s: {}; {} unique texts ({})",
            dir.display(),
            t0.elapsed().as_secs_f64(),
            p.ds.summary(),
            p.corpus.len(),
            match &cfg.backbone {
                BackboneSource::Features { path } =>
                    format!("{}-dimensional features from {path}", p.model.hidden_size()),
                _ => format!(
                    "{} truncated to {} tokens",
                    p.corpus.truncated, cfg.train.max_len
                ),
            }
        );
    }
    if cfg.method.is_baseline() {
        let external = opts
            .external
            .ok_or(TrainError::NotEngineMethod(cfg.method.name()))?;
        let report = external.fit(dir, &p, resume, opts.progress)?;
        return Ok(FitOutcome::Finished(report));
    }
    let ck = if resume {
        load_checkpoint(dir, dev)?
    } else {
        None
    };
    let mut trainer = Trainer::new(p.model, &p.ds, &p.corpus, dir, ck)?;
    trainer.progress = opts.progress;
    let t1 = std::time::Instant::now();
    if let FitOutcome::Stopped(stop) = trainer.fit()? {
        return Ok(FitOutcome::Stopped(stop));
    }
    let t2 = std::time::Instant::now();
    let report = finish(
        dir,
        &trainer.model,
        &p.ds,
        &p.corpus,
        Some((t2 - t1).as_secs_f64()),
    )?;
    if opts.progress {
        eprintln!(
            "trained in {:.1} s, evaluated in {:.1} s",
            (t2 - t1).as_secs_f64(),
            t2.elapsed().as_secs_f64()
        );
    }
    Ok(FitOutcome::Finished(report))
}

fn absolute(p: &Path) -> PathBuf {
    std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf())
}

/// Evaluates a trained model and writes `eval.json` and `posteriors.json`; `train_seconds` is
/// the fit's training time (on re-evaluation, the one an earlier `eval.json` recorded).
fn finish(
    dir: &Path,
    model: &RewardModel,
    ds: &Dataset,
    corpus: &Corpus,
    train_seconds: Option<f64>,
) -> Result<EvalReport> {
    let (mut report, users) = evaluate(model, ds, corpus)?;
    report.cost.train_seconds = train_seconds;
    write_json(&dir.join("eval.json"), &report)?;
    if !users.is_empty() {
        write_json(
            &dir.join("posteriors.json"),
            &Posteriors {
                k: model.cfg.model.k,
                d: model.cfg.model.d,
                users,
            },
        )?;
    }
    Ok(report)
}

/// [`prepare`] for a finished run: its model holds the checkpoint's weights. Without a checkpoint
/// the error reads "DIR: no checkpoint to {purpose}".
pub fn prepare_trained(
    dir: &Path,
    cfg: &RunConfig,
    data: &Path,
    dev: &Device,
    purpose: &str,
) -> Result<Prepared> {
    let p = prepare(dir, cfg, data, dev)?;
    let ck = load_checkpoint(dir, dev)?.ok_or_else(|| {
        TrainError::Other(format!("{}: no checkpoint to {purpose}", dir.display()))
    })?;
    for (name, t) in &ck.weights {
        p.model.vars.insert(name, t.clone())?;
    }
    Ok(p)
}

/// Re-evaluates a finished run directory (`vrf-trainer eval --run DIR`); a baseline's run needs
/// `external` (vrf-bench's).
pub fn eval_run(
    dir: &Path,
    data: Option<&Path>,
    dev: &Device,
    external: Option<&dyn ExternalMethod>,
) -> Result<EvalReport> {
    let cfg: RunConfig = read_json(&dir.join("config.json"))?;
    // After reading the config, so a mistyped --run fails on it and creates nothing.
    let _lock = DirLock::acquire(dir)?;
    let data = match data {
        Some(d) => d.to_path_buf(),
        None => read_json::<RunInfo>(&dir.join("run.json"))?.data,
    };
    let p = prepare_trained(dir, &cfg, &data, dev, "evaluate")?;
    let trained = previous_train_seconds(dir);
    if cfg.method.is_baseline() {
        let external = external.ok_or(TrainError::NotEngineMethod(cfg.method.name()))?;
        return external.evaluate(dir, &p, trained);
    }
    finish(dir, &p.model, &p.ds, &p.corpus, trained)
}

/// The training time an earlier `eval.json` of run `dir` recorded, if any.
pub fn previous_train_seconds(dir: &Path) -> Option<f64> {
    read_json::<EvalReport>(&dir.join("eval.json"))
        .ok()
        .and_then(|r| r.cost.train_seconds)
}
