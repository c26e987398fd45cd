//! Self-supervised pretraining of the backbone (`train.lm_epochs`): next-token prediction on the
//! training prompts' texts through the tied embeddings, the way a real user starts from a
//! pretrained model, before the reward stages learn from preference pairs alone.

use candle_core::{Tensor, D};
use serde_json::json;

use super::step::StepOut;
use super::{Stage, Trainer};
use crate::corpus::dedup;
use crate::error::Result;
use crate::eval::pair_texts;

impl Trainer<'_> {
    /// One LM step: the unique texts of a few training prompts, mean cross-entropy of every
    /// real next token (positions past a text's length are padding and ignored).
    pub(super) fn lm_step(
        &self,
        groups: &[Vec<usize>],
        epoch: usize,
        within: usize,
    ) -> Result<StepOut> {
        let triplets = self.prompt_batch(Stage::Pretrain, groups, epoch, within);
        let (texts, _) = dedup(&pair_texts(self.corpus, triplets.iter().copied()));
        let dev = &self.model.device;
        let (ids, lens) = self.corpus.batch(&texts, dev)?;
        let (b, l) = ids.dims2()?;
        let h = self.model.qwen3()?.forward_recorded(&ids)?;
        // Position t predicts token t + 1 of the same text.
        let flat: Vec<u32> = ids.flatten_all()?.to_vec1()?;
        let (mut at, mut target) = (Vec::new(), Vec::new());
        for (row, &len) in lens.iter().enumerate() {
            for t in 0..len.saturating_sub(1) {
                at.push((row * l + t) as u32);
                target.push(flat[row * l + t + 1]);
            }
        }
        let n = at.len();
        let at = Tensor::from_vec(at, n, dev)?;
        let target = Tensor::from_vec(target, n, dev)?;
        let hidden = h
            .reshape((b * l, h.dim(D::Minus1)?))?
            .index_select(&at, 0)?;
        let logits = self.model.qwen3()?.lm_logits(&hidden)?;
        let loss = candle_nn::loss::cross_entropy(&logits, &target)?;
        let hits = logits
            .argmax(D::Minus1)?
            .eq(&target)?
            .to_dtype(candle_core::DType::F32)?
            .mean_all()?
            .to_scalar::<f32>()? as f64;
        let mut m = serde_json::Map::new();
        m.insert("lm_loss".into(), json!(loss.to_scalar::<f32>()?));
        m.insert("tokens".into(), json!(n));
        m.insert("texts".into(), json!(texts.len()));
        Ok(StepOut {
            loss,
            metrics: m,
            acc: hits,
        })
    }
}
