//! `vrf-trainer export`: a trained run → a portable model directory (see
//! [`vrf_format::manifest`]): `backbone.onnx` (backbone + basis-reward heads, opset 17),
//! `tokenizer.json`, `user_model.safetensors` (encoder + bases), `seen_users.json` and the
//! `vrf.json` manifest with a SHA-256 of every file.
//!
//! The export checks itself: candle-onnx evaluates the graph on sample inputs of several batch
//! sizes and lengths and must match the candle forward within the tolerance.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use crate::error::{Context, Result, TrainError};
use candle_core::{DType, Device, Tensor};
use candle_onnx::onnx::ModelProto;
use prost::Message;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use vrf_format::manifest::{
    self, EncoderSpec, FileEntry, InputSpec, Manifest, OnnxSpec, SeenUser, SeenUsers, TextSpec,
    BACKBONE_FILE, MANIFEST_FILE, SEEN_USERS_FILE, TOKENIZER_FILE, USER_MODEL_FILE,
};
use vrf_format::names;
use vrf_runtime::Backbone;

use crate::checkpoint::{load_checkpoint_weights, read_json, TrainState};
use crate::config::{Method, RunConfig};
use crate::model::{onnx_names, prefix, ModelInput, RewardModel};
use crate::onnx::OPSET;
use crate::quantize::{quantize_int8, Quantize};
use crate::run::{FeaturesInfo, Posteriors, FEATURES_FILE};
use crate::tokenize::{TextEncoder, TextTemplate};
use crate::vars::SeededVarMap;
use vrf_data::write_atomic;

mod features;

/// Above this many weight bytes they go to `backbone.onnx.data`, written tensor by tensor:
/// protobuf cannot hold more than 2 GiB, and an inline graph is built whole in memory (twice:
/// the message and its encoding), which at this size would already cost 2× the model.
pub const EXTERNAL_DATA_THRESHOLD: usize = 256 << 20;
/// Default relative self-check tolerance of an int8 export (see [`ExportOptions::int8_tolerance`]):
/// a guard against a broken graph (errors near 100 %), not an accuracy promise; int8 came within
/// 2.5 % on the tiny model and 12 % on the random-weight Qwen3-0.6B shape.
pub const INT8_TOLERANCE: f32 = 0.2;
/// Name of the external-data file, when one is written.
pub const EXTERNAL_DATA_FILE: &str = "backbone.onnx.data";

/// Options of [`export`].
#[derive(Debug, Clone)]
pub struct ExportOptions {
    /// Replace an existing output directory.
    pub force: bool,
    /// Largest max-abs difference allowed between candle-onnx and the candle forward.
    pub tolerance: f32,
    /// Sample input shapes `(batch, longest length)` of the self-check.
    pub check_shapes: Vec<(usize, usize)>,
    /// Initializer bytes above which weights are written as external data.
    pub external_data_threshold: usize,
    /// Weight storage: f32, or int8 linear layers (checked with ONNX Runtime).
    pub quantize: Quantize,
    /// With int8: largest self-check difference allowed, relative to the output's largest
    /// magnitude (the f32 forward is the reference).
    pub int8_tolerance: f32,
}

impl Default for ExportOptions {
    fn default() -> Self {
        Self {
            force: false,
            tolerance: 1e-4,
            check_shapes: vec![(1, 7), (3, 19), (8, 40)],
            external_data_threshold: EXTERNAL_DATA_THRESHOLD,
            quantize: Quantize::None,
            int8_tolerance: INT8_TOLERANCE,
        }
    }
}

/// One self-check comparison.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CheckResult {
    /// Batch size.
    pub batch: usize,
    /// Padded sequence length.
    pub seq: usize,
    /// Max abs difference of `hidden`.
    pub hidden_err: f32,
    /// Max abs difference of `rewards`.
    pub rewards_err: f32,
    /// Largest `|hidden|` of the reference (scale of a relative tolerance).
    pub hidden_max: f32,
    /// Largest `|rewards|` of the reference.
    pub rewards_max: f32,
}

impl CheckResult {
    fn new(c: &Case, hidden: &[f32], rewards: &[f32]) -> Self {
        let amax = |v: &[f32]| v.iter().fold(0f32, |m, x| m.max(x.abs()));
        Self {
            batch: c.batch,
            seq: c.seq,
            hidden_err: max_abs_diff(hidden, &c.hidden),
            rewards_err: max_abs_diff(rewards, &c.rewards),
            hidden_max: amax(&c.hidden),
            rewards_max: amax(&c.rewards),
        }
    }

    /// The larger of the two outputs' errors, each relative to its reference's largest magnitude.
    pub fn relative_err(&self) -> f32 {
        let rel = |e: f32, m: f32| if m > 0.0 { e / m } else { e };
        nan_max(
            rel(self.hidden_err, self.hidden_max),
            rel(self.rewards_err, self.rewards_max),
        )
    }
}

/// What [`export`] wrote and measured.
#[derive(Debug, Clone)]
pub struct ExportReport {
    /// The model directory.
    pub out: PathBuf,
    /// The manifest written.
    pub manifest: Manifest,
    /// Self-check results, one per sample shape.
    pub checks: Vec<CheckResult>,
    /// Training stage of the exported checkpoint (`done` for a finished run).
    pub stage: String,
}

impl ExportReport {
    /// Largest self-check difference over all outputs and shapes.
    pub fn max_err(&self) -> f32 {
        worst(&self.checks, false)
    }
}

/// A trained model rebuilt from a run directory, with its text encoder and training state.
pub struct Trained {
    /// The run's configuration.
    pub cfg: RunConfig,
    /// The model with the checkpoint's weights.
    pub model: RewardModel,
    /// Tokenizer + template + max length (none for a run on external features).
    pub encoder: Option<TextEncoder>,
    /// Where training stopped.
    pub state: TrainState,
}

/// Loads a run's configuration, tokenizer, backbone shape and checkpoint weights (no data needed).
pub fn load_trained(run: &Path, dev: &Device) -> Result<Trained> {
    let cfg: RunConfig = read_json(&run.join("config.json"))?;
    let (input, encoder) = if cfg.backbone.is_features() {
        let info: FeaturesInfo = read_json(&run.join(FEATURES_FILE))?;
        (ModelInput::Features { dim: info.dim }, None)
    } else {
        let bc = read_json(&run.join("backbone_config.json"))?;
        let template = TextTemplate::new(cfg.template.clone())?;
        let enc = TextEncoder::from_file(run.join("tokenizer.json"), template, cfg.train.max_len)?;
        (ModelInput::Backbone(bc), Some(enc))
    };
    let vars = SeededVarMap::new(cfg.train.seed);
    // Each tensor is dropped once its variable holds a copy: one model's size, not two.
    let state = load_checkpoint_weights(run, dev, |name, t| {
        if name == prefix::FREE {
            return Ok(());
        }
        vars.insert(&name, t)
    })?
    .with_context(|| {
        format!(
            "{}: no checkpoint/ (train it with `vrf-trainer fit` first)",
            run.display()
        )
    })?;
    let model = RewardModel::new(&cfg, input, vars, 0, dev)?;
    Ok(Trained {
        cfg,
        model,
        encoder,
        state,
    })
}

/// The encoder and bases as `user_model.safetensors` tensors; the encoder's μ scale is folded
/// into the μ rows of its last layer so the runtime needs no extra constant.
pub fn user_model_tensors(model: &RewardModel) -> Result<HashMap<String, Tensor>> {
    let enc = model
        .encoder
        .as_ref()
        .context("a BT model has no encoder to export; export a VRF run")?;
    let bases = model.bases()?;
    let d = enc.d();
    let (w2, b2) = (
        enc.l2.weight(),
        enc.l2.bias().context("encoder.l2 has no bias")?,
    );
    let scale = enc.mu_scale();
    let fold = |t: &Tensor| -> candle_core::Result<Tensor> {
        let mu = (t.narrow(0, 0, d)? * scale)?;
        Tensor::cat(&[&mu, &t.narrow(0, d, d)?], 0)
    };
    let f32c = |t: &Tensor| t.to_dtype(DType::F32).and_then(|t| t.contiguous());
    let mut out = HashMap::new();
    out.insert(names::ENC_L1_W.to_string(), f32c(enc.l1.weight())?);
    out.insert(
        names::ENC_L1_B.to_string(),
        f32c(enc.l1.bias().context("encoder.l1 has no bias")?)?,
    );
    out.insert(names::ENC_L2_W.to_string(), f32c(&fold(w2)?)?);
    out.insert(names::ENC_L2_B.to_string(), f32c(&fold(b2)?)?);
    out.insert(names::BASES_MEANS.to_string(), f32c(&bases.means)?);
    out.insert(names::BASES_LOG_VAR.to_string(), f32c(&bases.log_var)?);
    if let Some(p0) = enc.prior() {
        out.insert(names::PRIOR_MEAN.to_string(), f32c(&p0.mean)?);
        out.insert(
            names::PRIOR_LOG_VAR.to_string(),
            f32c(&p0.bounded_log_var()?)?,
        );
    }
    Ok(out)
}

/// Right-padded random token ids `[batch, seq]` with mixed lengths (the longest is `seq`).
fn sample_inputs(
    batch: usize,
    seq: usize,
    vocab: usize,
    pad: u32,
    rng: &mut ChaCha8Rng,
) -> (Vec<u32>, Vec<usize>) {
    let lengths: Vec<usize> = (0..batch)
        .map(|b| {
            if b == 0 {
                seq
            } else {
                rng.random_range(1..=seq)
            }
        })
        .collect();
    let mut ids = vec![pad; batch * seq];
    for (b, &n) in lengths.iter().enumerate() {
        for t in 0..n {
            ids[b * seq + t] = rng.random_range(0..vocab as u32);
        }
    }
    (ids, lengths)
}

/// The larger of two errors, NaN if either is (`f32::max` would skip a NaN and pass the check).
fn nan_max(a: f32, b: f32) -> f32 {
    if a.is_nan() || b.is_nan() {
        f32::NAN
    } else {
        a.max(b)
    }
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    if a.len() != b.len() {
        return f32::NAN;
    }
    a.iter()
        .zip(b)
        .fold(0.0, |m, (x, y)| nan_max(m, (x - y).abs()))
}

/// One self-check input with the candle forward's outputs.
struct Case {
    batch: usize,
    seq: usize,
    ids: Vec<i64>,
    mask: Vec<i64>,
    hidden: Vec<f32>,
    rewards: Vec<f32>,
}

/// Sample inputs of the given shapes and the candle model's `hidden` and `rewards` for them.
fn reference_cases(model: &RewardModel, shapes: &[(usize, usize)], pad: u32) -> Result<Vec<Case>> {
    let mut rng = ChaCha8Rng::seed_from_u64(0x5e1f_c4ec);
    let bc = model
        .backbone_cfg
        .as_ref()
        .context("a model on external features has no token inputs to check")?;
    let vocab = bc.vocab_size;
    let mut out = Vec::new();
    for &(batch, seq) in shapes {
        let seq = seq.min(bc.max_position_embeddings);
        let (ids, lengths) = sample_inputs(batch, seq, vocab, pad, &mut rng);
        let ids_t = Tensor::from_vec(ids.clone(), (batch, seq), &Device::Cpu)?;
        let h = model.embed(&ids_t.to_device(&model.device)?, &lengths)?;
        let r = model.phi(&h)?;
        let flat = |t: &Tensor| -> Result<Vec<f32>> {
            Ok(t.to_device(&Device::Cpu)?
                .to_dtype(DType::F32)?
                .flatten_all()?
                .to_vec1()?)
        };
        out.push(Case {
            batch,
            seq,
            ids: ids.iter().map(|&i| i64::from(i)).collect(),
            mask: (0..batch * seq)
                .map(|i| i64::from(i % seq < lengths[i / seq]))
                .collect(),
            hidden: flat(&h)?,
            rewards: flat(&r)?,
        });
    }
    Ok(out)
}

/// Evaluates the inline graph `proto` with candle-onnx on each case.
fn check_candle_onnx(proto: &ModelProto, cases: &[Case]) -> Result<Vec<CheckResult>> {
    let mut out = Vec::new();
    for c in cases {
        let t = |v: &[i64]| Tensor::from_vec(v.to_vec(), (c.batch, c.seq), &Device::Cpu);
        let inputs = HashMap::from([
            (onnx_names::INPUT_IDS.to_string(), t(&c.ids)?),
            (onnx_names::ATTENTION_MASK.to_string(), t(&c.mask)?),
        ]);
        let got = candle_onnx::simple_eval(proto, inputs)
            .context("candle-onnx could not evaluate the exported graph")?;
        let get = |n: &str| -> Result<Vec<f32>> {
            Ok(got
                .get(n)
                .with_context(|| format!("graph has no output {n:?}"))?
                .flatten_all()?
                .to_vec1()?)
        };
        out.push(CheckResult::new(
            c,
            &get(onnx_names::HIDDEN)?,
            &get(onnx_names::REWARDS)?,
        ));
    }
    Ok(out)
}

/// Runs the written graph `path` with ONNX Runtime (CPU, the runtime's own session) on each case.
fn check_onnx_runtime(
    path: &Path,
    spec: &OnnxSpec,
    h: usize,
    k: usize,
    cases: &[Case],
) -> Result<Vec<CheckResult>> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let session = vrf_runtime::OnnxBackbone::open(
        path,
        spec,
        h,
        k,
        threads,
        vrf_runtime::ExecutionProvider::Cpu,
        None,
    )
    .map_err(|e| {
        TrainError::Other(format!(
            "the self-check of an external-data or int8 export runs ONNX Runtime: {e}"
        ))
    })?;
    let mut out = Vec::new();
    for c in cases {
        let got = session
            .run(c.ids.clone(), c.mask.clone(), c.batch, c.seq)
            .map_err(|e| TrainError::Other(format!("self-check with ONNX Runtime: {e}")))?;
        let flat = |a: &ndarray::Array2<f32>| a.iter().copied().collect::<Vec<f32>>();
        out.push(CheckResult::new(c, &flat(&got.hidden), &flat(&got.rewards)));
    }
    Ok(out)
}

/// The largest error over `checks` (absolute, or relative to each output's scale); NaN if any is.
fn worst(checks: &[CheckResult], relative: bool) -> f32 {
    checks.iter().fold(0.0, |m, c| {
        let e = if relative {
            c.relative_err()
        } else {
            nan_max(c.hidden_err, c.rewards_err)
        };
        nan_max(m, e)
    })
}

fn check_passes(
    checks: &[CheckResult],
    tolerance: f32,
    relative: bool,
    engine: &str,
) -> Result<f32> {
    let err = worst(checks, relative);
    if err.is_nan() || err > tolerance {
        let kind = if relative {
            "relative to the output's scale"
        } else {
            "max abs"
        };
        return Err(TrainError::Other(format!(
            "export self-check failed: {engine} differs from the candle forward by {err:.3e} ({kind}), above {tolerance:.0e}; per shape: {checks:?}"
        )));
    }
    Ok(err)
}

/// Exports run `run` to `out` (see the module docs); the directory appears whole or not at all.
pub fn export(run: &Path, out: &Path, opts: &ExportOptions) -> Result<ExportReport> {
    let dev = Device::Cpu;
    let t = load_trained(run, &dev)?;
    if t.cfg.method != Method::Vrf {
        return Err(TrainError::Other(format!(
            "{}: a {:?} run has no encoder or bases; export a VRF run",
            run.display(),
            t.cfg.method
        )));
    }
    if out.exists() && !opts.force {
        return Err(TrainError::Other(format!(
            "{} already exists; pass --force to replace it",
            out.display()
        )));
    }
    let Trained {
        cfg,
        model,
        encoder,
        state,
    } = t;
    let Some(encoder) = encoder else {
        return features::export(run, out, opts, &cfg, model, state);
    };
    let h = model.hidden_size();
    let (k, d) = (model.heads.k(), cfg.model.d);
    let spec = OnnxSpec {
        file: BACKBONE_FILE.into(),
        opset: OPSET,
        input_ids: onnx_names::INPUT_IDS.into(),
        attention_mask: onnx_names::ATTENTION_MASK.into(),
        hidden: onnx_names::HIDDEN.into(),
        rewards: onnx_names::REWARDS.into(),
        external_data: None,
    };

    let mut graph = model.onnx_model().context("building the ONNX graph")?;
    let int8 = opts.quantize == Quantize::Int8;
    if int8 {
        let n = quantize_int8(&mut graph)?;
        if n == 0 {
            return Err(TrainError::Other(
                "--quantize int8: the graph has no linear layer to quantize".into(),
            ));
        }
    }
    let external = graph.weight_bytes() > opts.external_data_threshold;
    let cases = reference_cases(&model, &opts.check_shapes, encoder.pad_id)?;
    // A small graph is checked inline with candle-onnx before anything is written; a large one
    // (inlining would copy every weight) is checked with ONNX Runtime once written.
    let mut checked = None;
    let mut inline_proto = None;
    if !external {
        let proto = graph.to_proto()?;
        // candle-onnx has no integer kernels: int8 graphs are checked with ONNX Runtime.
        if !int8 {
            let checks = check_candle_onnx(&proto, &cases)?;
            let err = check_passes(&checks, opts.tolerance, false, "candle-onnx")?;
            checked = Some((checks, err));
        }
        inline_proto = Some(proto);
    }

    let scratch = Scratch::new(out)?;
    let tmp = scratch.dir().to_path_buf();
    let mut files = BTreeMap::new();
    let put = |files: &mut BTreeMap<String, FileEntry>, name: &str, bytes: &[u8]| {
        scratch.put(files, name, bytes)
    };

    let mut external_data = None;
    let proto = match inline_proto {
        Some(proto) => proto,
        None => {
            let data_path = tmp.join(EXTERNAL_DATA_FILE);
            let proto = graph.write_external(&data_path, EXTERNAL_DATA_FILE)?;
            // Hashed from disk: what the manifest vouches for is what was written.
            let entry = std::fs::File::open(&data_path)
                .and_then(FileEntry::of_reader)
                .map_err(|e| TrainError::io(&data_path, e))?;
            files.insert(EXTERNAL_DATA_FILE.to_string(), entry);
            external_data = Some(EXTERNAL_DATA_FILE.to_string());
            proto
        }
    };
    put(&mut files, BACKBONE_FILE, &proto.encode_to_vec())?;
    drop(proto);
    drop(graph);
    let tok = std::fs::read(run.join("tokenizer.json"))
        .with_context(|| format!("reading {}", run.join("tokenizer.json").display()))?;
    put(&mut files, TOKENIZER_FILE, &tok)?;

    put(
        &mut files,
        USER_MODEL_FILE,
        &safetensors_bytes(&user_model_tensors(&model)?)?,
    )?;
    put(
        &mut files,
        SEEN_USERS_FILE,
        seen_users(run)?.to_json().as_bytes(),
    )?;

    let (checks, report_err, engine) = match checked {
        Some((checks, err)) => (checks, err, "candle-onnx"),
        None => {
            // The candle model goes first, so the check holds one copy of the weights (ORT's).
            drop(model);
            crate::memory::release_freed();
            let spec = OnnxSpec {
                external_data: external_data.clone(),
                ..spec.clone()
            };
            let checks = check_onnx_runtime(&tmp.join(BACKBONE_FILE), &spec, h, k, &cases)?;
            let err = if int8 {
                check_passes(&checks, opts.int8_tolerance, true, "ONNX Runtime (int8)")?
            } else {
                check_passes(&checks, opts.tolerance, false, "ONNX Runtime")?
            };
            (checks, err, "onnxruntime")
        }
    };

    let manifest = Manifest {
        format: manifest::FORMAT.into(),
        format_version: manifest::FORMAT_VERSION,
        k,
        d,
        hidden: h,
        tau: cfg.model.tau as f32,
        temperature: calibration_temperature(run),
        input: InputSpec::Text,
        encoder: encoder_spec(&cfg, h, k),
        text: Some(TextSpec {
            template: encoder.template.as_str().to_string(),
            max_len: encoder.max_len,
            pad_id: encoder.pad_id,
            truncation: "left".into(),
            padding: "right".into(),
        }),
        onnx: Some(OnnxSpec {
            external_data,
            ..spec
        }),
        files,
        source: provenance(
            run,
            &state,
            [
                (
                    // int8 is checked relative to each output's scale, f32 in absolute terms.
                    if int8 {
                        "self_check_max_rel_err"
                    } else {
                        "self_check_max_abs_err"
                    }
                    .to_string(),
                    format!("{report_err:.3e}"),
                ),
                ("self_check_engine".to_string(), engine.to_string()),
                (
                    "weights".to_string(),
                    if int8 {
                        "int8 linear layers (per-column scales), f32 rest"
                    } else {
                        "f32"
                    }
                    .to_string(),
                ),
            ],
        ),
    };
    scratch.finish(&manifest)?;
    Ok(ExportReport {
        out: out.to_path_buf(),
        manifest,
        checks,
        stage: state.stage,
    })
}

/// A model directory under construction: a sibling temporary directory, removed unless
/// [`Scratch::finish`] renames it into place (the directory appears whole or not at all).
struct Scratch {
    out: PathBuf,
    guard: vrf_format::fsutil::RemoveOnDrop,
}

impl Scratch {
    /// Creates `.NAME.tmp-PID` next to `out`.
    fn new(out: &Path) -> Result<Self> {
        let parent = out
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
        let leaf = out
            .file_name()
            .context("--out must name a directory")?
            .to_string_lossy()
            .to_string();
        let tmp = parent.join(format!(".{leaf}.tmp-{}", std::process::id()));
        if tmp.exists() {
            std::fs::remove_dir_all(&tmp).map_err(|e| TrainError::io(&tmp, e))?;
        }
        std::fs::create_dir_all(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
        Ok(Self {
            out: out.to_path_buf(),
            guard: vrf_format::fsutil::RemoveOnDrop(tmp),
        })
    }

    /// The temporary directory.
    fn dir(&self) -> &Path {
        &self.guard.0
    }

    /// Writes file `name` and records its digest in `files`.
    fn put(&self, files: &mut BTreeMap<String, FileEntry>, name: &str, bytes: &[u8]) -> Result<()> {
        let path = self.dir().join(name);
        write_atomic(&path, bytes).with_context(|| format!("writing {}", path.display()))?;
        files.insert(name.to_string(), FileEntry::of(bytes));
        Ok(())
    }

    /// Validates and writes the manifest, then moves the directory to its place.
    fn finish(self, manifest: &Manifest) -> Result<()> {
        manifest.validate(MANIFEST_FILE)?;
        let path = self.dir().join(MANIFEST_FILE);
        write_atomic(&path, manifest.to_json().as_bytes()).map_err(|e| TrainError::io(&path, e))?;
        vrf_format::fsutil::replace_dir(self.dir(), &self.out)
            .with_context(|| format!("moving {} to {}", self.dir().display(), self.out.display()))
    }
}

/// `tensors` serialised as f32 safetensors.
fn safetensors_bytes(tensors: &HashMap<String, Tensor>) -> Result<Vec<u8>> {
    let views: Vec<(String, Vec<usize>, Vec<u8>)> = tensors
        .iter()
        .map(|(n, t)| -> Result<_> {
            let v = t.flatten_all()?.to_vec1::<f32>()?;
            Ok((
                n.clone(),
                t.dims().to_vec(),
                v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            ))
        })
        .collect::<Result<_>>()?;
    let mut named = Vec::with_capacity(views.len());
    for (n, shape, bytes) in &views {
        let view =
            safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape.clone(), bytes)
                .with_context(|| format!("tensor {n}: shape and bytes disagree"))?;
        named.push((n.clone(), view));
    }
    safetensors::serialize(named, None).context("serialising user_model.safetensors")
}

/// The run's cached seen-user posteriors (none, with a warning, when it was never evaluated).
fn seen_users(run: &Path) -> Result<SeenUsers> {
    let post_path = run.join("posteriors.json");
    if !post_path.exists() {
        eprintln!(
            "warning: {} is missing (run not evaluated); exporting no seen users",
            post_path.display()
        );
        return Ok(SeenUsers::default());
    }
    let p: Posteriors = read_json(&post_path)?;
    Ok(SeenUsers {
        users: p
            .users
            .into_iter()
            .map(|u| SeenUser {
                id: u.id,
                mean: u.mean,
                var: u.var,
            })
            .collect(),
    })
}

/// The calibration temperature the run's evaluation fitted on its seen users (1 for none).
fn calibration_temperature(run: &Path) -> f32 {
    read_json::<crate::eval::EvalReport>(&run.join("eval.json"))
        .ok()
        .and_then(|r| r.uncertainty)
        .map_or(1.0, |u| u.temperature)
}

/// The encoder's conventions for heads of width `h` and `k` bases.
fn encoder_spec(cfg: &RunConfig, h: usize, k: usize) -> EncoderSpec {
    EncoderSpec {
        input_dim: 2 * h + if cfg.model.enc_phi { k } else { 0 },
        hidden_dim: h,
        dphi: cfg.model.enc_phi,
        pooling: cfg.model.pooling,
        prior: cfg.model.prior,
    }
}

/// The manifest's `source`: producer, run, stage and step, then `extra`.
fn provenance<const N: usize>(
    run: &Path,
    state: &TrainState,
    extra: [(String, String); N],
) -> BTreeMap<String, String> {
    let mut m = BTreeMap::from([
        (
            "producer".to_string(),
            format!("vrf-trainer {}", env!("CARGO_PKG_VERSION")),
        ),
        ("run".to_string(), run.display().to_string()),
        ("stage".to_string(), state.stage.clone()),
        ("global_step".to_string(), state.global_step.to_string()),
    ]);
    m.extend(extra);
    m
}
