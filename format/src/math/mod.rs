//! Per-user math of VRF in pure `ndarray` (docs/METHOD.md §2–4): encoder MLP, product of Gaussians,
//! W₂ weights over the preference bases, personalised rewards and the variance-attenuated
//! Bradley–Terry quantities. Inputs and outputs are `f32`; reductions prone to cancellation or
//! overflow run in `f64` internally.

mod active;
mod bases;
mod check;
mod encoder;
mod heads;
mod mlp;
mod posterior;
mod reward;
mod select;
#[cfg(test)]
pub(crate) mod testutil;
mod user;

pub use active::{
    best_question, kl_diag, question_value, question_value_with_prior, QuestionValue,
};
pub use bases::{softmax, Bases, DEFAULT_TAU};
pub use encoder::{pair_feature, pair_features, Encoder, LOGVAR_BOUND};
pub use heads::{check_vectors, BasisHeads};
pub use mlp::{gelu, Linear, Mlp};
pub use posterior::{mean_pool, pog, pog_with_prior, NaturalParams, Posterior, MAX_ABS_LOGVAR};
pub use reward::{
    calibrated_preference_probability, mackay_z, moments, personalised_rewards,
    preference_probability, preference_probability_from_moments, sigmoid, softplus, va_loss,
    va_loss_from_moments,
};
pub use select::argmax;
pub use user::{infer_user, UserPosterior};

pub(crate) use check::len as check_len;
pub(crate) use check::positive as check_positive;

// Transcendentals (exp, tanh, log1p) come from the `libm` crate, not `f32::exp` & co.: those
// call the platform's C library natively but a different implementation in wasm, and an ulp of
// difference in exp(−ℓ) is amplified by PoG's cancellation. With `libm` and f64-accumulated
// dot products the browser build reproduces the server's numbers (vrf-wasm's parity tests).
