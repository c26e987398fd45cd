//! `vrf.State`: a user's running evidence, updated one batch of references at a time.

use pyo3::prelude::*;
use vrf_runtime::UserState;

use crate::errors::{call_error, input};
use crate::inputs;
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

impl State {
    /// A state of `model`.
    pub fn new(model: Py<Model>, state: UserState) -> Self {
        Self { model, state }
    }
}

#[pymethods]
impl State {
    /// Adds reference triplets. `half_life` (observations, PoG models) first decays the
    /// evidence so far by `0.5 ** (1 / half_life)` per reference, so the posterior follows a
    /// user whose taste changes.
    #[pyo3(signature = (references, half_life = None))]
    fn observe(
        &mut self,
        py: Python<'_>,
        references: &Bound<'_, PyAny>,
        half_life: Option<f32>,
    ) -> PyResult<()> {
        let refs = inputs::references(references)?;
        if refs.is_empty() {
            return Err(input("references: empty (nothing to observe)"));
        }
        let decay = match half_life {
            None => None,
            Some(h) if h.is_finite() && h > 0.0 => Some(0.5f32.powf(1.0 / h)),
            Some(h) => return Err(input(format!("half_life {h}: expected a positive number"))),
        };
        let model = self.model.get();
        let state = &mut self.state;
        py.detach(|| match decay {
            None => model.inner.observe(state, &refs),
            Some(d) => model.inner.observe_forgetting(state, &refs, d),
        })
        .map_err(call_error)
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
