//! `vrf.Model`: a loaded model directory. Every backbone call releases the GIL, so Python
//! threads (a data loader, other reward calls) run meanwhile.

use std::path::PathBuf;

use numpy::{PyArray1, PyArray2, ToPyArray};
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString};
use vrf_runtime::{ExecutionProvider, RuntimeOptions, UserPosterior, VrfModel};

use crate::errors::{call_error, input, load_error, wrong_kind};
use crate::inputs::{self, TEXTS};
use crate::posterior::Posterior;
use crate::state::State;
use crate::vectors::{self, looks_like_vectors, VectorSpec};

/// Hidden states and basis rewards as numpy arrays.
type FeatureArrays<'py> = (Bound<'py, PyArray2<f32>>, Bound<'py, PyArray2<f32>>);

/// An exported VRF model directory (`vrf-trainer export`), served through ONNX Runtime.
#[pyclass(module = "vrf", frozen)]
pub struct Model {
    /// The runtime's model.
    pub inner: VrfModel,
}

impl Model {
    /// What a features model takes; `None` for a text model.
    pub fn vector_spec(&self) -> Option<VectorSpec> {
        let input = self.inner.input();
        input.features_dim().map(|dim| VectorSpec {
            dim,
            takes: input.describe(),
        })
    }

    /// A user given as a `Posterior` or a seen user's id; anything else is a `TypeError`.
    fn resolve_user(&self, user: &Bound<'_, PyAny>) -> PyResult<UserPosterior> {
        if let Ok(p) = user.extract::<PyRef<'_, Posterior>>() {
            return Ok(p.inner.clone());
        }
        if user.is_instance_of::<PyString>() {
            let id: String = user.extract()?;
            return self.inner.seen_posterior(&id).map_err(call_error);
        }
        Err(PyTypeError::new_err(format!(
            "user must be a str (a seen user's id) or a vrf.Posterior, got {}",
            inputs::type_name(user)
        )))
    }

    /// Scores of the candidates: `prompt` and `responses` for a text model; `features` (or,
    /// positionally, the second argument) for a features model.
    fn scores(
        &self,
        py: Python<'_>,
        user: &Bound<'_, PyAny>,
        prompt: Option<&Bound<'_, PyAny>>,
        responses: Option<&Bound<'_, PyAny>>,
        features: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<vrf_runtime::Scores> {
        let u = self.resolve_user(user)?;
        if let Some(spec) = self.vector_spec() {
            let candidates = match (prompt, responses, features) {
                (Some(p), _, _) if p.is_instance_of::<PyString>() => {
                    return Err(wrong_kind("prompt", &spec.takes, "texts"))
                }
                (_, Some(_), _) => {
                    return Err(wrong_kind(
                        "responses",
                        &spec.takes,
                        "texts (pass the candidates' vectors as `features`)",
                    ))
                }
                (Some(_), None, Some(_)) => {
                    return Err(PyTypeError::new_err(
                        "the candidates came twice: positionally and as `features`",
                    ))
                }
                (Some(v), None, None) | (None, None, Some(v)) => v,
                (None, None, None) => {
                    return Err(PyTypeError::new_err(
                        "missing the candidates' feature vectors (`features`, [N, D])",
                    ))
                }
            };
            let v = vectors::matrix(candidates, "features", &spec)?;
            return py
                .detach(|| self.inner.score_vectors(&u, &v))
                .map_err(call_error);
        }
        if features.is_some() {
            return Err(wrong_kind(
                "features",
                "texts (a prompt and responses)",
                "feature vectors",
            ));
        }
        let prompt = text_arg(prompt, "prompt")?;
        let responses =
            responses.ok_or_else(|| PyTypeError::new_err("missing `responses` (a list of str)"))?;
        let responses = inputs::responses(responses)?;
        let refs: Vec<&str> = responses.iter().map(String::as_str).collect();
        py.detach(|| self.inner.score(&u, &prompt, &refs))
            .map_err(call_error)
    }
}

/// A text argument of a text model: a `str`; vectors are the wrong kind of input, anything
/// else (or nothing) a `TypeError`.
pub fn text_arg(obj: Option<&Bound<'_, PyAny>>, what: &str) -> PyResult<String> {
    let obj = obj.ok_or_else(|| PyTypeError::new_err(format!("missing `{what}` (a str)")))?;
    if obj.is_instance_of::<PyString>() {
        return obj.extract();
    }
    if looks_like_vectors(obj) {
        return Err(wrong_kind(what, TEXTS, "feature vectors"));
    }
    Err(PyTypeError::new_err(format!(
        "{what} must be a str, got {}",
        inputs::type_name(obj)
    )))
}

#[pymethods]
impl Model {
    /// Loads `path`. `threads`: ONNX Runtime intra-op threads; `provider`: `"cpu"`, `"cuda"` or
    /// `"cuda:N"` (never a silent CPU fallback); `batch_size`: most texts per backbone call;
    /// `ort_library`: the ONNX Runtime shared library (default: `$ORT_DYLIB_PATH`, else the one
    /// inside the `onnxruntime` package).
    #[new]
    #[pyo3(signature = (path, threads = 1, provider = "cpu", batch_size = 8, ort_library = None, verify_checksums = true))]
    fn new(
        py: Python<'_>,
        path: PathBuf,
        threads: usize,
        provider: &str,
        batch_size: usize,
        ort_library: Option<PathBuf>,
        verify_checksums: bool,
    ) -> PyResult<Self> {
        let provider: ExecutionProvider = provider.parse().map_err(input)?;
        if !(1..=1024).contains(&threads) {
            return Err(input(format!("threads {threads}: expected 1 to 1024")));
        }
        if batch_size == 0 {
            return Err(input("batch_size must be at least 1"));
        }
        let ort_library = match ort_library {
            Some(p) => Some(p),
            None => py
                .import("vrf._ortlib")?
                .call_method0("find")?
                .extract::<Option<PathBuf>>()?,
        };
        let mut opts = RuntimeOptions::new()
            .with_threads(threads)
            .with_provider(provider)
            .with_batch_size(batch_size)
            .with_verify_checksums(verify_checksums);
        if let Some(lib) = ort_library {
            opts = opts.with_ort_library(lib);
        }
        let inner = py
            .detach(|| VrfModel::load(&path, &opts))
            .map_err(load_error)?;
        Ok(Self { inner })
    }

    /// Number of basis rewards K.
    #[getter]
    fn k(&self) -> usize {
        self.inner.manifest().k
    }

    /// Latent dimension d.
    #[getter]
    fn d(&self) -> usize {
        self.inner.manifest().d
    }

    /// Backbone hidden size H.
    #[getter]
    fn hidden(&self) -> usize {
        self.inner.manifest().hidden
    }

    /// What the model takes: `{"kind": "text"}`, or `{"kind": "features", "dim": D}` for a
    /// model fitted on external feature vectors.
    #[getter]
    fn input<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        match self.inner.input().features_dim() {
            None => d.set_item("kind", "text")?,
            Some(dim) => {
                d.set_item("kind", "features")?;
                d.set_item("dim", dim)?;
            }
        }
        Ok(d)
    }

    /// Longest text in tokens; longer ones are truncated from the left, as in training.
    /// `None` for a model fitted on external feature vectors (it takes no texts).
    #[getter]
    fn max_len(&self) -> Option<usize> {
        self.inner.manifest().text.as_ref().map(|t| t.max_len)
    }

    /// Whether the model has a population prior: `user([])` and a fresh state's posterior are
    /// then that prior (cold start) instead of an error.
    #[getter]
    fn has_prior(&self) -> bool {
        self.inner.has_prior()
    }

    /// The model's identity (SHA-256 over its files' digests).
    #[getter]
    fn digest(&self) -> String {
        self.inner.manifest().digest()
    }

    /// Ids of the seen (training) users, in training order.
    fn seen_user_ids(&self) -> Vec<String> {
        self.inner.seen_user_ids().map(str::to_string).collect()
    }

    /// An unseen user's posterior from reference triplets (dicts with prompt/chosen/rejected,
    /// or (prompt, chosen, rejected) tuples), in one backbone pass; for a features model, from
    /// reference pairs of vectors (`{"chosen", "rejected"}` dicts, `(chosen, rejected)` pairs,
    /// or one dict of two `[N, D]` arrays).
    fn user(&self, py: Python<'_>, references: &Bound<'_, PyAny>) -> PyResult<Posterior> {
        let (inner, count) = match self.vector_spec() {
            Some(spec) => {
                let refs = vectors::references(references, &spec)?;
                let p = py.detach(|| self.inner.posterior_vectors(&refs));
                (p, refs.len())
            }
            None => {
                let refs = inputs::references(references)?;
                let p = py.detach(|| self.inner.posterior(&refs));
                (p, refs.len())
            }
        };
        Ok(Posterior {
            inner: inner.map_err(call_error)?,
            count: Some(count),
        })
    }

    /// A seen (training) user's cached posterior; `UnknownUserError` for another id.
    fn seen_user(&self, id: &Bound<'_, PyAny>) -> PyResult<Posterior> {
        let id = inputs::user_id(id, "id")?;
        Ok(Posterior {
            inner: self.inner.seen_posterior(&id).map_err(call_error)?,
            count: None,
        })
    }

    /// A fresh incremental user state (no observations yet).
    fn new_state(slf: Bound<'_, Self>) -> State {
        let state = slf.get().inner.new_state();
        State::new(slf.unbind(), state)
    }

    /// A state saved with `State.to_json`, checked against this model.
    fn load_state(slf: Bound<'_, Self>, text: &str) -> PyResult<State> {
        let state: vrf_runtime::UserState =
            serde_json::from_str(text).map_err(|e| input(format!("state JSON: {e}")))?;
        let m = slf.get().inner.manifest();
        state
            .validate(m.encoder.pooling, m.d)
            .map_err(|e| input(format!("state JSON: {e}")))?;
        Ok(State::new(slf.unbind(), state))
    }

    /// Personalised scores `φ·w` of `responses` to `prompt` for `user` (a `Posterior` or a
    /// seen user's id): float32 `(N,)`, in input order. A features model takes the candidates'
    /// vectors instead (`score(user, features)`, `[N, D]`).
    #[pyo3(signature = (user, prompt = None, responses = None, *, features = None))]
    fn score<'py>(
        &self,
        py: Python<'py>,
        user: &Bound<'py, PyAny>,
        prompt: Option<&Bound<'py, PyAny>>,
        responses: Option<&Bound<'py, PyAny>>,
        features: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyArray1<f32>>> {
        Ok(self
            .scores(py, user, prompt, responses, features)?
            .scores
            .to_pyarray(py))
    }

    /// Indices of the candidates, best first (ties in input order); arguments as `score`'s.
    #[pyo3(signature = (user, prompt = None, responses = None, *, features = None))]
    fn rank(
        &self,
        py: Python<'_>,
        user: &Bound<'_, PyAny>,
        prompt: Option<&Bound<'_, PyAny>>,
        responses: Option<&Bound<'_, PyAny>>,
        features: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Vec<usize>> {
        Ok(self
            .scores(py, user, prompt, responses, features)?
            .ranking())
    }

    /// `P(a ≻ b | prompt)` for `user`, variance-attenuated (docs/METHOD.md Eq. 8). A features
    /// model takes two vectors and no prompt: `preference_probability(user, a, b)`.
    #[pyo3(signature = (user, prompt = None, a = None, b = None))]
    fn preference_probability(
        &self,
        py: Python<'_>,
        user: &Bound<'_, PyAny>,
        prompt: Option<&Bound<'_, PyAny>>,
        a: Option<&Bound<'_, PyAny>>,
        b: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<f32> {
        let u = self.resolve_user(user)?;
        if let Some(spec) = self.vector_spec() {
            // Positionally `(user, a, b)` fills `prompt` and `a`.
            let (a, b) = match (prompt, a, b) {
                (Some(p), _, _) if p.is_instance_of::<PyString>() => {
                    return Err(wrong_kind("prompt", &spec.takes, "texts"))
                }
                (Some(x), Some(y), None) | (None, Some(x), Some(y)) => (x, y),
                _ => {
                    return Err(PyTypeError::new_err(
                        "expected two feature vectors: preference_probability(user, a, b)",
                    ))
                }
            };
            let (a, b) = (
                vectors::vector(a, "a", &spec)?,
                vectors::vector(b, "b", &spec)?,
            );
            return py
                .detach(|| self.inner.preference_probability_vectors(&u, &a, &b))
                .map_err(call_error);
        }
        let (prompt, a, b) = (
            text_arg(prompt, "prompt")?,
            text_arg(a, "a")?,
            text_arg(b, "b")?,
        );
        py.detach(|| self.inner.preference_probability(&u, &prompt, &a, &b))
            .map_err(call_error)
    }

    /// Hidden states float32 `(N, H)` and basis rewards float32 `(N, K)` of `(prompt,
    /// response)` pairs (tuples or dicts), batched. A features model takes vectors `[N, D]`
    /// (`features(vectors)`) and returns them with their basis rewards.
    #[pyo3(signature = (pairs = None, *, vectors = None))]
    fn features<'py>(
        &self,
        py: Python<'py>,
        pairs: Option<&Bound<'py, PyAny>>,
        vectors: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<FeatureArrays<'py>> {
        let f = if let Some(spec) = self.vector_spec() {
            let v = match (pairs, vectors) {
                (Some(v), None) | (None, Some(v)) => v,
                (Some(_), Some(_)) => {
                    return Err(PyTypeError::new_err(
                        "the vectors came twice: positionally and as `vectors`",
                    ))
                }
                (None, None) => return Err(PyTypeError::new_err("missing `vectors` ([N, D])")),
            };
            let v = vectors::matrix(v, "vectors", &spec)?;
            py.detach(|| self.inner.features_of_vectors(&v))
        } else {
            if vectors.is_some() {
                return Err(wrong_kind(
                    "vectors",
                    "texts ((prompt, response) pairs)",
                    "feature vectors",
                ));
            }
            let pairs = pairs
                .ok_or_else(|| PyTypeError::new_err("missing `pairs` ((prompt, response))"))?;
            let pairs = inputs::pairs(pairs)?;
            if pairs.is_empty() {
                return Err(input("pairs: empty"));
            }
            let texts: Vec<(&str, &str)> = pairs
                .iter()
                .map(|(p, r)| (p.as_str(), r.as_str()))
                .collect();
            py.detach(|| self.inner.features(&texts))
        }
        .map_err(call_error)?;
        Ok((f.hidden.to_pyarray(py), f.rewards.to_pyarray(py)))
    }

    fn __repr__(&self) -> String {
        let m = self.inner.manifest();
        format!(
            "Model({:?}, K={}, d={}, hidden={})",
            self.inner.dir().display().to_string(),
            m.k,
            m.d,
            m.hidden
        )
    }
}
