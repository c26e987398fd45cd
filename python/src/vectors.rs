//! Python values → feature vectors, for a model fitted on external features: lists of numbers or
//! numpy float32/float64 arrays (`[D]` one vector, `[N, D]` a batch). Errors name the argument,
//! the row and the component: a wrong length or a non-finite value is a `ValueError`
//! (`vrf.InputError`), a value of the wrong Python type a `TypeError`, texts a `ValueError`
//! saying what the model takes.

use numpy::{PyArrayDescrMethods, PyReadonlyArrayDyn, PyUntypedArray, PyUntypedArrayMethods};
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyString};
use vrf_runtime::{VectorQuestion, VectorReference};

use crate::errors::{input, wrong_kind};
use crate::inputs::type_name;

/// What a features model takes: the vectors' dimension and its words for errors.
#[derive(Clone)]
pub struct VectorSpec {
    /// Length of every vector.
    pub dim: usize,
    /// `feature vectors of dimension D`.
    pub takes: String,
}

/// Whether `obj` is a string (text where a vector belongs).
fn is_text(obj: &Bound<'_, PyAny>) -> bool {
    obj.is_instance_of::<PyString>()
}

/// Whether `obj` looks like feature vectors given to a text model: a numpy array, a number, or
/// a sequence whose first item is a number, a numpy array or a sequence of numbers.
pub fn looks_like_vectors(obj: &Bound<'_, PyAny>) -> bool {
    fn number(o: &Bound<'_, PyAny>) -> bool {
        !o.is_instance_of::<PyString>() && o.extract::<f64>().is_ok()
    }
    if obj.is_instance_of::<PyUntypedArray>() || number(obj) {
        return true;
    }
    if is_text(obj) || obj.is_instance_of::<PyDict>() || obj.is_instance_of::<PyBytes>() {
        return false;
    }
    let Ok(first) = obj.get_item(0) else {
        return false;
    };
    first.is_instance_of::<PyUntypedArray>()
        || number(&first)
        || (!is_text(&first)
            && !first.is_instance_of::<PyDict>()
            && first.get_item(0).is_ok_and(|x| number(&x)))
}

/// A numpy array's values as f64 (float32 or float64 only; other dtypes are a `TypeError`).
fn array_values(a: &Bound<'_, PyUntypedArray>, what: &str) -> PyResult<(Vec<usize>, Vec<f64>)> {
    let py = a.py();
    let dtype = a.dtype();
    let shape = a.shape().to_vec();
    let values = if dtype.is_equiv_to(&numpy::dtype::<f32>(py)) {
        let r: PyReadonlyArrayDyn<'_, f32> = a.extract()?;
        r.as_array().iter().map(|&x| f64::from(x)).collect()
    } else if dtype.is_equiv_to(&numpy::dtype::<f64>(py)) {
        let r: PyReadonlyArrayDyn<'_, f64> = a.extract()?;
        r.as_array().iter().copied().collect()
    } else {
        return Err(PyTypeError::new_err(format!(
            "{what}: expected a float32 or float64 array, got dtype {} (convert with .astype(numpy.float32))",
            dtype
        )));
    };
    Ok((shape, values))
}

/// Checks one vector's values: length `dim`, every component finite in float32.
fn checked(values: &[f64], what: &str, spec: &VectorSpec) -> PyResult<Vec<f32>> {
    if values.len() != spec.dim {
        return Err(input(format!(
            "{what}: {} values; this model takes {}",
            values.len(),
            spec.takes
        )));
    }
    values
        .iter()
        .enumerate()
        .map(|(j, &x)| {
            if !x.is_finite() {
                return Err(input(format!("{what}[{j}]: {x} is not finite")));
            }
            // A finite f64 can still overflow f32.
            let y = x as f32;
            if !y.is_finite() {
                return Err(input(format!(
                    "{what}[{j}]: {x:e} is beyond float32's range"
                )));
            }
            Ok(y)
        })
        .collect()
}

/// One vector `[D]` named `what`: a numpy array of one dimension or a sequence of numbers.
pub fn vector(obj: &Bound<'_, PyAny>, what: &str, spec: &VectorSpec) -> PyResult<Vec<f32>> {
    if is_text(obj) {
        return Err(wrong_kind(what, &spec.takes, "texts"));
    }
    if let Ok(a) = obj.cast::<PyUntypedArray>() {
        let (shape, values) = array_values(a, what)?;
        if shape.len() != 1 {
            return Err(input(format!(
                "{what}: expected one vector of shape ({},), got an array of shape {shape:?}",
                spec.dim
            )));
        }
        return checked(&values, what, spec);
    }
    if obj.is_instance_of::<PyDict>() || obj.is_instance_of::<PyBytes>() {
        return Err(PyTypeError::new_err(format!(
            "{what} must be a sequence of numbers or a numpy array, got {}",
            type_name(obj)
        )));
    }
    let items = obj.try_iter().map_err(|_| {
        PyTypeError::new_err(format!(
            "{what} must be a sequence of numbers or a numpy array, got {}",
            type_name(obj)
        ))
    })?;
    let mut values = Vec::new();
    for (j, item) in items.enumerate() {
        let item = item?;
        let x = if is_text(&item) {
            None
        } else {
            item.extract::<f64>().ok()
        };
        values.push(x.ok_or_else(|| {
            PyTypeError::new_err(format!(
                "{what}[{j}] must be a number, got {}",
                type_name(&item)
            ))
        })?);
    }
    checked(&values, what, spec)
}

/// A batch of vectors named `what` (rows `what[i]`): a `[N, D]` numpy array or a sequence of
/// vectors; at least one.
pub fn matrix(obj: &Bound<'_, PyAny>, what: &str, spec: &VectorSpec) -> PyResult<Vec<Vec<f32>>> {
    if is_text(obj) {
        return Err(wrong_kind(what, &spec.takes, "texts"));
    }
    let rows = if let Ok(a) = obj.cast::<PyUntypedArray>() {
        let (shape, values) = array_values(a, what)?;
        if shape.len() != 2 {
            return Err(input(format!(
                "{what}: expected a 2-D array [N, {}], got an array of shape {shape:?}",
                spec.dim
            )));
        }
        let cols = shape[1].max(1);
        values
            .chunks(cols)
            .take(shape[0])
            .enumerate()
            .map(|(i, row)| checked(row, &format!("{what}[{i}]"), spec))
            .collect::<PyResult<Vec<_>>>()?
    } else {
        if obj.is_instance_of::<PyDict>() || obj.is_instance_of::<PyBytes>() {
            return Err(PyTypeError::new_err(format!(
                "{what} must be a list of vectors or a 2-D numpy array, got {}",
                type_name(obj)
            )));
        }
        let items = obj.try_iter().map_err(|_| {
            PyTypeError::new_err(format!(
                "{what} must be a list of vectors or a 2-D numpy array, got {}",
                type_name(obj)
            ))
        })?;
        let mut rows = Vec::new();
        for (i, item) in items.enumerate() {
            rows.push(vector(&item?, &format!("{what}[{i}]"), spec)?);
        }
        rows
    };
    if rows.is_empty() {
        return Err(input(format!("{what}: empty")));
    }
    Ok(rows)
}

/// Pairs of vectors under keys `(first, second)` (`chosen`/`rejected`, `a`/`b`), named `what`:
/// a list of `{first, second}` dicts or `(first, second)` pairs, or one dict of two `[N, D]`
/// batches. A list may be empty (the caller decides whether that is an error).
fn pairs(
    obj: &Bound<'_, PyAny>,
    what: &str,
    keys: [&str; 2],
    spec: &VectorSpec,
) -> PyResult<Vec<[Vec<f32>; 2]>> {
    let shape = format!(
        "a {{\"{0}\", \"{1}\"}} dict or a ({0}, {1}) pair of vectors",
        keys[0], keys[1]
    );
    if is_text(obj) {
        return Err(wrong_kind(what, &spec.takes, "texts"));
    }
    if let Ok(d) = obj.cast::<PyDict>() {
        if d.contains("prompt")? {
            return Err(wrong_kind(what, &spec.takes, "texts"));
        }
        let [a, b] = keys.map(|k| {
            d.get_item(k)?
                .ok_or_else(|| input(format!("{what}: missing `{k}`")))
                .and_then(|v| matrix(&v, &format!("{what}.{k}"), spec))
        });
        let (a, b) = (a?, b?);
        if a.len() != b.len() {
            return Err(input(format!(
                "{what}: {} `{}` rows but {} `{}` rows",
                a.len(),
                keys[0],
                b.len(),
                keys[1]
            )));
        }
        return Ok(a.into_iter().zip(b).map(|(a, b)| [a, b]).collect());
    }
    let items = obj.try_iter().map_err(|_| {
        PyTypeError::new_err(format!(
            "{what} must be a list of {shape}s, got {}",
            type_name(obj)
        ))
    })?;
    let mut out = Vec::new();
    for (i, item) in items.enumerate() {
        let item = item?;
        let at = format!("{what}[{i}]");
        let pair = if let Ok(d) = item.cast::<PyDict>() {
            // A text triplet or question (a prompt, string responses) to a features model.
            let texty = d.contains("prompt")?
                || keys
                    .iter()
                    .any(|k| d.get_item(k).ok().flatten().is_some_and(|v| is_text(&v)));
            if texty {
                return Err(wrong_kind(&at, &spec.takes, "texts"));
            }
            keys.map(|k| {
                d.get_item(k)?
                    .ok_or_else(|| input(format!("{at}: missing `{k}`")))
                    .and_then(|v| vector(&v, &format!("{at}.{k}"), spec))
            })
        } else if is_text(&item) {
            return Err(wrong_kind(&at, &spec.takes, "texts"));
        } else {
            let parts: Vec<Bound<'_, PyAny>> = match item.try_iter() {
                Ok(it) => it.collect::<PyResult<_>>()?,
                Err(_) => {
                    return Err(PyTypeError::new_err(format!(
                        "{at} must be {shape}, got {}",
                        type_name(&item)
                    )))
                }
            };
            if parts.iter().any(is_text) {
                return Err(wrong_kind(&at, &spec.takes, "texts"));
            }
            let [a, b]: [Bound<'_, PyAny>; 2] = parts.try_into().map_err(|p: Vec<_>| {
                input(format!("{at}: expected {shape}, got {} items", p.len()))
            })?;
            [
                vector(&a, &format!("{at}.{}", keys[0]), spec),
                vector(&b, &format!("{at}.{}", keys[1]), spec),
            ]
        };
        let [a, b] = pair;
        out.push([a?, b?]);
    }
    Ok(out)
}

/// Reference pairs of vectors (`chosen` preferred over `rejected`), named `references`.
pub fn references(obj: &Bound<'_, PyAny>, spec: &VectorSpec) -> PyResult<Vec<VectorReference>> {
    Ok(pairs(obj, "references", ["chosen", "rejected"], spec)?
        .into_iter()
        .map(|[c, r]| VectorReference::new(c, r))
        .collect())
}

/// Candidate questions of vectors (`a` or `b`?), named `questions`; at least one.
pub fn questions(obj: &Bound<'_, PyAny>, spec: &VectorSpec) -> PyResult<Vec<VectorQuestion>> {
    let q: Vec<VectorQuestion> = pairs(obj, "questions", ["a", "b"], spec)?
        .into_iter()
        .map(|[a, b]| VectorQuestion::new(a, b))
        .collect();
    if q.is_empty() {
        return Err(input("questions: empty"));
    }
    Ok(q)
}
