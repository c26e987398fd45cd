//! The full decoder: embeddings, layers, final norm, last-token pooling, and its ONNX emission.

use std::path::Path;
use std::sync::Arc;

use candle_core::backprop::GradStore;
use candle_core::{DType, Device, Tensor, Var};
use candle_nn::VarBuilder;
use candle_onnx::onnx::tensor_proto::DataType;

use super::attention::LayerInputs;
use super::decoder::DecoderLayer;
use super::linear::LINEAR_INIT;
use super::norm::RmsNorm;
use super::recompute::{accumulate, add_weight_grads, vjp, Entry, Tape};
use super::split::Split;
use super::{load_hf_dir, BackboneOptions, Qwen3Config, Result};
use crate::onnx::{attr_int, attr_tensor, f32_value, OnnxGraph};
use crate::vars::SeededVarMap;

/// A trainable, stateless Qwen3 decoder returning final-norm hidden states.
#[derive(Debug, Clone)]
pub struct Qwen3 {
    /// Its shape.
    pub(crate) cfg: Qwen3Config,
    /// Token embeddings `[vocab, H]`.
    pub(crate) embed_tokens: Tensor,
    /// The decoder layers, in order.
    pub(crate) layers: Vec<DecoderLayer>,
    /// The final norm.
    pub(crate) norm: RmsNorm,
    /// Where its tensors live.
    pub(crate) device: Device,
    /// With activation recomputation: the recorded forwards awaiting their backward.
    recompute: Option<Arc<Tape>>,
    /// With batch parallelism: the split forwards awaiting their backward.
    split: Option<Arc<Split>>,
    /// LoRA: embeddings, norms and projection weights get no gradients.
    frozen: bool,
}

impl Qwen3 {
    /// Builds the decoder from `vb` (the root: tensors are read under `model.`). Over a
    /// [`SeededVarMap`], missing tensors are created with the seeded init.
    pub fn new(cfg: &Qwen3Config, vb: VarBuilder) -> candle_core::Result<Self> {
        Self::with_options(cfg, vb, BackboneOptions::default())
    }

    /// [`Qwen3::new`] with training options: LoRA adapters on every projection (the
    /// embeddings, norms and projection weights then frozen: detached, no gradients), and the
    /// precision of the matrix products.
    pub fn with_options(
        cfg: &Qwen3Config,
        vb: VarBuilder,
        opts: BackboneOptions,
    ) -> candle_core::Result<Self> {
        cfg.validate()
            .map_err(|e| candle_core::Error::Msg(e.to_string()))?;
        opts.apply_to(vb.device());
        let vb = vb.pp("model");
        let mut embed_tokens = vb.pp("embed_tokens").get_with_hints(
            (cfg.vocab_size, cfg.hidden_size),
            "weight",
            LINEAR_INIT,
        )?;
        let vbl = vb.pp("layers");
        let layers = (0..cfg.num_hidden_layers)
            .map(|i| DecoderLayer::new(cfg, vbl.pp(i), opts))
            .collect::<candle_core::Result<Vec<_>>>()?;
        let mut norm = RmsNorm::new(cfg.hidden_size, cfg.rms_norm_eps, vb.pp("norm"))?;
        if opts.lora.enabled() {
            embed_tokens = embed_tokens.detach();
            norm.weight = norm.weight.detach();
        }
        Ok(Self {
            cfg: cfg.clone(),
            embed_tokens,
            layers,
            norm,
            device: vb.device().clone(),
            recompute: None,
            split: None,
            frozen: opts.lora.enabled(),
        })
    }

    /// Whether the backbone's own weights are frozen (LoRA).
    pub fn frozen(&self) -> bool {
        self.frozen
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

    /// Its shape hyper-parameters.
    pub fn config(&self) -> &Qwen3Config {
        &self.cfg
    }

    /// Width of the hidden states (and of the pooled output).
    pub fn hidden_size(&self) -> usize {
        self.cfg.hidden_size
    }

    /// The device its tensors live on.
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

    /// Turns activation recomputation on for [`Qwen3::forward_recorded`] (micro-batches of
    /// `micro_batch` rows, 0 = whole batches; see [`super::recompute`]).
    pub fn with_recompute(mut self, micro_batch: usize) -> Self {
        self.recompute = Some(Arc::new(Tape::new(micro_batch)));
        self
    }

    /// Turns batch parallelism on (`threads` > 1): [`Qwen3::forward_recorded`] and
    /// [`Qwen3::pooled`] split their texts across `threads` threads, each running every operation
    /// on one thread (see [`super::split`]). With recomputation too, each recomputed layer runs
    /// its shares of the rows side by side instead. One thread changes nothing.
    pub fn with_split(mut self, threads: usize) -> Self {
        if threads > 1 {
            self.split = Some(Arc::new(Split::new(threads)));
        }
        self
    }

    /// Threads a training step's texts are split across (1: none).
    pub fn split_threads(&self) -> usize {
        self.split.as_ref().map_or(1, |s| s.threads())
    }

    /// Whether [`Qwen3::forward_recorded`] recomputes activations.
    pub fn recomputes(&self) -> bool {
        self.recompute.is_some()
    }

    /// Checks `input_ids` `[B, L]`: u32, non-empty, within the positions and the vocabulary.
    fn check_ids(&self, input_ids: &Tensor) -> candle_core::Result<(usize, usize)> {
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
        Ok((b, l))
    }

    /// The layers' shared inputs for sequences of length `l`.
    fn layer_inputs(&self, l: usize) -> candle_core::Result<LayerInputs<Tensor>> {
        let (cos, sin) = self.rope_tables(l)?;
        Ok(LayerInputs {
            cos,
            sin,
            mask: self.causal_mask(l)?,
        })
    }

    /// Token embeddings `[B, L, H]` of checked `input_ids` `[B, L]`.
    fn lookup(&self, input_ids: &Tensor, b: usize, l: usize) -> candle_core::Result<Tensor> {
        self.embed_tokens
            .index_select(&input_ids.flatten_all()?, 0)?
            .reshape((b, l, self.cfg.hidden_size))
    }

    /// Final-norm hidden states `[B, L, H]` (f32) for right-padded `input_ids: [B, L]` (u32).
    pub fn forward(&self, input_ids: &Tensor) -> candle_core::Result<Tensor> {
        let (b, l) = self.check_ids(input_ids)?;
        let mut x = self.lookup(input_ids, b, l)?;
        let at = self.layer_inputs(l)?;
        for layer in &self.layers {
            x = layer.forward(&x, &at)?;
        }
        self.norm.forward(&x)
    }

    /// [`Qwen3::forward`] for a training step. With recomputation on, the layers run without
    /// keeping their activations (micro-batch by micro-batch) and the result's graph starts at
    /// the last layer's output; with batch parallelism, the texts' shares run side by side and
    /// the result's graph starts at their concatenation. Either way [`Qwen3::backward_recorded`]
    /// must then follow the step's `backward()` to give the backbone its gradients. With neither,
    /// this is [`Qwen3::forward`].
    pub fn forward_recorded(&self, input_ids: &Tensor) -> candle_core::Result<Tensor> {
        let Some(tape) = &self.recompute else {
            let Some(split) = &self.split else {
                return self.forward(input_ids);
            };
            let (b, _) = self.check_ids(input_ids)?;
            let parts = split.map(b, |s, n| self.forward(&input_ids.narrow(0, s, n)?))?;
            return split.record(parts);
        };
        let (b, l) = self.check_ids(input_ids)?;
        let at = self.layer_inputs(l)?;
        let mut x = self.lookup(input_ids, b, l)?.detach();
        let mut inputs = Vec::with_capacity(self.layers.len());
        for layer in &self.layers {
            // One share of the rows, micro-batch by micro-batch.
            let share = |s: usize, n: usize| {
                let parts = tape
                    .chunks(n)
                    .into_iter()
                    .map(|(s2, n2)| Ok(layer.forward(&x.narrow(0, s + s2, n2)?, &at)?.detach()))
                    .collect::<candle_core::Result<Vec<_>>>()?;
                Tensor::cat(&parts, 0)
            };
            let parts = self.shares(b, share)?;
            inputs.push(x);
            x = Tensor::cat(&parts, 0)?;
        }
        let last = Var::from_tensor(&x)?;
        let hidden = self.norm.forward(last.as_tensor())?;
        tape.push(Entry {
            ids: input_ids.clone(),
            inputs,
            last,
        });
        Ok(hidden)
    }

    /// Back-propagates the step's gradients through every forward recorded since the last call
    /// (newest first), adding the layers' and embeddings' gradients to `grads`; a recorded forward
    /// the loss did not depend on is dropped. A no-op without recomputation or batch
    /// parallelism.
    pub fn backward_recorded(&self, grads: &mut GradStore) -> candle_core::Result<()> {
        let Some(tape) = &self.recompute else {
            return match &self.split {
                Some(split) => split.backward(grads, &self.weights()),
                None => Ok(()),
            };
        };
        for entry in tape.take().into_iter().rev() {
            let Some(mut g) = grads.remove(entry.last.as_tensor()) else {
                continue;
            };
            let (b, l) = entry.ids.dims2()?;
            let at = self.layer_inputs(l)?;
            for (layer, x) in self.layers.iter().zip(&entry.inputs).rev() {
                let weights = layer.weights();
                // One share of the rows, micro-batch by micro-batch: its input gradient and its
                // part of the layer's weight gradients.
                let share = |s: usize, n: usize| {
                    let mut into = GradStore::default();
                    let parts = tape
                        .chunks(n)
                        .into_iter()
                        .map(|(s2, n2)| {
                            let (x, g) = (x.narrow(0, s + s2, n2)?, g.narrow(0, s + s2, n2)?);
                            vjp(&x, &g, &weights, &mut into, |x| layer.forward(x, &at))
                        })
                        .collect::<candle_core::Result<Vec<_>>>()?;
                    Ok((Tensor::cat(&parts, 0)?, into))
                };
                let mut parts = Vec::new();
                for (gx, mut into) in self.shares(b, share)? {
                    parts.push(gx);
                    add_weight_grads(&mut into, &weights, grads)?;
                }
                g = Tensor::cat(&parts, 0)?;
            }
            if self.frozen {
                continue;
            }
            // Embedding lookup's gradient: each token's row receives its input gradient.
            let h = self.cfg.hidden_size;
            let ge = self.embed_tokens.zeros_like()?.index_add(
                &entry.ids.flatten_all()?,
                &g.reshape((b * l, h))?,
                0,
            )?;
            accumulate(grads, &self.embed_tokens, ge)?;
        }
        Ok(())
    }

    /// `f(start, len)` on the shares of `b` rows: side by side with batch parallelism, else once
    /// on all of them. Results in row order.
    fn shares<T: Send>(
        &self,
        b: usize,
        f: impl Fn(usize, usize) -> candle_core::Result<T> + Sync,
    ) -> candle_core::Result<Vec<T>> {
        match &self.split {
            Some(split) => split.map(b, f),
            None => Ok(vec![f(0, b)?]),
        }
    }

    /// Every tensor the backbone trains (none of the embeddings and norms under LoRA).
    fn weights(&self) -> Vec<&Tensor> {
        let mut w: Vec<&Tensor> = self.layers.iter().flat_map(|l| l.weights()).collect();
        if !self.frozen {
            w.extend([&self.embed_tokens, &self.norm.weight]);
        }
        w
    }

    /// Next-token logits `[N, V]` for hidden states `[N, H]`, through the tied input embeddings
    /// (the Qwen3 LM head when `tie_word_embeddings`; the self-supervised pretraining head here).
    pub fn lm_logits(&self, hidden: &Tensor) -> candle_core::Result<Tensor> {
        hidden.matmul(&self.embed_tokens.t()?)
    }

    /// Pooled last-real-token states `[B, H]` of right-padded `input_ids`, without a gradient
    /// graph (evaluation, scoring, export checks): each layer's output is detached, so only one
    /// layer's activations are alive at a time instead of every layer's (which at Qwen3-0.6B
    /// scale and 64 texts would be tens of GB). With batch parallelism the texts' shares run
    /// side by side.
    pub fn pooled(&self, input_ids: &Tensor, lengths: &[usize]) -> candle_core::Result<Tensor> {
        let Some(split) = &self.split else {
            return self.pooled_on_one(input_ids, lengths);
        };
        let (b, _) = self.check_ids(input_ids)?;
        if lengths.len() != b {
            candle_core::bail!("got {} lengths for a batch of {b}", lengths.len());
        }
        let parts = split.map(b, |s, n| {
            self.pooled_on_one(&input_ids.narrow(0, s, n)?, &lengths[s..s + n])
        })?;
        Tensor::cat(&parts, 0)
    }

    /// [`Qwen3::pooled`] on the calling thread.
    fn pooled_on_one(&self, input_ids: &Tensor, lengths: &[usize]) -> candle_core::Result<Tensor> {
        let (b, l) = self.check_ids(input_ids)?;
        let at = self.layer_inputs(l)?;
        let mut x = self.lookup(input_ids, b, l)?.detach();
        for layer in &self.layers {
            x = layer.forward(&x, &at)?.detach();
        }
        Ok(pool_last(&self.norm.forward(&x)?, lengths)?.detach())
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

        let at = LayerInputs {
            cos,
            sin,
            mask: add_mask,
        };
        for (i, layer) in self.layers.iter().enumerate() {
            x = layer.onnx(g, &format!("model.layers.{i}"), &x, &at)?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backbone::test_ids as ids;
    use candle_nn::Optimizer;

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
            (pool_last(&m.forward(&x)?, &lengths)? - &target)?
                .sqr()?
                .mean_all()
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

    /// bf16 products (`--matmul bf16`): recomputed backward gives every f32 variable an f32
    /// gradient close to the f32 model's, and the pooled states stay within bf16's precision.
    #[test]
    fn bf16_products_with_recomputation_track_f32() -> anyhow::Result<()> {
        let dev = Device::Cpu;
        let vars = SeededVarMap::new(5);
        let cfg = Qwen3Config::tiny(50);
        let f32m = Qwen3::new(&cfg, vars.builder(&dev))?;
        let opts = BackboneOptions {
            matmul: crate::config::Matmul::Bf16,
            ..BackboneOptions::default()
        };
        let bf16m = Qwen3::with_options(&cfg, vars.builder(&dev), opts)?.with_recompute(0);
        let x = ids(3, 10, 50, 3)?;
        let lengths = [10, 6, 2];
        let rel = |a: &Tensor, b: &Tensor| -> candle_core::Result<f32> {
            let s = a.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>()?;
            Ok((a - b)?.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>()? / s)
        };
        let (pa, pb) = (f32m.pooled(&x, &lengths)?, bf16m.pooled(&x, &lengths)?);
        assert!(rel(&pa, &pb)? < 3e-2, "pooled {}", rel(&pa, &pb)?);
        let loss = |h: Tensor| h.sqr()?.mean_all();
        let want = loss(pool_last(&f32m.forward(&x)?, &lengths)?)?.backward()?;
        let mut got = loss(pool_last(&bf16m.forward_recorded(&x)?, &lengths)?)?.backward()?;
        bf16m.backward_recorded(&mut got)?;
        for (name, var) in vars.all_named() {
            let (w, g) = (
                want.get(var.as_tensor()).expect("f32 gradient"),
                got.get(var.as_tensor())
                    .ok_or_else(|| anyhow::anyhow!("no bf16 gradient for {name}"))?,
            );
            assert_eq!(g.dtype(), DType::F32, "{name}");
            assert!(
                rel(w, g)? < 0.1,
                "{name}: relative gradient error {}",
                rel(w, g)?
            );
        }
        Ok(())
    }

    /// The gradients of `mean((pool_last(h) − target)²)` through `model`'s recorded forward
    /// and backward, after an unused recorded forward (whose entry must be dropped without
    /// effect).
    fn recorded_step(
        model: &Qwen3,
        x: &Tensor,
        lengths: &[usize],
        target: &Tensor,
    ) -> anyhow::Result<GradStore> {
        model.forward_recorded(&ids(2, 4, 50, 7)?)?;
        let h = model.forward_recorded(x)?;
        let loss = (pool_last(&h, lengths)? - target)?.sqr()?.mean_all()?;
        let mut got = loss.backward()?;
        model.backward_recorded(&mut got)?;
        Ok(got)
    }

    /// Largest |a − b| and, as its scale, the largest |a| (at least 1e-12).
    fn diff_and_scale(a: &Tensor, b: &Tensor) -> anyhow::Result<(f32, f32)> {
        let scale = a.abs()?.max_all()?.to_scalar::<f32>()?.max(1e-12);
        let diff = (a - b)?.abs()?.max_all()?.to_scalar::<f32>()?;
        Ok((diff, scale))
    }

    /// Recomputed gradients (whole batch, and micro-batches of 2 of 3 rows) equal the plain
    /// backward's for every variable, and a recorded forward the loss ignores is dropped.
    #[test]
    fn recomputation_gives_the_plain_gradients() -> anyhow::Result<()> {
        let dev = Device::Cpu;
        let vars = SeededVarMap::new(4);
        let cfg = Qwen3Config::tiny(50);
        let plain = Qwen3::new(&cfg, vars.builder(&dev))?;
        let x = ids(3, 10, 50, 2)?;
        let lengths = [10, 6, 3];
        let target = Tensor::randn(0f32, 1.0, (3, cfg.hidden_size), &dev)?;
        let want = (pool_last(&plain.forward(&x)?, &lengths)? - &target)?
            .sqr()?
            .mean_all()?
            .backward()?;
        for micro in [0, 2] {
            let model = plain.clone().with_recompute(micro);
            assert!(model.recomputes());
            let got = recorded_step(&model, &x, &lengths, &target)?;
            assert_eq!(model.recompute.as_ref().map(|t| t.pending()), Some(0));
            for (name, var) in vars.all_named() {
                let a = want.get(var.as_tensor()).expect("plain gradient");
                let b = got
                    .get(var.as_tensor())
                    .ok_or_else(|| anyhow::anyhow!("no recomputed gradient for {name}"))?;
                let (diff, scale) = diff_and_scale(a, b)?;
                assert!(
                    diff <= 1e-4 * scale,
                    "micro-batch {micro}: {name} differs by {diff} (scale {scale})"
                );
            }
        }
        Ok(())
    }

    /// Batch parallelism (2 and 3 threads on 3 rows, with and without recomputation, full
    /// fine-tuning and LoRA) gives every variable the whole batch's gradient and the same pooled
    /// states; a split forward the loss ignores is dropped.
    #[test]
    fn split_batches_give_the_plain_gradients() -> anyhow::Result<()> {
        let dev = Device::Cpu;
        let cfg = Qwen3Config::tiny(50);
        let x = ids(3, 10, 50, 2)?;
        let lengths = [10, 6, 3];
        let target = Tensor::randn(0f32, 1.0, (3, cfg.hidden_size), &dev)?;
        let lora = crate::config::LoraConfig {
            rank: 2,
            alpha: 4.0,
        };
        for opts in [
            BackboneOptions::default(),
            BackboneOptions {
                lora,
                ..BackboneOptions::default()
            },
        ] {
            let vars = SeededVarMap::new(4);
            let plain = Qwen3::with_options(&cfg, vars.builder(&dev), opts)?;
            let want = (pool_last(&plain.forward(&x)?, &lengths)? - &target)?
                .sqr()?
                .mean_all()?
                .backward()?;
            let mut trained = 0;
            // Threads, and recomputation's micro-batch (None: no recomputation).
            for (threads, micro) in [(2, None), (3, None), (2, Some(0)), (2, Some(1))] {
                let model = match micro {
                    Some(m) => plain.clone().with_recompute(m),
                    None => plain.clone(),
                }
                .with_split(threads);
                assert_eq!(model.split_threads(), threads);
                assert_eq!(model.recomputes(), micro.is_some());
                let pooled = (model.pooled(&x, &lengths)? - plain.pooled(&x, &lengths)?)?;
                let pooled = pooled.abs()?.max_all()?.to_scalar::<f32>()?;
                assert!(
                    pooled <= 1e-5,
                    "{threads} threads: pooled differ by {pooled}"
                );
                let got = recorded_step(&model, &x, &lengths, &target)?;
                assert_eq!(model.split.as_ref().map(|s| s.pending()), Some(0));
                assert_eq!(model.recompute.as_ref().map_or(0, |t| t.pending()), 0);
                for (name, var) in vars.all_named() {
                    let Some(a) = want.get(var.as_tensor()) else {
                        assert!(got.get(var.as_tensor()).is_none(), "{name}: frozen");
                        continue;
                    };
                    trained += 1;
                    let b = got
                        .get(var.as_tensor())
                        .ok_or_else(|| anyhow::anyhow!("no split gradient for {name}"))?;
                    let (diff, scale) = diff_and_scale(a, b)?;
                    assert!(
                        diff <= 1e-5 * scale,
                        "{threads} threads, micro-batch {micro:?}: {name} differs by {diff} \
                         (scale {scale})"
                    );
                }
            }
            assert!(trained > 0);
        }
        // One thread is no split.
        let plain = Qwen3::new(&cfg, SeededVarMap::new(1).builder(&dev))?;
        assert_eq!(plain.clone().with_split(1).split_threads(), 1);
        assert!(plain.with_recompute(0).with_split(1).recomputes());
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
        // Inference keeps no graph back to the weights (else every layer's activations live on).
        let grads = batch.sum_all()?.backward()?;
        assert!(grads.get(&model.embed_tokens).is_none());
        let tracked = pool_last(&model.forward(&x)?, &lengths)?;
        assert_eq!(batch.to_vec2::<f32>()?, tracked.to_vec2::<f32>()?);
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

    /// Not a test of correctness: prints forward+backward steps/s of the tiny config
    /// (16 × 64 tokens). Run with `RAYON_NUM_THREADS=1 cargo test --release -p vrf-trainer --lib
    /// backbone::qwen3::tests::throughput -- --ignored --nocapture`.
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
            let loss = pool_last(&model.forward(&x)?, &lengths)?
                .sqr()?
                .mean_all()?;
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
