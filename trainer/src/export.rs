//! `vrf-trainer export`: a trained run → a portable model directory (see
//! [`vrf_runtime::format`]): `backbone.onnx` (backbone + basis-reward heads, opset 17),
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
use vrf_runtime::format::{
    self, EncoderSpec, FileEntry, Manifest, OnnxSpec, SeenUser, SeenUsers, TextSpec, BACKBONE_FILE,
    MANIFEST_FILE, SEEN_USERS_FILE, TOKENIZER_FILE, USER_MODEL_FILE,
};
use vrf_runtime::user_model::names;

use crate::checkpoint::{load_checkpoint, read_json, TrainState};
use crate::config::{Method, RunConfig};
use crate::data::write_atomic;
use crate::model::{onnx_names, prefix, RewardModel};
use crate::onnx::{externalize, OPSET};
use crate::run::Posteriors;
use crate::tokenize::{TextEncoder, TextTemplate};
use crate::vars::SeededVarMap;

/// Protobuf cannot hold more than 2 GiB; above this many initializer bytes they go to
/// `backbone.onnx.data`.
pub const EXTERNAL_DATA_THRESHOLD: usize = 1 << 30;
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
}

impl Default for ExportOptions {
    fn default() -> Self {
        Self {
            force: false,
            tolerance: 1e-4,
            check_shapes: vec![(1, 7), (3, 19), (8, 40)],
            external_data_threshold: EXTERNAL_DATA_THRESHOLD,
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
        self.checks
            .iter()
            .map(|c| c.hidden_err.max(c.rewards_err))
            .fold(0.0, f32::max)
    }
}

/// A trained model rebuilt from a run directory, with its text encoder and training state.
pub struct Trained {
    /// The run's configuration.
    pub cfg: RunConfig,
    /// The model with the checkpoint's weights.
    pub model: RewardModel,
    /// Tokenizer + template + max length.
    pub encoder: TextEncoder,
    /// Where training stopped.
    pub state: TrainState,
}

/// Loads a run's configuration, tokenizer, backbone shape and checkpoint weights (no data needed).
pub fn load_trained(run: &Path, dev: &Device) -> Result<Trained> {
    let cfg: RunConfig = read_json(&run.join("config.json"))?;
    let bc = read_json(&run.join("backbone_config.json"))?;
    let template = TextTemplate::new(cfg.template.clone())?;
    let encoder = TextEncoder::from_file(run.join("tokenizer.json"), template, cfg.train.max_len)?;
    let ck = load_checkpoint(run, dev)?.with_context(|| {
        format!(
            "{}: no checkpoint/ (train it with `vrf-trainer fit` first)",
            run.display()
        )
    })?;
    let vars = SeededVarMap::new(cfg.train.seed);
    for (name, t) in &ck.weights {
        if name != prefix::FREE {
            vars.insert(name, t.clone())?;
        }
    }
    let model = RewardModel::new(&cfg, bc, vars, 0, dev)?;
    Ok(Trained {
        cfg,
        model,
        encoder,
        state: ck.state,
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

fn max_abs_diff(a: &Tensor, b: &Tensor) -> candle_core::Result<f32> {
    (a - b)?.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>()
}

/// Evaluates `proto` with candle-onnx on sample inputs and compares with the candle forward.
pub fn self_check(
    model: &RewardModel,
    proto: &ModelProto,
    shapes: &[(usize, usize)],
    pad: u32,
) -> Result<Vec<CheckResult>> {
    let mut rng = ChaCha8Rng::seed_from_u64(0x5e1f_c4ec);
    let vocab = model.backbone_cfg.vocab_size;
    let mut out = Vec::new();
    for &(batch, seq) in shapes {
        let seq = seq.min(model.backbone_cfg.max_position_embeddings);
        let (ids, lengths) = sample_inputs(batch, seq, vocab, pad, &mut rng);
        let ids_t = Tensor::from_vec(ids.clone(), (batch, seq), &Device::Cpu)?;
        let want_h = model.embed(&ids_t.to_device(&model.device)?, &lengths)?;
        let want_r = model.phi(&want_h)?.to_device(&Device::Cpu)?;
        let want_h = want_h.to_device(&Device::Cpu)?;
        let mask: Vec<i64> = (0..batch * seq)
            .map(|i| i64::from(i % seq < lengths[i / seq]))
            .collect();
        let inputs = HashMap::from([
            (
                onnx_names::INPUT_IDS.to_string(),
                Tensor::from_vec(
                    ids.iter().map(|&i| i64::from(i)).collect::<Vec<_>>(),
                    (batch, seq),
                    &Device::Cpu,
                )?,
            ),
            (
                onnx_names::ATTENTION_MASK.to_string(),
                Tensor::from_vec(mask, (batch, seq), &Device::Cpu)?,
            ),
        ]);
        let got = candle_onnx::simple_eval(proto, inputs)
            .context("candle-onnx could not evaluate the exported graph")?;
        let get = |n: &str| {
            got.get(n)
                .with_context(|| format!("graph has no output {n:?}"))
        };
        out.push(CheckResult {
            batch,
            seq,
            hidden_err: max_abs_diff(get(onnx_names::HIDDEN)?, &want_h)?,
            rewards_err: max_abs_diff(get(onnx_names::REWARDS)?, &want_r)?,
        });
    }
    Ok(out)
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
    let model = &t.model;
    let (h, k, d) = (
        model.backbone_cfg.hidden_size,
        model.heads.k(),
        t.cfg.model.d,
    );

    let mut proto = model.onnx().context("building the ONNX graph")?;
    let checks = self_check(model, &proto, &opts.check_shapes, t.encoder.pad_id)?;
    let report_err = checks
        .iter()
        .map(|c| c.hidden_err.max(c.rewards_err))
        .fold(0.0, f32::max);
    if report_err.is_nan() || report_err > opts.tolerance {
        return Err(TrainError::Other(format!(
            "export self-check failed: candle-onnx differs from the candle forward by {report_err:.3e} (max abs), above {:.0e}; per shape: {checks:?}",
            opts.tolerance
        )));
    }

    // Build everything in a sibling temp directory, then rename it into place.
    let parent = out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
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
    let _scratch = vrf_runtime::fsutil::RemoveOnDrop(tmp.clone());
    let mut files = BTreeMap::new();
    let mut put = |name: &str, bytes: &[u8]| -> Result<()> {
        write_atomic(tmp.join(name), bytes)
            .with_context(|| format!("writing {}", tmp.join(name).display()))?;
        files.insert(name.to_string(), FileEntry::of(bytes));
        Ok(())
    };

    let mut external_data = None;
    if proto_initializer_bytes(&proto) > opts.external_data_threshold {
        let data = externalize(&mut proto, EXTERNAL_DATA_FILE);
        put(EXTERNAL_DATA_FILE, &data)?;
        external_data = Some(EXTERNAL_DATA_FILE.to_string());
    }
    put(BACKBONE_FILE, &proto.encode_to_vec())?;

    let tok = std::fs::read(run.join("tokenizer.json"))
        .with_context(|| format!("reading {}", run.join("tokenizer.json").display()))?;
    put(TOKENIZER_FILE, &tok)?;

    let tensors = user_model_tensors(model)?;
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
    let st = safetensors::serialize(
        views.iter().map(|(n, s, b)| {
            (
                n.clone(),
                safetensors::tensor::TensorView::new(safetensors::Dtype::F32, s.clone(), b)
                    .expect("sizes match"),
            )
        }),
        None,
    )
    .context("serialising user_model.safetensors")?;
    put(USER_MODEL_FILE, &st)?;

    let post_path = run.join("posteriors.json");
    let seen = if post_path.exists() {
        let p: Posteriors = read_json(&post_path)?;
        SeenUsers {
            users: p
                .users
                .into_iter()
                .map(|u| SeenUser {
                    id: u.id,
                    mean: u.mean,
                    var: u.var,
                })
                .collect(),
        }
    } else {
        eprintln!(
            "warning: {} is missing (run not evaluated); exporting no seen users",
            post_path.display()
        );
        SeenUsers::default()
    };
    put(SEEN_USERS_FILE, seen.to_json().as_bytes())?;

    let manifest = Manifest {
        format: format::FORMAT.into(),
        format_version: format::FORMAT_VERSION,
        k,
        d,
        hidden: h,
        tau: t.cfg.model.tau as f32,
        encoder: EncoderSpec {
            input_dim: 2 * h + if t.cfg.model.enc_phi { k } else { 0 },
            hidden_dim: h,
            dphi: t.cfg.model.enc_phi,
            pooling: t.cfg.model.pooling,
        },
        text: TextSpec {
            template: t.encoder.template.as_str().to_string(),
            max_len: t.encoder.max_len,
            pad_id: t.encoder.pad_id,
            truncation: "left".into(),
            padding: "right".into(),
        },
        onnx: OnnxSpec {
            file: BACKBONE_FILE.into(),
            opset: OPSET,
            input_ids: onnx_names::INPUT_IDS.into(),
            attention_mask: onnx_names::ATTENTION_MASK.into(),
            hidden: onnx_names::HIDDEN.into(),
            rewards: onnx_names::REWARDS.into(),
            external_data,
        },
        files,
        source: BTreeMap::from([
            (
                "producer".to_string(),
                format!("vrf-trainer {}", env!("CARGO_PKG_VERSION")),
            ),
            ("run".to_string(), run.display().to_string()),
            ("stage".to_string(), t.state.stage.clone()),
            ("global_step".to_string(), t.state.global_step.to_string()),
            (
                "self_check_max_abs_err".to_string(),
                format!("{report_err:.3e}"),
            ),
        ]),
    };
    manifest.validate(MANIFEST_FILE)?;
    let manifest_path = tmp.join(MANIFEST_FILE);
    write_atomic(&manifest_path, manifest.to_json().as_bytes())
        .map_err(|e| TrainError::io(&manifest_path, e))?;

    vrf_runtime::fsutil::replace_dir(&tmp, out)
        .with_context(|| format!("moving {} to {}", tmp.display(), out.display()))?;
    Ok(ExportReport {
        out: out.to_path_buf(),
        manifest,
        checks,
        stage: t.state.stage,
    })
}

fn proto_initializer_bytes(p: &ModelProto) -> usize {
    p.graph
        .as_ref()
        .map_or(0, |g| g.initializer.iter().map(|t| t.raw_data.len()).sum())
}
