//! Bias-free linear layers, optionally LoRA-adapted: the weight init, `x @ wᵀ`, and the weight
//! the ONNX graph gets (adapters merged).

use candle_core::{DType, Result, Tensor};
use candle_nn::{Init, VarBuilder};

use super::BackboneOptions;
use crate::onnx::OnnxGraph;

/// Embeddings and linear weights start N(0, 0.02).
pub(super) const LINEAR_INIT: Init = Init::Randn {
    mean: 0.0,
    stdev: 0.02,
};

/// `a @ b` with both inputs cast to `dtype` and the product cast back to f32 (a no-op cast
/// for f32): bf16 products with f32 master weights, differentiable through the casts.
pub(super) fn matmul_in(a: &Tensor, b: &Tensor, dtype: DType) -> Result<Tensor> {
    if dtype == DType::F32 {
        return a.matmul(b);
    }
    a.to_dtype(dtype)?
        .matmul(&b.to_dtype(dtype)?)?
        .to_dtype(DType::F32)
}

/// `x @ wᵀ` for `x: [.., in]`, `w: [out, in]` (no bias), the product computed in `dtype`
/// ([`matmul_in`]).
pub(super) fn linear_in(x: &Tensor, w: &Tensor, dtype: DType) -> Result<Tensor> {
    let dims = x.dims();
    let n_in = dims[dims.len() - 1];
    let rows = x.elem_count() / n_in.max(1);
    let y = matmul_in(&x.reshape((rows, n_in))?, &w.t()?, dtype)?;
    let mut out = dims.to_vec();
    let last = out.len() - 1;
    out[last] = w.dim(0)?;
    y.reshape(out)
}

/// The `[out, inp]` weight `{name}.weight` under `vb`, created with [`LINEAR_INIT`] if missing.
pub(super) fn linear_weight(vb: &VarBuilder, out: usize, inp: usize, name: &str) -> Result<Tensor> {
    vb.pp(name)
        .get_with_hints((out, inp), "weight", LINEAR_INIT)
}

/// A LoRA adapter: the update `scale · B · A`.
#[derive(Debug, Clone)]
pub(crate) struct Lora {
    /// `[r, in]`, random at the start (`{name}.lora_A`).
    pub(crate) a: Tensor,
    /// `[out, r]`, zero at the start (`{name}.lora_B`), so training starts from the backbone.
    pub(crate) b: Tensor,
    /// α / r.
    pub(crate) scale: f64,
}

/// A bias-free projection `[out, in]`; with LoRA its weight is frozen (detached, so the backward
/// never computes its gradient) and only the adapter trains.
#[derive(Debug, Clone)]
pub(crate) struct Linear {
    /// The weight `[out, in]`.
    pub(crate) weight: Tensor,
    /// The adapter, when LoRA is on.
    pub(crate) lora: Option<Lora>,
    /// dtype of the products (f32, or bf16 with f32 weights).
    pub(crate) compute: DType,
}

impl Linear {
    /// `{name}.weight` `[out, inp]` under `vb`, plus `{name}.lora_A` / `{name}.lora_B` when
    /// `lora` is enabled.
    pub(super) fn new(
        vb: &VarBuilder,
        out: usize,
        inp: usize,
        name: &str,
        opts: BackboneOptions,
    ) -> Result<Self> {
        let (lora, compute) = (opts.lora, opts.compute_dtype());
        let weight = linear_weight(vb, out, inp, name)?;
        if !lora.enabled() {
            return Ok(Self {
                weight,
                lora: None,
                compute,
            });
        }
        let r = lora.rank;
        let vb = vb.pp(name);
        // A ~ N(0, 1/in) keeps x·Aᵀ at the input's scale; B = 0 makes the adapted layer equal
        // the frozen one at the start (PEFT's convention up to A's distribution).
        let a = vb.get_with_hints(
            (r, inp),
            "lora_A",
            Init::Randn {
                mean: 0.0,
                stdev: 1.0 / (inp as f64).sqrt(),
            },
        )?;
        let b = vb.get_with_hints((out, r), "lora_B", Init::Const(0.0))?;
        Ok(Self {
            weight: weight.detach(),
            lora: Some(Lora {
                a,
                b,
                scale: lora.alpha / r as f64,
            }),
            compute,
        })
    }

    /// `x: [.., in]` → `[.., out]`.
    pub(super) fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let y = linear_in(x, &self.weight, self.compute)?;
        match &self.lora {
            None => Ok(y),
            Some(l) => {
                let low = linear_in(&linear_in(x, &l.a, self.compute)?, &l.b, self.compute)?;
                y + (low * l.scale)?
            }
        }
    }

    /// What trains: the weight, or with LoRA the adapter's two matrices.
    pub(super) fn trainable(&self) -> Vec<&Tensor> {
        match &self.lora {
            None => vec![&self.weight],
            Some(l) => vec![&l.a, &l.b],
        }
    }

    /// Adds the `[in, out]` initializer `{name}.T` for a `MatMul`: the weight, with the adapter
    /// merged in (`W + scale·B·A`, computed when the graph is written).
    pub(super) fn onnx_weight(&self, g: &mut OnnxGraph, name: &str) -> Result<String> {
        match &self.lora {
            None => g.weight_t(name, &self.weight),
            // (W + s·B·A)ᵀ = Wᵀ + s·Aᵀ·Bᵀ.
            Some(l) => g.weight_plus_low_rank(
                &format!("{name}.T"),
                &self.weight.t()?,
                (&l.a.t()?, &l.b.t()?, l.scale),
            ),
        }
    }

    /// The merged weight `[out, in]` (`W + scale·B·A`), detached.
    #[cfg(test)]
    pub(super) fn merged(&self) -> Result<Tensor> {
        match &self.lora {
            None => Ok(self.weight.detach()),
            Some(l) => self.weight.detach() + (l.b.matmul(&l.a)? * l.scale)?.detach(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{LoraConfig, Matmul};
    use crate::vars::SeededVarMap;
    use candle_core::Device;

    #[test]
    fn lora_starts_at_the_frozen_layer_and_merges_exactly() -> Result<()> {
        let dev = Device::Cpu;
        let vars = SeededVarMap::new(4);
        let vb = vars.builder(&dev);
        let lora = LoraConfig {
            rank: 3,
            alpha: 6.0,
        };
        let l = Linear::new(&vb, 5, 7, "p", BackboneOptions::lora(lora))?;
        let plain = Linear::new(&vb, 5, 7, "p", BackboneOptions::default())?;
        let x = Tensor::randn(0f32, 1.0, (2, 4, 7), &dev)?;
        let diff = |a: &Tensor, b: &Tensor| -> Result<f32> {
            (a - b)?.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>()
        };
        assert_eq!(diff(&l.forward(&x)?, &plain.forward(&x)?)?, 0.0);
        // Train-like change of B, then the merged weight reproduces the adapted layer.
        let lb = l.lora.as_ref().map(|a| a.b.clone()).expect("adapter");
        vars.insert("p.lora_B", Tensor::randn(0f32, 1.0, (5, 3), &dev)?)?;
        let merged = Linear {
            weight: l.merged()?,
            lora: None,
            compute: DType::F32,
        };
        assert!(diff(&l.forward(&x)?, &merged.forward(&x)?)? < 1e-5);
        assert!(
            lb.to_dtype(DType::F32)?
                .abs()?
                .sum_all()?
                .to_scalar::<f32>()?
                > 0.0
        );
        // Only the adapter gets gradients.
        let grads = l.forward(&x)?.sqr()?.sum_all()?.backward()?;
        assert!(grads.get(&l.weight).is_none());
        assert!(l.trainable().iter().all(|t| grads.get(t).is_some()));
        Ok(())
    }

    /// bf16 products keep f32 weights and f32 gradients, within bf16's precision of f32's.
    #[test]
    fn bf16_products_track_f32_with_f32_gradients() -> Result<()> {
        let dev = Device::Cpu;
        let vars = SeededVarMap::new(9);
        let vb = vars.builder(&dev);
        let f32l = Linear::new(&vb, 16, 32, "p", BackboneOptions::default())?;
        let opts = BackboneOptions {
            matmul: Matmul::Bf16,
            ..BackboneOptions::default()
        };
        let bf16l = Linear::new(&vb, 16, 32, "p", opts)?;
        let x = Tensor::randn(0f32, 1.0, (3, 5, 32), &dev)?;
        let (a, b) = (f32l.forward(&x)?, bf16l.forward(&x)?);
        assert_eq!(b.dtype(), DType::F32);
        let scale = a.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>()?;
        let err = (&a - &b)?
            .abs()?
            .flatten_all()?
            .max(0)?
            .to_scalar::<f32>()?;
        assert!(
            err > 0.0 && err < 2e-2 * scale,
            "bf16 error {err} at scale {scale}"
        );
        let (ga, gb) = (
            a.sqr()?.sum_all()?.backward()?,
            b.sqr()?.sum_all()?.backward()?,
        );
        let (ga, gb) = (
            ga.get(&f32l.weight).expect("grad"),
            gb.get(&bf16l.weight).expect("grad"),
        );
        assert_eq!(gb.dtype(), DType::F32);
        let gs = ga.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>()?;
        let ge = (ga - gb)?
            .abs()?
            .flatten_all()?
            .max(0)?
            .to_scalar::<f32>()?;
        assert!(ge < 3e-2 * gs, "gradient error {ge} at scale {gs}");
        Ok(())
    }
}
