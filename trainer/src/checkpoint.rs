//! Run directories: atomic file writes, checkpoints (safetensors + JSON) and resume.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::optim::AdamW;
use crate::vars::SeededVarMap;

// A child module: it reads and writes the tensor files and reports through this module's
// [`CheckpointError`], so the two import each other (parent and child, by design).
pub mod tensor_file;

/// Errors reading or writing a run directory.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CheckpointError {
    /// Filesystem error on a named path.
    #[error("{path}: {cause}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The cause (in the message only, not `source()`, so a printed cause chain shows it once).
        cause: std::io::Error,
    },
    /// A file that does not parse.
    #[error("{path}: {reason}")]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A tensor-library error while saving or loading.
    #[error("{path}: {cause}")]
    Tensor {
        /// The file.
        path: PathBuf,
        /// The cause (in the message only, not `source()`, so a printed cause chain shows it once).
        cause: candle_core::Error,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> CheckpointError + '_ {
    move |source| CheckpointError::Io {
        path: path.to_path_buf(),
        cause: source,
    }
}

/// Writes `bytes` to `path` atomically (temporary file, fsync, rename), naming the path on error.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), CheckpointError> {
    if let Some(dir) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        fs::create_dir_all(dir).map_err(io(dir))?;
    }
    vrf_data::write_atomic(path, bytes).map_err(io(path))
}

/// Serialises `value` as pretty JSON to `path`, atomically.
pub fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<(), CheckpointError> {
    let s = serde_json::to_vec_pretty(value).map_err(|e| CheckpointError::Format {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    write_atomic(path, &s)
}

/// Reads JSON from `path`, naming the file on error.
pub fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T, CheckpointError> {
    let s = fs::read(path).map_err(io(path))?;
    serde_json::from_slice(&s).map_err(|e| CheckpointError::Format {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

/// Saves named tensors as safetensors, atomically, one tensor's bytes at a time.
pub fn save_tensors(path: &Path, tensors: &HashMap<String, Tensor>) -> Result<(), CheckpointError> {
    tensor_file::save(path, tensors)
}

/// Loads every tensor of a safetensors file onto `device`, one tensor's bytes at a time.
pub fn load_tensors(
    path: &Path,
    device: &Device,
) -> Result<HashMap<String, Tensor>, CheckpointError> {
    tensor_file::load(path, device)
}

/// Where training stands; saved next to the weights.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TrainState {
    /// Current stage name (`e2e`, `s1`, `s2`, `s3`, `bt`, `done`).
    pub stage: String,
    /// Steps completed in the current stage.
    pub step: usize,
    /// Steps completed in all stages.
    pub global_step: usize,
    /// Stages already finished, in order.
    pub finished: Vec<String>,
    /// Stage 2's chosen stopping epoch (held-out seen users), once known.
    pub s2_best_epoch: Option<usize>,
    /// Factor stage 2 applied to the population prior's precision, chosen on held-out seen
    /// users (`None`: no prior, or a run from before this step).
    #[serde(default)]
    pub s2_prior_scale: Option<f64>,
    /// The seed-derived δ after `delta_auto`, once fixed.
    pub delta: Option<f64>,
}

/// The directory of a checkpoint inside a run directory.
pub fn checkpoint_dir(run: &Path) -> PathBuf {
    run.join("checkpoint")
}

/// Saves weights, optimiser moments, extra training tensors (e.g. the reference-state cache)
/// and state into `RUN/checkpoint/`, replacing it atomically.
pub fn save_checkpoint(
    run: &Path,
    vars: &SeededVarMap,
    opt: Option<&AdamW>,
    extra: &HashMap<String, Tensor>,
    state: &TrainState,
) -> Result<(), CheckpointError> {
    let final_dir = checkpoint_dir(run);
    let tmp = run.join("checkpoint.tmp");
    if tmp.exists() {
        fs::remove_dir_all(&tmp).map_err(io(&tmp))?;
    }
    fs::create_dir_all(&tmp).map_err(io(&tmp))?;
    let weights: HashMap<String, Tensor> = vars
        .all_named()
        .into_iter()
        .map(|(k, v)| (k, v.as_tensor().clone()))
        .collect();
    save_tensors(&tmp.join("model.safetensors"), &weights)?;
    if let Some(opt) = opt {
        save_tensors(&tmp.join("optim.safetensors"), &opt.state())?;
    }
    if !extra.is_empty() {
        save_tensors(&tmp.join("extra.safetensors"), extra)?;
    }
    write_json(
        &tmp.join("state.json"),
        &(state, opt.map(|o| o.t).unwrap_or(0)),
    )?;
    // The old checkpoint moves aside to `checkpoint.old` (where load_checkpoint looks if a
    // crash falls between the renames) until the new one is in place.
    vrf_format::fsutil::replace_dir(&tmp, &final_dir).map_err(io(&final_dir))
}

/// A checkpoint read back from disk.
pub struct Checkpoint {
    /// Model weights by name.
    pub weights: HashMap<String, Tensor>,
    /// Optimiser moments (empty when none were saved).
    pub optim: HashMap<String, Tensor>,
    /// Optimiser step count.
    pub optim_t: usize,
    /// Extra training tensors (empty when none were saved).
    pub extra: HashMap<String, Tensor>,
    /// Training state.
    pub state: TrainState,
}

/// Loads `RUN/checkpoint/` (or the previous one if a save was interrupted between renames).
pub fn load_checkpoint(run: &Path, device: &Device) -> Result<Option<Checkpoint>, CheckpointError> {
    let Some(dir) = readable_checkpoint(run) else {
        return Ok(None);
    };
    let (state, optim_t): (TrainState, usize) = read_json(&dir.join("state.json"))?;
    let weights = load_tensors(&dir.join("model.safetensors"), device)?;
    let op = dir.join("optim.safetensors");
    let optim = if op.exists() {
        load_tensors(&op, device)?
    } else {
        HashMap::new()
    };
    let ep = dir.join("extra.safetensors");
    let extra = if ep.exists() {
        load_tensors(&ep, device)?
    } else {
        HashMap::new()
    };
    Ok(Some(Checkpoint {
        weights,
        optim,
        optim_t,
        extra,
        state,
    }))
}

/// `RUN/checkpoint/`, or `RUN/checkpoint.old/` when a save was interrupted between renames.
fn readable_checkpoint(run: &Path) -> Option<PathBuf> {
    [checkpoint_dir(run), run.join("checkpoint.old")]
        .into_iter()
        .find(|d| d.join("state.json").exists())
}

/// Streams the checkpoint's weights (not the optimizer state) to `f` one tensor at a time and
/// returns the training state; `None` when the run has no checkpoint. Loading a multi-GB model
/// this way holds it once, not twice.
pub fn load_checkpoint_weights(
    run: &Path,
    device: &Device,
    f: impl FnMut(String, Tensor) -> candle_core::Result<()>,
) -> Result<Option<TrainState>, CheckpointError> {
    let Some(dir) = readable_checkpoint(run) else {
        return Ok(None);
    };
    let (state, _optim_t): (TrainState, usize) = read_json(&dir.join("state.json"))?;
    tensor_file::load_each(&dir.join("model.safetensors"), device, f)?;
    Ok(Some(state))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_replaces_and_leaves_no_temp() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("a.json");
        write_json(&p, &vec![1, 2, 3]).unwrap();
        write_json(&p, &vec![4]).unwrap();
        let back: Vec<i32> = read_json(&p).unwrap();
        assert_eq!(back, vec![4]);
        assert_eq!(fs::read_dir(d.path()).unwrap().count(), 1);
        let err = read_json::<Vec<i32>>(&d.path().join("missing.json")).unwrap_err();
        assert!(err.to_string().contains("missing.json"));
    }

    #[test]
    fn checkpoint_round_trip() -> candle_core::Result<()> {
        let d = tempfile::tempdir().unwrap();
        let dev = Device::Cpu;
        let vars = SeededVarMap::new(3);
        let vb = vars.builder(&dev);
        let w = vb.get_with_hints(
            (2, 3),
            "w",
            candle_nn::Init::Randn {
                mean: 0.0,
                stdev: 1.0,
            },
        )?;
        let state = TrainState {
            stage: "s1".into(),
            step: 5,
            global_step: 5,
            ..Default::default()
        };
        save_checkpoint(d.path(), &vars, None, &HashMap::new(), &state).unwrap();
        save_checkpoint(d.path(), &vars, None, &HashMap::new(), &state).unwrap();
        let ck = load_checkpoint(d.path(), &dev).unwrap().unwrap();
        assert_eq!(ck.state, state);
        assert_eq!(ck.weights["w"].to_vec2::<f32>()?, w.to_vec2::<f32>()?);
        Ok(())
    }
}
