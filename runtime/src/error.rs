//! Errors of the ONNX runtime: loading a model directory, tokenising, running the graph.

use vrf_format::{MathError, ModelError};

/// Why the ONNX runtime could not load a model or serve a request.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RuntimeError {
    /// A file of the model directory could not be read.
    // The message prints the I/O error, so it is not also the error's `source()`: a caller
    // printing the chain (anyhow's `{:#}`) would show it twice.
    #[error("{}: {cause}", path.display())]
    Io {
        /// The file.
        path: std::path::PathBuf,
        /// The I/O error.
        cause: std::io::Error,
    },
    /// The model directory is inconsistent (manifest, checksums, tensors).
    #[error(transparent)]
    Model(#[from] ModelError),
    /// Tokenisation failed.
    #[error(transparent)]
    Text(#[from] crate::text::TokenizeError),
    /// The ONNX Runtime library is missing or unusable.
    #[error("{0}")]
    OrtLibrary(String),
    /// ONNX Runtime refused the graph or a run.
    #[error("ONNX Runtime: {0}")]
    Ort(String),
    /// CUDA was asked for and cannot be used (never a silent CPU fallback).
    #[error("CUDA: {0}")]
    Cuda(String),
    /// A caller's input is unusable.
    #[error("{0}")]
    Input(String),
    /// A feature vector given to a model fitted on external features is unusable: wrong
    /// length or a NaN/±∞ value. `location` names the field and row, e.g.
    /// `references[2].chosen`.
    #[error("`{location}`: {problem}")]
    Vector {
        /// The field and row, e.g. `candidates[3]`.
        location: String,
        /// What is wrong.
        problem: String,
    },
    /// No seen user has this id.
    #[error("unknown seen user {0:?} (the model directory's seen_users.json does not list it)")]
    UnknownUser(String),
}

impl From<MathError> for RuntimeError {
    fn from(e: MathError) -> Self {
        RuntimeError::Model(ModelError::Math(e))
    }
}
