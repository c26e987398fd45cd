//! The full reward model: backbone → basis heads, and (VRF) encoder → pooling → bases → weights.

use candle_core::backprop::GradStore;
use candle_core::{Device, Result, Tensor, Var};

use crate::backbone::{pool_last, BackboneOptions, Qwen3, Qwen3Config};
use crate::bases::Bases;
use crate::config::{BaseInit, Method, RunConfig};
use crate::encoder::{assignment, pair_features, pool, Encoder};
use crate::heads::BasisHeads;
use crate::onnx::{OnnxGraph, OnnxModel};
use crate::vars::SeededVarMap;
use candle_onnx::onnx::ModelProto;

/// Input and output names of the exported ONNX graph.
pub mod onnx_names {
    /// Token ids, int64 `[batch, seq]`, right-padded.
    pub const INPUT_IDS: &str = "input_ids";
    /// 1 for real tokens, 0 for padding, int64 `[batch, seq]`.
    pub const ATTENTION_MASK: &str = "attention_mask";
    /// Last-real-token final-norm hidden state, f32 `[batch, H]`.
    pub const HIDDEN: &str = "hidden";
    /// Basis rewards φ, f32 `[batch, K]`.
    pub const REWARDS: &str = "rewards";
}

/// Variable-name prefixes of the model's parts (HF names for the backbone).
pub mod prefix {
    /// Qwen3 backbone (Hugging Face tensor names).
    pub const BACKBONE: &str = "model.";
    /// Basis-reward heads (or the BT head).
    pub const HEADS: &str = "heads.";
    /// Variational encoder.
    pub const ENCODER: &str = "encoder.";
    /// Gaussian bases.
    pub const BASES: &str = "bases.";
    /// Free per-seen-user logits of the staged fit's first stage.
    pub const FREE: &str = "free_logits";
}

/// What the reward model reads: a Qwen3 backbone's states, or external feature vectors.
#[derive(Clone, Debug)]
pub enum ModelInput {
    /// A Qwen3 backbone of this configuration.
    Backbone(Qwen3Config),
    /// Frozen feature vectors of this dimension (docs/features.md): no backbone.
    Features {
        /// Feature dimension (the heads' input width `H`).
        dim: usize,
    },
}

/// A VRF or BT reward model over a Qwen3 backbone (or external features); weights live in a
/// [`SeededVarMap`].
pub struct RewardModel {
    /// The run's configuration.
    pub cfg: RunConfig,
    /// Backbone configuration (none for a run on external features).
    pub backbone_cfg: Option<Qwen3Config>,
    /// Qwen3 backbone (none for a run on external features).
    pub backbone: Option<Qwen3>,
    /// Width `H` of the states the heads and the encoder read.
    hidden: usize,
    /// Basis-reward heads (K = 1 for BT).
    pub heads: BasisHeads,
    /// Encoder (VRF only).
    pub encoder: Option<Encoder>,
    /// Gaussian bases (VRF only).
    pub bases: Option<Bases>,
    /// Free per-seen-user logits `[n_seen, K]` (staged VRF only).
    pub free_logits: Option<Tensor>,
    /// All trainable variables.
    pub vars: SeededVarMap,
    /// Compute device.
    pub device: Device,
}

/// `vars` without a frozen backbone's own weights: with LoRA, of the backbone's variables only
/// the adapters (`….lora_A`, `….lora_B`) train.
pub fn trainable_vars(vars: Vec<(String, Var)>, frozen_backbone: bool) -> Vec<(String, Var)> {
    if !frozen_backbone {
        return vars;
    }
    vars.into_iter()
        .filter(|(n, _)| !n.starts_with(prefix::BACKBONE) || n.contains(".lora_"))
        .collect()
}

impl RewardModel {
    /// Builds the model; variables already in `vars` (loaded weights) are used as they are,
    /// missing ones are initialised from the run's seed.
    pub fn new(
        cfg: &RunConfig,
        input: ModelInput,
        vars: SeededVarMap,
        n_free: usize,
        device: &Device,
    ) -> Result<Self> {
        let vb = vars.builder(device);
        let (h, backbone, backbone_cfg) = match input {
            ModelInput::Features { dim } => (dim, None, None),
            ModelInput::Backbone(bc) => {
                let mut backbone = Qwen3::with_options(&bc, vb.clone(), BackboneOptions::of(cfg))?;
                if cfg.recomputes() {
                    backbone = backbone.with_recompute(cfg.train.micro_batch);
                }
                (bc.hidden_size, Some(backbone), Some(bc))
            }
        };
        let k = match cfg.method {
            Method::Vrf => cfg.model.k,
            // The baselines (vrf_bench::baselines) keep their own parameters; their K = 1 head is unused.
            _ => 1,
        };
        let heads = BasisHeads::new(h, k, vb.pp("heads"))?;
        let (mut encoder, mut bases, mut free_logits) = (None, None, None);
        if cfg.method == Method::Vrf {
            let m = &cfg.model;
            let input = 2 * h + if m.enc_phi { m.k } else { 0 };
            let enc = Encoder::new(input, h, m.d, m.mu_scale, vb.pp("encoder"))?;
            encoder = Some(if m.prior {
                enc.with_prior(m.prior_log_var_init, vb.pp("encoder"))?
            } else {
                enc
            });
            let fresh = !vars
                .varmap
                .data()
                .lock()
                .expect("varmap lock")
                .contains_key("bases.means");
            let b = Bases::new(m, vb.pp("bases"))?;
            if fresh && m.base_init == BaseInit::Orthogonal {
                // In-place set: the tensor held by `b` shares the variable's storage.
                vars.insert(
                    "bases.means",
                    Bases::orthogonal_means(m.k, m.d, m.base_radius, device)?,
                )?;
            }
            bases = Some(b);
            if n_free > 0 {
                free_logits = Some(vb.get_with_hints(
                    (n_free, m.k),
                    prefix::FREE,
                    candle_nn::Init::Randn {
                        mean: 0.0,
                        stdev: 1.0,
                    },
                )?);
            }
        }
        Ok(Self {
            cfg: cfg.clone(),
            backbone_cfg,
            backbone,
            hidden: h,
            heads,
            encoder,
            bases,
            free_logits,
            vars,
            device: device.clone(),
        })
    }

    /// `vars` without the backbone's frozen weights (with LoRA only its adapters train), so the
    /// optimizer keeps no moments for them.
    pub fn trainable(&self, vars: Vec<(String, Var)>) -> Vec<(String, Var)> {
        trainable_vars(vars, self.backbone.as_ref().is_some_and(Qwen3::frozen))
    }

    /// Width `H` of the states the heads read (backbone hidden size or feature dimension).
    pub fn hidden_size(&self) -> usize {
        self.hidden
    }

    /// The backbone, or an error saying a run on external features has none.
    pub fn qwen3(&self) -> Result<&Qwen3> {
        self.backbone.as_ref().ok_or_else(|| {
            candle_core::Error::Msg("a model fitted on external features has no backbone".into())
        })
    }

    /// Pooled last-real-token states `[B, H]` for right-padded ids `[B, L]`, detached (no
    /// gradient graph; training steps use [`RewardModel::embed_train`]).
    pub fn embed(&self, ids: &Tensor, lengths: &[usize]) -> Result<Tensor> {
        self.qwen3()?.pooled(ids, lengths)
    }

    /// Splits the backbone's texts across `threads` threads in training steps and evaluation
    /// batches, each share's operations on one thread (`train.parallel`, resolved by
    /// [`RunConfig::split_threads`]); on the CPU only, where threads are what splits. No effect
    /// with one thread, on a GPU or without a backbone.
    pub fn split_texts(&mut self, threads: usize) {
        if let Some(b) = self.backbone.take() {
            let cpu = b.device().is_cpu();
            self.backbone = Some(if cpu { b.with_split(threads) } else { b });
        }
    }

    /// [`RewardModel::embed`] in a training step: with activation recomputation
    /// (`train.recompute`) or split texts ([`RewardModel::split_texts`]) the step's backward
    /// must be followed by [`RewardModel::finish_backward`].
    pub fn embed_train(&self, ids: &Tensor, lengths: &[usize]) -> Result<Tensor> {
        pool_last(&self.qwen3()?.forward_recorded(ids)?, lengths)
    }

    /// Completes a step's `grads` with the backbone's part of the gradient when its forwards
    /// were recorded for recomputation, then keeps only the variables' gradients: candle's
    /// backward also returns gradients of constants combined with activations (rope tables,
    /// masks), activation-sized, which would otherwise stay alive through the optimizer step.
    pub fn finish_backward(&self, grads: &mut GradStore) -> Result<()> {
        if let Some(b) = &self.backbone {
            b.backward_recorded(grads)?;
        }
        let mut kept = GradStore::default();
        for (_, v) in self.vars.all_named() {
            if let Some(g) = grads.remove(v.as_tensor()) {
                kept.insert(v.as_tensor(), g);
            }
        }
        *grads = kept;
        Ok(())
    }

    /// Basis rewards φ `[N, K]` (K = 1 for BT).
    pub fn phi(&self, e: &Tensor) -> Result<Tensor> {
        self.heads.forward(e)
    }

    /// ONNX graph of [`RewardModel::embed`] followed by [`RewardModel::phi`]: int64 `input_ids`
    /// and `attention_mask` `[batch, seq]` → `hidden` `[batch, H]` and `rewards` `[batch, K]`.
    pub fn onnx(&self) -> Result<ModelProto> {
        self.onnx_model()?
            .to_proto()
            .map_err(|e| candle_core::Error::Msg(e.to_string()))
    }

    /// [`RewardModel::onnx`] with the weights still held as tensors (written one at a time).
    pub fn onnx_model(&self) -> Result<OnnxModel> {
        let (h, k) = (self.hidden.to_string(), self.heads.k().to_string());
        let mut g = OnnxGraph::new();
        let ids = g.input_i64(onnx_names::INPUT_IDS, &["batch", "seq"]);
        let mask = g.input_i64(onnx_names::ATTENTION_MASK, &["batch", "seq"]);
        let e = self.qwen3()?.onnx(&mut g, &ids, &mask)?;
        let phi = self.heads.onnx(&mut g, &e)?;
        g.output_f32(&e, onnx_names::HIDDEN, &["batch", &h]);
        g.output_f32(&phi, onnx_names::REWARDS, &["batch", &k]);
        Ok(g.into_model(
            "vrf_backbone",
            "VRF backbone (Qwen3, last-real-token pooling of right-padded inputs) and basis-reward heads",
        ))
    }

    /// Encoder input for reference pairs from (chosen, rejected) states `[M, H]`; detached.
    pub fn ref_features(&self, e_c: &Tensor, e_r: &Tensor) -> Result<Tensor> {
        let (e_c, e_r) = (e_c.detach(), e_r.detach());
        if self.cfg.model.enc_phi {
            let dphi = (self.phi(&e_c)? - self.phi(&e_r)?)?.detach();
            pair_features(&e_c, &e_r, Some(&dphi))
        } else {
            pair_features(&e_c, &e_r, None)
        }
    }

    /// User posteriors `(μ_u, σ_u²)` `[U, d]` from reference features `[M, F]`, pair i → user seg[i].
    pub fn posterior(
        &self,
        feats: &Tensor,
        seg: &[usize],
        n_users: usize,
    ) -> Result<(Tensor, Tensor)> {
        let enc = self
            .encoder
            .as_ref()
            .ok_or_else(|| candle_core::Error::Msg("BT model has no encoder".into()))?;
        if seg.is_empty() {
            // No pair at all (every user at k = 0): the prior for everyone.
            return match enc.prior() {
                Some(p0) => p0.repeat(n_users),
                None => Err(candle_core::Error::Msg(
                    "a user posterior needs at least one reference pair (no population prior)"
                        .into(),
                )),
            };
        }
        let (mu, logvar) = enc.forward(feats)?;
        let a = assignment(seg, n_users, &self.device)?;
        pool(&mu, &logvar, &a, self.cfg.model.pooling, enc.prior())
    }

    /// The bases (VRF only).
    pub fn bases(&self) -> Result<&Bases> {
        self.bases
            .as_ref()
            .ok_or_else(|| candle_core::Error::Msg("BT model has no bases".into()))
    }
}
