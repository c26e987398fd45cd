//! The text template applied to `(prompt, response)` and the tokenizer that encodes it (docs/METHOD.md §2).
//!
//! Sequences are right-padded; over-long ones are truncated from the left so that the end of the
//! response (where the reward is read) survives.

//!
//! The template and encoder live in [`vrf_runtime::text`] (the runtime must tokenise exactly as
//! training did); this module adds tokenizer training for the synthetic benchmark.

use tokenizers::models::bpe::{BpeTrainerBuilder, BPE};
use tokenizers::models::TrainerWrapper;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::{AddedToken, Tokenizer, TokenizerImpl};
pub use vrf_runtime::text::{
    save_tokenizer, EncodedBatch, TextEncoder, TextTemplate, TokenizeError, PAD_CANDIDATES,
    QWEN_CHAT_TEMPLATE,
};

/// Special tokens of tokenizers trained by [`train_bpe`] (Qwen's spelling).
pub const SPECIAL_TOKENS: [&str; 3] = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"];

/// Default vocabulary size of [`train_bpe`] for the synthetic corpus.
pub const DEFAULT_VOCAB_SIZE: usize = 2048;

/// Trains a byte-level BPE tokenizer with [`SPECIAL_TOKENS`]; deterministic for the same corpus.
pub fn train_bpe(
    texts: impl Iterator<Item = String>,
    vocab_size: usize,
) -> Result<Tokenizer, TokenizeError> {
    let texts: Vec<String> = texts.collect();
    if texts.is_empty() {
        return Err(TokenizeError::Train("empty corpus".into()));
    }
    let min_vocab = 256 + SPECIAL_TOKENS.len();
    if vocab_size < min_vocab {
        return Err(TokenizeError::Train(format!(
            "vocab_size {vocab_size} is below the byte alphabet plus specials ({min_vocab})"
        )));
    }
    let specials = SPECIAL_TOKENS
        .iter()
        .map(|t| AddedToken::from(*t, true))
        .collect();
    let mut trainer: TrainerWrapper = BpeTrainerBuilder::new()
        .show_progress(false)
        .vocab_size(vocab_size)
        .min_frequency(0)
        .special_tokens(specials)
        .initial_alphabet(ByteLevel::alphabet().into_iter().collect())
        .build()
        .into();
    let byte_level = ByteLevel::default().add_prefix_space(false);
    let mut tk: TokenizerImpl<_, _, _, _, _> = Tokenizer::new(BPE::default()).into_inner();
    tk.with_pre_tokenizer(Some(byte_level));
    tk.with_decoder(Some(byte_level));
    tk.train(&mut trainer, texts.into_iter())
        .map_err(|e| TokenizeError::Train(e.to_string()))?;
    Ok(Tokenizer::from(tk))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn corpus() -> Vec<String> {
        let mut v = Vec::new();
        for i in 0..200 {
            v.push(format!(
                "How do I bake bread number {i}? Knead the dough, let it rest, then bake it hot."
            ));
            v.push(format!(
                "Try a short walk every day ({i}), and keep a simple log of your sleep."
            ));
        }
        v
    }

    fn encoder(max_len: usize) -> TextEncoder {
        let tk = train_bpe(corpus().into_iter(), 400).unwrap();
        TextEncoder::new(tk, TextTemplate::default(), max_len).unwrap()
    }

    #[test]
    fn template_validation_and_render() {
        assert!(matches!(
            TextTemplate::new("only {prompt}"),
            Err(TokenizeError::MissingPlaceholder {
                placeholder: "{response}",
                ..
            })
        ));
        assert!(TextTemplate::new("{response}").is_err());
        let t = TextTemplate::new("Q: {prompt} A: {response}!").unwrap();
        assert_eq!(t.render("x {response}", "y"), "Q: x {response} A: y!");
        let json = serde_json::to_string(&t).unwrap();
        assert_eq!(serde_json::from_str::<TextTemplate>(&json).unwrap(), t);
        assert!(serde_json::from_str::<TextTemplate>("\"no placeholders\"").is_err());
        assert_eq!(TextTemplate::default().as_str(), QWEN_CHAT_TEMPLATE);
    }

    #[test]
    fn special_tokens_are_single_ids() {
        let enc = encoder(512);
        let ids = enc.encode("bake bread", "knead the dough").unwrap();
        let start = enc.tokenizer.token_to_id("<|im_start|>").unwrap();
        let end = enc.tokenizer.token_to_id("<|im_end|>").unwrap();
        assert_eq!(ids[0], start);
        assert_eq!(*ids.last().unwrap(), end);
        assert_eq!(ids.iter().filter(|&&i| i == start).count(), 2);
        assert_eq!(ids.iter().filter(|&&i| i == end).count(), 2);
        assert_eq!(
            enc.pad_id,
            enc.tokenizer.token_to_id("<|endoftext|>").unwrap()
        );
        let text = enc.tokenizer.decode(&ids, false).unwrap();
        assert_eq!(text, enc.template.render("bake bread", "knead the dough"));
    }

    #[test]
    fn padding_mask_lengths() {
        let enc = encoder(512);
        let pairs = [
            ("bake", "knead the dough, let it rest, then bake it hot."),
            ("walk", "ok"),
        ];
        let b = enc.encode_batch(&pairs).unwrap();
        let l0 = enc.encode(pairs[0].0, pairs[0].1).unwrap();
        let l1 = enc.encode(pairs[1].0, pairs[1].1).unwrap();
        assert!(l0.len() > l1.len());
        assert_eq!((b.batch, b.seq_len, b.truncated), (2, l0.len(), 0));
        assert_eq!(b.lengths, [l0.len(), l1.len()]);
        assert_eq!(&b.ids[..b.seq_len], &l0[..]);
        assert_eq!(&b.ids[b.seq_len..b.seq_len + l1.len()], &l1[..]);
        assert!(b.ids[b.seq_len + l1.len()..]
            .iter()
            .all(|&i| i == enc.pad_id));
        let m1 = &b.mask[b.seq_len..];
        assert!(m1[..l1.len()].iter().all(|&m| m == 1) && m1[l1.len()..].iter().all(|&m| m == 0));
        assert!(b.mask[..b.seq_len].iter().all(|&m| m == 1));
        let empty = enc.encode_batch(&[]).unwrap();
        assert_eq!((empty.batch, empty.seq_len), (0, 0));
    }

    #[test]
    fn left_truncation_keeps_the_end() {
        let short = encoder(512).encode("a", "b").unwrap().len();
        let enc = encoder(short);
        let long = "knead the dough, let it rest, then bake it hot and keep a simple log.";
        let full = enc.encode("bake bread", long).unwrap();
        assert!(full.len() > short);
        let b = enc
            .encode_batch(&[("bake bread", long), ("a", "b")])
            .unwrap();
        assert_eq!(b.truncated, 1);
        assert_eq!(b.seq_len, short);
        assert_eq!(b.lengths, [short, short]);
        assert_eq!(&b.ids[..short], &full[full.len() - short..]);
        assert_eq!(
            b.ids[short - 1],
            enc.tokenizer.token_to_id("<|im_end|>").unwrap()
        );
    }

    #[test]
    fn save_and_load_round_trip_and_determinism() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokenizer.json");
        let enc = encoder(64);
        enc.save(&path).unwrap();
        let back = TextEncoder::from_file(&path, TextTemplate::default(), 64).unwrap();
        assert_eq!(back.pad_id, enc.pad_id);
        assert_eq!(back.vocab_size(), enc.vocab_size());
        let pairs = [("How do I bake bread?", "Knead it, rest it, bake it hot!")];
        assert_eq!(
            back.encode_batch(&pairs).unwrap(),
            enc.encode_batch(&pairs).unwrap()
        );
        // Same corpus, same tokenizer.
        let again = train_bpe(corpus().into_iter(), 400).unwrap();
        assert_eq!(
            again.to_string(false).unwrap(),
            enc.tokenizer.to_string(false).unwrap()
        );
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn load_errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing_tok.json");
        let msg = TextEncoder::from_file(&missing, TextTemplate::default(), 8)
            .unwrap_err()
            .to_string();
        assert!(msg.contains("missing_tok.json"), "{msg}");
        let bad = dir.path().join("bad_tok.json");
        std::fs::write(&bad, "{").unwrap();
        let msg = TextEncoder::from_file(&bad, TextTemplate::default(), 8)
            .unwrap_err()
            .to_string();
        assert!(msg.contains("bad_tok.json"), "{msg}");
    }

    #[test]
    fn pad_token_is_required_or_configurable() {
        let mut tk: TokenizerImpl<_, _, _, _, _> = Tokenizer::new(BPE::default()).into_inner();
        tk.with_pre_tokenizer(Some(ByteLevel::default()));
        let mut trainer: TrainerWrapper = BpeTrainerBuilder::new()
            .show_progress(false)
            .vocab_size(300)
            .build()
            .into();
        tk.train(&mut trainer, corpus().into_iter()).unwrap();
        let tk = Tokenizer::from(tk);
        assert!(matches!(
            TextEncoder::new(tk.clone(), TextTemplate::default(), 8),
            Err(TokenizeError::NoPadToken(_))
        ));
        let enc = encoder(8).with_pad_token("<|im_end|>").unwrap();
        assert_eq!(enc.pad_id, enc.tokenizer.token_to_id("<|im_end|>").unwrap());
        assert!(encoder(8).with_pad_token("<nope>").is_err());
        assert!(matches!(
            TextEncoder::new(tk, TextTemplate::default(), 0),
            Err(TokenizeError::ZeroMaxLen)
        ));
    }
}
