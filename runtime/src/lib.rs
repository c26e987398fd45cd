//! Serve VRF personalised reward models.
//!
//! [`math`] is the per-user math in pure `ndarray` (SPEC §2–4): from a user's reference pair
//! features to their posterior, basis weights and personalised rewards. It has no I/O and no
//! threads, so it builds for `wasm32-unknown-unknown` with `default-features = false`.
#![warn(missing_docs)]

#[cfg(feature = "onnx")]
pub mod backbone;
pub mod error;
pub mod format;
// No file system in the browser.
#[cfg(not(target_arch = "wasm32"))]
pub mod fsutil;
pub mod math;
#[cfg(feature = "onnx")]
pub mod session;
#[cfg(feature = "text")]
pub mod text;
pub mod user_model;

#[cfg(feature = "onnx")]
pub use backbone::{BackboneOutput, ExecutionProvider, OnnxBackbone};
#[cfg(feature = "onnx")]
pub use error::RuntimeError;
pub use error::{MathError, MathResult, ModelError};
pub use format::{Manifest, Pooling, SeenUser, SeenUsers};
pub use math::{
    infer_user, mean_pool, moments, pair_feature, pair_features, personalised_rewards, pog,
    preference_probability, va_loss, Bases, Encoder, Linear, Mlp, NaturalParams, Posterior,
    UserPosterior, DEFAULT_TAU,
};
#[cfg(feature = "onnx")]
pub use session::{Features, Reference, RuntimeOptions, Scores, VrfModel};
pub use user_model::{UserModel, UserState};
