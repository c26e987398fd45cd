//! The VRF model format and per-user math: what every part of vrf shares.
//!
//! A model directory (written by `vrf-trainer export`) is described by its [`Manifest`]
//! (`vrf.json`); its per-user half ([`UserModel`]: encoder MLP and Gaussian bases) is pure
//! `ndarray`. [`math`] holds the per-user equations (docs/METHOD.md §2–4): from a user's
//! reference pair features to their posterior, basis weights and personalised rewards. Nothing
//! here does ONNX, threads or networking, so it builds for `wasm32-unknown-unknown` too.
#![warn(missing_docs)]

mod error;
#[cfg(feature = "fixtures")]
pub mod fixture;
// Builds for wasm32 too (std::fs there fails at run time), so native tools compiled for every
// target, like the wasm crate's fixture writers, share the one atomic write.
pub mod fsutil;
pub mod manifest;
pub mod math;
mod user_model;

pub use error::{Float, MathError, MathResult, ModelError};
pub use manifest::{InputSpec, Manifest, Pooling};
pub use math::{QuestionValue, UserPosterior};
pub use user_model::{names, RawTensor, UserModel, UserState};
