//! The unique texts of a dataset and what the model reads of them: token ids the backbone
//! consumes in padded batches, or, for a run on external features (docs/features.md), their
//! frozen feature vectors.
//!
//! Every `(prompt, response)` is tokenised (or looked up) once; a step embeds each unique text
//! it needs once, however many pairs and users share it.

use std::collections::HashMap;
use std::sync::Arc;

use candle_core::{Device, Result, Tensor};

use crate::error::TrainError;
use crate::model::RewardModel;
use crate::tokenize::{TextEncoder, TextTemplate, TokenizeError};
use vrf_data::{DataError, Dataset, FeatureTable, TextIndex};

/// How a run turns `(prompt, response)` texts into model inputs.
#[derive(Clone)]
// One per run: the size of the tokenizer variant does not matter.
pub enum TextSource {
    /// A tokenizer and template, for a backbone (boxed: it is large, the other variant small).
    Tokens(Box<TextEncoder>),
    /// An external feature table; the template renders the texts of tables keyed by text.
    Features {
        /// The table.
        table: Arc<FeatureTable>,
        /// The run's text template.
        template: TextTemplate,
    },
}

impl TextSource {
    /// The tokenizer, when the run has a backbone.
    pub fn text_encoder(&self) -> Option<&TextEncoder> {
        match self {
            TextSource::Tokens(enc) => Some(enc),
            TextSource::Features { .. } => None,
        }
    }
}

/// What the model reads of each unique text.
enum Inputs {
    /// Token ids per text (already left-truncated to the maximum length) and the padding id.
    Tokens { tokens: Vec<Vec<u32>>, pad_id: u32 },
    /// Frozen feature vectors `[texts, D]` on the host.
    Features(Tensor),
}

/// The unique texts of a dataset and their token ids or feature vectors.
pub struct Corpus {
    /// Unique texts and each triplet's chosen/rejected text index.
    pub index: TextIndex,
    inputs: Inputs,
    /// How many texts were longer than the maximum length and lost their beginning.
    pub truncated: usize,
}

impl Corpus {
    /// Tokenises (or looks up) every unique text of `ds`; a text that tokenises to nothing, or
    /// that the feature table lacks, is an error naming a triplet (file line and user) using it.
    pub fn build(ds: &Dataset, source: &TextSource) -> std::result::Result<Self, TrainError> {
        let index = ds.texts();
        match source {
            TextSource::Tokens(enc) => {
                let (tokens, truncated) = match tokenize(&index.texts, enc) {
                    Ok(t) => t,
                    Err((start, TokenizeError::EmptySequence(row))) => {
                        return Err(empty_text(ds, &index, start + row).into())
                    }
                    Err((_, e)) => return Err(e.into()),
                };
                Ok(Self {
                    index,
                    inputs: Inputs::Tokens {
                        tokens,
                        pad_id: enc.pad_id,
                    },
                    truncated,
                })
            }
            TextSource::Features { table, template } => {
                let render = |p: &str, r: &str| template.render(p, r);
                let m = table.for_dataset(ds, &index, &render)?;
                let inputs = features(m, index.texts.len(), table.dim())?;
                Ok(Self {
                    index,
                    inputs,
                    truncated: 0,
                })
            }
        }
    }

    /// Tokenises (or looks up) arbitrary `(prompt, response)` texts (not from a dataset: its
    /// triplet index is empty), e.g. candidate responses to score; ids are positions in `texts`.
    pub fn from_texts(
        texts: Vec<(String, String)>,
        source: &TextSource,
    ) -> std::result::Result<Self, TrainError> {
        let (inputs, truncated) = match source {
            TextSource::Tokens(enc) => {
                let (tokens, truncated) = tokenize(&texts, enc).map_err(|(_, e)| e)?;
                let pad_id = enc.pad_id;
                (Inputs::Tokens { tokens, pad_id }, truncated)
            }
            TextSource::Features { table, template } => {
                let render = |p: &str, r: &str| template.render(p, r);
                let m = table.matrix(&texts, &render)?;
                (features(m, texts.len(), table.dim())?, 0)
            }
        };
        Ok(Self {
            index: TextIndex {
                texts,
                chosen_text: vec![],
                rejected_text: vec![],
            },
            inputs,
            truncated,
        })
    }

    /// Number of unique texts.
    pub fn len(&self) -> usize {
        self.index.texts.len()
    }

    /// Whether the corpus has no text.
    pub fn is_empty(&self) -> bool {
        self.index.texts.is_empty()
    }

    /// Token count of unique text `text` after truncation (`None` for a feature corpus).
    pub fn token_len(&self, text: usize) -> Option<usize> {
        match &self.inputs {
            Inputs::Tokens { tokens, .. } => tokens.get(text).map(Vec::len),
            Inputs::Features(_) => None,
        }
    }

    /// Whether the texts are external feature vectors (no backbone).
    pub fn is_features(&self) -> bool {
        matches!(self.inputs, Inputs::Features(_))
    }

    /// Right-padded ids `[B, L]` (u32) and lengths for the given unique texts (token corpora).
    pub fn batch(&self, texts: &[usize], dev: &Device) -> Result<(Tensor, Vec<usize>)> {
        let Inputs::Tokens { tokens, pad_id } = &self.inputs else {
            return Err(candle_core::Error::Msg(
                "a run on external features has no token ids".into(),
            ));
        };
        let lengths: Vec<usize> = texts.iter().map(|&t| tokens[t].len()).collect();
        let l = lengths.iter().copied().max().unwrap_or(1).max(1);
        let mut ids = vec![*pad_id; texts.len() * l];
        for (row, &t) in texts.iter().enumerate() {
            ids[row * l..row * l + tokens[t].len()].copy_from_slice(&tokens[t]);
        }
        Ok((Tensor::from_vec(ids, (texts.len(), l), dev)?, lengths))
    }

    /// States `[n, H]` of `texts` in a training step: the backbone's, recorded for the
    /// backward (see [`RewardModel::embed_train`]), or the frozen feature rows.
    pub fn states_train(&self, model: &RewardModel, texts: &[usize]) -> Result<Tensor> {
        match &self.inputs {
            Inputs::Features(f) => gather(f, texts, &model.device),
            Inputs::Tokens { .. } => {
                let (x, lens) = self.batch(texts, &model.device)?;
                model.embed_train(&x, &lens)
            }
        }
    }

    /// Detached states `[n, H]` of `texts` in one backbone call (or the feature rows).
    pub fn states(&self, model: &RewardModel, texts: &[usize]) -> Result<Tensor> {
        match &self.inputs {
            Inputs::Features(f) => gather(f, texts, &model.device),
            Inputs::Tokens { .. } => {
                let (x, lens) = self.batch(texts, &model.device)?;
                Ok(model.embed(&x, &lens)?.detach())
            }
        }
    }

    /// Pooled states `[n, H]` of `texts` in chunks of similar length, detached (no training).
    pub fn embed(&self, model: &RewardModel, texts: &[usize], chunk: usize) -> Result<Tensor> {
        let tokens = match &self.inputs {
            Inputs::Features(f) => return gather(f, texts, &model.device),
            Inputs::Tokens { tokens, .. } => tokens,
        };
        let h = model.hidden_size();
        if texts.is_empty() {
            return Tensor::zeros((0, h), candle_core::DType::F32, &model.device);
        }
        // Sorting by length keeps padding small; the result is put back in the caller's order.
        let mut order: Vec<usize> = (0..texts.len()).collect();
        order.sort_by_key(|&i| tokens[texts[i]].len());
        let mut parts = Vec::new();
        for c in order.chunks(chunk.max(1)) {
            let ids: Vec<usize> = c.iter().map(|&i| texts[i]).collect();
            let (x, lens) = self.batch(&ids, &model.device)?;
            parts.push(model.embed(&x, &lens)?.detach());
        }
        let sorted = Tensor::cat(&parts, 0)?;
        let mut inverse = vec![0u32; texts.len()];
        for (pos, &i) in order.iter().enumerate() {
            inverse[i] = pos as u32;
        }
        let inv = Tensor::from_vec(inverse, texts.len(), &model.device)?;
        sorted.index_select(&inv, 0)
    }
}

/// The host tensor `[n, dim]` of a row-major feature matrix.
fn features(m: Vec<f32>, n: usize, dim: usize) -> std::result::Result<Inputs, TrainError> {
    Ok(Inputs::Features(Tensor::from_vec(
        m,
        (n, dim),
        &Device::Cpu,
    )?))
}

/// Rows `texts` of the host feature matrix `f`, on `dev`.
fn gather(f: &Tensor, texts: &[usize], dev: &Device) -> Result<Tensor> {
    let idx: Vec<u32> = texts.iter().map(|&t| t as u32).collect();
    rows(f, &idx)?.to_device(dev)
}

/// Token ids per text and how many texts were truncated.
type Tokens = (Vec<Vec<u32>>, usize);

/// Token ids of `texts`, tokenised in chunks of 512, and how many were truncated; an error comes
/// with the position in `texts` of the first text of the chunk it arose in (the error's own row
/// counts within that chunk).
fn tokenize(
    texts: &[(String, String)],
    enc: &TextEncoder,
) -> std::result::Result<Tokens, (usize, TokenizeError)> {
    const CHUNK: usize = 512;
    let (mut tokens, mut truncated) = (Vec::with_capacity(texts.len()), 0);
    for (c, chunk) in texts.chunks(CHUNK).enumerate() {
        let pairs: Vec<(&str, &str)> = chunk
            .iter()
            .map(|(p, r)| (p.as_str(), r.as_str()))
            .collect();
        let b = enc.encode_batch(&pairs).map_err(|e| (c * CHUNK, e))?;
        truncated += b.truncated;
        for (row, &len) in b.lengths.iter().enumerate() {
            tokens.push(b.ids[row * b.seq_len..row * b.seq_len + len].to_vec());
        }
    }
    Ok((tokens, truncated))
}

/// The error for unique text `text`, which tokenises to nothing: names a triplet using it.
fn empty_text(ds: &Dataset, index: &TextIndex, text: usize) -> DataError {
    let chosen = index.chosen_text.iter().position(|&t| t == text);
    let (i, field) = match chosen {
        Some(i) => (i, "chosen"),
        None => (
            index
                .rejected_text
                .iter()
                .position(|&t| t == text)
                .unwrap_or(0),
            "rejected",
        ),
    };
    DataError::EmptyText {
        place: ds.place(i),
        user: ds
            .triplets
            .get(i)
            .map_or_else(String::new, |t| t.user.clone()),
        field,
    }
}

/// Unique ids in first-appearance order and, for each input, its position in that list.
pub fn dedup(ids: &[usize]) -> (Vec<usize>, Vec<u32>) {
    let mut uniq = Vec::new();
    let mut pos: HashMap<usize, u32> = HashMap::new();
    let at = ids
        .iter()
        .map(|&i| {
            *pos.entry(i).or_insert_with(|| {
                uniq.push(i);
                (uniq.len() - 1) as u32
            })
        })
        .collect();
    (uniq, at)
}

/// Each id's position in `ids` (the last one where an id repeats).
pub fn positions(ids: &[usize]) -> HashMap<usize, u32> {
    ids.iter()
        .enumerate()
        .map(|(i, &t)| (t, i as u32))
        .collect()
}

/// Rows `idx` of `t` (a u32 index tensor built on `t`'s device).
pub fn rows(t: &Tensor, idx: &[u32]) -> Result<Tensor> {
    let i = Tensor::from_vec(idx.to_vec(), idx.len(), t.device())?;
    t.index_select(&i, 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dedup_positions() {
        let (u, p) = dedup(&[5, 3, 5, 9, 3]);
        assert_eq!(u, vec![5, 3, 9]);
        assert_eq!(p, vec![0, 1, 0, 2, 1]);
    }
}
