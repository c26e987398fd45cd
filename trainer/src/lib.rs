//! vrf-trainer: fit Variational Reward Factorization (VRF) personalised reward models with candle.

pub mod backbone;
pub mod vars;
