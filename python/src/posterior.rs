//! `vrf.Posterior`: a user's latent Gaussian, basis weights and uncertainty; immutable, picklable
//! and JSON-serialisable.

use ndarray::Array1;
use numpy::{PyArray1, ToPyArray};
use pyo3::prelude::*;
use vrf_format::math::Posterior as Latent;
use vrf_runtime::UserPosterior;

use crate::errors::input;

/// A user's posterior: `mean` and `var` of the latent Gaussian (d each), basis `weights` (K,
/// sum to 1), `uncertainty` (mean variance) and `count` (observations, when known).
#[pyclass(module = "vrf", frozen)]
pub struct Posterior {
    /// The runtime's posterior.
    pub inner: UserPosterior,
    /// Observations behind it, when known.
    pub count: Option<usize>,
}

fn floats(v: &serde_json::Value, key: &str) -> PyResult<Vec<f32>> {
    let a = v.get(key).and_then(|a| a.as_array()).ok_or_else(|| {
        input(format!(
            "posterior JSON: `{key}` must be an array of numbers"
        ))
    })?;
    a.iter()
        .enumerate()
        .map(|(i, x)| {
            x.as_f64()
                .map(|x| x as f32)
                .filter(|x| x.is_finite())
                .ok_or_else(|| {
                    input(format!(
                        "posterior JSON: `{key}[{i}]` is not a finite number"
                    ))
                })
        })
        .collect()
}

#[pymethods]
impl Posterior {
    /// Latent mean, float32 `(d,)`.
    #[getter]
    fn mean<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<f32>> {
        self.inner.mean.to_pyarray(py)
    }

    /// Latent variance, float32 `(d,)`.
    #[getter]
    fn var<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<f32>> {
        self.inner.var.to_pyarray(py)
    }

    /// Basis weights, float32 `(K,)`, summing to 1.
    #[getter]
    fn weights<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<f32>> {
        self.inner.weights.to_pyarray(py)
    }

    /// Mean latent variance: how much is still unknown about the user.
    #[getter]
    fn uncertainty(&self) -> f32 {
        self.inner.uncertainty
    }

    /// True when the user had no answers: the model's population prior (cold start).
    #[getter]
    fn cold_start(&self) -> bool {
        self.count == Some(0)
    }

    /// Observations behind it (`None` for a seen user's cached posterior).
    #[getter]
    fn count(&self) -> Option<usize> {
        self.count
    }

    /// Compact JSON: `{"mean", "var", "weights", "uncertainty", "count"}` (f32 values in their
    /// shortest exact form, as the `vrf` CLI writes them).
    fn to_json(&self) -> String {
        #[derive(serde::Serialize)]
        struct Out {
            mean: Vec<f32>,
            var: Vec<f32>,
            weights: Vec<f32>,
            uncertainty: f32,
            count: Option<usize>,
        }
        // serde_json writes f32 in its shortest round-tripping form and cannot fail on these.
        serde_json::to_string(&Out {
            mean: self.inner.mean.to_vec(),
            var: self.inner.var.to_vec(),
            weights: self.inner.weights.to_vec(),
            uncertainty: self.inner.uncertainty,
            count: self.count,
        })
        .unwrap_or_default()
    }

    /// The posterior `to_json` (or `vrf user`, whose `references` counts as `count`) wrote;
    /// raises `InputError` for anything else.
    #[staticmethod]
    fn from_json(text: &str) -> PyResult<Self> {
        let v: serde_json::Value =
            serde_json::from_str(text).map_err(|e| input(format!("posterior JSON: {e}")))?;
        let latent = Latent::new(
            Array1::from(floats(&v, "mean")?),
            Array1::from(floats(&v, "var")?),
        )
        .map_err(|e| input(format!("posterior JSON: {e}")))?;
        let weights = floats(&v, "weights")?;
        if weights.is_empty() {
            return Err(input("posterior JSON: `weights` is empty"));
        }
        let count = match v.get("count").or_else(|| v.get("references")) {
            None | Some(serde_json::Value::Null) => None,
            Some(c) => Some(
                c.as_u64()
                    .and_then(|c| usize::try_from(c).ok())
                    .ok_or_else(|| {
                        input("posterior JSON: `count` must be a non-negative integer")
                    })?,
            ),
        };
        let (mean, var) = latent.into_parts();
        let uncertainty = match v.get("uncertainty") {
            None => var.mean().unwrap_or(0.0),
            Some(u) => u
                .as_f64()
                .map(|u| u as f32)
                .filter(|u| u.is_finite() && *u >= 0.0)
                .ok_or_else(|| {
                    input("posterior JSON: `uncertainty` must be a finite number ≥ 0")
                })?,
        };
        Ok(Self {
            inner: UserPosterior {
                mean,
                var,
                weights: Array1::from(weights),
                uncertainty,
            },
            count,
        })
    }

    /// Pickles through the JSON form.
    fn __reduce__<'py>(slf: &Bound<'py, Self>) -> PyResult<(Bound<'py, PyAny>, (String,))> {
        let from_json = slf.get_type().getattr("from_json")?;
        Ok((from_json, (slf.get().to_json(),)))
    }

    fn __repr__(&self) -> String {
        format!(
            "Posterior(d={}, K={}, uncertainty={:.4}, count={})",
            self.inner.mean.len(),
            self.inner.weights.len(),
            self.inner.uncertainty,
            self.count
                .map_or_else(|| "None".to_string(), |c| c.to_string())
        )
    }
}
