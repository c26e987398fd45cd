//! vrf-trainer: the engine that fits Variational Reward Factorization (VRF) personalised reward
//! models with candle, evaluates them and exports them.
//!
//! One module per concept: [`backbone`] (Qwen3), [`heads`] (basis rewards), [`encoder`]
//! (variational encoder and pooling), [`bases`] (Gaussian bases, W₂, KL), [`loss`], [`metrics`]
//! (accuracy, basis-reward correlation), [`model`], [`vars`] (seeded variables), [`optim`],
//! [`train`] (the staged fit), [`eval`], [`checkpoint`] (with its tensor files), [`run`] (a run
//! directory from start to finish), [`onnx`] (graph builder), [`export`] and [`quantize`]
//! (the portable model directory), [`features`] (a feature table of the backbone's states),
//! [`tokenize`] and [`corpus`] (tokenised texts and batches), [`config`] and [`cli`] (the run
//! configuration and its flags). Data comes from `vrf-data`; the experiment harness (baselines,
//! reference rankers, comparisons) is `vrf-bench`.

#![warn(missing_docs)]

pub mod backbone;
pub mod bases;
pub mod checkpoint;
pub mod cli;
pub mod config;
pub mod corpus;
pub mod encoder;
pub mod error;
pub mod eval;
pub mod export;
pub mod features;
pub mod heads;
pub mod lock;
pub mod loss;
pub mod memory;
pub mod metrics;
pub mod model;
pub mod onnx;
pub mod optim;
pub mod quantize;
pub mod run;
pub mod threads;
pub mod tokenize;
pub mod train;
pub mod vars;
