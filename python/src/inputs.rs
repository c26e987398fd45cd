//! Python values → runtime inputs: reference triplets and `(prompt, response)` pairs, as dicts
//! or tuples, with errors that name the item and the field.

use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString};
use vrf_runtime::{Question, Reference};

use crate::errors::{input, wrong_kind};
use crate::vectors::looks_like_vectors;

/// What a text model takes, in errors about vectors given to it.
pub const TEXTS: &str = "texts";

/// Whether a reference or question item is one of vectors (a dict without a prompt whose
/// responses are not strings, or a pair of vectors), for the wrong-kind error.
fn vector_item(item: &Bound<'_, PyAny>, keys: [&str; 2]) -> bool {
    if let Ok(d) = item.cast::<PyDict>() {
        return !d.contains("prompt").unwrap_or(true)
            && keys.iter().any(|k| {
                d.get_item(k)
                    .ok()
                    .flatten()
                    .is_some_and(|v| looks_like_vectors(&v))
            });
    }
    looks_like_vectors(item)
}

/// One text field of a dict item, or an error naming `what[i].key`.
fn field(d: &Bound<'_, PyDict>, key: &str, what: &str, i: usize) -> PyResult<String> {
    let v = d
        .get_item(key)?
        .ok_or_else(|| input(format!("{what}[{i}]: missing `{key}`")))?;
    v.extract::<String>()
        .map_err(|_| input(format!("{what}[{i}].{key}: expected a string")))
}

/// The name of `obj`'s type (`int`, `float`, `NoneType`, …), for error messages.
pub fn type_name(obj: &Bound<'_, PyAny>) -> String {
    obj.get_type()
        .name()
        .map_or_else(|_| "an unnamed type".to_string(), |n| n.to_string())
}

/// A user id: a `str`, else a `TypeError` naming `what` and the type found (an integer id from
/// a dataset column would otherwise fail somewhere less obvious).
pub fn user_id(obj: &Bound<'_, PyAny>, what: &str) -> PyResult<String> {
    if obj.is_instance_of::<PyString>() {
        return obj.extract();
    }
    Err(PyTypeError::new_err(format!(
        "{what} must be a str (a user id), got {}",
        type_name(obj)
    )))
}

/// `N` strings from a tuple or list of exactly `N` strings (JSON and datasets give lists).
fn strings<const N: usize>(item: &Bound<'_, PyAny>) -> Option<[String; N]> {
    if item.is_instance_of::<PyString>() {
        return None;
    }
    let v: Vec<String> = item.extract().ok()?;
    v.try_into().ok()
}

/// Reference triplets: an iterable of `{"prompt", "chosen", "rejected"}` dicts or
/// `(prompt, chosen, rejected)` tuples; at least one.
pub fn references(obj: &Bound<'_, PyAny>) -> PyResult<Vec<Reference>> {
    if obj.is_instance_of::<PyString>() {
        return Err(input(
            "references: expected a list of dicts or tuples, got a string",
        ));
    }
    if obj.is_instance_of::<PyDict>() && vector_item(obj, ["chosen", "rejected"]) {
        return Err(wrong_kind("references", TEXTS, "feature vectors"));
    }
    let mut out = Vec::new();
    for (i, item) in obj
        .try_iter()
        .map_err(|_| input("references: expected a list of dicts or tuples"))?
        .enumerate()
    {
        let item = item?;
        if vector_item(&item, ["chosen", "rejected"]) {
            return Err(wrong_kind(
                &format!("references[{i}]"),
                TEXTS,
                "feature vectors",
            ));
        }
        let r = if let Ok(d) = item.cast::<PyDict>() {
            Reference::new(
                field(d, "prompt", "references", i)?,
                field(d, "chosen", "references", i)?,
                field(d, "rejected", "references", i)?,
            )
        } else if let Some([p, c, r]) = strings::<3>(&item) {
            Reference::new(p, c, r)
        } else {
            return Err(input(format!(
                "references[{i}]: expected a dict with prompt/chosen/rejected or a (prompt, chosen, rejected) tuple"
            )));
        };
        out.push(r);
    }
    Ok(out)
}

/// `(prompt, response)` pairs: tuples or `{"prompt", "response"}` dicts.
pub fn pairs(obj: &Bound<'_, PyAny>) -> PyResult<Vec<(String, String)>> {
    let mut out = Vec::new();
    for (i, item) in obj
        .try_iter()
        .map_err(|_| input("pairs: expected a list of (prompt, response) tuples"))?
        .enumerate()
    {
        let item = item?;
        if looks_like_vectors(&item) {
            return Err(wrong_kind(&format!("pairs[{i}]"), TEXTS, "feature vectors"));
        }
        let pair = if let Ok(d) = item.cast::<PyDict>() {
            (
                field(d, "prompt", "pairs", i)?,
                field(d, "response", "pairs", i)?,
            )
        } else {
            let [p, r] = strings::<2>(&item).ok_or_else(|| {
                input(format!(
                    "pairs[{i}]: expected a (prompt, response) tuple of strings"
                ))
            })?;
            (p, r)
        };
        out.push(pair);
    }
    Ok(out)
}

/// Candidate questions of texts: `{"prompt", "a", "b"}` dicts or `(prompt, a, b)` tuples; at
/// least one.
pub fn questions(obj: &Bound<'_, PyAny>) -> PyResult<Vec<Question>> {
    if obj.is_instance_of::<PyString>() {
        return Err(input(
            "questions: expected a list of dicts or tuples, got a string",
        ));
    }
    if obj.is_instance_of::<PyDict>() && vector_item(obj, ["a", "b"]) {
        return Err(wrong_kind("questions", TEXTS, "feature vectors"));
    }
    let mut out = Vec::new();
    for (i, item) in obj
        .try_iter()
        .map_err(|_| input("questions: expected a list of dicts or tuples"))?
        .enumerate()
    {
        let item = item?;
        if vector_item(&item, ["a", "b"]) {
            return Err(wrong_kind(
                &format!("questions[{i}]"),
                TEXTS,
                "feature vectors",
            ));
        }
        let q = if let Ok(d) = item.cast::<PyDict>() {
            Question::new(
                field(d, "prompt", "questions", i)?,
                field(d, "a", "questions", i)?,
                field(d, "b", "questions", i)?,
            )
        } else if let Some([p, a, b]) = strings::<3>(&item) {
            Question::new(p, a, b)
        } else {
            return Err(input(format!(
                "questions[{i}]: expected a dict with prompt/a/b or a (prompt, a, b) tuple"
            )));
        };
        out.push(q);
    }
    if out.is_empty() {
        return Err(input("questions: empty"));
    }
    Ok(out)
}

/// Candidate responses: a list of strings, at least one.
pub fn responses(obj: &Bound<'_, PyAny>) -> PyResult<Vec<String>> {
    if obj.is_instance_of::<PyString>() {
        return Err(input("responses: expected a list of strings, got a string"));
    }
    if looks_like_vectors(obj) {
        return Err(wrong_kind("responses", TEXTS, "feature vectors"));
    }
    let v: Vec<String> = obj
        .extract()
        .map_err(|_| input("responses: expected a list of strings"))?;
    if v.is_empty() {
        return Err(input("responses: empty"));
    }
    Ok(v)
}
