//! Grouped-query self-attention with per-head q/k norms and rope, and its ONNX emission.

use candle_core::{Result, Tensor};
use candle_nn::VarBuilder;

use super::fused::rope::rope_heads;
use super::fused::softmax::masked_softmax;
use super::linear::{matmul_in, Linear};
use super::norm::RmsNorm;
use super::BackboneOptions;
use super::Qwen3Config;
use crate::onnx::{attr_int, attr_ints, OnnxGraph};

/// What every layer reads besides its input: the rope tables and the additive attention mask,
/// as tensors (for `forward`) or as graph value names (for `onnx`).
#[derive(Debug, Clone)]
pub(crate) struct LayerInputs<T> {
    /// Rope cosines, `[L, head_dim]`.
    pub(crate) cos: T,
    /// Rope sines, `[L, head_dim]`.
    pub(crate) sin: T,
    /// Additive mask: `[L, L]` causal (candle), `[B, 1, L, L]` causal and padding (ONNX).
    pub(crate) mask: T,
}

/// Grouped-query self-attention with per-head q/k RmsNorm (Qwen3), weights `[out, in]`.
#[derive(Debug, Clone)]
pub(crate) struct Attention {
    /// Query projection `[heads·head_dim, H]`.
    pub(crate) q_proj: Linear,
    /// Key projection `[kv_heads·head_dim, H]`.
    pub(crate) k_proj: Linear,
    /// Value projection `[kv_heads·head_dim, H]`.
    pub(crate) v_proj: Linear,
    /// Output projection `[H, heads·head_dim]`.
    pub(crate) o_proj: Linear,
    /// Per-head norm of the queries (before rope).
    pub(crate) q_norm: RmsNorm,
    /// Per-head norm of the keys (before rope).
    pub(crate) k_norm: RmsNorm,
    /// Query heads.
    pub(crate) num_heads: usize,
    /// Key/value heads (each serves `num_heads / num_kv_heads` query heads).
    pub(crate) num_kv_heads: usize,
    /// Width of one head.
    pub(crate) head_dim: usize,
    /// dtype of the attention products (f32, or bf16 with f32 softmax).
    pub(crate) compute: candle_core::DType,
}

impl Attention {
    pub(super) fn new(cfg: &Qwen3Config, vb: VarBuilder, opts: BackboneOptions) -> Result<Self> {
        let (h, hd) = (cfg.hidden_size, cfg.head_dim);
        let (q, kv) = (cfg.num_attention_heads * hd, cfg.num_key_value_heads * hd);
        Ok(Self {
            q_proj: Linear::new(&vb, q, h, "q_proj", opts)?,
            k_proj: Linear::new(&vb, kv, h, "k_proj", opts)?,
            v_proj: Linear::new(&vb, kv, h, "v_proj", opts)?,
            o_proj: Linear::new(&vb, h, q, "o_proj", opts)?,
            q_norm: RmsNorm::new(hd, cfg.rms_norm_eps, vb.pp("q_norm"))?,
            k_norm: RmsNorm::new(hd, cfg.rms_norm_eps, vb.pp("k_norm"))?,
            num_heads: cfg.num_attention_heads,
            num_kv_heads: cfg.num_key_value_heads,
            head_dim: hd,
            compute: opts.compute_dtype(),
        })
    }

    /// `x: [B, L, H]` → `[B, L, H]`.
    pub(super) fn forward(&self, x: &Tensor, at: &LayerInputs<Tensor>) -> Result<Tensor> {
        let (cos, sin) = (&at.cos, &at.sin);
        let (b, l, _) = x.dims3()?;
        let (nh, nkv, hd) = (self.num_heads, self.num_kv_heads, self.head_dim);
        // Per-head RmsNorm over head_dim, before rope (Qwen3); rope also moves the heads
        // before the positions, [B, L, heads, d] → [B, heads, L, d].
        let q = self
            .q_norm
            .forward(&self.q_proj.forward(x)?.reshape((b, l, nh, hd))?)?;
        let k = self
            .k_norm
            .forward(&self.k_proj.forward(x)?.reshape((b, l, nkv, hd))?)?;
        let v = self
            .v_proj
            .forward(x)?
            .reshape((b, l, nkv, hd))?
            .transpose(1, 2)?;
        // GQA without copying k/v: query head h uses kv head h / n_rep, so the n_rep query heads
        // of a group are stacked along the sequence axis, [B, kv, n_rep·L, d], and share one
        // matmul with their kv head (same result as HF's repeat_kv).
        let n_rep = nh / nkv;
        let q = rope_heads(&q, cos, sin)?
            .contiguous()?
            .reshape((b, nkv, n_rep * l, hd))?;
        let k = rope_heads(&k, cos, sin)?.contiguous()?;
        let v = v.contiguous()?;
        let scale = 1.0 / (hd as f64).sqrt();
        // Each row of the [B, kv, n_rep·L, L] scores is query position (row mod L) of some head:
        // the [L, L] mask repeats over them.
        let att = masked_softmax(&matmul_in(&q, &k.t()?, self.compute)?, &at.mask, scale)?;
        let y = matmul_in(&att, &v, self.compute)?
            .reshape((b, nh, l, hd))?
            .transpose(1, 2)?
            .reshape((b, l, nh * hd))?;
        self.o_proj.forward(&y)
    }

    /// ONNX of [`Attention::forward`]: the same GQA grouping, `mask` is `[B, 1, L, L]` additive.
    pub(super) fn onnx(
        &self,
        g: &mut OnnxGraph,
        scope: &str,
        x: &str,
        at: &LayerInputs<String>,
    ) -> Result<String> {
        let (cos, sin) = (&at.cos, &at.sin);
        let (nh, nkv, hd) = (
            self.num_heads as i64,
            self.num_kv_heads as i64,
            self.head_dim as i64,
        );
        let heads = |g: &mut OnnxGraph, w: &Linear, name: &str, n: i64| -> Result<String> {
            let w = w.onnx_weight(g, &format!("{scope}.{name}.weight"))?;
            let y = g.linear(scope, x, &w, None);
            let shape = g.ints(&format!("const.shape_0_0_{n}_{hd}"), &[0, 0, n, hd]);
            Ok(g.op(scope, "Reshape", &[&y, &shape], vec![]))
        };
        let to_bhld = |g: &mut OnnxGraph, t: &str| {
            g.op(
                scope,
                "Transpose",
                &[t],
                vec![attr_ints("perm", &[0, 2, 1, 3])],
            )
        };
        let q = heads(g, &self.q_proj, "q_proj", nh)?;
        let q = self.q_norm.onnx(g, &format!("{scope}.q_norm"), &q, 3)?;
        let q = to_bhld(g, &q);
        let k = heads(g, &self.k_proj, "k_proj", nkv)?;
        let k = self.k_norm.onnx(g, &format!("{scope}.k_norm"), &k, 3)?;
        let k = to_bhld(g, &k);
        let v = heads(g, &self.v_proj, "v_proj", nkv)?;
        let v = to_bhld(g, &v);
        let q = rope_onnx(g, scope, &q, cos, sin, hd);
        let k = rope_onnx(g, scope, &k, cos, sin, hd);
        let grouped = g.ints(&format!("const.shape_0_{nkv}_-1_{hd}"), &[0, nkv, -1, hd]);
        let q = g.op(scope, "Reshape", &[&q, &grouped], vec![]);
        let kt = g.op(
            scope,
            "Transpose",
            &[&k],
            vec![attr_ints("perm", &[0, 1, 3, 2])],
        );
        let att = g.op(scope, "MatMul", &[&q, &kt], vec![]);
        let scale = g.f32_scalar(
            &format!("const.inv_sqrt_{hd}"),
            (1.0 / (hd as f64).sqrt()) as f32,
        );
        let att = g.op(scope, "Mul", &[&att, &scale], vec![]);
        let per_head = g.ints(&format!("const.shape_0_{nh}_-1_0"), &[0, nh, -1, 0]);
        let att = g.op(scope, "Reshape", &[&att, &per_head], vec![]);
        let att = g.op(scope, "Add", &[&att, &at.mask], vec![]);
        let att = g.op(scope, "Softmax", &[&att], vec![attr_int("axis", 3)]);
        let per_group = g.ints(&format!("const.shape_0_{nkv}_-1_0"), &[0, nkv, -1, 0]);
        let att = g.op(scope, "Reshape", &[&att, &per_group], vec![]);
        let y = g.op(scope, "MatMul", &[&att, &v], vec![]);
        let per_head_y = g.ints(&format!("const.shape_0_{nh}_-1_{hd}"), &[0, nh, -1, hd]);
        let y = g.op(scope, "Reshape", &[&y, &per_head_y], vec![]);
        let y = g.op(
            scope,
            "Transpose",
            &[&y],
            vec![attr_ints("perm", &[0, 2, 1, 3])],
        );
        let merged = g.ints(&format!("const.shape_0_0_{}", nh * hd), &[0, 0, nh * hd]);
        let y = g.op(scope, "Reshape", &[&y, &merged], vec![]);
        let o = self
            .o_proj
            .onnx_weight(g, &format!("{scope}.o_proj.weight"))?;
        Ok(g.linear(scope, &y, &o, None))
    }
}

/// ONNX of rope (`fused::rope::composed`, HF's `x·cos + rotate_half(x)·sin`) for `x: [B, heads, L, hd]`.
fn rope_onnx(g: &mut OnnxGraph, scope: &str, x: &str, cos: &str, sin: &str, hd: i64) -> String {
    let (zero, half, full, axis) = (
        g.ints("const.i0", &[0]),
        g.ints(&format!("const.i{}", hd / 2), &[hd / 2]),
        g.ints(&format!("const.i{hd}"), &[hd]),
        g.ints("const.i3", &[3]),
    );
    let x1 = g.op(scope, "Slice", &[x, &zero, &half, &axis], vec![]);
    let x2 = g.op(scope, "Slice", &[x, &half, &full, &axis], vec![]);
    let neg = g.op(scope, "Neg", &[&x2], vec![]);
    let rot = g.op(scope, "Concat", &[&neg, &x1], vec![attr_int("axis", 3)]);
    let a = g.op(scope, "Mul", &[x, cos], vec![]);
    let b = g.op(scope, "Mul", &[&rot, sin], vec![]);
    g.op(scope, "Add", &[&a, &b], vec![])
}
