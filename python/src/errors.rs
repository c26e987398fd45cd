//! The Python exceptions and how runtime errors map onto them: at load time anything wrong with
//! the directory is a `ModelError`; during a call, what the caller passed is an `InputError`.

use pyo3::create_exception;
use pyo3::exceptions::PyException;
use pyo3::PyErr;
use vrf_runtime::RuntimeError;

create_exception!(vrf, VrfError, PyException, "Base class of every vrf error.");
create_exception!(
    vrf,
    ModelError,
    VrfError,
    "The model directory is missing, damaged or inconsistent."
);
create_exception!(
    vrf,
    InputError,
    VrfError,
    "An argument is unusable (wrong shape, empty, non-finite, of another model)."
);
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
        other => InputError::new_err(other.to_string()),
    }
}

/// An input error with a message.
pub fn input(message: impl Into<String>) -> PyErr {
    InputError::new_err(message.into())
}
