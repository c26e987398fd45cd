//! vrf-trainer: fit Variational Reward Factorization (VRF) personalised reward models with candle.

pub mod data;
pub mod synth;
pub mod tokenize;
pub mod vars;
