//! Shape hyper-parameters of a Qwen3 decoder, parsed and validated from a Hugging Face
//! `config.json`.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::{read_json, BackboneError, Result};

/// Shape hyper-parameters of a Qwen3 decoder, as in a Hugging Face `config.json`.
///
/// Deserialising validates and resolves defaults (`head_dim` = hidden/heads when absent,
/// `num_key_value_heads` = heads when absent, `rope_theta` from `rope_parameters` if needed);
/// unknown fields are ignored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "RawQwen3Config")]
pub struct Qwen3Config {
    /// Token vocabulary size (rows of the embedding).
    pub vocab_size: usize,
    /// Width of the hidden states.
    pub hidden_size: usize,
    /// Width of the MLP's gate and up projections.
    pub intermediate_size: usize,
    /// Number of decoder layers.
    pub num_hidden_layers: usize,
    /// Query heads per layer.
    pub num_attention_heads: usize,
    /// Key/value heads per layer (grouped-query attention; divides the query heads).
    pub num_key_value_heads: usize,
    /// Width of one attention head (even: rope rotates halves).
    pub head_dim: usize,
    /// Epsilon of every RmsNorm.
    pub rms_norm_eps: f64,
    /// Rope base frequency θ.
    pub rope_theta: f64,
    /// Longest sequence the model accepts.
    pub max_position_embeddings: usize,
    /// Whether the LM head shares the embedding (kept from `config.json`; no LM head is built).
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
        read_json(path.as_ref())
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backbone::Qwen3;
    use crate::vars::SeededVarMap;
    use candle_core::Device;

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
}
