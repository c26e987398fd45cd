//! The project's own trainable Qwen3 decoder (docs/METHOD.md §2, Backbone / Formatting and pooling).
//!
//! `candle_transformers::models::qwen3` cannot be trained (fused RmsNorm/rope/softmax without
//! backward, stateful KV cache), so this module re-implements the architecture from
//! differentiable candle primitives: matmul, `candle_nn::ops::softmax`, an RmsNorm written
//! as `x * 1/sqrt(mean(x²) + eps) * w`, rope from cos/sin tables with `narrow`/`cat`
//! (HF `rotate_half` convention), an additive causal mask and grouped-query attention by
//! repeating the key/value heads. On f32 CPU tensors the norm, rope, the masked softmax and
//! SwiGLU's gate run as fused kernels with their own backward (`fused`), tested against those
//! compositions, which stay the path elsewhere (CUDA, bf16). It is stateless (no KV cache).
//!
//! Weights come from a [`VarBuilder`] under the Hugging Face tensor names
//! (`model.embed_tokens.weight`, `model.layers.N.self_attn.q_proj.weight`, ...). Over a
//! [`SeededVarMap`] a from-scratch model is initialised reproducibly (embeddings and linears
//! N(0, 0.02), norms 1); a checkpoint inserted first with [`load_hf_dir`] is used as is.
//!
//! The weight tensors are `pub(crate)` so that an exporter (ONNX) in this module's layers can read them.
//!
//! Files by concept: `config` ([`Qwen3Config`]), `linear`, `norm` (RmsNorm), `attention`
//! (attention and rope), `mlp`, `decoder` (one layer), `qwen3` ([`Qwen3`], [`pool_last`]),
//! `hf` ([`load_hf_dir`]), `recompute` (activation recomputation per layer for training
//! steps), `split` (batch parallelism: a step's texts split across threads) and `fused` (CPU
//! kernels of RmsNorm, SwiGLU, the masked softmax and rope, forward and backward, used on f32
//! CPU tensors in place of those compositions); each layer keeps its candle `forward` next to
//! its ONNX `onnx`.

use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

mod attention;
mod config;
mod decoder;
mod fused;
mod hf;
mod linear;
mod mlp;
mod norm;
mod options;
mod qwen3;
mod recompute;
mod split;

pub use config::Qwen3Config;
pub use hf::load_hf_dir;
pub use options::BackboneOptions;
pub use qwen3::{pool_last, Qwen3};

/// Errors of configuration and checkpoint loading.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BackboneError {
    /// The configuration breaks a shape constraint or asks for an unsupported feature.
    #[error("invalid Qwen3 config: {0}")]
    InvalidConfig(String),
    /// A file could not be read.
    #[error("{path}: {cause}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error (in the message only, not `source()`, so a printed cause chain shows it once).
        cause: std::io::Error,
    },
    /// A JSON file (config or shard index) could not be parsed.
    #[error("{path}: invalid JSON: {cause}")]
    Json {
        /// The file.
        path: PathBuf,
        /// The parse error (in the message only, not `source()`, so a printed cause chain shows it once).
        cause: serde_json::Error,
    },
    /// The directory holds neither a single nor a sharded safetensors checkpoint.
    #[error("{dir}: no model.safetensors or model.safetensors.index.json")]
    NoWeights {
        /// The directory.
        dir: PathBuf,
    },
    /// An expected backbone tensor is absent.
    #[error("tensor {name} missing from {file}")]
    MissingTensor {
        /// The HF tensor name.
        name: String,
        /// The file (safetensors or shard index) that should hold it.
        file: PathBuf,
    },
    /// A tensor's shape disagrees with the configuration.
    #[error("tensor {name} in {file} has shape {got:?}, expected {expected:?}")]
    ShapeMismatch {
        /// The HF tensor name.
        name: String,
        /// The safetensors file.
        file: PathBuf,
        /// The shape the configuration implies.
        expected: Vec<usize>,
        /// The shape in the file.
        got: Vec<usize>,
    },
    /// A tensor is not stored as a float.
    #[error("tensor {name} in {file} has unsupported dtype {dtype} (expected f32, f16 or bf16)")]
    UnsupportedDtype {
        /// The HF tensor name.
        name: String,
        /// The safetensors file.
        file: PathBuf,
        /// The stored dtype.
        dtype: String,
    },
    /// A safetensors file or shard index is malformed, or a tensor could not be inserted.
    #[error("{file}: {context}: {cause}")]
    Safetensors {
        /// The file.
        file: PathBuf,
        /// What was being done.
        context: String,
        /// The underlying error (in the message only, not `source()`, so a printed cause chain shows it once).
        cause: Box<candle_core::Error>,
    },
    /// A tensor operation failed.
    #[error(transparent)]
    Candle(Box<candle_core::Error>),
}

impl From<candle_core::Error> for BackboneError {
    fn from(e: candle_core::Error) -> Self {
        Self::Candle(Box::new(e))
    }
}

/// Result of configuration and loading functions.
pub type Result<T> = std::result::Result<T, BackboneError>;

/// Reads and parses a JSON file, naming the file in either error.
fn read_json<T: DeserializeOwned>(path: &Path) -> Result<T> {
    let text = std::fs::read_to_string(path).map_err(|source| BackboneError::Io {
        path: path.into(),
        cause: source,
    })?;
    serde_json::from_str(&text).map_err(|source| BackboneError::Json {
        path: path.into(),
        cause: source,
    })
}

/// Deterministic token ids `[b, l]` below `vocab` for the unit tests.
#[cfg(test)]
fn test_ids(b: usize, l: usize, vocab: u32, salt: u32) -> candle_core::Result<candle_core::Tensor> {
    let v: Vec<u32> = (0..(b * l) as u32)
        .map(|i| (i.wrapping_mul(2654435761).wrapping_add(salt) >> 7) % vocab)
        .collect();
    candle_core::Tensor::from_vec(v, (b, l), &candle_core::Device::Cpu)
}
