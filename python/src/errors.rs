//! The Python exceptions and how runtime errors map onto them: at load time anything wrong with
//! the directory is a `ModelError`; during a call, what the caller passed is an `InputError`
//! (also a `ValueError`, so callers may catch either).

use pyo3::create_exception;
use pyo3::exceptions::{PyException, PyValueError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyTuple, PyType};
use pyo3::PyErr;
use vrf_runtime::RuntimeError;

create_exception!(vrf, VrfError, PyException, "Base class of every vrf error.");
create_exception!(
    vrf,
    ModelError,
    VrfError,
    "The model directory is missing, damaged or inconsistent."
);

/// `vrf.InputError`, made once: `class InputError(VrfError, ValueError)` (`create_exception!`
/// takes one base).
static INPUT_ERROR: PyOnceLock<Py<PyType>> = PyOnceLock::new();

/// The `vrf.InputError` type.
pub fn input_error_type(py: Python<'_>) -> PyResult<&Bound<'_, PyType>> {
    INPUT_ERROR
        .get_or_try_init(py, || {
            let bases = PyTuple::new(
                py,
                [
                    py.get_type::<VrfError>().into_any(),
                    py.get_type::<PyValueError>().into_any(),
                ],
            )?;
            let ns = PyDict::new(py);
            ns.set_item("__module__", "vrf")?;
            ns.set_item(
                "__doc__",
                "An argument is unusable (wrong shape, empty, non-finite, of another model, \
                 texts to a features model or vectors to a text model); also a ValueError.",
            )?;
            let ty = py
                .get_type::<PyType>()
                .call1(("InputError", bases, ns))?
                .cast_into::<PyType>()?;
            Ok(ty.unbind())
        })
        .map(|t| t.bind(py))
}
create_exception!(vrf, UnknownUserError, VrfError, "No seen user has this id.");
create_exception!(
    vrf,
    BackendError,
    VrfError,
    "ONNX Runtime is missing or failed (library, CUDA, a run)."
);

/// An error while loading a model directory.
pub fn load_error(e: RuntimeError) -> PyErr {
    match e {
        RuntimeError::OrtLibrary(_) | RuntimeError::Ort(_) | RuntimeError::Cuda(_) => {
            BackendError::new_err(e.to_string())
        }
        // Arguments are checked before loading; what remains is the directory's fault (e.g. a
        // graph without the inputs its manifest names).
        other => ModelError::new_err(other.to_string()),
    }
}

/// An error during a call on a loaded model.
pub fn call_error(e: RuntimeError) -> PyErr {
    match e {
        RuntimeError::UnknownUser(_) => UnknownUserError::new_err(e.to_string()),
        RuntimeError::OrtLibrary(_) | RuntimeError::Ort(_) | RuntimeError::Cuda(_) => {
            BackendError::new_err(e.to_string())
        }
        RuntimeError::Io { .. } => ModelError::new_err(e.to_string()),
        other => input(other.to_string()),
    }
}

/// An input error (`vrf.InputError`, a `ValueError`) with a message.
pub fn input(message: impl Into<String>) -> PyErr {
    let message = message.into();
    Python::attach(|py| match input_error_type(py) {
        Ok(ty) => PyErr::from_type(ty.clone(), message),
        Err(e) => e,
    })
}

/// The `InputError` for input of the wrong kind: `what` is the argument (and row), `takes` what
/// the model takes, `given` what came (`texts`, `feature vectors`).
pub fn wrong_kind(what: &str, takes: &str, given: &str) -> PyErr {
    input(format!("{what}: this model takes {takes}, not {given}"))
}
