//! How the backbone is built for training: LoRA adapters and the precision of its products.

use candle_core::DType;

use crate::config::{LoraConfig, Matmul, RunConfig};

/// Options of [`super::Qwen3::with_options`].
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct BackboneOptions {
    /// Adapters on every projection (the rest frozen) when enabled.
    pub lora: LoraConfig,
    /// Precision of the matrix products.
    pub matmul: Matmul,
}

impl BackboneOptions {
    /// Full fine-tuning in f32 except for `lora`.
    pub fn lora(lora: LoraConfig) -> Self {
        Self {
            lora,
            ..Self::default()
        }
    }

    /// What a run's configuration asks for.
    pub fn of(cfg: &RunConfig) -> Self {
        Self {
            lora: cfg.lora,
            matmul: cfg.train.matmul,
        }
    }

    /// The dtype products are computed in.
    pub fn compute_dtype(&self) -> DType {
        match self.matmul {
            Matmul::F32 => DType::F32,
            Matmul::Bf16 => DType::BF16,
        }
    }
}
