//! JSON lines tables: one object per line, `{"prompt": …, "response": …, "embedding": […]}` or
//! `{"text": …, "embedding": […]}`; blank lines are skipped and a UTF-8 BOM ignored.

use super::{Builder, FeatureError, FeatureKey, FeatureTable};
use serde::Serialize;
use serde_json::{Map, Value};
use std::path::Path;

/// The vector's field.
pub const EMBEDDING: &str = "embedding";

/// Reads a JSON lines table.
pub fn read(path: &Path) -> Result<FeatureTable, FeatureError> {
    let mut b = Builder::new(path.to_path_buf(), "line");
    let mut vector = Vec::new();
    for_each_object(path, |line, obj| {
        let key = key_of(path, "line", line, obj)?;
        vector.clear();
        let bad = |field: String, message: String| FeatureError::Malformed {
            path: path.to_path_buf(),
            unit: "line",
            row: line,
            field,
            message,
        };
        let items = match obj.get(EMBEDDING) {
            Some(Value::Array(items)) => items,
            Some(v) => {
                return Err(bad(
                    EMBEDDING.into(),
                    format!("expected an array of numbers, found {}", type_name(v)),
                ))
            }
            None => return Err(bad(EMBEDDING.into(), "missing".into())),
        };
        for (c, v) in items.iter().enumerate() {
            let x = v.as_f64().ok_or_else(|| {
                bad(
                    format!("{EMBEDDING}[{c}]"),
                    format!("expected a number, found {}", type_name(v)),
                )
            })?;
            // JSON has no NaN or infinity, but a number beyond f32's range becomes one.
            if x.abs() > f64::from(f32::MAX) {
                return Err(FeatureError::NonFinite {
                    path: path.to_path_buf(),
                    unit: "line",
                    row: line,
                    component: c,
                    value: x,
                });
            }
            vector.push(x as f32);
        }
        b.push(line, key, &vector)
    })?;
    b.finish()
}

/// Calls `each(line, object)` for every non-blank line of a JSON lines file, with errors that
/// name the line when it is not a JSON object.
pub(crate) fn for_each_object(
    path: &Path,
    mut each: impl FnMut(usize, &Map<String, Value>) -> Result<(), FeatureError>,
) -> Result<(), FeatureError> {
    let text = std::fs::read_to_string(path).map_err(|e| FeatureError::io(path, e))?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let malformed = |message: String| FeatureError::Malformed {
            path: path.to_path_buf(),
            unit: "line",
            row: i + 1,
            field: "(line)".into(),
            message,
        };
        match serde_json::from_str::<Value>(line) {
            Ok(Value::Object(obj)) => each(i + 1, &obj)?,
            Ok(v) => {
                return Err(malformed(format!(
                    "expected a JSON object, found {}",
                    type_name(&v)
                )))
            }
            Err(e) => return Err(malformed(format!("not JSON: {e}"))),
        }
    }
    Ok(())
}

/// The key of a row: `prompt` + `response` when both are present, else `text`.
pub(crate) fn key_of(
    path: &Path,
    unit: &'static str,
    row: usize,
    obj: &Map<String, Value>,
) -> Result<FeatureKey, FeatureError> {
    let bad = |field: &str, message: String| FeatureError::Malformed {
        path: path.to_path_buf(),
        unit,
        row,
        field: field.into(),
        message,
    };
    let string = |field: &str| -> Result<Option<String>, FeatureError> {
        match obj.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(v) => Err(bad(
                field,
                format!("expected a string, found {}", type_name(v)),
            )),
        }
    };
    match (string("prompt")?, string("response")?) {
        (Some(prompt), Some(response)) => Ok(FeatureKey::Pair { prompt, response }),
        (Some(_), None) => Err(bad(
            "response",
            "missing (`prompt` needs `response`)".into(),
        )),
        (None, Some(_)) => Err(bad("prompt", "missing (`response` needs `prompt`)".into())),
        (None, None) => string("text")?.map(FeatureKey::Text).ok_or_else(|| {
            bad(
                "text",
                "missing: a row is keyed by `prompt` + `response` or by `text`".into(),
            )
        }),
    }
}

/// A row's key as the JSON fields of its line (also the ids file of `.npy` tables).
#[derive(Serialize)]
#[serde(untagged)]
pub(crate) enum KeyFields<'a> {
    Pair { prompt: &'a str, response: &'a str },
    Text { text: &'a str },
}

impl<'a> From<&'a FeatureKey> for KeyFields<'a> {
    fn from(k: &'a FeatureKey) -> Self {
        match k {
            FeatureKey::Pair { prompt, response } => KeyFields::Pair { prompt, response },
            FeatureKey::Text(text) => KeyFields::Text { text },
        }
    }
}

#[derive(Serialize)]
struct Line<'a> {
    #[serde(flatten)]
    key: KeyFields<'a>,
    embedding: &'a [f32],
}

/// Writes the table as JSON lines, atomically.
pub fn write(t: &FeatureTable, path: &Path) -> Result<(), FeatureError> {
    vrf_format::fsutil::write_atomic_with(path, |w| {
        for (i, key) in t.keys().iter().enumerate() {
            let line = Line {
                key: key.into(),
                embedding: t.row(i),
            };
            serde_json::to_writer(&mut *w, &line)?;
            w.write_all(b"\n")?;
        }
        Ok(())
    })
    .map_err(|e| FeatureError::io(path, e))
}

/// The JSON type name of a value, for messages.
pub(crate) fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}
