//! vrf-trainer: fit Variational Reward Factorization (VRF) personalised reward models with candle.
//!
//! One module per concept: [`backbone`] (Qwen3), [`heads`] (basis rewards), [`encoder`]
//! (variational encoder and pooling), [`bases`] (Gaussian bases, W₂, KL), [`loss`], [`metrics`] (accuracy, basis-reward correlation), [`model`], [`onnx`] (graph builder) and [`export`] (portable model directory),
//! [`data`] and [`synth`] (JSONL and the embedded benchmark), [`tokenize`], [`corpus`]
//! (tokenised texts and batches), [`optim`], [`train`], [`eval`], [`checkpoint`], [`run`], [`experiment`] (seeds, ablations), [`baselines`] (LoRe, PReF, PAL, VPL), [`score`] (per-user rewards and accuracies of a trained run) and [`compare`] (the methods side by side: tables and figures).

#![warn(missing_docs)]

pub mod backbone;
pub mod baselines;
pub mod bases;
pub mod checkpoint;
pub mod compare;
pub mod config;
pub mod convert;
pub mod corpus;
pub mod data;
pub mod encoder;
pub mod error;
pub mod eval;
pub mod experiment;
pub mod export;
pub mod heads;
pub mod lock;
pub mod loss;
pub mod memory;
pub mod metrics;
pub mod model;
pub mod onnx;
pub mod optim;
pub mod quantize;
pub mod reference;
pub mod run;
pub mod score;
pub mod synth;
pub mod tensor_file;
pub mod threads;
pub mod tokenize;
pub mod train;
pub mod vars;
