//! Serve VRF personalised reward models.
//!
//! [`VrfModel::load`] opens a model directory written by `vrf-trainer export`; a user's
//! [`UserPosterior`] comes from their reference preferences ([`VrfModel::posterior`]), an
//! incremental [`UserState`] ([`VrfModel::posterior_of`]) or the seen-user cache
//! ([`VrfModel::seen_posterior`]), and scores candidates ([`VrfModel::score`]).
//!
//! The backbone (the exported ONNX graph: texts → hidden states and basis rewards) runs on ONNX
//! Runtime behind the [`Backbone`] trait; the per-user math is `vrf-format`'s pure `ndarray`.
//! [`serve`] is the HTTP service (`vrf serve`), [`text`] the tokenisation the trainer shares.
#![warn(missing_docs)]

mod backbone;
mod checksum_cache;
mod error;
#[cfg(feature = "serve")]
pub mod serve;
mod session;
pub mod text;

pub use backbone::{Backbone, BackboneOutput, ExecutionProvider, OnnxBackbone, ORT_DYLIB_ENV};
pub use checksum_cache::{ChecksumCache, Checksums, FileStamp, CACHE_ENV};
pub use error::RuntimeError;
pub use session::{
    Features, PairFeatures, Question, Reference, RuntimeOptions, Scores, VectorQuestion,
    VectorReference, VrfModel,
};
// The format types this API takes and returns, so an embedding application needs one crate.
pub use vrf_format::{
    InputSpec, Manifest, MathError, ModelError, Pooling, QuestionValue, UserModel, UserPosterior,
    UserState,
};
