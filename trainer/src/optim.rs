//! AdamW with parameter groups, global-norm clipping and a saveable state.
//!
//! candle-nn's `AdamW` keeps its moments private, so a run could not be resumed exactly; this
//! one exposes them for checkpoints and gives each group its own learning-rate multiplier.

use std::collections::HashMap;

use candle_core::backprop::GradStore;
use candle_core::{DType, Result, Tensor, Var};

mod fused;

/// A set of variables sharing a learning-rate multiplier.
pub struct ParamGroup {
    /// Variables with their names (names key the optimiser state).
    pub vars: Vec<(String, Var)>,
    /// Multiplier applied to the scheduled learning rate.
    pub lr_mult: f64,
}

/// Decoupled-weight-decay Adam (Loshchilov & Hutter).
pub struct AdamW {
    groups: Vec<ParamGroup>,
    m: HashMap<String, Tensor>,
    v: HashMap<String, Tensor>,
    /// Number of steps taken.
    pub t: usize,
    beta1: f64,
    beta2: f64,
    eps: f64,
    weight_decay: f64,
    /// Elements above which a variable is updated in place.
    chunk: usize,
    /// Whether in-place updates on the CPU use the fused passes (`optim/fused.rs`).
    fused: bool,
}

impl AdamW {
    /// A fresh optimiser (β = 0.9, 0.999; ε = 1e-8).
    pub fn new(groups: Vec<ParamGroup>, weight_decay: f64) -> Self {
        Self {
            groups,
            m: HashMap::new(),
            v: HashMap::new(),
            t: 0,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay,
            chunk: CHUNK_ELEMS,
            fused: true,
        }
    }

    /// Global L2 norm of the gradients of all optimised variables.
    pub fn grad_norm(&self, grads: &GradStore) -> Result<f64> {
        let mut total = 0f64;
        for g in &self.groups {
            for (_, var) in &g.vars {
                if let Some(gr) = grads.get(var.as_tensor()) {
                    for (s, n) in row_chunks(gr, self.chunk) {
                        let part = if n == 0 {
                            gr.clone()
                        } else {
                            gr.narrow(0, s, n)?
                        };
                        total += part.sqr()?.sum_all()?.to_scalar::<f32>()? as f64;
                    }
                }
            }
        }
        Ok(total.sqrt())
    }

    /// One update at learning rate `lr`, after clipping gradients to global norm `clip`
    /// (0 disables). Returns the pre-clip gradient norm.
    pub fn step(&mut self, grads: &GradStore, lr: f64, clip: f64) -> Result<f64> {
        let norm = self.grad_norm(grads)?;
        let scale = if clip > 0.0 && norm > clip {
            clip / (norm + 1e-12)
        } else {
            1.0
        };
        self.t += 1;
        let (b1, b2) = (self.beta1, self.beta2);
        let c1 = 1.0 - b1.powi(self.t as i32);
        let c2 = 1.0 - b2.powi(self.t as i32);
        for g in &self.groups {
            let glr = lr * g.lr_mult;
            for (name, var) in &g.vars {
                let Some(grad) = grads.get(var.as_tensor()) else {
                    continue;
                };
                let theta = var.as_tensor();
                if theta.elem_count() > self.chunk && theta.rank() >= 1 {
                    let (m, v) = match (self.m.get(name), self.v.get(name)) {
                        (Some(m), Some(v)) => (m.contiguous()?, v.contiguous()?),
                        (None, None) => (theta.zeros_like()?, theta.zeros_like()?),
                        _ => candle_core::bail!(
                            "AdamW state of {name}: one moment without the other"
                        ),
                    };
                    let decay = if theta.rank() >= 2 {
                        self.weight_decay
                    } else {
                        0.0
                    };
                    let fused = self.fused
                        && theta.device().is_cpu()
                        && theta.dtype() == DType::F32
                        && theta.is_contiguous();
                    if fused {
                        let hyper = (self.beta1, self.beta2, self.eps);
                        fused::step(theta, grad, &m, &v, hyper, scale, glr, decay, (c1, c2))
                    } else {
                        in_place(theta, grad, (&m, &v), scale, glr, decay, (c1, c2), self)
                    }
                    .map_err(|e| e.context(format!("AdamW update of {name}")))?;
                    self.m.insert(name.clone(), m);
                    self.v.insert(name.clone(), v);
                    continue;
                }
                let grad = if scale != 1.0 {
                    (grad * scale)?
                } else {
                    grad.clone()
                };
                let m = match self.m.get(name) {
                    Some(m) => ((m * b1)? + (&grad * (1.0 - b1))?)?,
                    None => (&grad * (1.0 - b1))?,
                };
                let v = match self.v.get(name) {
                    Some(v) => ((v * b2)? + (grad.sqr()? * (1.0 - b2))?)?,
                    None => (grad.sqr()? * (1.0 - b2))?,
                };
                let update = ((&m / c1)? / ((&v / c2)?.sqrt()? + self.eps)?)?;
                // Decay matrices only: norms, biases and basis log-variances are not shrunk.
                let decayed = if theta.rank() >= 2 && self.weight_decay > 0.0 {
                    (theta * (1.0 - glr * self.weight_decay))?
                } else {
                    theta.clone()
                };
                var.set(&(decayed - (update * glr)?)?)?;
                self.m.insert(name.clone(), m);
                self.v.insert(name.clone(), v);
            }
        }
        Ok(norm)
    }

    /// Moments as named tensors (`m.NAME`, `v.NAME`) for a checkpoint.
    pub fn state(&self) -> HashMap<String, Tensor> {
        let mut out = HashMap::new();
        for (k, t) in &self.m {
            out.insert(format!("m.{k}"), t.clone());
        }
        for (k, t) in &self.v {
            out.insert(format!("v.{k}"), t.clone());
        }
        out
    }

    /// Restores moments saved by [`AdamW::state`] and the step count.
    pub fn load_state(&mut self, state: &HashMap<String, Tensor>, t: usize) {
        self.m.clear();
        self.v.clear();
        for (k, v) in state {
            if let Some(name) = k.strip_prefix("m.") {
                self.m.insert(name.to_string(), v.clone());
            } else if let Some(name) = k.strip_prefix("v.") {
                self.v.insert(name.to_string(), v.clone());
            }
        }
        self.t = t;
    }
}

/// Elements above which a variable is updated in place (fused on the CPU, else slice by slice
/// of about this many elements): 1 MB of f32. The tiny backbone's tensors are all smaller, so
/// its runs keep the whole-tensor arithmetic.
const CHUNK_ELEMS: usize = 1 << 18;

/// Slices `(start, rows)` along the first dimension of about `chunk` elements each; `[(0, 0)]`
/// (the whole tensor) for a scalar or a tensor of at most `chunk` elements.
fn row_chunks(t: &Tensor, chunk: usize) -> Vec<(usize, usize)> {
    let dims = t.dims();
    if dims.is_empty() || t.elem_count() <= chunk {
        return vec![(0, 0)];
    }
    let row: usize = dims[1..].iter().product::<usize>().max(1);
    let rows = (chunk / row).max(1);
    (0..dims[0])
        .step_by(rows)
        .map(|s| (s, rows.min(dims[0] - s)))
        .collect()
}

/// [`AdamW::step`]'s update of one large variable off the CPU (or not f32), slice by slice along
/// its first dimension and in place (weights and moments `mv`), so that its temporaries stay
/// about `chunk` elements instead of several copies of the whole tensor. Element by element the
/// same arithmetic as the whole-tensor path.
#[allow(clippy::too_many_arguments)]
fn in_place(
    theta: &Tensor,
    grad: &Tensor,
    (m, v): (&Tensor, &Tensor),
    scale: f64,
    glr: f64,
    decay: f64,
    (c1, c2): (f64, f64),
    o: &AdamW,
) -> Result<()> {
    let (b1, b2) = (o.beta1, o.beta2);
    for (s, n) in row_chunks(theta, o.chunk) {
        let g = grad.narrow(0, s, n)?;
        let g = if scale != 1.0 { (g * scale)? } else { g };
        let mc = ((m.narrow(0, s, n)? * b1)? + (&g * (1.0 - b1))?)?;
        let vc = ((v.narrow(0, s, n)? * b2)? + (g.sqr()? * (1.0 - b2))?)?;
        let update = ((&mc / c1)? / ((&vc / c2)?.sqrt()? + o.eps)?)?;
        let t = (theta.narrow(0, s, n)? * (1.0 - glr * decay))?;
        theta.slice_set(&(t - (update * glr)?)?, 0, s)?;
        m.slice_set(&mc, 0, s)?;
        v.slice_set(&vc, 0, s)?;
    }
    Ok(())
}

/// Linear warm-up then cosine decay to 0: the multiplier of the peak learning rate at `step`.
pub fn lr_factor(step: usize, total: usize, warmup_frac: f64) -> f64 {
    let warm = ((total as f64 * warmup_frac).round() as usize).max(1);
    if step < warm {
        return (step + 1) as f64 / warm as f64;
    }
    let p = (step - warm) as f64 / (total.saturating_sub(warm)).max(1) as f64;
    0.5 * (1.0 + (std::f64::consts::PI * p.min(1.0)).cos())
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    /// Final weights and optimiser state of a run.
    type Outcome = (Vec<Vec<f32>>, HashMap<String, Tensor>);

    /// The in-place updates of large variables (fused passes, and slices of candle ops) equal the
    /// whole-tensor update over several steps (with clipping and weight decay), moments included.
    #[test]
    fn in_place_updates_match_the_whole_tensor_update() -> Result<()> {
        let dev = Device::Cpu;
        let init = Tensor::randn(0f32, 1.0, (7, 5), &dev)?;
        let run = |chunk: usize, fused: bool| -> Result<Outcome> {
            let w = Var::from_tensor(&init)?;
            let mut opt = AdamW::new(
                vec![ParamGroup {
                    vars: vec![("w".into(), w.clone())],
                    lr_mult: 1.0,
                }],
                0.1,
            );
            (opt.chunk, opt.fused) = (chunk, fused);
            for i in 0..3 {
                let loss = ((w.as_tensor() * (i as f64 + 1.0))?.sqr()?.sum_all()? * 0.3)?;
                opt.step(&loss.backward()?, 0.05, 1.0)?;
            }
            Ok((w.as_tensor().to_vec2()?, opt.state()))
        };
        let (whole, s0) = run(1 << 20, true)?;
        assert_ne!(whole, init.to_vec2::<f32>()?);
        for fused in [true, false] {
            let (got, s1) = run(10, fused)?;
            for (a, b) in whole.iter().flatten().zip(got.iter().flatten()) {
                // f32 rounding of differently ordered arithmetic only (a decay or moment
                // mistake would show at 1e-3).
                assert!(
                    (a - b).abs() <= 1e-5 * a.abs().max(1.0),
                    "fused {fused}: {a} vs {b}"
                );
            }
            for (k, t) in &s0 {
                let d = (t - &s1[k])?.abs()?.max_all()?.to_scalar::<f32>()?;
                assert!(d <= 1e-5, "fused {fused}: {k} differs by {d}");
            }
        }
        Ok(())
    }

    #[test]
    fn schedule_warms_up_then_decays() {
        assert!(lr_factor(0, 100, 0.1) < lr_factor(5, 100, 0.1));
        assert!((lr_factor(9, 100, 0.1) - 1.0).abs() < 1e-9);
        assert!(lr_factor(99, 100, 0.1) < 0.01);
    }

    #[test]
    fn minimises_a_quadratic_and_clips() -> Result<()> {
        let x = Var::new(&[3f32, -2.0], &Device::Cpu)?;
        let mut opt = AdamW::new(
            vec![ParamGroup {
                vars: vec![("x".into(), x.clone())],
                lr_mult: 1.0,
            }],
            0.0,
        );
        for _ in 0..300 {
            let loss = x.as_tensor().sqr()?.sum_all()?;
            let g = loss.backward()?;
            opt.step(&g, 0.05, 1.0)?;
        }
        let v = x.as_tensor().to_vec1::<f32>()?;
        assert!(v.iter().all(|a| a.abs() < 0.05), "{v:?}");
        assert_eq!(opt.t, 300);
        assert_eq!(opt.state().len(), 2);
        Ok(())
    }
}
