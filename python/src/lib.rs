//! `vrf._vrf`: the Python extension module over `vrf-runtime` (the same `VrfModel` the `vrf` CLI
//! and `vrf serve` use). The pure-Python part (`python/pysrc/vrf/`) re-exports it and adds
//! `reward_fn`.

mod errors;
mod inputs;
mod model;
mod posterior;
mod state;
mod vectors;

use pyo3::prelude::*;

#[pymodule]
fn _vrf(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add_class::<model::Model>()?;
    m.add_class::<posterior::Posterior>()?;
    m.add_class::<state::State>()?;
    m.add("VrfError", py.get_type::<errors::VrfError>())?;
    m.add("ModelError", py.get_type::<errors::ModelError>())?;
    m.add("InputError", errors::input_error_type(py)?)?;
    m.add(
        "UnknownUserError",
        py.get_type::<errors::UnknownUserError>(),
    )?;
    m.add("BackendError", py.get_type::<errors::BackendError>())?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
