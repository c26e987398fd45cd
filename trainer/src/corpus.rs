//! Tokenised unique texts of a dataset and the padded batches the backbone consumes.
//!
//! Every `(prompt, response)` is tokenised once; a step embeds each unique text it needs once,
//! however many pairs and users share it.

use std::collections::HashMap;

use candle_core::{Device, Result, Tensor};

use crate::error::TrainError;
use crate::model::RewardModel;
use crate::tokenize::{TextEncoder, TokenizeError};
use vrf_data::{DataError, Dataset, TextIndex};

/// Token ids of every unique text of a dataset.
pub struct Corpus {
    /// Unique texts and each triplet's chosen/rejected text index.
    pub index: TextIndex,
    /// Token ids per unique text (already left-truncated to the maximum length).
    pub tokens: Vec<Vec<u32>>,
    /// Padding id (right padding).
    pub pad_id: u32,
    /// How many texts were longer than the maximum length and lost their beginning.
    pub truncated: usize,
}

impl Corpus {
    /// Tokenises every unique text of `ds` with `enc`; a text that tokenises to nothing is an
    /// error naming a triplet (file line and user) that uses it.
    pub fn build(ds: &Dataset, enc: &TextEncoder) -> std::result::Result<Self, TrainError> {
        let index = ds.texts();
        let (tokens, truncated) = match tokenize(&index.texts, enc) {
            Ok(t) => t,
            Err((start, TokenizeError::EmptySequence(row))) => {
                return Err(empty_text(ds, &index, start + row).into())
            }
            Err((_, e)) => return Err(e.into()),
        };
        Ok(Self {
            index,
            tokens,
            pad_id: enc.pad_id,
            truncated,
        })
    }

    /// Tokenises arbitrary `(prompt, response)` texts (not from a dataset: its triplet index is
    /// empty), e.g. candidate responses to score; ids are positions in `texts`.
    pub fn from_texts(
        texts: Vec<(String, String)>,
        enc: &TextEncoder,
    ) -> std::result::Result<Self, TrainError> {
        let (tokens, truncated) = tokenize(&texts, enc).map_err(|(_, e)| e)?;
        Ok(Self {
            index: TextIndex {
                texts,
                chosen_text: vec![],
                rejected_text: vec![],
            },
            tokens,
            pad_id: enc.pad_id,
            truncated,
        })
    }

    /// Right-padded ids `[B, L]` (u32) and lengths for the given unique texts.
    pub fn batch(&self, texts: &[usize], dev: &Device) -> Result<(Tensor, Vec<usize>)> {
        let lengths: Vec<usize> = texts.iter().map(|&t| self.tokens[t].len()).collect();
        let l = lengths.iter().copied().max().unwrap_or(1).max(1);
        let mut ids = vec![self.pad_id; texts.len() * l];
        for (row, &t) in texts.iter().enumerate() {
            ids[row * l..row * l + self.tokens[t].len()].copy_from_slice(&self.tokens[t]);
        }
        Ok((Tensor::from_vec(ids, (texts.len(), l), dev)?, lengths))
    }

    /// Pooled states `[n, H]` of `texts` in chunks of similar length, detached (no training).
    pub fn embed(&self, model: &RewardModel, texts: &[usize], chunk: usize) -> Result<Tensor> {
        let h = model.backbone_cfg.hidden_size;
        if texts.is_empty() {
            return Tensor::zeros((0, h), candle_core::DType::F32, &model.device);
        }
        // Sorting by length keeps padding small; the result is put back in the caller's order.
        let mut order: Vec<usize> = (0..texts.len()).collect();
        order.sort_by_key(|&i| self.tokens[texts[i]].len());
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
