//! vrf-wasm: the per-user VRF math (encoder, product of Gaussians, W₂, softmax) for browsers.
//!
//! It reuses `vrf-runtime`'s pure-ndarray math (built without its ONNX feature), so there is a
//! single copy of the formulas. The JavaScript bindings are built on top of this re-export.

pub use vrf_runtime::math;
