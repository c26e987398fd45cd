//! Host copy of detached reference-text states, so that prompt-batched end-to-end steps need not
//! re-embed every user's reference set (the encoder's inputs carry no gradient either way).

use std::collections::HashMap;

use candle_core::{Device, Tensor};

use crate::error::{Result, TrainError};

/// Checkpoint tensor names of a saved cache.
const TEXTS: &str = "ref_cache.texts";
const STATES: &str = "ref_cache.states";

/// Detached reference-text states `[n, H]`, by unique text id.
pub struct RefCache {
    pos: HashMap<usize, usize>,
    h: usize,
    data: Vec<f32>,
}

impl RefCache {
    /// A cache of `texts` with states `e` `[n, H]` (row i is `texts[i]`).
    pub fn new(texts: &[usize], e: &Tensor) -> Result<Self> {
        let (_, h) = e.dims2()?;
        let pos = texts.iter().enumerate().map(|(i, &t)| (t, i)).collect();
        Ok(Self {
            pos,
            h,
            data: e.flatten_all()?.to_vec1::<f32>()?,
        })
    }

    /// Overwrites the rows of those `texts` that are cached with fresh states `e` `[n, H]`.
    pub fn update(&mut self, texts: &[usize], e: &Tensor) -> Result<()> {
        let v = e.flatten_all()?.to_vec1::<f32>()?;
        for (i, t) in texts.iter().enumerate() {
            if let Some(&p) = self.pos.get(t) {
                self.data[p * self.h..(p + 1) * self.h]
                    .copy_from_slice(&v[i * self.h..(i + 1) * self.h]);
            }
        }
        Ok(())
    }

    /// The cache as tensors for a checkpoint (`ref_cache.texts` u32 `[n]`, `ref_cache.states`).
    pub fn tensors(&self, dev: &Device) -> Result<HashMap<String, Tensor>> {
        let n = self.pos.len();
        let mut texts = vec![0u32; n];
        for (&t, &p) in &self.pos {
            texts[p] = t as u32;
        }
        let mut m = HashMap::new();
        m.insert(TEXTS.to_string(), Tensor::from_vec(texts, n, dev)?);
        m.insert(
            STATES.to_string(),
            Tensor::from_vec(self.data.clone(), (n, self.h), dev)?,
        );
        Ok(m)
    }

    /// Restores a cache saved by [`RefCache::tensors`]; `None` if the checkpoint has none.
    pub fn from_tensors(m: &HashMap<String, Tensor>) -> Result<Option<Self>> {
        match (m.get(TEXTS), m.get(STATES)) {
            (Some(t), Some(e)) => {
                let texts: Vec<usize> = t
                    .to_vec1::<u32>()?
                    .into_iter()
                    .map(|x| x as usize)
                    .collect();
                Ok(Some(Self::new(&texts, e)?))
            }
            _ => Ok(None),
        }
    }

    /// States of `texts` `[n, H]` (all must be cached).
    pub fn gather(&self, texts: &[usize], dev: &Device) -> Result<Tensor> {
        let mut out = Vec::with_capacity(texts.len() * self.h);
        for t in texts {
            let p = *self
                .pos
                .get(t)
                .ok_or_else(|| TrainError::Other(format!("reference text {t} is not cached")))?;
            out.extend_from_slice(&self.data[p * self.h..(p + 1) * self.h]);
        }
        Ok(Tensor::from_vec(out, (texts.len(), self.h), dev)?)
    }
}
