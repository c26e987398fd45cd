//! Serve VRF personalised reward models.
//!
//! [`VrfModel::load`] opens a model directory written by `vrf-trainer export`; a user's
//! [`UserPosterior`] comes from their reference preferences ([`VrfModel::posterior`]), an
//! incremental [`UserState`] ([`VrfModel::posterior_of`]) or the seen-user cache
//! ([`VrfModel::seen_posterior`]), and scores candidates ([`VrfModel::score`]).
//!
//! [`math`] is the per-user math in pure `ndarray` (docs/METHOD.md §2–4): from a user's reference pair
//! features to their posterior, basis weights and personalised rewards. It has no I/O and no
//! threads, so it builds for `wasm32-unknown-unknown` with `default-features = false`.
#![warn(missing_docs)]

#[cfg(feature = "onnx")]
pub mod backbone;
#[cfg(feature = "onnx")]
pub mod checksum_cache;
pub mod error;
pub mod format;
// Builds for wasm32 too (std::fs there fails at run time), so native tools compiled for every
// target, like the wasm crate's fixture writers, share the one atomic write.
pub mod fsutil;
pub mod math;
#[cfg(feature = "serve")]
pub mod serve;
#[cfg(feature = "onnx")]
pub mod session;
#[cfg(feature = "text")]
pub mod text;
pub mod user_model;

// The serving types; the math stays under [`math`].
#[cfg(feature = "onnx")]
pub use backbone::ExecutionProvider;
#[cfg(feature = "onnx")]
pub use checksum_cache::{ChecksumCache, Checksums, FileStamp};
#[cfg(feature = "onnx")]
pub use error::RuntimeError;
pub use error::{MathError, MathResult, ModelError};
pub use format::{Manifest, Pooling};
pub use math::{QuestionValue, UserPosterior};
#[cfg(feature = "onnx")]
pub use session::{Features, PairFeatures, Question, Reference, RuntimeOptions, Scores, VrfModel};
#[cfg(feature = "text")]
pub use text::TokenizeError;
pub use user_model::{UserModel, UserState};
