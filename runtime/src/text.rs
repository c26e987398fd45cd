//! The text template applied to `(prompt, response)` and the tokenizer that encodes it (docs/METHOD.md §2),
//! shared by the trainer and the runtime so both tokenise exactly alike.
//!
//! Sequences are right-padded; over-long ones are truncated from the left so that the end of the
//! response (where the reward is read) survives.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::{Path, PathBuf};
use tokenizers::Tokenizer;

/// Qwen-style chat template, the default.
pub const QWEN_CHAT_TEMPLATE: &str =
    "<|im_start|>user\n{prompt}<|im_end|>\n<|im_start|>assistant\n{response}<|im_end|>";

/// Pad tokens looked up, in order, when a tokenizer defines no padding.
pub const PAD_CANDIDATES: [&str; 5] = ["<|endoftext|>", "<pad>", "[PAD]", "</s>", "<eos>"];

/// Errors from templates, tokenizer loading, encoding and training.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TokenizeError {
    /// A template lacks a placeholder.
    #[error("text template {template:?} has no `{placeholder}` placeholder")]
    MissingPlaceholder {
        /// The template.
        template: String,
        /// The missing placeholder.
        placeholder: &'static str,
    },
    /// A tokenizer file could not be read or parsed.
    #[error("loading tokenizer {}: {message}", path.display())]
    Load {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// A tokenizer could not be written.
    #[error("saving tokenizer {}: {message}", path.display())]
    Save {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// No pad token could be found.
    #[error("tokenizer has no pad token (tried {0}); configure one that is in its vocabulary")]
    NoPadToken(String),
    /// A given pad id (e.g. the manifest's `text.pad_id`) is not a token of the tokenizer.
    #[error("pad id {id} is not in the tokenizer's vocabulary of {vocab_size} tokens")]
    UnknownPadId {
        /// The pad id.
        id: u32,
        /// Vocabulary size including added tokens.
        vocab_size: usize,
    },
    /// `max_len` is zero.
    #[error("max_len must be at least 1")]
    ZeroMaxLen,
    /// Encoding failed.
    #[error("tokenizing text: {0}")]
    Encode(String),
    /// A text produced no tokens (nothing to pool).
    #[error("text {0} of the batch encodes to zero tokens")]
    EmptySequence(usize),
    /// Training a tokenizer failed.
    #[error("training BPE tokenizer: {0}")]
    Train(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Lit(String),
    Prompt,
    Response,
}

/// A string with `{prompt}` and `{response}` placeholders, rendered for each text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TextTemplate {
    template: String,
    parts: Vec<Part>,
}

impl TextTemplate {
    /// Parses a template; both placeholders must occur.
    pub fn new(template: impl Into<String>) -> Result<Self, TokenizeError> {
        let template = template.into();
        for placeholder in ["{prompt}", "{response}"] {
            if !template.contains(placeholder) {
                return Err(TokenizeError::MissingPlaceholder {
                    template,
                    placeholder,
                });
            }
        }
        let mut parts = Vec::new();
        let mut rest = template.as_str();
        loop {
            let next = [("{prompt}", Part::Prompt), ("{response}", Part::Response)]
                .into_iter()
                .filter_map(|(p, part)| rest.find(p).map(|i| (i, p.len(), part)))
                .min_by_key(|x| x.0);
            match next {
                Some((i, len, part)) => {
                    if i > 0 {
                        parts.push(Part::Lit(rest[..i].to_string()));
                    }
                    parts.push(part);
                    rest = &rest[i + len..];
                }
                None => {
                    if !rest.is_empty() {
                        parts.push(Part::Lit(rest.to_string()));
                    }
                    break;
                }
            }
        }
        Ok(Self { template, parts })
    }

    /// The template string.
    pub fn as_str(&self) -> &str {
        &self.template
    }

    /// Substitutes the placeholders (placeholder-like text inside the inputs is left alone).
    pub fn render(&self, prompt: &str, response: &str) -> String {
        let mut s = String::with_capacity(self.template.len() + prompt.len() + response.len());
        for p in &self.parts {
            match p {
                Part::Lit(l) => s.push_str(l),
                Part::Prompt => s.push_str(prompt),
                Part::Response => s.push_str(response),
            }
        }
        s
    }
}

impl Default for TextTemplate {
    fn default() -> Self {
        Self::new(QWEN_CHAT_TEMPLATE).expect("the built-in template has both placeholders")
    }
}

impl fmt::Display for TextTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.template)
    }
}

impl TryFrom<String> for TextTemplate {
    type Error = TokenizeError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::new(s)
    }
}

impl From<TextTemplate> for String {
    fn from(t: TextTemplate) -> String {
        t.template
    }
}

/// A batch of encoded texts, right-padded to the longest one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedBatch {
    /// Token ids, row-major `[batch, seq_len]`.
    pub ids: Vec<u32>,
    /// 1 for a real token, 0 for padding, row-major `[batch, seq_len]`.
    pub mask: Vec<u32>,
    /// Number of real tokens of each row (the last real token is at `lengths[b] - 1`).
    pub lengths: Vec<usize>,
    /// Number of rows.
    pub batch: usize,
    /// Padded length of every row.
    pub seq_len: usize,
    /// How many rows were truncated (from the left) to `max_len`.
    pub truncated: usize,
    /// Indices of the truncated rows.
    pub truncated_rows: Vec<usize>,
}

/// A tokenizer with the text template, maximum length and pad id used by the model.
#[derive(Clone)]
pub struct TextEncoder {
    /// The Hugging Face tokenizer.
    pub tokenizer: Tokenizer,
    /// The template applied to `(prompt, response)`.
    pub template: TextTemplate,
    /// Maximum tokens per text; longer texts keep their last `max_len` tokens.
    pub max_len: usize,
    /// Id used to pad rows.
    pub pad_id: u32,
}

impl fmt::Debug for TextEncoder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TextEncoder")
            .field("vocab_size", &self.tokenizer.get_vocab_size(true))
            .field("template", &self.template.as_str())
            .field("max_len", &self.max_len)
            .field("pad_id", &self.pad_id)
            .finish()
    }
}

impl TextEncoder {
    /// Wraps a tokenizer; the pad id comes from its padding settings or a known pad token
    /// ([`PAD_CANDIDATES`]), else [`TokenizeError::NoPadToken`].
    pub fn new(
        tokenizer: Tokenizer,
        template: TextTemplate,
        max_len: usize,
    ) -> Result<Self, TokenizeError> {
        Self::build(tokenizer, template, max_len, None)
    }

    /// Wraps a tokenizer that pads with `pad_id` (e.g. an exported model's `text.pad_id`), which
    /// must be in its vocabulary; the tokenizer itself need not name a pad token.
    pub fn with_pad_id(
        tokenizer: Tokenizer,
        template: TextTemplate,
        max_len: usize,
        pad_id: u32,
    ) -> Result<Self, TokenizeError> {
        Self::build(tokenizer, template, max_len, Some(pad_id))
    }

    fn build(
        tokenizer: Tokenizer,
        template: TextTemplate,
        max_len: usize,
        pad_id: Option<u32>,
    ) -> Result<Self, TokenizeError> {
        if max_len == 0 {
            return Err(TokenizeError::ZeroMaxLen);
        }
        let pad_id = match pad_id {
            Some(id) if tokenizer.id_to_token(id).is_none() => {
                return Err(TokenizeError::UnknownPadId {
                    id,
                    vocab_size: tokenizer.get_vocab_size(true),
                })
            }
            Some(id) => id,
            None => resolve_pad_id(&tokenizer)?,
        };
        Ok(Self {
            tokenizer,
            template,
            max_len,
            pad_id,
        })
    }

    /// Loads any Hugging Face `tokenizer.json`.
    pub fn from_file(
        path: impl AsRef<Path>,
        template: TextTemplate,
        max_len: usize,
    ) -> Result<Self, TokenizeError> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|e| TokenizeError::Load {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        Self::from_bytes(&bytes, path, template, max_len)
    }

    /// Parses `tokenizer.json` bytes already read from `path` (named in errors); the pad id as
    /// in [`TextEncoder::new`].
    pub fn from_bytes(
        bytes: &[u8],
        path: &Path,
        template: TextTemplate,
        max_len: usize,
    ) -> Result<Self, TokenizeError> {
        Self::new(parse_tokenizer(bytes, path)?, template, max_len)
    }

    /// As [`TextEncoder::from_bytes`], padding with `pad_id` as in [`TextEncoder::with_pad_id`].
    pub fn from_bytes_with_pad_id(
        bytes: &[u8],
        path: &Path,
        template: TextTemplate,
        max_len: usize,
        pad_id: u32,
    ) -> Result<Self, TokenizeError> {
        Self::with_pad_id(parse_tokenizer(bytes, path)?, template, max_len, pad_id)
    }

    /// Uses `token` (which must be in the vocabulary) for padding.
    pub fn with_pad_token(mut self, token: &str) -> Result<Self, TokenizeError> {
        self.pad_id = self
            .tokenizer
            .token_to_id(token)
            .ok_or_else(|| TokenizeError::NoPadToken(format!("{token:?}")))?;
        Ok(self)
    }

    /// Writes the tokenizer as `tokenizer.json` (atomically).
    pub fn save(&self, path: impl AsRef<Path>) -> Result<(), TokenizeError> {
        save_tokenizer(&self.tokenizer, path)
    }

    /// Vocabulary size including added tokens.
    pub fn vocab_size(&self) -> usize {
        self.tokenizer.get_vocab_size(true)
    }

    /// Token ids of one rendered text, without truncation or padding.
    pub fn encode(&self, prompt: &str, response: &str) -> Result<Vec<u32>, TokenizeError> {
        let text = self.template.render(prompt, response);
        let enc = self
            .tokenizer
            .encode(text.as_str(), false)
            .map_err(|e| TokenizeError::Encode(e.to_string()))?;
        Ok(enc.get_ids().to_vec())
    }

    /// Token ids of each `(prompt, response)`, left-truncated to `max_len`, unpadded, with the
    /// indices of the truncated rows.
    pub fn encode_rows(
        &self,
        pairs: &[(&str, &str)],
    ) -> Result<(Vec<Vec<u32>>, Vec<usize>), TokenizeError> {
        let mut rows = Vec::with_capacity(pairs.len());
        let mut truncated_rows = Vec::new();
        for (i, (p, r)) in pairs.iter().enumerate() {
            let mut ids = self.encode(p, r)?;
            if ids.is_empty() {
                return Err(TokenizeError::EmptySequence(i));
            }
            if ids.len() > self.max_len {
                ids.drain(..ids.len() - self.max_len);
                truncated_rows.push(i);
            }
            rows.push(ids);
        }
        Ok((rows, truncated_rows))
    }

    /// Encodes `(prompt, response)` pairs: left-truncated to `max_len`, right-padded with `pad_id`.
    pub fn encode_batch(&self, pairs: &[(&str, &str)]) -> Result<EncodedBatch, TokenizeError> {
        let (rows, truncated_rows) = self.encode_rows(pairs)?;
        let truncated = truncated_rows.len();
        let batch = rows.len();
        let seq_len = rows.iter().map(Vec::len).max().unwrap_or(0);
        let mut ids = vec![self.pad_id; batch * seq_len];
        let mut mask = vec![0u32; batch * seq_len];
        let mut lengths = Vec::with_capacity(batch);
        for (b, row) in rows.iter().enumerate() {
            ids[b * seq_len..b * seq_len + row.len()].copy_from_slice(row);
            mask[b * seq_len..b * seq_len + row.len()].fill(1);
            lengths.push(row.len());
        }
        Ok(EncodedBatch {
            ids,
            mask,
            lengths,
            batch,
            seq_len,
            truncated,
            truncated_rows,
        })
    }
}

fn parse_tokenizer(bytes: &[u8], path: &Path) -> Result<Tokenizer, TokenizeError> {
    Tokenizer::from_bytes(bytes).map_err(|e| TokenizeError::Load {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

fn resolve_pad_id(tokenizer: &Tokenizer) -> Result<u32, TokenizeError> {
    if let Some(p) = tokenizer.get_padding() {
        if let Some(id) = tokenizer.token_to_id(&p.pad_token) {
            return Ok(id);
        }
    }
    PAD_CANDIDATES
        .iter()
        .find_map(|t| tokenizer.token_to_id(t))
        .ok_or_else(|| TokenizeError::NoPadToken(PAD_CANDIDATES.join(", ")))
}

/// Writes a tokenizer as JSON, atomically.
pub fn save_tokenizer(tokenizer: &Tokenizer, path: impl AsRef<Path>) -> Result<(), TokenizeError> {
    let path = path.as_ref();
    let save_err = |message: String| TokenizeError::Save {
        path: path.to_path_buf(),
        message,
    };
    let json = tokenizer
        .to_string(false)
        .map_err(|e| save_err(e.to_string()))?;
    vrf_format::fsutil::write_atomic(path, json.as_bytes()).map_err(|e| save_err(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A word-level `tokenizer.json` whose vocabulary has none of [`PAD_CANDIDATES`].
    const NO_PAD_TOKENIZER: &str = r#"{
        "version": "1.0", "truncation": null, "padding": null, "added_tokens": [],
        "normalizer": null, "pre_tokenizer": {"type": "Whitespace"}, "post_processor": null,
        "decoder": null,
        "model": {"type": "WordLevel", "vocab": {"[UNK]": 0, "hello": 1, "world": 2, "|": 3},
                  "unk_token": "[UNK]"}
    }"#;

    #[test]
    fn a_given_pad_id_serves_a_tokenizer_without_pad_token() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokenizer.json");
        std::fs::write(&path, NO_PAD_TOKENIZER).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        let template = || TextTemplate::new("{prompt} | {response}").unwrap();

        let e = TextEncoder::from_bytes(&bytes, &path, template(), 8).unwrap_err();
        assert!(matches!(e, TokenizeError::NoPadToken(_)), "{e}");
        assert!(e.to_string().contains("no pad token"), "{e}");

        let enc = TextEncoder::from_bytes_with_pad_id(&bytes, &path, template(), 8, 0).unwrap();
        assert_eq!(enc.pad_id, 0);
        let batch = enc
            .encode_batch(&[("hello", "world"), ("hello", "hello world")])
            .unwrap();
        assert_eq!(batch.ids, vec![1, 3, 2, 0, 1, 3, 1, 2]);
        assert_eq!(batch.mask, vec![1, 1, 1, 0, 1, 1, 1, 1]);

        let e = TextEncoder::from_bytes_with_pad_id(&bytes, &path, template(), 8, 4).unwrap_err();
        assert!(
            matches!(
                e,
                TokenizeError::UnknownPadId {
                    id: 4,
                    vocab_size: 4
                }
            ),
            "{e}"
        );
    }
}
