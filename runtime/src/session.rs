//! [`VrfModel`]: a loaded model directory — tokenizer, ONNX backbone, encoder and bases, cached
//! seen users — and the operations a serving application needs.
//!
//! ```no_run
//! use vrf_runtime::{Reference, RuntimeOptions, VrfModel};
//! # fn main() -> Result<(), vrf_runtime::RuntimeError> {
//! let model = VrfModel::load("models/demo", &RuntimeOptions::new().with_threads(2))?;
//! let user = model.posterior(&[Reference::new("Explain rust.", "Ownership means…", "Rust is a game.")])?;
//! let scores = model.score(&user, "Explain rust.", &["short answer", "long answer"])?;
//! println!("best = {}, uncertainty = {}", scores.best(), user.uncertainty);
//! # Ok(()) }
//! ```
//!
//! A model fitted on external feature vectors (`input.kind = "features"` in `vrf.json`) has no
//! backbone or tokenizer: its `*_vectors` entry points take the vectors ([`VectorReference`],
//! [`VectorQuestion`], candidate vectors), compute φ with the exported heads, and share the rest
//! of the math with the text entry points. Each kind of model refuses the other kind of input
//! with [`vrf_format::ModelError::WrongInput`].

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use ndarray::{s, Array1, Array2, ArrayView2};

use crate::backbone::{Backbone, BackboneOutput, ExecutionProvider, OnnxBackbone};
use crate::checksum_cache::{ChecksumCache, Checksums, FileStamp};
use crate::error::RuntimeError;
use crate::text::{TextEncoder, TextTemplate};
use vrf_format::manifest::{
    check_entry, FileEntry, Manifest, SeenUsers, MANIFEST_FILE, SEEN_USERS_FILE, TOKENIZER_FILE,
    USER_MODEL_FILE,
};
use vrf_format::math::{argmax, Posterior, QuestionValue, UserPosterior};
use vrf_format::{InputSpec, ModelError, UserModel, UserState};

/// How to load a model: build with [`RuntimeOptions::new`] (or `default()`) and the `with_*`
/// methods.
///
/// Defaults: as many ONNX Runtime threads as the machine has cores, the CPU provider, batches
/// of 16 texts, the ONNX Runtime library from `ORT_DYLIB_PATH`, checksums verified.
///
/// ```
/// use vrf_runtime::{ExecutionProvider, RuntimeOptions};
/// let opts = RuntimeOptions::new()
///     .with_threads(2)
///     .with_provider(ExecutionProvider::Cpu)
///     .with_batch_size(8);
/// assert_eq!((opts.threads(), opts.batch_size()), (2, 8));
/// assert!(opts.verify_checksums());
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct RuntimeOptions {
    threads: usize,
    provider: ExecutionProvider,
    batch_size: usize,
    ort_library: Option<PathBuf>,
    verify_checksums: bool,
    checksum_cache: Option<ChecksumCache>,
}

impl Default for RuntimeOptions {
    fn default() -> Self {
        Self {
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            provider: ExecutionProvider::Cpu,
            batch_size: 16,
            ort_library: None,
            verify_checksums: true,
            checksum_cache: ChecksumCache::default_location(),
        }
    }
}

impl RuntimeOptions {
    /// The defaults (see the type's documentation).
    pub fn new() -> Self {
        Self::default()
    }

    /// ONNX Runtime intra-op threads.
    pub fn with_threads(mut self, threads: usize) -> Self {
        self.threads = threads;
        self
    }

    /// Where the backbone runs (CUDA is an error where unavailable, never a CPU fallback).
    pub fn with_provider(mut self, provider: ExecutionProvider) -> Self {
        self.provider = provider;
        self
    }

    /// Most texts per backbone call (at least 1); larger inputs are split into batches.
    pub fn with_batch_size(mut self, batch_size: usize) -> Self {
        self.batch_size = batch_size;
        self
    }

    /// The ONNX Runtime shared library to load instead of `ORT_DYLIB_PATH`'s.
    pub fn with_ort_library(mut self, path: impl Into<PathBuf>) -> Self {
        self.ort_library = Some(path.into());
        self
    }

    /// Whether to check every file's SHA-256 against the manifest while loading.
    pub fn with_verify_checksums(mut self, verify: bool) -> Self {
        self.verify_checksums = verify;
        self
    }

    /// Where verified graph files are remembered (by path, file stamp and digest) so a restart
    /// need not hash them again; `None`: hash on every load. Default:
    /// [`ChecksumCache::default_location`].
    pub fn with_checksum_cache(mut self, cache: Option<ChecksumCache>) -> Self {
        self.checksum_cache = cache;
        self
    }

    /// ONNX Runtime intra-op threads.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Where the backbone runs.
    pub fn provider(&self) -> ExecutionProvider {
        self.provider
    }

    /// Most texts per backbone call.
    pub fn batch_size(&self) -> usize {
        self.batch_size
    }

    /// The ONNX Runtime library; `None`: `ORT_DYLIB_PATH`.
    pub fn ort_library(&self) -> Option<&Path> {
        self.ort_library.as_deref()
    }

    /// Whether checksums are verified while loading.
    pub fn verify_checksums(&self) -> bool {
        self.verify_checksums
    }

    /// The cache of verified graph files, if any.
    pub fn checksum_cache(&self) -> Option<&ChecksumCache> {
        self.checksum_cache.as_ref()
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

/// A candidate question for a user: for `prompt`, which of `a` and `b` is better?
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Question {
    /// The prompt.
    pub prompt: String,
    /// The first response.
    pub a: String,
    /// The second response.
    pub b: String,
}

impl Question {
    /// A question.
    pub fn new(prompt: impl Into<String>, a: impl Into<String>, b: impl Into<String>) -> Self {
        Self {
            prompt: prompt.into(),
            a: a.into(),
            b: b.into(),
        }
    }

    /// The two texts the backbone scores: `(prompt, a)` then `(prompt, b)`.
    pub fn texts(&self) -> [(&str, &str); 2] {
        [
            (self.prompt.as_str(), self.a.as_str()),
            (self.prompt.as_str(), self.b.as_str()),
        ]
    }

    /// The reference triplet the answer `a_preferred` makes of it.
    pub fn answered(&self, a_preferred: bool) -> Reference {
        let (c, r) = if a_preferred {
            (&self.a, &self.b)
        } else {
            (&self.b, &self.a)
        };
        Reference::new(self.prompt.clone(), c.clone(), r.clone())
    }
}

/// One reference preference as feature vectors (a model fitted on external features): the
/// `chosen` response's vector was preferred over the `rejected` one's.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct VectorReference {
    /// Feature vector of the preferred response, `[H]`.
    pub chosen: Vec<f32>,
    /// Feature vector of the other response, `[H]`.
    pub rejected: Vec<f32>,
}

impl VectorReference {
    /// A reference pair of vectors.
    pub fn new(chosen: Vec<f32>, rejected: Vec<f32>) -> Self {
        Self { chosen, rejected }
    }
}

/// A candidate question as feature vectors: which of `a` and `b` is better?
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct VectorQuestion {
    /// Feature vector of the first response, `[H]`.
    pub a: Vec<f32>,
    /// Feature vector of the second response, `[H]`.
    pub b: Vec<f32>,
}

impl VectorQuestion {
    /// A question of two vectors.
    pub fn new(a: Vec<f32>, b: Vec<f32>) -> Self {
        Self { a, b }
    }

    /// The reference pair the answer `a_preferred` makes of it.
    pub fn answered(&self, a_preferred: bool) -> VectorReference {
        let (c, r) = if a_preferred {
            (&self.a, &self.b)
        } else {
            (&self.b, &self.a)
        };
        VectorReference::new(c.clone(), r.clone())
    }
}

/// Backbone outputs of pairs of texts, split by position in the pair ([`VrfModel::split_pairs`]).
struct PairOutputs {
    /// Hidden states of the first and of the second texts, `[M, H]` each.
    hidden: (Array2<f32>, Array2<f32>),
    /// Basis rewards of the first and of the second texts, `[M, K]` each.
    rewards: (Array2<f32>, Array2<f32>),
    /// Indices of the pairs with a truncated text, ascending.
    truncated: Vec<usize>,
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

/// Pair features of reference triplets, from [`VrfModel::pair_features`].
#[derive(Debug, Clone, PartialEq)]
pub struct PairFeatures {
    /// One row per reference, `[M, F]`: the encoder's input (docs/METHOD.md §2).
    pub features: Array2<f32>,
    /// Indices of the references with a text longer than `max_len` (truncated from the left, as
    /// in training), ascending.
    pub truncated: Vec<usize>,
}

/// Personalised scores of N responses to one prompt, from [`VrfModel::score`].
#[derive(Debug, Clone, PartialEq)]
pub struct Scores {
    /// `r = φ·w` per response, in input order.
    pub scores: Array1<f32>,
    /// Basis rewards `φ`, `[N, K]`.
    pub rewards: Array2<f32>,
    /// Indices of the responses that were truncated.
    pub truncated: Vec<usize>,
}

impl Scores {
    /// Index of the highest score (the first one on ties).
    pub fn best(&self) -> usize {
        // Scores of a successful call are finite and non-empty.
        argmax(&self.scores).unwrap_or(0)
    }

    /// Response indices from the highest score to the lowest (ties in input order).
    pub fn ranking(&self) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.scores.len()).collect();
        order.sort_by(|&a, &b| self.scores[b].total_cmp(&self.scores[a]));
        order
    }
}

/// A loaded model directory. `Send + Sync`: share one behind an `Arc`.
#[derive(Debug)]
pub struct VrfModel {
    dir: PathBuf,
    manifest: Manifest,
    // Both `None` for a model fitted on external feature vectors.
    text: Option<TextEncoder>,
    backbone: Option<Box<dyn Backbone>>,
    user: UserModel,
    seen: SeenUsers,
    seen_index: HashMap<String, usize>,
    batch_size: usize,
    checksums: Checksums,
}

fn read(path: &Path) -> Result<Vec<u8>, RuntimeError> {
    std::fs::read(path).map_err(|cause| RuntimeError::Io {
        path: path.to_path_buf(),
        cause,
    })
}

impl VrfModel {
    /// Loads a model directory written by `vrf-trainer export`.
    pub fn load(dir: impl AsRef<Path>, opts: &RuntimeOptions) -> Result<Self, RuntimeError> {
        Self::load_inner(dir.as_ref(), opts, None)
    }

    /// Loads a model directory's tokenizer, user model and seen users around a backbone of the
    /// caller's (a stub in tests, another engine): the directory's graph is neither opened nor
    /// hashed. The backbone must return the manifest's `hidden` and `k` columns. A model fitted
    /// on external feature vectors has no backbone: an error.
    pub fn with_backbone(
        dir: impl AsRef<Path>,
        opts: &RuntimeOptions,
        backbone: Box<dyn Backbone>,
    ) -> Result<Self, RuntimeError> {
        Self::load_inner(dir.as_ref(), opts, Some(backbone))
    }

    fn load_inner(
        dir: &Path,
        opts: &RuntimeOptions,
        given: Option<Box<dyn Backbone>>,
    ) -> Result<Self, RuntimeError> {
        let dir = dir.to_path_buf();
        if opts.batch_size == 0 {
            return Err(RuntimeError::Input("batch_size must be at least 1".into()));
        }
        let manifest_path = dir.join(MANIFEST_FILE);
        let manifest =
            Manifest::from_json(&read(&manifest_path)?, &manifest_path.display().to_string())?;
        if given.is_some() && !manifest.input.is_text() {
            return Err(RuntimeError::Input(format!(
                "{}: the model takes {} and has no backbone to replace",
                dir.display(),
                manifest.input.describe()
            )));
        }
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
                    cause: std::io::Error::new(
                        std::io::ErrorKind::NotFound,
                        "listed in vrf.json but missing",
                    ),
                });
            }
        }
        // The graph and its external data are loaded by ONNX Runtime from disk; they are hashed
        // (streamed, constant memory) on other threads while the session is created, so a
        // multi-GB model costs the longer of the two, not their sum; files a checksum cache
        // vouches for (same path, file stamp and digest) are not hashed again.
        let mut checksums = if opts.verify_checksums {
            Checksums::Verified
        } else {
            Checksums::NotVerified
        };
        let mut graph_files: Vec<&str> = Vec::new();
        if opts.verify_checksums && given.is_none() {
            for name in manifest.onnx.iter().flat_map(|onnx| {
                std::iter::once(onnx.file.as_str()).chain(onnx.external_data.as_deref())
            }) {
                let cached = match (&opts.checksum_cache, manifest.files.get(name)) {
                    (Some(cache), Some(entry)) => cache.contains(&dir.join(name), entry),
                    _ => false,
                };
                if cached {
                    checksums = Checksums::VerifiedEarlier;
                } else {
                    graph_files.push(name);
                }
            }
        }
        // The small files (tokenizer, user model, seen users) are read and parsed on another
        // thread too: the Qwen3 tokenizer alone takes a noticeable part of a second.
        let small_files = || -> Result<_, RuntimeError> {
            let user = UserModel::from_unverified_bytes(&manifest, &verified(USER_MODEL_FILE)?)
                .map_err(|e| with_dir(e, &dir))?;
            let seen = SeenUsers::from_json(
                &verified(SEEN_USERS_FILE)?,
                manifest.d,
                &dir.join(SEEN_USERS_FILE).display().to_string(),
            )?;
            // A features model has no tokenizer (validation made `text` absent).
            let Some(spec) = &manifest.text else {
                return Ok((user, seen, None));
            };
            let template = TextTemplate::new(spec.template.clone())?;
            // The manifest's pad id: the tokenizer need not name a pad token of its own.
            let text = TextEncoder::from_bytes_with_pad_id(
                &verified(TOKENIZER_FILE)?,
                &dir.join(TOKENIZER_FILE),
                template,
                spec.max_len,
                spec.pad_id,
            )?;
            Ok((user, seen, Some(text)))
        };
        let (backbone, hashed, small) = std::thread::scope(|scope| {
            let hashing: Vec<_> = graph_files
                .iter()
                .map(|name| {
                    let (dir, manifest) = (&dir, &manifest);
                    scope.spawn(move || verify_streamed(dir, manifest, name))
                })
                .collect();
            let small = scope.spawn(small_files);
            // No ONNX Runtime at all for a features model (no `onnx` section).
            let backbone = match (given, &manifest.onnx) {
                (Some(b), _) => Ok(Some(b)),
                (None, Some(onnx)) => OnnxBackbone::open(
                    &dir.join(&onnx.file),
                    onnx,
                    manifest.hidden,
                    manifest.k,
                    opts.threads(),
                    opts.provider(),
                    opts.ort_library(),
                )
                .map(|b| Some(Box::new(b) as Box<dyn Backbone>)),
                (None, None) => Ok(None),
            };
            let hashed: Result<Vec<Option<FileStamp>>, RuntimeError> = hashing
                .into_iter()
                .map(|h| {
                    h.join().unwrap_or_else(|_| {
                        Err(RuntimeError::Input("the checksum thread panicked".into()))
                    })
                })
                .collect();
            let small = small.join().unwrap_or_else(|_| {
                Err(RuntimeError::Input("the model-file thread panicked".into()))
            });
            (backbone, hashed, small)
        });
        // A corrupted graph is reported as such, even when ONNX Runtime also refused it.
        let hashed = hashed?;
        if let Some(cache) = &opts.checksum_cache {
            for (name, stamp) in graph_files.iter().zip(hashed) {
                if let (Some(entry), Some(stamp)) = (manifest.files.get(*name), stamp) {
                    cache.record(&dir.join(name), entry, stamp);
                }
            }
        }
        let (user, seen, text) = small?;
        let backbone = backbone?;
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
            checksums,
        })
    }

    /// How the model's files were checked at load (hashed now, or the graph vouched for by the
    /// checksum cache, or not at all).
    pub fn checksums(&self) -> Checksums {
        self.checksums
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

    /// What the model takes: texts, or feature vectors of dimension `H`.
    pub fn input(&self) -> InputSpec {
        self.manifest.input
    }

    /// The tokenizer with the training template and maximum length; a
    /// [`ModelError::WrongInput`] for a model fitted on external feature vectors.
    pub fn text_encoder(&self) -> Result<&TextEncoder, RuntimeError> {
        self.text.as_ref().ok_or_else(|| self.wrong_input("texts"))
    }

    /// The backbone (the ONNX Runtime session unless [`VrfModel::with_backbone`] gave another);
    /// `None` for a model fitted on external feature vectors.
    pub fn backbone(&self) -> Option<&dyn Backbone> {
        self.backbone.as_deref()
    }

    /// The error for input of kind `given` (`texts`, `feature vectors`) this model does not take.
    fn wrong_input(&self, given: &'static str) -> RuntimeError {
        ModelError::WrongInput {
            expected: self.manifest.input.describe(),
            given,
        }
        .into()
    }

    /// Runs the graph on token ids (rows of any lengths; right-padded here).
    pub fn features_from_ids(&self, rows: &[Vec<u32>]) -> Result<BackboneOutput, RuntimeError> {
        let (Some(backbone), Some(text)) = (&self.backbone, &self.text) else {
            return Err(self.wrong_input("token ids"));
        };
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
            let (b, pad) = (chunk.len(), i64::from(text.pad_id));
            let mut ids = vec![pad; b * seq];
            let mut mask = vec![0i64; b * seq];
            for (r, &i) in chunk.iter().enumerate() {
                for (t, &id) in rows[i].iter().enumerate() {
                    ids[r * seq + t] = i64::from(id);
                    mask[r * seq + t] = 1;
                }
            }
            let out = backbone.run(ids, mask, b, seq)?;
            for (r, &i) in chunk.iter().enumerate() {
                hidden.row_mut(i).assign(&out.hidden.row(r));
                rewards.row_mut(i).assign(&out.rewards.row(r));
            }
        }
        Ok(BackboneOutput { hidden, rewards })
    }

    /// Hidden states and basis rewards of `(prompt, response)` texts, batched.
    pub fn features(&self, texts: &[(&str, &str)]) -> Result<Features, RuntimeError> {
        let (rows, truncated) = self.text_encoder()?.encode_rows(texts)?;
        let out = self.features_from_ids(&rows)?;
        Ok(Features {
            hidden: out.hidden,
            rewards: out.rewards,
            truncated,
        })
    }

    /// Backbone outputs of M pairs given as 2M interleaved texts (pair i: texts 2i and 2i + 1),
    /// split by position in the pair, with the indices of the pairs with a truncated text.
    fn split_pairs(f: &Features) -> Result<PairOutputs, RuntimeError> {
        if !f.hidden.nrows().is_multiple_of(2) || f.rewards.nrows() != f.hidden.nrows() {
            return Err(RuntimeError::Input(format!(
                "pair features need an even number of texts with one reward row each, got {} hidden and {} reward rows",
                f.hidden.nrows(),
                f.rewards.nrows()
            )));
        }
        let even = |a: &Array2<f32>, o: usize| a.slice(s![o..;2, ..]).to_owned();
        let mut truncated: Vec<usize> = f.truncated.iter().map(|i| i / 2).collect();
        truncated.dedup();
        Ok(PairOutputs {
            hidden: (even(&f.hidden, 0), even(&f.hidden, 1)),
            rewards: (even(&f.rewards, 0), even(&f.rewards, 1)),
            truncated,
        })
    }

    /// Pair features `[M, F]` of reference triplets (one backbone pass over all 2M texts).
    pub fn pair_features(&self, refs: &[Reference]) -> Result<PairFeatures, RuntimeError> {
        let texts: Vec<(&str, &str)> = refs.iter().flat_map(Reference::texts).collect();
        self.pair_features_of(&self.features(&texts)?)
    }

    /// Pair features of M references from the [`Features`] of their 2M texts in
    /// [`Reference::texts`] order (a server that batches backbone calls itself computes those).
    pub fn pair_features_of(&self, f: &Features) -> Result<PairFeatures, RuntimeError> {
        let PairOutputs {
            hidden: (hc, hr),
            rewards: (pc, pr),
            truncated,
        } = Self::split_pairs(f)?;
        let features =
            self.user
                .pair_features(hc.view(), hr.view(), Some((pc.view(), pr.view())))?;
        Ok(PairFeatures {
            features,
            truncated,
        })
    }

    /// An unseen user's posterior (mean, variance, basis weights, uncertainty) from their
    /// reference triplets, in one pass. With none, a model with a population prior gives the
    /// prior ([`VrfModel::cold_start`]); one without refuses (`EmptyReferenceSet`).
    pub fn posterior(&self, refs: &[Reference]) -> Result<UserPosterior, RuntimeError> {
        if refs.is_empty() {
            return self.cold_start();
        }
        let pf = self.pair_features(refs)?;
        Ok(self.user.posterior(pf.features.view())?)
    }

    /// The posterior of a user with no answers: the model's population prior (cold start), whose
    /// weights give the population's reward. An error (`EmptyReferenceSet`) for a model exported
    /// without a prior (format version 1, or `--population-prior false`).
    pub fn cold_start(&self) -> Result<UserPosterior, RuntimeError> {
        match self.user.prior() {
            Some(p0) => Ok(self.user.posterior_from_latent(p0)?),
            None => Err(crate::MathError::EmptyReferenceSet.into()),
        }
    }

    /// Whether the model has a population prior, so users with no answers can be served.
    pub fn has_prior(&self) -> bool {
        self.user.prior().is_some()
    }

    /// A fresh incremental user state with no observations.
    pub fn new_state(&self) -> UserState {
        self.user.new_state()
    }

    /// Adds reference triplets to a user's state (the one-observation-at-a-time update).
    pub fn observe(&self, state: &mut UserState, refs: &[Reference]) -> Result<(), RuntimeError> {
        let pf = self.pair_features(refs)?;
        Ok(self.user.observe(state, pf.features.view())?)
    }

    /// As [`VrfModel::observe`], forgetting: before each reference the evidence so far is scaled
    /// by `decay` in (0, 1] (PoG models only).
    pub fn observe_forgetting(
        &self,
        state: &mut UserState,
        refs: &[Reference],
        decay: f32,
    ) -> Result<(), RuntimeError> {
        let pf = self.pair_features(refs)?;
        Ok(self
            .user
            .observe_forgetting(state, pf.features.view(), decay)?)
    }

    /// The expected information gain of asking each question of this user (one backbone pass
    /// over all 2Q texts); [`vrf_format::math::best_question`] picks the most valuable.
    pub fn question_values(
        &self,
        state: &UserState,
        questions: &[Question],
    ) -> Result<Vec<QuestionValue>, RuntimeError> {
        if questions.is_empty() {
            return Err(RuntimeError::Input("no candidate questions".into()));
        }
        let texts: Vec<(&str, &str)> = questions.iter().flat_map(Question::texts).collect();
        self.question_values_of(state, &self.features(&texts)?)
    }

    /// As [`VrfModel::question_values`], from the [`Features`] of the questions' 2Q texts in
    /// [`Question::texts`] order.
    pub fn question_values_of(
        &self,
        state: &UserState,
        f: &Features,
    ) -> Result<Vec<QuestionValue>, RuntimeError> {
        let PairOutputs {
            hidden: (ha, hb),
            rewards: (pa, pb),
            ..
        } = Self::split_pairs(f)?;
        let ab = self
            .user
            .pair_features(ha.view(), hb.view(), Some((pa.view(), pb.view())))?;
        let ba = self
            .user
            .pair_features(hb.view(), ha.view(), Some((pb.view(), pa.view())))?;
        let delta = &pa - &pb;
        Ok(self
            .user
            .question_values(state, ab.view(), ba.view(), delta.view())?)
    }

    /// The posterior of an incremental state; an error before its first observation.
    pub fn posterior_of(&self, state: &UserState) -> Result<UserPosterior, RuntimeError> {
        Ok(self.user.posterior_of(state)?)
    }

    /// Ids of the cached seen users, in training order.
    pub fn seen_user_ids(&self) -> impl Iterator<Item = &str> {
        self.seen.users.iter().map(|u| u.id.as_str())
    }

    /// A seen (training) user's cached posterior.
    pub fn seen_posterior(&self, id: &str) -> Result<UserPosterior, RuntimeError> {
        let i = *self
            .seen_index
            .get(id)
            .ok_or_else(|| RuntimeError::UnknownUser(id.to_string()))?;
        let u = &self.seen.users[i];
        let q = Posterior::new(Array1::from(u.mean.clone()), Array1::from(u.var.clone()))?;
        Ok(self.user.posterior_from_latent(&q)?)
    }

    /// Personalised scores `φ·w` of `responses` to `prompt` under a user's posterior weights;
    /// [`Scores::best`] and [`Scores::ranking`] pick from them.
    pub fn score(
        &self,
        user: &UserPosterior,
        prompt: &str,
        responses: &[&str],
    ) -> Result<Scores, RuntimeError> {
        if responses.is_empty() {
            return Err(RuntimeError::Input("no responses to score".into()));
        }
        let texts: Vec<(&str, &str)> = responses.iter().map(|r| (prompt, *r)).collect();
        let f = self.features(&texts)?;
        let scores = self.user.score(user, f.rewards.view())?;
        Ok(Scores {
            scores,
            rewards: f.rewards,
            truncated: f.truncated,
        })
    }

    /// `P(a ≻ b | prompt)` for a user, with the variance attenuation of docs/METHOD.md Eq. 8.
    pub fn preference_probability(
        &self,
        user: &UserPosterior,
        prompt: &str,
        a: &str,
        b: &str,
    ) -> Result<f32, RuntimeError> {
        let f = self.features(&[(prompt, a), (prompt, b)])?;
        Ok(self
            .user
            .preference_probability(user, f.rewards.row(0), f.rewards.row(1))?)
    }
}

/// Entry points of a model fitted on external feature vectors: the same math as the text ones,
/// with φ from the exported heads instead of the backbone.
impl VrfModel {
    /// [`Features`] of feature vectors (each `[H]`, `H` = [`InputSpec::Features`]'s `dim`):
    /// `hidden` = the vectors, `rewards` = the heads' φ, nothing truncated. Rows are named
    /// `vectors[i]` in errors.
    pub fn features_of_vectors(&self, vectors: &[Vec<f32>]) -> Result<Features, RuntimeError> {
        self.named_vectors(
            vectors
                .iter()
                .enumerate()
                .map(|(i, v)| (Location::Row("vectors", i), v.as_slice())),
        )
    }

    /// As [`VrfModel::features_of_vectors`], from a `[N, H]` array (e.g. a numpy batch).
    pub fn features_of_array(
        &self,
        vectors: ArrayView2<'_, f32>,
    ) -> Result<Features, RuntimeError> {
        let dim = self.vector_dim("feature vectors")?;
        if vectors.ncols() != dim {
            return Err(RuntimeError::Vector {
                location: "vectors".into(),
                problem: format!(
                    "{} columns; this model's feature vectors have dimension {dim}",
                    vectors.ncols()
                ),
            });
        }
        if let Some((i, j)) = vectors
            .indexed_iter()
            .find(|(_, v)| !v.is_finite())
            .map(|(ij, _)| ij)
        {
            return Err(RuntimeError::Vector {
                location: format!("vectors[{i}]"),
                problem: format!("value {j} is not finite"),
            });
        }
        let rewards = self.user.basis_rewards("vectors", vectors)?;
        Ok(Features {
            hidden: vectors.to_owned(),
            rewards,
            truncated: Vec::new(),
        })
    }

    /// The vectors' dimension, or the wrong-input error naming `given` for a text model.
    fn vector_dim(&self, given: &'static str) -> Result<usize, RuntimeError> {
        self.manifest
            .input
            .features_dim()
            .ok_or_else(|| self.wrong_input(given))
    }

    /// Checks each vector (length `H`, finite; errors name its location) and stacks them into
    /// [`Features`] with the heads' φ.
    fn named_vectors<'a>(
        &self,
        rows: impl Iterator<Item = (Location, &'a [f32])>,
    ) -> Result<Features, RuntimeError> {
        let dim = self.vector_dim("feature vectors")?;
        let mut flat = Vec::new();
        let mut n = 0;
        for (at, v) in rows {
            if v.len() != dim {
                return Err(RuntimeError::Vector {
                    location: at.to_string(),
                    problem: format!(
                        "{} values; this model's feature vectors have dimension {dim}",
                        v.len()
                    ),
                });
            }
            if let Some(j) = v.iter().position(|x| !x.is_finite()) {
                return Err(RuntimeError::Vector {
                    location: at.to_string(),
                    problem: format!("value {j} is not finite"),
                });
            }
            flat.extend_from_slice(v);
            n += 1;
        }
        let hidden = Array2::from_shape_vec((n, dim), flat)
            .map_err(|e| RuntimeError::Input(format!("feature vectors: {e}")))?;
        let rewards = self.user.basis_rewards("feature vectors", hidden.view())?;
        Ok(Features {
            hidden,
            rewards,
            truncated: Vec::new(),
        })
    }

    /// [`Features`] of reference pairs, interleaved as [`VrfModel::pair_features_of`] expects.
    fn reference_vectors(&self, refs: &[VectorReference]) -> Result<Features, RuntimeError> {
        self.named_vectors(refs.iter().enumerate().flat_map(|(i, r)| {
            [
                (
                    Location::Field("references", i, "chosen"),
                    r.chosen.as_slice(),
                ),
                (
                    Location::Field("references", i, "rejected"),
                    r.rejected.as_slice(),
                ),
            ]
        }))
    }

    /// Pair features `[M, F]` of reference pairs of vectors.
    pub fn pair_features_vectors(
        &self,
        refs: &[VectorReference],
    ) -> Result<PairFeatures, RuntimeError> {
        self.pair_features_of(&self.reference_vectors(refs)?)
    }

    /// As [`VrfModel::posterior`], from reference pairs of feature vectors.
    pub fn posterior_vectors(
        &self,
        refs: &[VectorReference],
    ) -> Result<UserPosterior, RuntimeError> {
        self.vector_dim("feature vectors")?;
        if refs.is_empty() {
            return self.cold_start();
        }
        let pf = self.pair_features_vectors(refs)?;
        Ok(self.user.posterior(pf.features.view())?)
    }

    /// As [`VrfModel::observe`], from reference pairs of feature vectors.
    pub fn observe_vectors(
        &self,
        state: &mut UserState,
        refs: &[VectorReference],
    ) -> Result<(), RuntimeError> {
        let pf = self.pair_features_vectors(refs)?;
        Ok(self.user.observe(state, pf.features.view())?)
    }

    /// As [`VrfModel::observe_forgetting`], from reference pairs of feature vectors.
    pub fn observe_forgetting_vectors(
        &self,
        state: &mut UserState,
        refs: &[VectorReference],
        decay: f32,
    ) -> Result<(), RuntimeError> {
        let pf = self.pair_features_vectors(refs)?;
        Ok(self
            .user
            .observe_forgetting(state, pf.features.view(), decay)?)
    }

    /// [`Features`] of candidate questions, interleaved as [`VrfModel::question_values_of`]
    /// expects.
    pub fn question_vectors(&self, questions: &[VectorQuestion]) -> Result<Features, RuntimeError> {
        self.named_vectors(questions.iter().enumerate().flat_map(|(i, q)| {
            [
                (Location::Field("questions", i, "a"), q.a.as_slice()),
                (Location::Field("questions", i, "b"), q.b.as_slice()),
            ]
        }))
    }

    /// As [`VrfModel::question_values`], for questions of feature vectors.
    pub fn question_values_vectors(
        &self,
        state: &UserState,
        questions: &[VectorQuestion],
    ) -> Result<Vec<QuestionValue>, RuntimeError> {
        self.vector_dim("feature vectors")?;
        if questions.is_empty() {
            return Err(RuntimeError::Input("no candidate questions".into()));
        }
        self.question_values_of(state, &self.question_vectors(questions)?)
    }

    /// [`Features`] of candidate vectors, named `candidates[i]` in errors.
    pub fn candidate_vectors(&self, candidates: &[Vec<f32>]) -> Result<Features, RuntimeError> {
        self.named_vectors(
            candidates
                .iter()
                .enumerate()
                .map(|(i, v)| (Location::Row("candidates", i), v.as_slice())),
        )
    }

    /// As [`VrfModel::score`], for candidates given as feature vectors.
    pub fn score_vectors(
        &self,
        user: &UserPosterior,
        candidates: &[Vec<f32>],
    ) -> Result<Scores, RuntimeError> {
        self.vector_dim("feature vectors")?;
        if candidates.is_empty() {
            return Err(RuntimeError::Input("no candidates to score".into()));
        }
        let f = self.candidate_vectors(candidates)?;
        let scores = self.user.score(user, f.rewards.view())?;
        Ok(Scores {
            scores,
            rewards: f.rewards,
            truncated: Vec::new(),
        })
    }

    /// As [`VrfModel::preference_probability`], for two responses' feature vectors.
    pub fn preference_probability_vectors(
        &self,
        user: &UserPosterior,
        a: &[f32],
        b: &[f32],
    ) -> Result<f32, RuntimeError> {
        let f =
            self.named_vectors([(Location::Name("a"), a), (Location::Name("b"), b)].into_iter())?;
        Ok(self
            .user
            .preference_probability(user, f.rewards.row(0), f.rewards.row(1))?)
    }
}

/// Where a feature vector sits in a call's input, for errors.
enum Location {
    /// A named argument (`a`).
    Name(&'static str),
    /// An item of a list (`candidates[3]`).
    Row(&'static str, usize),
    /// A field of an item (`references[2].chosen`).
    Field(&'static str, usize, &'static str),
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Location::Name(n) => write!(f, "{n}"),
            Location::Row(list, i) => write!(f, "{list}[{i}]"),
            Location::Field(list, i, field) => write!(f, "{list}[{i}].{field}"),
        }
    }
}

/// Streams `dir/name` through SHA-256 (constant memory) and checks size and digest against the
/// manifest's entry; the error names the file. Returns the file's stamp when it was the same
/// before and after the hashing (what a checksum cache may record).
fn verify_streamed(
    dir: &Path,
    manifest: &Manifest,
    name: &str,
) -> Result<Option<FileStamp>, RuntimeError> {
    let path = dir.join(name);
    let io = |cause| RuntimeError::Io {
        path: path.clone(),
        cause,
    };
    let file = std::fs::File::open(&path).map_err(io)?;
    let before = file.metadata().ok().as_ref().and_then(FileStamp::of);
    let got = FileEntry::of_reader(&file).map_err(io)?;
    let after = file.metadata().ok().as_ref().and_then(FileStamp::of);
    check_entry(name, manifest.files.get(name), got).map_err(|e| with_dir(e, dir))?;
    Ok(before.filter(|b| Some(*b) == after))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_build_from_defaults() {
        let d = RuntimeOptions::new();
        assert!(d.threads() >= 1 && d.batch_size() == 16 && d.verify_checksums());
        assert_eq!(d.provider(), ExecutionProvider::Cpu);
        assert!(d.ort_library().is_none());
        let o = d
            .with_threads(3)
            .with_batch_size(2)
            .with_ort_library("/opt/ort/libonnxruntime.so")
            .with_verify_checksums(false);
        assert_eq!((o.threads(), o.batch_size()), (3, 2));
        assert_eq!(
            o.ort_library(),
            Some(Path::new("/opt/ort/libonnxruntime.so"))
        );
        assert!(!o.verify_checksums());
    }

    #[test]
    fn scores_pick_the_first_best_and_rank_ties_in_input_order() {
        let s = Scores {
            scores: Array1::from(vec![0.5, 2.0, -1.0, 2.0]),
            rewards: Array2::zeros((4, 1)),
            truncated: vec![],
        };
        assert_eq!(s.best(), 1);
        assert_eq!(s.ranking(), vec![1, 3, 0, 2]);
    }

    /// The message and every `source()` below it, as anyhow's `{:#}` prints them.
    fn chain(e: &dyn std::error::Error) -> String {
        let mut out = e.to_string();
        let mut next = e.source();
        while let Some(s) = next {
            out.push_str(": ");
            out.push_str(&s.to_string());
            next = s.source();
        }
        out
    }

    #[cfg(unix)]
    #[test]
    fn a_missing_model_directory_prints_the_os_error_once() {
        let dir = Path::new("/nonexistent/vrf-model");
        let e = VrfModel::load(dir, &RuntimeOptions::new()).unwrap_err();
        let msg = chain(&e);
        assert!(matches!(e, RuntimeError::Io { .. }), "{msg}");
        assert!(
            msg.contains(&dir.join(MANIFEST_FILE).display().to_string()),
            "{msg}"
        );
        assert_eq!(msg.matches("os error 2").count(), 1, "{msg}");
    }
}
