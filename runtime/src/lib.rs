//! Serve VRF personalised reward models.
//!
//! [`math`] is the per-user math in pure `ndarray` (SPEC §2–4): from a user's reference pair
//! features to their posterior, basis weights and personalised rewards. It has no I/O and no
//! threads, so it builds for `wasm32-unknown-unknown` with `default-features = false`.
#![warn(missing_docs)]

pub mod error;
pub mod math;

pub use error::{MathError, MathResult};
pub use math::{
    infer_user, mean_pool, moments, pair_feature, pair_features, personalised_rewards, pog,
    preference_probability, va_loss, Bases, Encoder, Linear, Mlp, NaturalParams, Posterior,
    UserPosterior, DEFAULT_TAU,
};
