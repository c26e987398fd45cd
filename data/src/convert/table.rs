//! Rows of a published table, from parquet (through the `parquet` crate's record API) or from
//! its JSON-lines export, as JSON objects that know where they came from.

use super::error::{ConvertError, Result};
use serde_json::{Map, Value};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// One row of a table: its fields and its place (file, 1-based row) for error messages.
#[derive(Debug, Clone)]
pub struct Row {
    /// The file the row came from.
    pub path: Arc<PathBuf>,
    /// 1-based row number (the line number for JSON lines).
    pub row: usize,
    /// The fields.
    pub fields: Map<String, Value>,
}

/// Reads every row of `path`: `.parquet` through the parquet reader, anything else as JSON lines
/// (blank lines skipped, a UTF-8 BOM ignored).
pub fn read_rows(path: &Path) -> Result<Vec<Row>> {
    let is_parquet = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("parquet"));
    if is_parquet {
        read_parquet(path)
    } else {
        read_json_lines(path)
    }
}

fn read_parquet(path: &Path) -> Result<Vec<Row>> {
    use parquet::file::reader::{FileReader, SerializedFileReader};
    let file = std::fs::File::open(path).map_err(|e| ConvertError::io(path, e))?;
    let reader = SerializedFileReader::new(file)
        .map_err(|e| ConvertError::io(path, format!("not parquet: {e}")))?;
    let shared = Arc::new(path.to_path_buf());
    let mut rows = Vec::new();
    let iter = reader
        .get_row_iter(None)
        .map_err(|e| ConvertError::io(path, format!("parquet: {e}")))?;
    for (i, r) in iter.enumerate() {
        let r = r.map_err(|e| ConvertError::io(path, format!("parquet row {}: {e}", i + 1)))?;
        let Value::Object(fields) = r.to_json_value() else {
            return Err(ConvertError::io(
                path,
                format!("parquet row {} is not a record", i + 1),
            ));
        };
        rows.push(Row {
            path: shared.clone(),
            row: i + 1,
            fields,
        });
    }
    Ok(rows)
}

fn read_json_lines(path: &Path) -> Result<Vec<Row>> {
    let text = std::fs::read_to_string(path).map_err(|e| ConvertError::io(path, e))?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
    let shared = Arc::new(path.to_path_buf());
    let mut rows = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let v: Value = serde_json::from_str(line).map_err(|e| ConvertError::Field {
            path: path.to_path_buf(),
            row: i + 1,
            column: "(line)".into(),
            message: format!("not JSON: {e}"),
        })?;
        let Value::Object(fields) = v else {
            return Err(ConvertError::Field {
                path: path.to_path_buf(),
                row: i + 1,
                column: "(line)".into(),
                message: "not a JSON object".into(),
            });
        };
        rows.push(Row {
            path: shared.clone(),
            row: i + 1,
            fields,
        });
    }
    Ok(rows)
}

/// The JSON type name of a value, for error messages.
pub fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Typed access to a JSON object, with errors that name the file, the row and the column.
pub struct Fields<'a> {
    path: &'a Path,
    row: usize,
    prefix: String,
    map: &'a Map<String, Value>,
}

impl Row {
    /// Typed access to this row's fields.
    pub fn fields(&self) -> Fields<'_> {
        Fields {
            path: &self.path,
            row: self.row,
            prefix: String::new(),
            map: &self.fields,
        }
    }

    /// A field error at this row.
    pub fn error(&self, column: &str, message: impl Into<String>) -> ConvertError {
        self.fields().error(column, message)
    }

    /// "file row N", for skip reports.
    pub fn place(&self) -> String {
        format!("{} row {}", self.path.display(), self.row)
    }
}

impl<'a> Fields<'a> {
    /// A field error for `column` (prefixed with the enclosing object's path).
    pub fn error(&self, column: &str, message: impl Into<String>) -> ConvertError {
        ConvertError::Field {
            path: self.path.to_path_buf(),
            row: self.row,
            column: format!("{}{column}", self.prefix),
            message: message.into(),
        }
    }

    /// The raw value, or `None` when the column is absent or null.
    pub fn opt(&self, column: &str) -> Option<&'a Value> {
        self.map.get(column).filter(|v| !v.is_null())
    }

    fn get(&self, column: &str) -> Result<&'a Value> {
        match self.map.get(column) {
            None => Err(self.error(column, "missing column")),
            Some(Value::Null) => Err(self.error(column, "is null")),
            Some(v) => Ok(v),
        }
    }

    fn wrong(&self, column: &str, want: &str, got: &Value) -> ConvertError {
        self.error(column, format!("expected {want}, found {}", type_name(got)))
    }

    /// A string column.
    pub fn str(&self, column: &str) -> Result<&'a str> {
        let v = self.get(column)?;
        v.as_str().ok_or_else(|| self.wrong(column, "a string", v))
    }

    /// A string column that may be absent or null.
    pub fn opt_str(&self, column: &str) -> Result<Option<&'a str>> {
        match self.opt(column) {
            None => Ok(None),
            Some(v) => v
                .as_str()
                .map(Some)
                .ok_or_else(|| self.wrong(column, "a string", v)),
        }
    }

    /// A finite number (integers accepted).
    pub fn f64(&self, column: &str) -> Result<f64> {
        let v = self.get(column)?;
        let x = v
            .as_f64()
            .ok_or_else(|| self.wrong(column, "a number", v))?;
        if x.is_finite() {
            Ok(x)
        } else {
            Err(self.error(column, format!("{x} is not finite")))
        }
    }

    /// A finite number that may be absent or null.
    pub fn opt_f64(&self, column: &str) -> Result<Option<f64>> {
        match self.opt(column) {
            None => Ok(None),
            Some(_) => self.f64(column).map(Some),
        }
    }

    /// An integer column.
    pub fn i64(&self, column: &str) -> Result<i64> {
        let v = self.get(column)?;
        v.as_i64()
            .ok_or_else(|| self.wrong(column, "an integer", v))
    }

    /// A boolean column that may be absent or null (also accepts 0/1 and "true"/"false").
    pub fn opt_bool(&self, column: &str) -> Result<Option<bool>> {
        match self.opt(column) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(Value::Number(n)) if n.as_i64() == Some(0) => Ok(Some(false)),
            Some(Value::Number(n)) if n.as_i64() == Some(1) => Ok(Some(true)),
            Some(Value::String(s)) if s.eq_ignore_ascii_case("true") => Ok(Some(true)),
            Some(Value::String(s)) if s.eq_ignore_ascii_case("false") => Ok(Some(false)),
            Some(v) => Err(self.wrong(column, "a boolean", v)),
        }
    }

    /// A nested object column.
    pub fn object(&self, column: &str) -> Result<Fields<'a>> {
        let v = self.get(column)?;
        let map = v
            .as_object()
            .ok_or_else(|| self.wrong(column, "an object", v))?;
        Ok(self.nested(format!("{}{column}.", self.prefix), map))
    }

    /// An array of objects, each with typed access (`column[i].`).
    pub fn objects(&self, column: &str) -> Result<Vec<Fields<'a>>> {
        let v = self.get(column)?;
        let items = v
            .as_array()
            .ok_or_else(|| self.wrong(column, "an array", v))?;
        items
            .iter()
            .enumerate()
            .map(|(i, item)| {
                let name = format!("{column}[{i}]");
                let map = item
                    .as_object()
                    .ok_or_else(|| self.wrong(&name, "an object", item))?;
                Ok(self.nested(format!("{}{name}.", self.prefix), map))
            })
            .collect()
    }

    fn nested(&self, prefix: String, map: &'a Map<String, Value>) -> Fields<'a> {
        Fields {
            path: self.path,
            row: self.row,
            prefix,
            map,
        }
    }
}
