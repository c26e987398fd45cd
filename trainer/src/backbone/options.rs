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

    /// Sets what the options ask of the device: TF32 products on CUDA (a process-wide cuBLAS
    /// setting). TF32 elsewhere is an error, not a silent f32 run.
    pub fn apply_to(&self, device: &Device) -> candle_core::Result<()> {
        let tf32 = self.matmul == Matmul::Tf32;
        if device.is_cuda() {
            candle_core::cuda::set_gemm_reduced_precision_f32(tf32);
        } else if tf32 {
            candle_core::bail!(
                "matmul = tf32 (--matmul tf32) needs a CUDA device (TF32 is a tensor-core mode); \
                 this run's device is the CPU, whose products are f32: use --matmul f32"
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tf32_is_refused_off_cuda_and_other_precisions_pass() {
        let opts = |matmul| BackboneOptions {
            matmul,
            ..BackboneOptions::default()
        };
        let err = opts(Matmul::Tf32).apply_to(&Device::Cpu).unwrap_err();
        assert!(err.to_string().contains("needs a CUDA device"), "{err}");
        assert_eq!(opts(Matmul::Tf32).compute_dtype(), DType::F32);
        for m in [Matmul::F32, Matmul::Bf16] {
            opts(m).apply_to(&Device::Cpu).unwrap();
        }
    }
}
