//! How the backbone is built for training: LoRA adapters and the precision of its products.

use candle_core::{DType, Device};

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
            Matmul::F32 | Matmul::Tf32 => DType::F32,
            Matmul::Bf16 => DType::BF16,
        }
    }

    /// Whether training with these options may run on `device`: TF32 is a CUDA tensor-core mode,
    /// so training with it elsewhere is refused (the message says what to use instead) rather
    /// than run in f32 in silence.
    pub fn check_training_device(&self, device: &Device) -> Result<(), String> {
        if self.matmul == Matmul::Tf32 && !device.is_cuda() {
            return Err(
                "matmul = tf32 (--matmul tf32) needs a CUDA device (TF32 is a tensor-core mode); \
                 this device is the CPU, whose products are f32: use --matmul f32 or --device cuda"
                    .into(),
            );
        }
        Ok(())
    }

    /// Sets what the options ask of a CUDA device: TF32 products for `Matmul::Tf32`, plain f32
    /// otherwise. cuBLAS's setting is process-wide, so the last backbone built on CUDA decides
    /// it for all; one process trains one model. Elsewhere TF32 products are f32 ones (a TF32
    /// run exports and evaluates on the CPU); training refuses TF32 off CUDA
    /// ([`Self::check_training_device`]).
    pub fn apply_to(&self, device: &Device) {
        if device.is_cuda() {
            candle_core::cuda::set_gemm_reduced_precision_f32(self.matmul == Matmul::Tf32);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tf32_computes_in_f32_and_trains_only_on_cuda() {
        let opts = |matmul| BackboneOptions {
            matmul,
            ..BackboneOptions::default()
        };
        assert_eq!(opts(Matmul::Tf32).compute_dtype(), DType::F32);
        let e = opts(Matmul::Tf32)
            .check_training_device(&Device::Cpu)
            .unwrap_err();
        assert!(e.contains("needs a CUDA device"), "{e}");
        for m in [Matmul::F32, Matmul::Bf16] {
            opts(m).check_training_device(&Device::Cpu).unwrap();
        }
    }
}
