//! Trainable parameters with seeded, order-independent initialisation.
//!
//! candle's CPU RNG cannot be seeded, so `VarMap`'s own initialisation is not reproducible.
//! [`SeededVarMap`] is a `VarBuilder` backend that stores trainable `Var`s in a `VarMap` and
//! initialises a missing one from a ChaCha RNG keyed by (seed, tensor name): the same seed gives
//! the same weights whatever order the modules are built in.

use candle_core::{DType, Device, Result, Shape, Tensor, Var};
use candle_nn::init::{FanInOut, NormalOrUniform};
use candle_nn::var_builder::SimpleBackend;
use candle_nn::{Init, VarBuilder, VarMap};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};

/// A `VarMap` whose missing variables are initialised deterministically from a seed.
#[derive(Clone)]
pub struct SeededVarMap {
    /// The trainable variables, by name.
    pub varmap: VarMap,
    seed: u64,
}

impl SeededVarMap {
    /// An empty map; variables are created on first use.
    pub fn new(seed: u64) -> Self {
        Self {
            varmap: VarMap::new(),
            seed,
        }
    }

    /// Wraps an existing map (e.g. loaded weights); missing variables are still seeded.
    pub fn from_varmap(varmap: VarMap, seed: u64) -> Self {
        Self { varmap, seed }
    }

    /// A `VarBuilder` (f32) over this map.
    pub fn builder(&self, device: &Device) -> VarBuilder<'static> {
        VarBuilder::from_backend(Box::new(self.clone()), DType::F32, device.clone())
    }

    /// Inserts (or replaces) a variable's value, e.g. when loading a checkpoint.
    pub fn insert(&self, name: &str, value: Tensor) -> Result<()> {
        let mut data = self.varmap.data().lock().expect("varmap lock poisoned");
        match data.get(name) {
            Some(v) => {
                if v.shape() != value.shape() {
                    candle_core::bail!(
                        "shape mismatch on {name}: {:?} <> {:?}",
                        v.shape(),
                        value.shape()
                    );
                }
                v.set(&value)?;
            }
            None => {
                data.insert(name.to_string(), Var::from_tensor(&value)?);
            }
        }
        Ok(())
    }

    /// All variables whose name starts with one of `prefixes`, sorted by name.
    pub fn vars_with_prefix(&self, prefixes: &[&str]) -> Vec<(String, Var)> {
        let data = self.varmap.data().lock().expect("varmap lock poisoned");
        let mut out: Vec<(String, Var)> = data
            .iter()
            .filter(|(k, _)| prefixes.iter().any(|p| k.starts_with(p)))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// Every variable, sorted by name.
    pub fn all_named(&self) -> Vec<(String, Var)> {
        self.vars_with_prefix(&[""])
    }

    fn rng_for(&self, name: &str) -> ChaCha8Rng {
        // FNV-1a: a fixed hash, so a seed means the same weights on every build and platform.
        let h = name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
        });
        ChaCha8Rng::seed_from_u64(self.seed ^ h.rotate_left(17))
    }

    fn init_values(&self, shape: &Shape, name: &str, init: Init) -> Vec<f32> {
        let n = shape.elem_count();
        let mut rng = self.rng_for(name);
        let normal = |rng: &mut ChaCha8Rng, mean: f64, std: f64| -> Vec<f32> {
            (0..n)
                .map(|_| {
                    let z: f64 = StandardNormal.sample(rng);
                    (mean + std * z) as f32
                })
                .collect()
        };
        match init {
            Init::Const(c) => vec![c as f32; n],
            Init::Randn { mean, stdev } => normal(&mut rng, mean, stdev),
            Init::Uniform { lo, up } => (0..n).map(|_| rng.random_range(lo..up) as f32).collect(),
            Init::Kaiming {
                dist,
                fan,
                non_linearity,
            } => {
                let fan = fan_for(&fan, shape).max(1) as f64;
                let std = non_linearity.gain() / fan.sqrt();
                match dist {
                    NormalOrUniform::Normal => normal(&mut rng, 0.0, std),
                    NormalOrUniform::Uniform => {
                        let b = 3f64.sqrt() * std;
                        (0..n).map(|_| rng.random_range(-b..b) as f32).collect()
                    }
                }
            }
        }
    }
}

fn fan_for(fan: &FanInOut, shape: &Shape) -> usize {
    fan.for_shape(shape)
}

impl SimpleBackend for SeededVarMap {
    fn get(&self, s: Shape, name: &str, h: Init, dtype: DType, dev: &Device) -> Result<Tensor> {
        let mut data = self.varmap.data().lock().expect("varmap lock poisoned");
        if let Some(v) = data.get(name) {
            if v.shape() != &s {
                candle_core::bail!(
                    "shape mismatch on {name}: expected {s:?}, stored {:?}",
                    v.shape()
                );
            }
            return v.as_tensor().to_dtype(dtype);
        }
        let values = self.init_values(&s, name, h);
        let t = Tensor::from_vec(values, s, dev)?.to_dtype(dtype)?;
        let var = Var::from_tensor(&t)?;
        let out = var.as_tensor().clone();
        data.insert(name.to_string(), var);
        Ok(out)
    }

    fn get_unchecked(&self, name: &str, dtype: DType, _dev: &Device) -> Result<Tensor> {
        let data = self.varmap.data().lock().expect("varmap lock poisoned");
        match data.get(name) {
            Some(v) => v.as_tensor().to_dtype(dtype),
            None => candle_core::bail!("no variable named {name}"),
        }
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.varmap
            .data()
            .lock()
            .expect("varmap lock poisoned")
            .contains_key(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_weights_any_order() -> Result<()> {
        let dev = Device::Cpu;
        let a = SeededVarMap::new(7);
        let vb = a.builder(&dev);
        let x1 = vb.get_with_hints((3, 4), "x", candle_nn::init::DEFAULT_KAIMING_NORMAL)?;
        let y1 = vb.get_with_hints(
            5,
            "y",
            Init::Randn {
                mean: 0.0,
                stdev: 1.0,
            },
        )?;
        let b = SeededVarMap::new(7);
        let vb = b.builder(&dev);
        let y2 = vb.get_with_hints(
            5,
            "y",
            Init::Randn {
                mean: 0.0,
                stdev: 1.0,
            },
        )?;
        let x2 = vb.get_with_hints((3, 4), "x", candle_nn::init::DEFAULT_KAIMING_NORMAL)?;
        assert_eq!(x1.to_vec2::<f32>()?, x2.to_vec2::<f32>()?);
        assert_eq!(y1.to_vec1::<f32>()?, y2.to_vec1::<f32>()?);
        let c = SeededVarMap::new(8);
        let x3 =
            c.builder(&dev)
                .get_with_hints((3, 4), "x", candle_nn::init::DEFAULT_KAIMING_NORMAL)?;
        assert_ne!(x1.to_vec2::<f32>()?, x3.to_vec2::<f32>()?);
        Ok(())
    }
}
