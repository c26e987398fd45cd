//! Export of a run on external features (docs/features.md): no ONNX graph and no tokenizer. The
//! basis heads go to `user_model.safetensors` beside the encoder and bases, and the manifest says
//! the model takes feature vectors of dimension `H` (format version 3).
//!
//! The export checks itself: the runtime's pure-ndarray heads (`vrf_format::math::BasisHeads`)
//! must match the candle forward on random vectors within the tolerance.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use ndarray::{Array1, Array2};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};
use vrf_format::manifest::{self, InputSpec, Manifest, SEEN_USERS_FILE, USER_MODEL_FILE};
use vrf_format::math::{BasisHeads, Linear};
use vrf_format::names;

use super::{
    calibration_temperature, check_passes, encoder_spec, provenance, safetensors_bytes, seen_users,
    user_model_tensors, CheckResult, ExportOptions, ExportReport, Scratch,
};
use crate::checkpoint::TrainState;
use crate::config::RunConfig;
use crate::error::{Context, Result, TrainError};
use crate::model::RewardModel;

/// Exports a trained run on external features to `out`.
pub(super) fn export(
    run: &Path,
    out: &Path,
    opts: &ExportOptions,
    cfg: &RunConfig,
    model: RewardModel,
    state: TrainState,
) -> Result<ExportReport> {
    let (h, k, d) = (model.hidden_size(), model.heads.k(), cfg.model.d);
    let heads = heads_tensors(&model)?;
    let checks = self_check(&model, &heads, &opts.check_shapes)?;
    let err = check_passes(&checks, opts.tolerance, false, "the runtime's heads")?;

    let scratch = Scratch::new(out)?;
    let mut files = BTreeMap::new();
    let mut tensors = user_model_tensors(&model)?;
    tensors.extend(heads);
    scratch.put(&mut files, USER_MODEL_FILE, &safetensors_bytes(&tensors)?)?;
    let seen = seen_users(run)?;
    scratch.put(&mut files, SEEN_USERS_FILE, seen.to_json().as_bytes())?;
    let table = match &cfg.backbone {
        crate::config::BackboneSource::Features { path } => path.clone(),
        _ => String::new(),
    };
    let manifest = Manifest {
        format: manifest::FORMAT.into(),
        format_version: manifest::FORMAT_VERSION,
        k,
        d,
        hidden: h,
        tau: cfg.model.tau as f32,
        temperature: calibration_temperature(run),
        input: InputSpec::Features { dim: h },
        encoder: encoder_spec(cfg, h, k),
        text: None,
        onnx: None,
        files,
        source: provenance(
            run,
            &state,
            [
                ("features".to_string(), table),
                ("self_check_max_abs_err".to_string(), format!("{err:.3e}")),
                ("self_check_engine".to_string(), "vrf-format".to_string()),
                ("weights".to_string(), "f32".to_string()),
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

/// The basis heads as `user_model.safetensors` tensors (`heads.l{1,2}.{weight,bias}`).
fn heads_tensors(model: &RewardModel) -> Result<HashMap<String, Tensor>> {
    let f32c = |t: &Tensor| t.to_dtype(DType::F32).and_then(|t| t.contiguous());
    let (l1, l2) = (&model.heads.l1, &model.heads.l2);
    let mut out = HashMap::new();
    out.insert(names::HEADS_L1_W.to_string(), f32c(l1.weight())?);
    out.insert(
        names::HEADS_L1_B.to_string(),
        f32c(l1.bias().context("heads.l1 has no bias")?)?,
    );
    out.insert(names::HEADS_L2_W.to_string(), f32c(l2.weight())?);
    out.insert(
        names::HEADS_L2_B.to_string(),
        f32c(l2.bias().context("heads.l2 has no bias")?)?,
    );
    Ok(out)
}

/// The runtime's heads built from the exported tensors.
fn runtime_heads(t: &HashMap<String, Tensor>) -> Result<BasisHeads> {
    let get = |n: &str| -> Result<Tensor> {
        Ok(t.get(n)
            .with_context(|| format!("missing {n}"))?
            .to_device(&Device::Cpu)?)
    };
    let matrix = |n: &str| -> Result<Array2<f32>> {
        let w = get(n)?;
        let (r, c) = w.dims2()?;
        Array2::from_shape_vec((r, c), w.flatten_all()?.to_vec1()?)
            .map_err(|e| TrainError::Other(format!("{n}: {e}")))
    };
    let vector = |n: &str| -> Result<Array1<f32>> { Ok(Array1::from(get(n)?.to_vec1::<f32>()?)) };
    let math = |e: vrf_format::MathError| TrainError::Other(format!("exported heads: {e}"));
    let l1 = Linear::new(matrix(names::HEADS_L1_W)?, vector(names::HEADS_L1_B)?).map_err(math)?;
    let l2 = Linear::new(matrix(names::HEADS_L2_W)?, vector(names::HEADS_L2_B)?).map_err(math)?;
    BasisHeads::new(l1, l2).map_err(math)
}

/// The candle heads against the runtime's on standard-normal vectors, one batch per shape.
fn self_check(
    model: &RewardModel,
    heads: &HashMap<String, Tensor>,
    shapes: &[(usize, usize)],
) -> Result<Vec<CheckResult>> {
    let rt = runtime_heads(heads)?;
    let h = model.hidden_size();
    let mut rng = ChaCha8Rng::seed_from_u64(0x5e1f_c4ec);
    let mut out = Vec::new();
    for &(batch, _) in shapes {
        let x: Vec<f32> = (0..batch * h)
            .map(|_| StandardNormal.sample(&mut rng))
            .collect();
        let e = Tensor::from_vec(x.clone(), (batch, h), &model.device)?;
        let want: Vec<f32> = model
            .phi(&e)?
            .to_device(&Device::Cpu)?
            .to_dtype(DType::F32)?
            .flatten_all()?
            .to_vec1()?;
        let xs = Array2::from_shape_vec((batch, h), x)
            .map_err(|e| TrainError::Other(format!("self-check input: {e}")))?;
        let got = rt
            .forward(xs.view())
            .map_err(|e| TrainError::Other(format!("self-check: {e}")))?;
        let got: Vec<f32> = got.iter().copied().collect();
        let amax = |v: &[f32]| v.iter().fold(0f32, |m, x| m.max(x.abs()));
        out.push(CheckResult {
            batch,
            seq: 0,
            hidden_err: 0.0,
            rewards_err: super::max_abs_diff(&got, &want),
            hidden_max: 0.0,
            rewards_max: amax(&want),
        });
    }
    Ok(out)
}
