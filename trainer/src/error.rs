//! The trainer library's error type: every failure of a fit, evaluation, export or experiment,
//! typed, so that binaries (which use `anyhow`) can add context and tests can match variants.

use std::path::PathBuf;

use crate::backbone::BackboneError;
use crate::checkpoint::CheckpointError;
use vrf_data::synth::SynthError;
use vrf_data::DataError;

/// Result of the trainer library's fallible functions.
pub type Result<T, E = TrainError> = std::result::Result<T, E>;

/// Why a trainer operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
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
    /// An external feature table is unreadable, malformed or lacks a text of the data.
    #[error(transparent)]
    Features(#[from] vrf_data::FeatureError),
    /// The synthetic benchmark could not be generated.
    #[error(transparent)]
    Synth(#[from] SynthError),
    /// Tokenising texts (or training the tokenizer) failed.
    #[error(transparent)]
    Tokenize(#[from] vrf_runtime::text::TokenizeError),
    /// An exported model failed validation in the runtime's model format.
    #[error(transparent)]
    Model(#[from] vrf_format::ModelError),
    /// A file-system error on a named path (the OS message is printed once, by this variant).
    #[error("{}: {message}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The OS error, already rendered (kept out of `source()` so it is not printed twice).
        message: String,
    },
    /// Writing an exported graph's external data failed.
    #[error(transparent)]
    ExternalData(#[from] crate::onnx::ExternalDataError),
    /// A configuration field out of range.
    #[error(transparent)]
    ConfigField(#[from] crate::config::ConfigError),
    /// A configuration that cannot be run (names the field and what is wrong).
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The loss became NaN or infinite.
    #[error(
        "stage {stage} step {step}: loss is {loss}; lower the learning rate or enable clipping"
    )]
    NonFinite {
        /// The training stage (its name).
        stage: String,
        /// The global step.
        step: usize,
        /// The offending loss value.
        loss: f64,
    },
    /// A method trained outside the engine ([`crate::run::ExternalMethod`]: the comparison
    /// baselines, the experiment harness) failed; its own typed error is the source.
    #[error(transparent)]
    External(Box<dyn std::error::Error + Send + Sync>),
    /// A method the engine does not train (the comparison baselines) was given to it.
    #[error("method {0} is a comparison baseline, trained and evaluated by vrf-bench (`vrf-bench fit --method {0}`), not by the engine")]
    NotEngineMethod(&'static str),
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

/// `context` for library code: adds what was being done to an error (or a missing value) as a
/// [`TrainError::Other`] message, the way `anyhow::Context` does in binaries.
pub trait Context<T> {
    /// Fails with `msg: cause` (or `msg` for a missing value).
    fn context(self, msg: &str) -> Result<T>;
    /// Like [`Context::context`], the message built only on failure.
    fn with_context<F: FnOnce() -> String>(self, f: F) -> Result<T>;
}

impl<T, E: std::fmt::Display> Context<T> for std::result::Result<T, E> {
    fn context(self, msg: &str) -> Result<T> {
        self.map_err(|e| TrainError::Other(format!("{msg}: {e}")))
    }

    fn with_context<F: FnOnce() -> String>(self, f: F) -> Result<T> {
        self.map_err(|e| TrainError::Other(format!("{}: {e}", f())))
    }
}

impl<T> Context<T> for Option<T> {
    fn context(self, msg: &str) -> Result<T> {
        self.ok_or_else(|| TrainError::Other(msg.to_string()))
    }

    fn with_context<F: FnOnce() -> String>(self, f: F) -> Result<T> {
        self.ok_or_else(|| TrainError::Other(f()))
    }
}
