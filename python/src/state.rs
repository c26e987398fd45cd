//! `vrf.State`: a user's running evidence, updated one batch of references at a time.

use pyo3::prelude::*;
use pyo3::types::PyDict;
use vrf_format::math::best_question;
use vrf_runtime::{QuestionValue, UserState};

use crate::errors::{call_error, input};
use crate::inputs;
use crate::vectors;
// `Model.new_state()` makes a `State` and a `State` keeps its `Model` alive: the two Python
// classes refer to each other by design, so these modules import each other.
use crate::model::Model;
use crate::posterior::Posterior;

/// A user's running evidence (the natural parameters of the product of Gaussians), tied to the
/// model that made it; `Model.new_state()` starts one, `Model.load_state(json)` restores one.
/// One state belongs to one thread at a time: a second thread using it while `observe` runs
/// gets pyo3's "already borrowed" error.
#[pyclass(module = "vrf")]
pub struct State {
    model: Py<Model>,
    state: UserState,
}

/// Parsed references of either kind of model.
enum Refs {
    /// Text triplets.
    Texts(Vec<vrf_runtime::Reference>),
    /// Pairs of feature vectors.
    Vectors(Vec<vrf_runtime::VectorReference>),
}

impl Refs {
    fn is_empty(&self) -> bool {
        match self {
            Refs::Texts(r) => r.is_empty(),
            Refs::Vectors(r) => r.is_empty(),
        }
    }
}

impl State {
    /// Values of candidate questions of either kind for this state.
    fn values(&self, py: Python<'_>, questions: &Bound<'_, PyAny>) -> PyResult<Vec<QuestionValue>> {
        let model = self.model.get();
        let state = &self.state;
        match model.vector_spec() {
            Some(spec) => {
                let q = vectors::questions(questions, &spec)?;
                py.detach(|| model.inner.question_values_vectors(state, &q))
            }
            None => {
                let q = inputs::questions(questions)?;
                py.detach(|| model.inner.question_values(state, &q))
            }
        }
        .map_err(call_error)
    }

    /// A state of `model`.
    pub fn new(model: Py<Model>, state: UserState) -> Self {
        Self { model, state }
    }
}

#[pymethods]
impl State {
    /// Adds reference triplets (a features model: reference pairs of vectors, as
    /// `Model.user` takes them). `half_life` (observations, PoG models) first decays the
    /// evidence so far by `0.5 ** (1 / half_life)` per reference, so the posterior follows a
    /// user whose taste changes.
    #[pyo3(signature = (references, half_life = None))]
    fn observe(
        &mut self,
        py: Python<'_>,
        references: &Bound<'_, PyAny>,
        half_life: Option<f32>,
    ) -> PyResult<()> {
        let model = self.model.get();
        let parsed = match model.vector_spec() {
            Some(spec) => Refs::Vectors(vectors::references(references, &spec)?),
            None => Refs::Texts(inputs::references(references)?),
        };
        if parsed.is_empty() {
            return Err(input("references: empty (nothing to observe)"));
        }
        let decay = match half_life {
            None => None,
            Some(h) if h.is_finite() && h > 0.0 => Some(0.5f32.powf(1.0 / h)),
            Some(h) => return Err(input(format!("half_life {h}: expected a positive number"))),
        };
        let state = &mut self.state;
        let m = &model.inner;
        py.detach(|| match (&parsed, decay) {
            (Refs::Texts(r), None) => m.observe(state, r),
            (Refs::Texts(r), Some(d)) => m.observe_forgetting(state, r, d),
            (Refs::Vectors(r), None) => m.observe_vectors(state, r),
            (Refs::Vectors(r), Some(d)) => m.observe_forgetting_vectors(state, r, d),
        })
        .map_err(call_error)
    }

    /// The value of asking each candidate question next: one dict per question with
    /// `p_first` (`P(a ≻ b)`), `information_gain` (nats) and `expected_uncertainty`.
    /// Questions are `{"prompt", "a", "b"}` dicts or `(prompt, a, b)` tuples; for a features
    /// model `{"a", "b"}` dicts, `(a, b)` pairs of vectors or one dict of two `[N, D]` arrays.
    fn question_values<'py>(
        &self,
        py: Python<'py>,
        questions: &Bound<'py, PyAny>,
    ) -> PyResult<Vec<Bound<'py, PyDict>>> {
        self.values(py, questions)?
            .iter()
            .map(|v| {
                let d = PyDict::new(py);
                d.set_item("p_first", v.p_first)?;
                d.set_item("information_gain", v.information_gain)?;
                d.set_item("expected_uncertainty", v.expected_uncertainty)?;
                Ok(d)
            })
            .collect()
    }

    /// The index of the question to ask next (the largest expected information gain, the
    /// first on ties); questions as `question_values` takes them.
    fn next_question(&self, py: Python<'_>, questions: &Bound<'_, PyAny>) -> PyResult<usize> {
        let values = self.values(py, questions)?;
        best_question(&values).ok_or_else(|| input("questions: empty"))
    }

    /// Observations so far.
    #[getter]
    fn count(&self) -> usize {
        self.state.count
    }

    /// The posterior of the evidence so far; `InputError` before the first observation.
    fn posterior(&self) -> PyResult<Posterior> {
        let inner = self
            .model
            .get()
            .inner
            .posterior_of(&self.state)
            .map_err(call_error)?;
        Ok(Posterior {
            inner,
            count: Some(self.state.count),
        })
    }

    /// The state as JSON (`Model.load_state` restores it).
    fn to_json(&self) -> String {
        self.state.to_json()
    }

    fn __repr__(&self) -> String {
        format!("State(count={})", self.state.count)
    }
}
