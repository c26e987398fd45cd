//! The trainer library's error type: every failure of a fit, evaluation, export or experiment,
//! typed, so that binaries (which use `anyhow`) can add context and tests can match variants.

use std::path::PathBuf;

use crate::backbone::BackboneError;
use crate::checkpoint::CheckpointError;
use crate::data::DataError;
use crate::synth::SynthError;

/// Result of the trainer library's fallible functions.
pub type Result<T, E = TrainError> = std::result::Result<T, E>;

/// Why a trainer operation failed.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// A tensor operation failed (shape mismatch, device error, …).
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    /// The training data could not be read or is unusable.
    #[error(transparent)]
    Data(#[from] DataError),
    /// A run directory, checkpoint or JSON file could not be read or written.
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    /// A backbone configuration or checkpoint could not be loaded.
    #[error(transparent)]
    Backbone(#[from] BackboneError),
    /// The synthetic benchmark could not be generated.
    #[error(transparent)]
    Synth(#[from] SynthError),
    /// An exported model failed validation in the runtime's model format.
    #[error(transparent)]
    Model(#[from] vrf_runtime::ModelError),
    /// A file-system error on a named path (the OS message is printed once, by this variant).
    #[error("{}: {message}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The OS error, already rendered (kept out of `source()` so it is not printed twice).
        message: String,
    },
    /// A configuration that cannot be run (names the field and what is wrong).
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The loss became NaN or infinite.
    #[error("stage {stage} step {step}: loss is {loss}; lower the learning rate or enable clipping")]
    NonFinite {
        /// The training stage.
        stage: String,
        /// The global step.
        step: usize,
        /// The offending loss value.
        loss: f64,
    },
    /// Anything else that stops a run, said in words (names the input concerned).
    #[error("{0}")]
    Other(String),
}

impl TrainError {
    /// An I/O error on `path`, its OS message rendered once.
    pub fn io(path: impl Into<PathBuf>, e: std::io::Error) -> Self {
        TrainError::Io {
            path: path.into(),
            message: e.to_string(),
        }
    }
}
