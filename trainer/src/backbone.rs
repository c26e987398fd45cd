//! The project's own trainable Qwen3 decoder (SPEC §2, Backbone / Formatting and pooling).
//!
//! `candle_transformers::models::qwen3` cannot be trained (fused RmsNorm/rope/softmax without
//! backward, stateful KV cache), so this module re-implements the architecture from
//! differentiable candle primitives only: matmul, `candle_nn::ops::softmax`, an RmsNorm written
//! as `x * 1/sqrt(mean(x²) + eps) * w`, rope from cos/sin tables with `narrow`/`cat`
//! (HF `rotate_half` convention), an additive causal mask and grouped-query attention by
//! repeating the key/value heads. It is stateless (no KV cache).
//!
//! Weights come from a [`VarBuilder`] under the Hugging Face tensor names
//! (`model.embed_tokens.weight`, `model.layers.N.self_attn.q_proj.weight`, ...). Over a
//! [`SeededVarMap`] a from-scratch model is initialised reproducibly (embeddings and linears
//! N(0, 0.02), norms 1); a checkpoint inserted first with [`load_hf_dir`] is used as is.
//!
//! The weight tensors are `pub(crate)` so that an exporter (ONNX) in this module can read them.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor, D};
use candle_nn::{Init, VarBuilder};
use serde::{Deserialize, Serialize};

use crate::onnx::{attr_int, attr_ints, attr_tensor, f32_value, OnnxGraph};
use crate::vars::SeededVarMap;
use candle_onnx::onnx::tensor_proto::DataType;

/// Errors of configuration and checkpoint loading.
#[derive(Debug, thiserror::Error)]
pub enum BackboneError {
    #[error("invalid Qwen3 config: {0}")]
    InvalidConfig(String),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: invalid JSON: {source}")]
    Json {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("{dir}: no model.safetensors or model.safetensors.index.json")]
    NoWeights { dir: PathBuf },
    #[error("tensor {name} missing from {file}")]
    MissingTensor { name: String, file: PathBuf },
    #[error("tensor {name} in {file} has shape {got:?}, expected {expected:?}")]
    ShapeMismatch {
        name: String,
        file: PathBuf,
        expected: Vec<usize>,
        got: Vec<usize>,
    },
    #[error("tensor {name} in {file} has unsupported dtype {dtype} (expected f32, f16 or bf16)")]
    UnsupportedDtype {
        name: String,
        file: PathBuf,
        dtype: String,
    },
    #[error("{file}: {context}: {source}")]
    Safetensors {
        file: PathBuf,
        context: String,
        #[source]
        source: Box<candle_core::Error>,
    },
    #[error(transparent)]
    Candle(Box<candle_core::Error>),
}

impl From<candle_core::Error> for BackboneError {
    fn from(e: candle_core::Error) -> Self {
        Self::Candle(Box::new(e))
    }
}

/// Result of configuration and loading functions.
pub type Result<T> = std::result::Result<T, BackboneError>;

/// Shape hyper-parameters of a Qwen3 decoder, as in a Hugging Face `config.json`.
///
/// Deserialising validates and resolves defaults (`head_dim` = hidden/heads when absent,
/// `num_key_value_heads` = heads when absent, `rope_theta` from `rope_parameters` if needed);
/// unknown fields are ignored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "RawQwen3Config")]
pub struct Qwen3Config {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub num_key_value_heads: usize,
    pub head_dim: usize,
    pub rms_norm_eps: f64,
    pub rope_theta: f64,
    pub max_position_embeddings: usize,
    pub tie_word_embeddings: bool,
}

#[derive(Deserialize)]
struct RawQwen3Config {
    vocab_size: usize,
    hidden_size: usize,
    intermediate_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    #[serde(default)]
    num_key_value_heads: Option<usize>,
    #[serde(default)]
    head_dim: Option<usize>,
    #[serde(default = "default_eps")]
    rms_norm_eps: f64,
    #[serde(default)]
    rope_theta: Option<f64>,
    /// transformers ≥ 5 writes `rope_parameters: {rope_type, rope_theta}` instead.
    #[serde(default)]
    rope_parameters: Option<serde_json::Value>,
    #[serde(default)]
    rope_scaling: Option<serde_json::Value>,
    #[serde(default = "default_max_pos")]
    max_position_embeddings: usize,
    #[serde(default)]
    tie_word_embeddings: bool,
    #[serde(default)]
    hidden_act: Option<String>,
    #[serde(default)]
    attention_bias: bool,
    #[serde(default)]
    use_sliding_window: bool,
    #[serde(default)]
    model_type: Option<String>,
}

fn default_eps() -> f64 {
    1e-6
}
fn default_max_pos() -> usize {
    32768
}

/// Accepts a missing/null rope scaling or the plain "default" rope type.
fn check_rope_type(v: &Option<serde_json::Value>, field: &str) -> std::result::Result<(), String> {
    match v {
        None | Some(serde_json::Value::Null) => Ok(()),
        Some(serde_json::Value::Object(m)) => {
            let ty = m
                .get("rope_type")
                .or_else(|| m.get("type"))
                .and_then(|t| t.as_str())
                .unwrap_or("default");
            if ty == "default" {
                Ok(())
            } else {
                Err(format!(
                    "{field}.rope_type {ty:?} is not supported (only default rope)"
                ))
            }
        }
        Some(other) => Err(format!("{field} must be an object or null, got {other}")),
    }
}

impl TryFrom<RawQwen3Config> for Qwen3Config {
    type Error = String;

    fn try_from(r: RawQwen3Config) -> std::result::Result<Self, String> {
        if let Some(mt) = &r.model_type {
            if mt != "qwen3" {
                return Err(format!("model_type {mt:?} is not \"qwen3\""));
            }
        }
        if let Some(act) = &r.hidden_act {
            if act != "silu" {
                return Err(format!(
                    "hidden_act {act:?} is not supported (only \"silu\")"
                ));
            }
        }
        if r.attention_bias {
            return Err(
                "attention_bias = true is not supported (Qwen3 has no attention biases)".into(),
            );
        }
        if r.use_sliding_window {
            return Err("use_sliding_window = true is not supported".into());
        }
        check_rope_type(&r.rope_scaling, "rope_scaling")?;
        check_rope_type(&r.rope_parameters, "rope_parameters")?;
        let rope_theta = match r.rope_theta {
            Some(t) => t,
            None => r
                .rope_parameters
                .as_ref()
                .and_then(|p| p.get("rope_theta"))
                .and_then(|t| t.as_f64())
                .unwrap_or(10_000.0),
        };
        if r.num_attention_heads == 0 {
            return Err("num_attention_heads must be > 0".into());
        }
        let head_dim = match r.head_dim {
            Some(h) => h,
            None => {
                if !r.hidden_size.is_multiple_of(r.num_attention_heads) {
                    return Err(format!(
                        "hidden_size {} is not divisible by num_attention_heads {} (and head_dim is absent)",
                        r.hidden_size, r.num_attention_heads
                    ));
                }
                r.hidden_size / r.num_attention_heads
            }
        };
        let cfg = Qwen3Config {
            vocab_size: r.vocab_size,
            hidden_size: r.hidden_size,
            intermediate_size: r.intermediate_size,
            num_hidden_layers: r.num_hidden_layers,
            num_attention_heads: r.num_attention_heads,
            num_key_value_heads: r.num_key_value_heads.unwrap_or(r.num_attention_heads),
            head_dim,
            rms_norm_eps: r.rms_norm_eps,
            rope_theta,
            max_position_embeddings: r.max_position_embeddings,
            tie_word_embeddings: r.tie_word_embeddings,
        };
        cfg.validate().map_err(|e| match e {
            BackboneError::InvalidConfig(m) => m,
            other => other.to_string(),
        })?;
        Ok(cfg)
    }
}

impl Qwen3Config {
    /// The CPU default trained from scratch: hidden 64, 2 layers, 4 heads (2 kv), head_dim 16.
    pub fn tiny(vocab_size: usize) -> Self {
        Self {
            vocab_size,
            hidden_size: 64,
            intermediate_size: 192,
            num_hidden_layers: 2,
            num_attention_heads: 4,
            num_key_value_heads: 2,
            head_dim: 16,
            rms_norm_eps: 1e-6,
            rope_theta: 10_000.0,
            max_position_embeddings: 4096,
            tie_word_embeddings: true,
        }
    }

    /// Parses (and validates) a `config.json` text.
    pub fn from_json_str(s: &str) -> std::result::Result<Self, serde_json::Error> {
        serde_json::from_str(s)
    }

    /// Reads (and validates) a `config.json` file.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| BackboneError::Io {
            path: path.into(),
            source,
        })?;
        serde_json::from_str(&text).map_err(|source| BackboneError::Json {
            path: path.into(),
            source,
        })
    }

    /// Checks the shape constraints.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(BackboneError::InvalidConfig(m));
        for (name, v) in [
            ("vocab_size", self.vocab_size),
            ("hidden_size", self.hidden_size),
            ("intermediate_size", self.intermediate_size),
            ("num_hidden_layers", self.num_hidden_layers),
            ("num_attention_heads", self.num_attention_heads),
            ("num_key_value_heads", self.num_key_value_heads),
            ("head_dim", self.head_dim),
            ("max_position_embeddings", self.max_position_embeddings),
        ] {
            if v == 0 {
                return bad(format!("{name} must be > 0"));
            }
        }
        if !self
            .num_attention_heads
            .is_multiple_of(self.num_key_value_heads)
        {
            return bad(format!(
                "num_attention_heads {} is not divisible by num_key_value_heads {}",
                self.num_attention_heads, self.num_key_value_heads
            ));
        }
        if !self.head_dim.is_multiple_of(2) {
            return bad(format!(
                "head_dim {} must be even (rope rotates halves)",
                self.head_dim
            ));
        }
        if !(self.rms_norm_eps.is_finite() && self.rms_norm_eps > 0.0) {
            return bad(format!(
                "rms_norm_eps {} must be finite and > 0",
                self.rms_norm_eps
            ));
        }
        if !(self.rope_theta.is_finite() && self.rope_theta > 0.0) {
            return bad(format!(
                "rope_theta {} must be finite and > 0",
                self.rope_theta
            ));
        }
        Ok(())
    }

    /// Every backbone tensor with its HF name and shape, in a fixed order.
    pub fn tensor_shapes(&self) -> Vec<(String, Vec<usize>)> {
        let (h, i, hd) = (self.hidden_size, self.intermediate_size, self.head_dim);
        let (q, kv) = (self.num_attention_heads * hd, self.num_key_value_heads * hd);
        let mut out = vec![(
            "model.embed_tokens.weight".to_string(),
            vec![self.vocab_size, h],
        )];
        for l in 0..self.num_hidden_layers {
            let p = format!("model.layers.{l}");
            out.extend([
                (format!("{p}.input_layernorm.weight"), vec![h]),
                (format!("{p}.self_attn.q_proj.weight"), vec![q, h]),
                (format!("{p}.self_attn.k_proj.weight"), vec![kv, h]),
                (format!("{p}.self_attn.v_proj.weight"), vec![kv, h]),
                (format!("{p}.self_attn.o_proj.weight"), vec![h, q]),
                (format!("{p}.self_attn.q_norm.weight"), vec![hd]),
                (format!("{p}.self_attn.k_norm.weight"), vec![hd]),
                (format!("{p}.post_attention_layernorm.weight"), vec![h]),
                (format!("{p}.mlp.gate_proj.weight"), vec![i, h]),
                (format!("{p}.mlp.up_proj.weight"), vec![i, h]),
                (format!("{p}.mlp.down_proj.weight"), vec![h, i]),
            ]);
        }
        out.push(("model.norm.weight".to_string(), vec![h]));
        out
    }
}

const LINEAR_INIT: Init = Init::Randn {
    mean: 0.0,
    stdev: 0.02,
};
const NORM_INIT: Init = Init::Const(1.0);

/// RmsNorm from primitives: `x * 1/sqrt(mean(x², last) + eps) * w`.
#[derive(Debug, Clone)]
pub(crate) struct RmsNorm {
    pub(crate) weight: Tensor,
    pub(crate) eps: f64,
}

impl RmsNorm {
    fn new(size: usize, eps: f64, vb: VarBuilder) -> candle_core::Result<Self> {
        Ok(Self {
            weight: vb.get_with_hints(size, "weight", NORM_INIT)?,
            eps,
        })
    }

    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let inv = (x.sqr()?.mean_keepdim(D::Minus1)? + self.eps)?
            .sqrt()?
            .recip()?;
        x.broadcast_mul(&inv)?.broadcast_mul(&self.weight)
    }

    /// ONNX of [`RmsNorm::forward`] over the last axis, `axis` (ONNX wants it non-negative).
    fn onnx(
        &self,
        g: &mut OnnxGraph,
        scope: &str,
        x: &str,
        axis: i64,
    ) -> candle_core::Result<String> {
        let w = g.weight(&format!("{scope}.weight"), &self.weight)?;
        let eps = g.f32_scalar(&format!("{scope}.eps"), self.eps as f32);
        let one = g.f32_scalar("const.one", 1.0);
        let sq = g.op(scope, "Mul", &[x, x], vec![]);
        let ms = g.op(
            scope,
            "ReduceMean",
            &[&sq],
            vec![attr_ints("axes", &[axis]), attr_int("keepdims", 1)],
        );
        let s = g.op(scope, "Add", &[&ms, &eps], vec![]);
        let s = g.op(scope, "Sqrt", &[&s], vec![]);
        let inv = g.op(scope, "Div", &[&one, &s], vec![]);
        let y = g.op(scope, "Mul", &[x, &inv], vec![]);
        Ok(g.op(scope, "Mul", &[&y, &w], vec![]))
    }
}

/// `x @ wᵀ` for `x: [.., in]`, `w: [out, in]` (no bias).
fn linear(x: &Tensor, w: &Tensor) -> candle_core::Result<Tensor> {
    let dims = x.dims();
    let n_in = dims[dims.len() - 1];
    let rows = x.elem_count() / n_in.max(1);
    let y = x.reshape((rows, n_in))?.matmul(&w.t()?)?;
    let mut out = dims.to_vec();
    let last = out.len() - 1;
    out[last] = w.dim(0)?;
    y.reshape(out)
}

fn linear_weight(
    vb: &VarBuilder,
    out: usize,
    inp: usize,
    name: &str,
) -> candle_core::Result<Tensor> {
    vb.pp(name)
        .get_with_hints((out, inp), "weight", LINEAR_INIT)
}

#[derive(Debug, Clone)]
pub(crate) struct Attention {
    pub(crate) q_proj: Tensor,
    pub(crate) k_proj: Tensor,
    pub(crate) v_proj: Tensor,
    pub(crate) o_proj: Tensor,
    pub(crate) q_norm: RmsNorm,
    pub(crate) k_norm: RmsNorm,
    pub(crate) num_heads: usize,
    pub(crate) num_kv_heads: usize,
    pub(crate) head_dim: usize,
}

impl Attention {
    fn new(cfg: &Qwen3Config, vb: VarBuilder) -> candle_core::Result<Self> {
        let (h, hd) = (cfg.hidden_size, cfg.head_dim);
        let (q, kv) = (cfg.num_attention_heads * hd, cfg.num_key_value_heads * hd);
        Ok(Self {
            q_proj: linear_weight(&vb, q, h, "q_proj")?,
            k_proj: linear_weight(&vb, kv, h, "k_proj")?,
            v_proj: linear_weight(&vb, kv, h, "v_proj")?,
            o_proj: linear_weight(&vb, h, q, "o_proj")?,
            q_norm: RmsNorm::new(hd, cfg.rms_norm_eps, vb.pp("q_norm"))?,
            k_norm: RmsNorm::new(hd, cfg.rms_norm_eps, vb.pp("k_norm"))?,
            num_heads: cfg.num_attention_heads,
            num_kv_heads: cfg.num_key_value_heads,
            head_dim: hd,
        })
    }

    /// `x: [B, L, H]`, `cos`/`sin`: `[L, head_dim]`, `mask`: `[L, L]` additive.
    fn forward(
        &self,
        x: &Tensor,
        cos: &Tensor,
        sin: &Tensor,
        mask: &Tensor,
    ) -> candle_core::Result<Tensor> {
        let (b, l, _) = x.dims3()?;
        let (nh, nkv, hd) = (self.num_heads, self.num_kv_heads, self.head_dim);
        // Per-head RmsNorm over head_dim, before rope (Qwen3).
        let q = self
            .q_norm
            .forward(&linear(x, &self.q_proj)?.reshape((b, l, nh, hd))?)?
            .transpose(1, 2)?;
        let k = self
            .k_norm
            .forward(&linear(x, &self.k_proj)?.reshape((b, l, nkv, hd))?)?
            .transpose(1, 2)?;
        let v = linear(x, &self.v_proj)?
            .reshape((b, l, nkv, hd))?
            .transpose(1, 2)?;
        // GQA without copying k/v: query head h uses kv head h / n_rep, so the n_rep query heads
        // of a group are stacked along the sequence axis, [B, kv, n_rep·L, d], and share one
        // matmul with their kv head (same result as HF's repeat_kv).
        let n_rep = nh / nkv;
        let q = apply_rope(&q, cos, sin)?
            .contiguous()?
            .reshape((b, nkv, n_rep * l, hd))?;
        let k = apply_rope(&k, cos, sin)?.contiguous()?;
        let v = v.contiguous()?;
        let scale = 1.0 / (hd as f64).sqrt();
        let att = (q.matmul(&k.t()?)? * scale)?
            .reshape((b, nh, l, l))?
            .broadcast_add(mask)?;
        let att = candle_nn::ops::softmax(&att, D::Minus1)?.reshape((b, nkv, n_rep * l, l))?;
        let y = att
            .matmul(&v)?
            .reshape((b, nh, l, hd))?
            .transpose(1, 2)?
            .reshape((b, l, nh * hd))?;
        linear(&y, &self.o_proj)
    }

    /// ONNX of [`Attention::forward`]: the same GQA grouping, `mask` is `[B, 1, L, L]` additive.
    fn onnx(
        &self,
        g: &mut OnnxGraph,
        scope: &str,
        x: &str,
        cos: &str,
        sin: &str,
        mask: &str,
    ) -> candle_core::Result<String> {
        let (nh, nkv, hd) = (
            self.num_heads as i64,
            self.num_kv_heads as i64,
            self.head_dim as i64,
        );
        let heads =
            |g: &mut OnnxGraph, w: &Tensor, name: &str, n: i64| -> candle_core::Result<String> {
                let w = g.weight_t(&format!("{scope}.{name}.weight"), w)?;
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
        let att = g.op(scope, "Add", &[&att, mask], vec![]);
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
        let o = g.weight_t(&format!("{scope}.o_proj.weight"), &self.o_proj)?;
        Ok(g.linear(scope, &y, &o, None))
    }
}

/// HF rope: `x·cos + rotate_half(x)·sin`, `rotate_half(x) = [-x₂, x₁]`.
fn apply_rope(x: &Tensor, cos: &Tensor, sin: &Tensor) -> candle_core::Result<Tensor> {
    let d = x.dim(D::Minus1)?;
    let x1 = x.narrow(D::Minus1, 0, d / 2)?;
    let x2 = x.narrow(D::Minus1, d / 2, d / 2)?;
    let rot = Tensor::cat(&[&x2.neg()?, &x1], D::Minus1)?;
    x.broadcast_mul(cos)? + rot.broadcast_mul(sin)?
}

/// ONNX of [`apply_rope`] for `x: [B, heads, L, hd]`.
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

#[derive(Debug, Clone)]
pub(crate) struct Mlp {
    pub(crate) gate_proj: Tensor,
    pub(crate) up_proj: Tensor,
    pub(crate) down_proj: Tensor,
}

impl Mlp {
    fn new(cfg: &Qwen3Config, vb: VarBuilder) -> candle_core::Result<Self> {
        let (h, i) = (cfg.hidden_size, cfg.intermediate_size);
        Ok(Self {
            gate_proj: linear_weight(&vb, i, h, "gate_proj")?,
            up_proj: linear_weight(&vb, i, h, "up_proj")?,
            down_proj: linear_weight(&vb, h, i, "down_proj")?,
        })
    }

    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let g = linear(x, &self.gate_proj)?.silu()?;
        linear(&(g * linear(x, &self.up_proj)?)?, &self.down_proj)
    }

    /// ONNX of [`Mlp::forward`] (SiLU as `x·sigmoid(x)`).
    fn onnx(&self, g: &mut OnnxGraph, scope: &str, x: &str) -> candle_core::Result<String> {
        let wg = g.weight_t(&format!("{scope}.gate_proj.weight"), &self.gate_proj)?;
        let wu = g.weight_t(&format!("{scope}.up_proj.weight"), &self.up_proj)?;
        let wd = g.weight_t(&format!("{scope}.down_proj.weight"), &self.down_proj)?;
        let gate = g.linear(scope, x, &wg, None);
        let sig = g.op(scope, "Sigmoid", &[&gate], vec![]);
        let silu = g.op(scope, "Mul", &[&gate, &sig], vec![]);
        let up = g.linear(scope, x, &wu, None);
        let h = g.op(scope, "Mul", &[&silu, &up], vec![]);
        Ok(g.linear(scope, &h, &wd, None))
    }
}

#[derive(Debug, Clone)]
pub(crate) struct DecoderLayer {
    pub(crate) input_layernorm: RmsNorm,
    pub(crate) self_attn: Attention,
    pub(crate) post_attention_layernorm: RmsNorm,
    pub(crate) mlp: Mlp,
}

impl DecoderLayer {
    fn new(cfg: &Qwen3Config, vb: VarBuilder) -> candle_core::Result<Self> {
        Ok(Self {
            input_layernorm: RmsNorm::new(
                cfg.hidden_size,
                cfg.rms_norm_eps,
                vb.pp("input_layernorm"),
            )?,
            self_attn: Attention::new(cfg, vb.pp("self_attn"))?,
            post_attention_layernorm: RmsNorm::new(
                cfg.hidden_size,
                cfg.rms_norm_eps,
                vb.pp("post_attention_layernorm"),
            )?,
            mlp: Mlp::new(cfg, vb.pp("mlp"))?,
        })
    }

    fn forward(
        &self,
        x: &Tensor,
        cos: &Tensor,
        sin: &Tensor,
        mask: &Tensor,
    ) -> candle_core::Result<Tensor> {
        let h = (x + self
            .self_attn
            .forward(&self.input_layernorm.forward(x)?, cos, sin, mask)?)?;
        &h + self
            .mlp
            .forward(&self.post_attention_layernorm.forward(&h)?)?
    }

    /// ONNX of [`DecoderLayer::forward`] under `scope` = `model.layers.{i}`.
    fn onnx(
        &self,
        g: &mut OnnxGraph,
        scope: &str,
        x: &str,
        cos: &str,
        sin: &str,
        mask: &str,
    ) -> candle_core::Result<String> {
        let n = self
            .input_layernorm
            .onnx(g, &format!("{scope}.input_layernorm"), x, 2)?;
        let a = self
            .self_attn
            .onnx(g, &format!("{scope}.self_attn"), &n, cos, sin, mask)?;
        let h = g.op(scope, "Add", &[x, &a], vec![]);
        let n = self.post_attention_layernorm.onnx(
            g,
            &format!("{scope}.post_attention_layernorm"),
            &h,
            2,
        )?;
        let m = self.mlp.onnx(g, &format!("{scope}.mlp"), &n)?;
        Ok(g.op(scope, "Add", &[&h, &m], vec![]))
    }
}

/// A trainable, stateless Qwen3 decoder returning final-norm hidden states.
#[derive(Debug, Clone)]
pub struct Qwen3 {
    pub(crate) cfg: Qwen3Config,
    pub(crate) embed_tokens: Tensor,
    pub(crate) layers: Vec<DecoderLayer>,
    pub(crate) norm: RmsNorm,
    pub(crate) device: Device,
}

impl Qwen3 {
    /// Builds the decoder from `vb` (the root: tensors are read under `model.`). Over a
    /// [`SeededVarMap`], missing tensors are created with the seeded init.
    pub fn new(cfg: &Qwen3Config, vb: VarBuilder) -> candle_core::Result<Self> {
        cfg.validate()
            .map_err(|e| candle_core::Error::Msg(e.to_string()))?;
        let vb = vb.pp("model");
        let embed_tokens = vb.pp("embed_tokens").get_with_hints(
            (cfg.vocab_size, cfg.hidden_size),
            "weight",
            LINEAR_INIT,
        )?;
        let vbl = vb.pp("layers");
        let layers = (0..cfg.num_hidden_layers)
            .map(|i| DecoderLayer::new(cfg, vbl.pp(i)))
            .collect::<candle_core::Result<Vec<_>>>()?;
        let norm = RmsNorm::new(cfg.hidden_size, cfg.rms_norm_eps, vb.pp("norm"))?;
        Ok(Self {
            cfg: cfg.clone(),
            embed_tokens,
            layers,
            norm,
            device: vb.device().clone(),
        })
    }

    /// Loads a Hugging Face directory into `vars` (see [`load_hf_dir`]) and builds the decoder.
    pub fn from_hf_dir(
        dir: impl AsRef<Path>,
        vars: &SeededVarMap,
        device: &Device,
    ) -> Result<Self> {
        let cfg = load_hf_dir(dir, vars, device)?;
        Ok(Self::new(&cfg, vars.builder(device))?)
    }

    pub fn config(&self) -> &Qwen3Config {
        &self.cfg
    }

    pub fn hidden_size(&self) -> usize {
        self.cfg.hidden_size
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Rope inverse frequencies `θ^(−2i/head_dim)`, `i < head_dim/2`, in f32 as HF computes them.
    fn inv_freq(&self) -> Vec<f32> {
        let hd = self.cfg.head_dim;
        let base = self.cfg.rope_theta as f32;
        (0..hd / 2)
            .map(|i| 1.0 / base.powf((2 * i) as f32 / hd as f32))
            .collect()
    }

    /// `cos`, `sin` tables `[L, head_dim]` for positions `0..L` (computed in f32 as HF does).
    pub(crate) fn rope_tables(&self, l: usize) -> candle_core::Result<(Tensor, Tensor)> {
        let hd = self.cfg.head_dim;
        let inv_freq = self.inv_freq();
        let mut cos = Vec::with_capacity(l * hd);
        let mut sin = Vec::with_capacity(l * hd);
        for p in 0..l {
            let freqs: Vec<f32> = inv_freq.iter().map(|f| p as f32 * f).collect();
            for _ in 0..2 {
                cos.extend(freqs.iter().map(|f| f.cos()));
                sin.extend(freqs.iter().map(|f| f.sin()));
            }
        }
        Ok((
            Tensor::from_vec(cos, (l, hd), &self.device)?,
            Tensor::from_vec(sin, (l, hd), &self.device)?,
        ))
    }

    /// Additive causal mask `[L, L]`: 0 on and below the diagonal, `f32::MIN` above.
    pub(crate) fn causal_mask(&self, l: usize) -> candle_core::Result<Tensor> {
        let m: Vec<f32> = (0..l)
            .flat_map(|i| (0..l).map(move |j| if j > i { f32::MIN } else { 0.0 }))
            .collect();
        Tensor::from_vec(m, (l, l), &self.device)
    }

    /// Final-norm hidden states `[B, L, H]` (f32) for right-padded `input_ids: [B, L]` (u32).
    pub fn forward(&self, input_ids: &Tensor) -> candle_core::Result<Tensor> {
        let (b, l) = input_ids.dims2()?;
        if input_ids.dtype() != DType::U32 {
            candle_core::bail!("input_ids must be u32, got {:?}", input_ids.dtype());
        }
        if b == 0 || l == 0 {
            candle_core::bail!("input_ids must be non-empty, got shape [{b}, {l}]");
        }
        if l > self.cfg.max_position_embeddings {
            candle_core::bail!(
                "sequence length {l} exceeds max_position_embeddings {}",
                self.cfg.max_position_embeddings
            );
        }
        let max_id = input_ids.max_all()?.to_scalar::<u32>()? as usize;
        if max_id >= self.cfg.vocab_size {
            candle_core::bail!(
                "token id {max_id} out of range for vocab_size {}",
                self.cfg.vocab_size
            );
        }
        let mut x = self
            .embed_tokens
            .index_select(&input_ids.flatten_all()?, 0)?
            .reshape((b, l, self.cfg.hidden_size))?;
        let (cos, sin) = self.rope_tables(l)?;
        let mask = self.causal_mask(l)?;
        for layer in &self.layers {
            x = layer.forward(&x, &cos, &sin, &mask)?;
        }
        self.norm.forward(&x)
    }

    /// Last-real-token pooling `[B, H]`: row `b` is the hidden state at `lengths[b] − 1`
    /// (lengths derived from the attention mask, `sum(mask)`).
    pub fn pooled(&self, input_ids: &Tensor, lengths: &[usize]) -> candle_core::Result<Tensor> {
        let hidden = self.forward(input_ids)?;
        pool_last(&hidden, lengths)
    }

    /// ONNX of [`Qwen3::pooled`]: int64 `ids`, `mask` `[B, L]` (right-padded) → `[B, H]`.
    ///
    /// Rope tables and the causal mask are computed in the graph from the sequence length; the
    /// attention mask also hides padded keys (which causal attention already keeps away from
    /// real tokens under right padding), and `sum(mask) − 1` picks the pooled position.
    pub fn onnx(&self, g: &mut OnnxGraph, ids: &str, mask: &str) -> candle_core::Result<String> {
        let s = "model";
        let (h, hd) = (self.cfg.hidden_size as i64, self.cfg.head_dim as i64);
        let emb = g.weight("model.embed_tokens.weight", &self.embed_tokens)?;
        let mut x = g.op(s, "Gather", &[&emb, ids], vec![attr_int("axis", 0)]);

        let (i0, i1, i2) = (
            g.ints("const.i0", &[0]),
            g.ints("const.i1", &[1]),
            g.ints("const.i2", &[2]),
        );
        let (zero, one) = (
            g.int_scalar("const.zero", 0),
            g.int_scalar("const.one_i64", 1),
        );
        let shape = g.op(s, "Shape", &[ids], vec![]);
        let b1 = g.op(s, "Slice", &[&shape, &i0, &i1, &i0], vec![]);
        let l1 = g.op(s, "Slice", &[&shape, &i1, &i2, &i0], vec![]);
        let b0 = g.op(s, "Squeeze", &[&b1, &i0], vec![]);
        let l0 = g.op(s, "Squeeze", &[&l1, &i0], vec![]);

        // Rope tables [L, hd]: positions ⊗ inv_freq, duplicated, as in `rope_tables`.
        let inv = Tensor::from_vec(self.inv_freq(), (1, (hd / 2) as usize), &Device::Cpu)?;
        let inv = g.weight("model.rope.inv_freq", &inv)?;
        let pos = g.op(s, "Range", &[&zero, &l0, &one], vec![]);
        let pos = g.op(
            s,
            "Cast",
            &[&pos],
            vec![attr_int("to", DataType::Float as i64)],
        );
        let pos = g.op(s, "Unsqueeze", &[&pos, &i1], vec![]);
        let freqs = g.op(s, "MatMul", &[&pos, &inv], vec![]);
        let freqs = g.op(s, "Concat", &[&freqs, &freqs], vec![attr_int("axis", 1)]);
        let cos = g.op(s, "Cos", &[&freqs], vec![]);
        let sin = g.op(s, "Sin", &[&freqs], vec![]);

        // Additive mask [B, 1, L, L]: 0 where causal and the key is real, f32::MIN elsewhere.
        let ll = g.op(s, "Concat", &[&l1, &l1], vec![attr_int("axis", 0)]);
        let ones = g.op(
            s,
            "ConstantOfShape",
            &[&ll],
            vec![attr_tensor("value", f32_value(1.0))],
        );
        let causal = g.op(s, "Trilu", &[&ones], vec![attr_int("upper", 0)]);
        let keys = g.op(
            s,
            "Cast",
            &[mask],
            vec![attr_int("to", DataType::Float as i64)],
        );
        let i12 = g.ints("const.i1_2", &[1, 2]);
        let keys4 = g.op(s, "Unsqueeze", &[&keys, &i12], vec![]);
        let allowed = g.op(s, "Mul", &[&causal, &keys4], vec![]);
        let fone = g.f32_scalar("const.one", 1.0);
        let fmax = g.f32_scalar("const.f32_max", f32::MAX);
        let blocked = g.op(s, "Sub", &[&allowed, &fone], vec![]);
        let add_mask = g.op(s, "Mul", &[&blocked, &fmax], vec![]);

        for (i, layer) in self.layers.iter().enumerate() {
            x = layer.onnx(g, &format!("model.layers.{i}"), &x, &cos, &sin, &add_mask)?;
        }
        let x = self.norm.onnx(g, "model.norm", &x, 2)?;

        // Last real token: flat index b·L + sum(mask_b) − 1 into [B·L, H].
        let lens = g.op(s, "ReduceSum", &[&keys, &i1], vec![attr_int("keepdims", 0)]);
        let last = g.op(s, "Sub", &[&lens, &fone], vec![]);
        let last = g.op(
            s,
            "Cast",
            &[&last],
            vec![attr_int("to", DataType::Int64 as i64)],
        );
        let rows = g.op(s, "Range", &[&zero, &b0, &one], vec![]);
        let base = g.op(s, "Mul", &[&rows, &l1], vec![]);
        let flat = g.op(s, "Add", &[&base, &last], vec![]);
        let to_rows = g.ints(&format!("const.shape_-1_{h}"), &[-1, h]);
        let x = g.op(s, "Reshape", &[&x, &to_rows], vec![]);
        Ok(g.op(s, "Gather", &[&x, &flat], vec![attr_int("axis", 0)]))
    }
}

/// Gathers `hidden[b, lengths[b] − 1]` from `hidden: [B, L, H]` with differentiable ops.
pub fn pool_last(hidden: &Tensor, lengths: &[usize]) -> candle_core::Result<Tensor> {
    let (b, l, h) = hidden.dims3()?;
    if lengths.len() != b {
        candle_core::bail!("got {} lengths for a batch of {b}", lengths.len());
    }
    let idx = lengths
        .iter()
        .enumerate()
        .map(|(i, &n)| {
            if n == 0 || n > l {
                candle_core::bail!("length {n} of sequence {i} is outside 1..={l}");
            }
            Ok((i * l + n - 1) as u32)
        })
        .collect::<candle_core::Result<Vec<u32>>>()?;
    let idx = Tensor::from_vec(idx, b, hidden.device())?;
    hidden.reshape((b * l, h))?.index_select(&idx, 0)
}

fn read_json(path: &Path) -> Result<serde_json::Value> {
    let text = std::fs::read_to_string(path).map_err(|source| BackboneError::Io {
        path: path.into(),
        source,
    })?;
    serde_json::from_str(&text).map_err(|source| BackboneError::Json {
        path: path.into(),
        source,
    })
}

/// Reads a Hugging Face Qwen3 directory (`config.json` plus `model.safetensors` or a sharded
/// `model.safetensors.index.json`) and inserts every backbone tensor, converted to f32, into
/// `vars` under its HF name. `lm_head.weight` and other non-backbone tensors are ignored.
pub fn load_hf_dir(
    dir: impl AsRef<Path>,
    vars: &SeededVarMap,
    device: &Device,
) -> Result<Qwen3Config> {
    let dir = dir.as_ref();
    let cfg = Qwen3Config::from_file(dir.join("config.json"))?;
    let expected = cfg.tensor_shapes();

    // Which file holds each expected tensor.
    let single = dir.join("model.safetensors");
    let index = dir.join("model.safetensors.index.json");
    let mut by_file: BTreeMap<PathBuf, Vec<(String, Vec<usize>)>> = BTreeMap::new();
    if single.is_file() {
        by_file.insert(single, expected);
    } else if index.is_file() {
        let json = read_json(&index)?;
        let map = json
            .get("weight_map")
            .and_then(|m| m.as_object())
            .ok_or_else(|| BackboneError::Safetensors {
                file: index.clone(),
                context: "no weight_map object".into(),
                source: Box::new(candle_core::Error::Msg("malformed index".into())),
            })?;
        let weight_map: HashMap<&str, &str> = map
            .iter()
            .filter_map(|(k, v)| Some((k.as_str(), v.as_str()?)))
            .collect();
        for (name, shape) in expected {
            let Some(file) = weight_map.get(name.as_str()) else {
                return Err(BackboneError::MissingTensor { name, file: index });
            };
            if Path::new(file).components().count() != 1 {
                return Err(BackboneError::Safetensors {
                    file: index,
                    context: format!("shard name {file:?} for {name}"),
                    source: Box::new(candle_core::Error::Msg(
                        "shard must be a plain file name in the directory".into(),
                    )),
                });
            }
            by_file
                .entry(dir.join(file))
                .or_default()
                .push((name, shape));
        }
    } else {
        return Err(BackboneError::NoWeights { dir: dir.into() });
    }

    for (file, tensors) in by_file {
        let bytes = std::fs::read(&file).map_err(|source| BackboneError::Io {
            path: file.clone(),
            source,
        })?;
        let st = candle_core::safetensors::BufferedSafetensors::new(bytes).map_err(|source| {
            BackboneError::Safetensors {
                file: file.clone(),
                context: "cannot parse safetensors".into(),
                source: Box::new(source),
            }
        })?;
        for (name, shape) in tensors {
            let view = st.get(&name).map_err(|_| BackboneError::MissingTensor {
                name: name.clone(),
                file: file.clone(),
            })?;
            if view.shape() != shape.as_slice() {
                return Err(BackboneError::ShapeMismatch {
                    name,
                    file,
                    expected: shape,
                    got: view.shape().to_vec(),
                });
            }
            let dtype_name = format!("{:?}", view.dtype());
            let t = candle_core::safetensors::Load::load(&view, device).map_err(|_| {
                BackboneError::UnsupportedDtype {
                    name: name.clone(),
                    file: file.clone(),
                    dtype: dtype_name.clone(),
                }
            })?;
            if !matches!(
                t.dtype(),
                DType::F32 | DType::F16 | DType::BF16 | DType::F64
            ) {
                return Err(BackboneError::UnsupportedDtype {
                    name,
                    file,
                    dtype: dtype_name,
                });
            }
            let t = t.to_dtype(DType::F32)?;
            vars.insert(&name, t)
                .map_err(|source| BackboneError::Safetensors {
                    file: file.clone(),
                    context: format!("inserting {name}"),
                    source: Box::new(source),
                })?;
        }
    }
    Ok(cfg)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_nn::Optimizer;

    fn ids(b: usize, l: usize, vocab: u32, salt: u32) -> candle_core::Result<Tensor> {
        let v: Vec<u32> = (0..(b * l) as u32)
            .map(|i| (i.wrapping_mul(2654435761).wrapping_add(salt) >> 7) % vocab)
            .collect();
        Tensor::from_vec(v, (b, l), &Device::Cpu)
    }

    #[test]
    fn every_var_gets_gradient_and_sgd_reduces_loss() -> anyhow::Result<()> {
        let dev = Device::Cpu;
        let vars = SeededVarMap::new(3);
        let cfg = Qwen3Config::tiny(50);
        let model = Qwen3::new(&cfg, vars.builder(&dev))?;
        let x = ids(3, 10, 50, 1)?;
        let lengths = [10, 6, 3];
        let target = Tensor::randn(0f32, 1.0, (3, cfg.hidden_size), &dev)?;
        let loss_of = |m: &Qwen3| -> candle_core::Result<Tensor> {
            (m.pooled(&x, &lengths)? - &target)?.sqr()?.mean_all()
        };

        let named = vars.all_named();
        assert_eq!(named.len(), cfg.tensor_shapes().len());
        let grads = loss_of(&model)?.backward()?;
        for (name, var) in &named {
            let g = grads
                .get(var.as_tensor())
                .ok_or_else(|| anyhow::anyhow!("no gradient for {name}"))?;
            let s = g.abs()?.sum_all()?.to_scalar::<f32>()?;
            assert!(s > 0.0 && s.is_finite(), "gradient of {name} is {s}");
        }

        let mut opt = candle_nn::SGD::new(vars.varmap.all_vars(), 0.5)?;
        let first = loss_of(&model)?.to_scalar::<f32>()?;
        let mut last = first;
        for _ in 0..5 {
            let loss = loss_of(&model)?;
            last = loss.to_scalar::<f32>()?;
            opt.backward_step(&loss)?;
        }
        let after = loss_of(&model)?.to_scalar::<f32>()?;
        assert!(after < first * 0.9, "loss {first} -> {last} -> {after}");
        Ok(())
    }

    #[test]
    fn seeded_init_is_reproducible() -> anyhow::Result<()> {
        let dev = Device::Cpu;
        let cfg = Qwen3Config::tiny(40);
        let x = ids(2, 7, 40, 5)?;
        let run = |seed| -> candle_core::Result<Vec<Vec<f32>>> {
            Qwen3::new(&cfg, SeededVarMap::new(seed).builder(&dev))?
                .pooled(&x, &[7, 4])?
                .to_vec2::<f32>()
        };
        assert_eq!(run(11)?, run(11)?);
        assert_ne!(run(11)?, run(12)?);
        // Init statistics: linears N(0, 0.02), norms 1.
        let vars = SeededVarMap::new(1);
        Qwen3::new(&cfg, vars.builder(&dev))?;
        for (name, v) in vars.all_named() {
            let t = v.as_tensor();
            if name.ends_with("norm.weight") {
                assert_eq!(t.min_all()?.to_scalar::<f32>()?, 1.0, "{name}");
                assert_eq!(t.max_all()?.to_scalar::<f32>()?, 1.0, "{name}");
            } else {
                let std = t.sqr()?.mean_all()?.sqrt()?.to_scalar::<f32>()?;
                assert!((std - 0.02).abs() < 0.003, "{name} std {std}");
            }
        }
        Ok(())
    }

    #[test]
    fn batch_pooling_matches_single_sequences() -> anyhow::Result<()> {
        let dev = Device::Cpu;
        let cfg = Qwen3Config::tiny(30);
        let model = Qwen3::new(&cfg, SeededVarMap::new(2).builder(&dev))?;
        let x = ids(3, 9, 30, 9)?;
        let lengths = [9, 4, 1];
        let batch = model.pooled(&x, &lengths)?;
        for (i, &n) in lengths.iter().enumerate() {
            let alone = model.pooled(&x.narrow(0, i, 1)?.narrow(1, 0, n)?, &[n])?;
            let diff = (batch.narrow(0, i, 1)? - alone)?
                .abs()?
                .max_all()?
                .to_scalar::<f32>()?;
            assert!(diff < 1e-5, "sequence {i}: {diff}");
        }
        assert!(model.pooled(&x, &[9, 0, 1]).is_err());
        assert!(model.pooled(&x, &[9, 10, 1]).is_err());
        assert!(model.pooled(&x, &[9, 1]).is_err());
        assert!(
            model.forward(&ids(1, 3, 1000, 0)?).is_err(),
            "out-of-vocab ids must be rejected"
        );
        Ok(())
    }

    #[test]
    fn config_validation() {
        let base = r#""vocab_size": 10, "intermediate_size": 8, "num_hidden_layers": 1"#;
        let cfg = Qwen3Config::from_json_str(&format!(
            r#"{{{base}, "hidden_size": 32, "num_attention_heads": 4, "num_key_value_heads": 2, "rope_theta": 1e6, "unknown_field": [1]}}"#
        ))
        .expect("valid config");
        assert_eq!(cfg.head_dim, 8);
        assert_eq!(cfg.rope_theta, 1e6);
        let cfg = Qwen3Config::from_json_str(&format!(
            r#"{{{base}, "hidden_size": 32, "num_attention_heads": 4, "rope_parameters": {{"rope_type": "default", "rope_theta": 5e5}}}}"#
        ))
        .expect("valid config");
        assert_eq!((cfg.num_key_value_heads, cfg.rope_theta), (4, 5e5));
        for (json, needle) in [
            (
                r#""hidden_size": 32, "num_attention_heads": 4, "num_key_value_heads": 3"#,
                "not divisible by num_key_value_heads",
            ),
            (
                r#""hidden_size": 30, "num_attention_heads": 4"#,
                "hidden_size 30 is not divisible",
            ),
            (
                r#""hidden_size": 32, "num_attention_heads": 4, "head_dim": 7"#,
                "must be even",
            ),
            (
                r#""hidden_size": 32, "num_attention_heads": 0"#,
                "num_attention_heads must be > 0",
            ),
            (
                r#""hidden_size": 32, "num_attention_heads": 4, "hidden_act": "gelu""#,
                "hidden_act",
            ),
            (
                r#""hidden_size": 32, "num_attention_heads": 4, "rope_scaling": {"rope_type": "yarn"}"#,
                "yarn",
            ),
        ] {
            let err = Qwen3Config::from_json_str(&format!("{{{base}, {json}}}"))
                .expect_err(json)
                .to_string();
            assert!(err.contains(needle), "{json}: {err}");
        }
        let mut c = Qwen3Config::tiny(10);
        c.num_key_value_heads = 3;
        assert!(matches!(c.validate(), Err(BackboneError::InvalidConfig(_))));
        assert!(Qwen3::new(&c, SeededVarMap::new(0).builder(&Device::Cpu)).is_err());
    }

    /// Writes a checkpoint of a seeded tiny model (all tensors but `skip`) in `dtype`.
    fn write_checkpoint(
        dir: &Path,
        cfg: &Qwen3Config,
        dtype: DType,
        skip: Option<&str>,
    ) -> anyhow::Result<SeededVarMap> {
        let vars = SeededVarMap::new(5);
        Qwen3::new(cfg, vars.builder(&Device::Cpu))?;
        let mut tensors: HashMap<String, Tensor> = HashMap::new();
        for (name, v) in vars.all_named() {
            if Some(name.as_str()) != skip {
                tensors.insert(name, v.as_tensor().to_dtype(dtype)?);
            }
        }
        tensors.insert(
            "lm_head.weight".into(),
            Tensor::zeros((cfg.vocab_size, cfg.hidden_size), dtype, &Device::Cpu)?,
        );
        candle_core::safetensors::save(&tensors, dir.join("model.safetensors"))?;
        std::fs::write(dir.join("config.json"), serde_json::to_string(cfg)?)?;
        Ok(vars)
    }

    #[test]
    fn load_round_trip_bf16_and_missing_tensor_error() -> anyhow::Result<()> {
        let dev = Device::Cpu;
        let cfg = Qwen3Config::tiny(20);
        let x = ids(2, 5, 20, 3)?;

        let dir = tempfile::tempdir()?;
        let src = write_checkpoint(dir.path(), &cfg, DType::BF16, None)?;
        let loaded = SeededVarMap::new(99);
        let model = Qwen3::from_hf_dir(dir.path(), &loaded, &dev)?;
        assert_eq!(model.config(), &cfg);
        assert_eq!(
            loaded.all_named().len(),
            cfg.tensor_shapes().len(),
            "lm_head must be ignored"
        );
        let want = Qwen3::new(&cfg, src.builder(&dev))?.forward(&x)?;
        let diff = (model.forward(&x)? - want)?
            .abs()?
            .max_all()?
            .to_scalar::<f32>()?;
        assert!(diff < 0.05, "bf16 round trip differs by {diff}");

        let dir = tempfile::tempdir()?;
        write_checkpoint(
            dir.path(),
            &cfg,
            DType::F32,
            Some("model.layers.1.self_attn.k_norm.weight"),
        )?;
        let err = load_hf_dir(dir.path(), &SeededVarMap::new(0), &dev)
            .expect_err("missing tensor")
            .to_string();
        assert!(
            err.contains("model.layers.1.self_attn.k_norm.weight")
                && err.contains("model.safetensors"),
            "{err}"
        );

        let dir = tempfile::tempdir()?;
        let mut other = cfg.clone();
        other.intermediate_size = 96;
        write_checkpoint(dir.path(), &other, DType::F32, None)?;
        std::fs::write(dir.path().join("config.json"), serde_json::to_string(&cfg)?)?;
        let err = load_hf_dir(dir.path(), &SeededVarMap::new(0), &dev)
            .expect_err("wrong shape")
            .to_string();
        assert!(
            err.contains("model.layers.0.mlp.gate_proj.weight") && err.contains("[96, 64]"),
            "{err}"
        );

        // An integer tensor is rejected with its name, file and dtype.
        let dir = tempfile::tempdir()?;
        write_checkpoint(dir.path(), &cfg, DType::F32, None)?;
        let path = dir.path().join("model.safetensors");
        let mut tensors = candle_core::safetensors::load(&path, &dev)?;
        tensors.insert(
            "model.norm.weight".into(),
            Tensor::zeros(cfg.hidden_size, DType::U32, &dev)?,
        );
        candle_core::safetensors::save(&tensors, &path)?;
        let err = load_hf_dir(dir.path(), &SeededVarMap::new(0), &dev)
            .expect_err("integer dtype")
            .to_string();
        assert!(
            err.contains("model.norm.weight")
                && err.contains("model.safetensors")
                && err.contains("U32"),
            "{err}"
        );

        let dir = tempfile::tempdir()?;
        let err = load_hf_dir(dir.path(), &SeededVarMap::new(0), &dev)
            .expect_err("no config")
            .to_string();
        assert!(err.contains("config.json"), "{err}");
        std::fs::write(dir.path().join("config.json"), serde_json::to_string(&cfg)?)?;
        let err = load_hf_dir(dir.path(), &SeededVarMap::new(0), &dev)
            .expect_err("no weights")
            .to_string();
        assert!(err.contains("model.safetensors"), "{err}");
        Ok(())
    }

    /// Not a test of correctness: prints forward+backward steps/s of the tiny config
    /// (16 × 64 tokens). Run with `RAYON_NUM_THREADS=1 cargo test --release -p vrf-trainer --lib
    /// backbone::tests::throughput -- --ignored --nocapture`.
    #[test]
    #[ignore]
    fn throughput() -> anyhow::Result<()> {
        let dev = Device::Cpu;
        let vars = SeededVarMap::new(0);
        let cfg = Qwen3Config::tiny(1000);
        let model = Qwen3::new(&cfg, vars.builder(&dev))?;
        let x = ids(16, 64, 1000, 0)?;
        let lengths: Vec<usize> = (0..16).map(|i| 64 - i * 3).collect();
        let step = || -> candle_core::Result<()> {
            let loss = model.pooled(&x, &lengths)?.sqr()?.mean_all()?;
            loss.backward()?;
            Ok(())
        };
        step()?;
        let t = std::time::Instant::now();
        for _ in 0..10 {
            model.pooled(&x, &lengths)?;
        }
        println!("forward only: {:.1} ms", t.elapsed().as_secs_f64() * 100.0);
        let n = 30;
        let t = std::time::Instant::now();
        for _ in 0..n {
            step()?;
        }
        let s = t.elapsed().as_secs_f64();
        println!(
            "threads={} (candle get_num_threads) : {:.1} steps/s ({:.1} ms/step)",
            candle_core::utils::get_num_threads(),
            n as f64 / s,
            1e3 * s / n as f64
        );
        Ok(())
    }
}
