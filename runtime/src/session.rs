//! [`VrfModel`]: a loaded model directory — tokenizer, ONNX backbone, encoder and bases, cached
//! seen users — and the operations a serving application needs.
//!
//! ```no_run
//! use vrf_runtime::{Reference, RuntimeOptions, VrfModel};
//! # fn main() -> Result<(), vrf_runtime::RuntimeError> {
//! let model = VrfModel::load("models/demo", &RuntimeOptions::default())?;
//! let user = model.user(&[Reference::new("Explain rust.", "Ownership means…", "Rust is a game.")])?;
//! let best = model.best_of_n(&user.weights, "Explain rust.", &["short answer", "long answer"])?;
//! println!("best = {}, uncertainty = {}", best.best, user.uncertainty);
//! # Ok(()) }
//! ```

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use ndarray::{s, Array1, Array2, ArrayView1, Axis};

use crate::backbone::{BackboneOutput, ExecutionProvider, OnnxBackbone};
use crate::error::RuntimeError;
use crate::format::{
    Manifest, SeenUsers, MANIFEST_FILE, SEEN_USERS_FILE, TOKENIZER_FILE, USER_MODEL_FILE,
};
use crate::math::{Posterior, UserPosterior};
use crate::text::{TextEncoder, TextTemplate};
use crate::user_model::{UserModel, UserState};

/// How to load a model.
#[derive(Debug, Clone)]
pub struct RuntimeOptions {
    /// ONNX Runtime intra-op threads.
    pub threads: usize,
    /// Where the backbone runs.
    pub provider: ExecutionProvider,
    /// Most texts per backbone call; larger inputs are split into batches of this size.
    pub batch_size: usize,
    /// The ONNX Runtime library; `None` uses `ORT_DYLIB_PATH`.
    pub ort_library: Option<PathBuf>,
    /// Check every file's SHA-256 against the manifest while loading.
    pub verify_checksums: bool,
}

impl Default for RuntimeOptions {
    fn default() -> Self {
        Self {
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            provider: ExecutionProvider::Cpu,
            batch_size: 16,
            ort_library: None,
            verify_checksums: true,
        }
    }
}

/// One reference preference of a user: for `prompt`, `chosen` was preferred over `rejected`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Reference {
    /// The prompt.
    pub prompt: String,
    /// The preferred response.
    pub chosen: String,
    /// The other response.
    pub rejected: String,
}

impl Reference {
    /// A reference triplet.
    pub fn new(
        prompt: impl Into<String>,
        chosen: impl Into<String>,
        rejected: impl Into<String>,
    ) -> Self {
        Self {
            prompt: prompt.into(),
            chosen: chosen.into(),
            rejected: rejected.into(),
        }
    }

    /// The two texts the backbone scores: `(prompt, chosen)` then `(prompt, rejected)`.
    pub fn texts(&self) -> [(&str, &str); 2] {
        [
            (self.prompt.as_str(), self.chosen.as_str()),
            (self.prompt.as_str(), self.rejected.as_str()),
        ]
    }
}

/// Backbone outputs of texts, in input order, and which ones were truncated.
#[derive(Debug, Clone, PartialEq)]
pub struct Features {
    /// Hidden states `[N, H]`.
    pub hidden: Array2<f32>,
    /// Basis rewards `[N, K]`.
    pub rewards: Array2<f32>,
    /// Indices of texts longer than `max_len`, truncated from the left as in training.
    pub truncated: Vec<usize>,
}

/// Personalised scores of N responses to one prompt.
#[derive(Debug, Clone, PartialEq)]
pub struct Scores {
    /// `r = φ·w` per response.
    pub scores: Array1<f32>,
    /// Basis rewards `[N, K]`.
    pub rewards: Array2<f32>,
    /// Index of the highest score (the first one on ties).
    pub best: usize,
    /// Responses that were truncated.
    pub truncated: Vec<usize>,
}

/// A loaded model directory. `Send + Sync`: share one behind an `Arc`.
#[derive(Debug)]
pub struct VrfModel {
    dir: PathBuf,
    manifest: Manifest,
    text: TextEncoder,
    backbone: OnnxBackbone,
    user: UserModel,
    seen: SeenUsers,
    seen_index: HashMap<String, usize>,
    batch_size: usize,
}

fn read(path: &Path) -> Result<Vec<u8>, RuntimeError> {
    std::fs::read(path).map_err(|source| RuntimeError::Io {
        path: path.to_path_buf(),
        source,
    })
}

impl VrfModel {
    /// Loads a model directory written by `vrf-trainer export`.
    pub fn load(dir: impl AsRef<Path>, opts: &RuntimeOptions) -> Result<Self, RuntimeError> {
        let dir = dir.as_ref().to_path_buf();
        if opts.batch_size == 0 {
            return Err(RuntimeError::Input("batch_size must be at least 1".into()));
        }
        let manifest_path = dir.join(MANIFEST_FILE);
        let manifest =
            Manifest::from_json(&read(&manifest_path)?, &manifest_path.display().to_string())?;
        let verified = |name: &str| -> Result<Vec<u8>, RuntimeError> {
            let bytes = read(&dir.join(name))?;
            if opts.verify_checksums {
                manifest
                    .verify(name, &bytes)
                    .map_err(|e| with_dir(e, &dir))?;
            }
            Ok(bytes)
        };
        for name in manifest.files.keys() {
            if !dir.join(name).is_file() {
                return Err(RuntimeError::Io {
                    path: dir.join(name),
                    source: std::io::Error::new(
                        std::io::ErrorKind::NotFound,
                        "listed in vrf.json but missing",
                    ),
                });
            }
        }
        // The graph (and its external data) is hashed here and loaded by ONNX Runtime from disk.
        verified(&manifest.onnx.file)?;
        if let Some(ext) = &manifest.onnx.external_data {
            verified(ext)?;
        }
        let user = UserModel::from_unverified_bytes(&manifest, &verified(USER_MODEL_FILE)?)
            .map_err(|e| with_dir(e, &dir))?;
        let seen = SeenUsers::from_json(
            &verified(SEEN_USERS_FILE)?,
            manifest.d,
            &dir.join(SEEN_USERS_FILE).display().to_string(),
        )?;
        let template = TextTemplate::new(manifest.text.template.clone())?;
        let mut text = TextEncoder::from_bytes(
            &verified(TOKENIZER_FILE)?,
            &dir.join(TOKENIZER_FILE),
            template,
            manifest.text.max_len,
        )?;
        text.pad_id = manifest.text.pad_id;
        let backbone = OnnxBackbone::open(
            &dir.join(&manifest.onnx.file),
            &manifest.onnx,
            manifest.hidden,
            manifest.k,
            opts.threads,
            opts.provider,
            opts.ort_library.as_deref(),
        )?;
        let seen_index = seen
            .users
            .iter()
            .enumerate()
            .map(|(i, u)| (u.id.clone(), i))
            .collect();
        Ok(Self {
            dir,
            manifest,
            text,
            backbone,
            user,
            seen,
            seen_index,
            batch_size: opts.batch_size,
        })
    }

    /// The model directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The manifest.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// Encoder, bases and τ (the pure per-user math).
    pub fn user_model(&self) -> &UserModel {
        &self.user
    }

    /// The tokenizer with the training template and maximum length.
    pub fn text_encoder(&self) -> &TextEncoder {
        &self.text
    }

    /// The backbone session.
    pub fn backbone(&self) -> &OnnxBackbone {
        &self.backbone
    }

    /// Runs the graph on token ids (rows of any lengths; right-padded here).
    pub fn features_from_ids(&self, rows: &[Vec<u32>]) -> Result<BackboneOutput, RuntimeError> {
        let mut hidden = Array2::zeros((rows.len(), self.manifest.hidden));
        let mut rewards = Array2::zeros((rows.len(), self.manifest.k));
        // Similar lengths share a batch, so little compute goes to padding.
        let mut order: Vec<usize> = (0..rows.len()).collect();
        order.sort_by_key(|&i| rows[i].len());
        for chunk in order.chunks(self.batch_size) {
            let seq = chunk.iter().map(|&i| rows[i].len()).max().unwrap_or(0);
            if seq == 0 {
                return Err(RuntimeError::Input("a text encodes to zero tokens".into()));
            }
            let (b, pad) = (chunk.len(), i64::from(self.manifest.text.pad_id));
            let mut ids = vec![pad; b * seq];
            let mut mask = vec![0i64; b * seq];
            for (r, &i) in chunk.iter().enumerate() {
                for (t, &id) in rows[i].iter().enumerate() {
                    ids[r * seq + t] = i64::from(id);
                    mask[r * seq + t] = 1;
                }
            }
            let out = self.backbone.run(ids, mask, b, seq)?;
            for (r, &i) in chunk.iter().enumerate() {
                hidden.row_mut(i).assign(&out.hidden.row(r));
                rewards.row_mut(i).assign(&out.rewards.row(r));
            }
        }
        Ok(BackboneOutput { hidden, rewards })
    }

    /// Hidden states and basis rewards of `(prompt, response)` texts, batched.
    pub fn features(&self, texts: &[(&str, &str)]) -> Result<Features, RuntimeError> {
        let (rows, truncated) = self.text.encode_rows(texts)?;
        let out = self.features_from_ids(&rows)?;
        Ok(Features {
            hidden: out.hidden,
            rewards: out.rewards,
            truncated,
        })
    }

    /// Pair features `[M, F]` of reference triplets (one backbone pass over all 2M texts).
    pub fn pair_features(
        &self,
        refs: &[Reference],
    ) -> Result<(Array2<f32>, Vec<usize>), RuntimeError> {
        let texts: Vec<(&str, &str)> = refs.iter().flat_map(Reference::texts).collect();
        let f = self.features(&texts)?;
        let m = refs.len();
        let even = |a: &Array2<f32>, o: usize| a.slice(s![o..;2, ..]).to_owned();
        let (hc, hr) = (even(&f.hidden, 0), even(&f.hidden, 1));
        let (pc, pr) = (even(&f.rewards, 0), even(&f.rewards, 1));
        let feats = self
            .user
            .pair_features(hc.view(), hr.view(), Some((pc.view(), pr.view())))?;
        debug_assert_eq!(feats.nrows(), m);
        let truncated_refs = {
            let mut t: Vec<usize> = f.truncated.iter().map(|i| i / 2).collect();
            t.dedup();
            t
        };
        Ok((feats, truncated_refs))
    }

    /// An unseen user's posterior, weights and uncertainty from reference triplets, in one pass.
    pub fn user(&self, refs: &[Reference]) -> Result<UserPosterior, RuntimeError> {
        if refs.is_empty() {
            return Err(crate::MathError::EmptyReferenceSet.into());
        }
        let (feats, _) = self.pair_features(refs)?;
        Ok(self.user.posterior(feats.view())?)
    }

    /// A fresh incremental user state.
    pub fn new_user(&self) -> UserState {
        self.user.new_state()
    }

    /// Adds reference triplets to a user's state (the one-observation-at-a-time update).
    pub fn observe(&self, state: &mut UserState, refs: &[Reference]) -> Result<(), RuntimeError> {
        let (feats, _) = self.pair_features(refs)?;
        Ok(self.user.observe(state, feats.view())?)
    }

    /// Posterior, weights and uncertainty of an incremental state.
    pub fn state_posterior(&self, state: &UserState) -> Result<UserPosterior, RuntimeError> {
        Ok(self.user.state_posterior(state)?)
    }

    /// Ids of the cached seen users, in training order.
    pub fn seen_user_ids(&self) -> impl Iterator<Item = &str> {
        self.seen.users.iter().map(|u| u.id.as_str())
    }

    /// A seen user's cached posterior with its weights.
    pub fn seen_user(&self, id: &str) -> Result<UserPosterior, RuntimeError> {
        let i = *self
            .seen_index
            .get(id)
            .ok_or_else(|| RuntimeError::UnknownUser(id.to_string()))?;
        let u = &self.seen.users[i];
        let q = Posterior::new(Array1::from(u.mean.clone()), Array1::from(u.var.clone()))?;
        Ok(self.user.weights_of(&q)?)
    }

    /// Personalised scores `φ·w` of `responses` to `prompt` under basis weights `w`.
    pub fn score(
        &self,
        weights: &Array1<f32>,
        prompt: &str,
        responses: &[&str],
    ) -> Result<Scores, RuntimeError> {
        if responses.is_empty() {
            return Err(RuntimeError::Input("no responses to score".into()));
        }
        let texts: Vec<(&str, &str)> = responses.iter().map(|r| (prompt, *r)).collect();
        let f = self.features(&texts)?;
        let scores = self.user.score(weights.view(), f.rewards.view())?;
        let best = argmax(scores.view());
        Ok(Scores {
            scores,
            rewards: f.rewards,
            best,
            truncated: f.truncated,
        })
    }

    /// Best-of-N: the response the user's weights score highest, with all scores.
    pub fn best_of_n(
        &self,
        weights: &Array1<f32>,
        prompt: &str,
        responses: &[&str],
    ) -> Result<Scores, RuntimeError> {
        self.score(weights, prompt, responses)
    }

    /// `P(a ≻ b | prompt)` for a user, with the variance attenuation of SPEC Eq. 8.
    pub fn preference_probability(
        &self,
        weights: &Array1<f32>,
        prompt: &str,
        a: &str,
        b: &str,
    ) -> Result<f32, RuntimeError> {
        let f = self.features(&[(prompt, a), (prompt, b)])?;
        let r = f.rewards.index_axis(Axis(0), 0).to_owned();
        Ok(self
            .user
            .preference_probability(weights.view(), r.view(), f.rewards.row(1))?)
    }
}

fn argmax(v: ArrayView1<'_, f32>) -> usize {
    v.iter()
        .enumerate()
        .fold((0, f32::NEG_INFINITY), |(bi, bv), (i, &x)| {
            if x > bv {
                (i, x)
            } else {
                (bi, bv)
            }
        })
        .0
}

/// Prefixes a checksum error's file name with the directory.
fn with_dir(e: crate::ModelError, dir: &Path) -> crate::ModelError {
    match e {
        crate::ModelError::Checksum {
            file,
            expected,
            got,
        } => crate::ModelError::Checksum {
            file: dir.join(file).display().to_string(),
            expected,
            got,
        },
        other => other,
    }
}
