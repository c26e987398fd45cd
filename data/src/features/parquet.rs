//! Parquet tables (feature `parquet`; the `parquet` crate's record API, no arrow). Key columns
//! `prompt` + `response` (preferred when both exist) or `text`; the vector either one list
//! column (`embedding` when present, else the only list column) or, without list columns, one
//! numeric column per component: every other numeric column, in column order.

use super::{Builder, FeatureError, FeatureKey, FeatureTable};
use parquet::basic::{Compression, Type as Physical};
use parquet::data_type::{ByteArray, ByteArrayType, FloatType};
use parquet::file::properties::WriterProperties;
use parquet::file::reader::{FileReader, SerializedFileReader};
use parquet::file::writer::SerializedFileWriter;
use parquet::record::Field;
use parquet::schema::parser::parse_message_type;
use std::path::Path;
use std::sync::Arc;

/// Rows per row group when writing.
const ROW_GROUP: usize = 4096;

/// Where a row's vector is.
enum Vector {
    /// Column index of the list column.
    List(usize),
    /// Column indices of the per-component numeric columns.
    Columns(Vec<usize>),
}

/// Reads a parquet table.
pub fn read(path: &Path) -> Result<FeatureTable, FeatureError> {
    let file = std::fs::File::open(path).map_err(|e| FeatureError::io(path, e))?;
    let reader = SerializedFileReader::new(file)
        .map_err(|e| FeatureError::io(path, format!("not parquet: {e}")))?;
    let unsupported = |message: String| FeatureError::Unsupported {
        path: path.to_path_buf(),
        message,
    };
    let fields = reader
        .metadata()
        .file_metadata()
        .schema()
        .get_fields()
        .to_vec();
    let names: Vec<&str> = fields.iter().map(|f| f.name()).collect();
    let col = |name: &str| names.iter().position(|n| *n == name);
    let keys = match (col("prompt"), col("response"), col("text")) {
        (Some(p), Some(r), _) => vec![p, r],
        (_, _, Some(t)) => vec![t],
        _ => {
            return Err(unsupported(format!(
                "no key columns: expected `prompt` + `response` or `text` (columns: {})",
                names.join(", ")
            )))
        }
    };
    let lists: Vec<usize> = (0..fields.len())
        .filter(|&i| !fields[i].is_primitive())
        .collect();
    let vector = if let Some(e) = col("embedding").filter(|i| lists.contains(i)) {
        Vector::List(e)
    } else if let [only] = lists[..] {
        Vector::List(only)
    } else if lists.len() > 1 {
        return Err(unsupported(format!(
            "{} list columns ({}) and none named `embedding`: cannot tell which holds the vector",
            lists.len(),
            lists
                .iter()
                .map(|&i| names[i])
                .collect::<Vec<_>>()
                .join(", ")
        )));
    } else {
        let numeric: Vec<usize> = (0..fields.len())
            .filter(|i| !keys.contains(i))
            .filter(|&i| {
                matches!(
                    fields[i].get_physical_type(),
                    Physical::INT32 | Physical::INT64 | Physical::FLOAT | Physical::DOUBLE
                )
            })
            .collect();
        if numeric.is_empty() {
            return Err(unsupported(format!(
                "no vector: expected a list column (`embedding`) or numeric columns, one per component (columns: {})",
                names.join(", ")
            )));
        }
        Vector::Columns(numeric)
    };
    let iter = reader
        .get_row_iter(None)
        .map_err(|e| FeatureError::io(path, format!("parquet: {e}")))?;
    let mut b = Builder::new(path.to_path_buf(), "row");
    let mut vector_buf = Vec::new();
    for (i, r) in iter.enumerate() {
        let row = i + 1;
        let r = r.map_err(|e| FeatureError::io(path, format!("parquet row {row}: {e}")))?;
        let cells: Vec<&Field> = r.get_column_iter().map(|(_, f)| f).collect();
        let bad = |field: &str, message: String| FeatureError::Malformed {
            path: path.to_path_buf(),
            unit: "row",
            row,
            field: field.to_string(),
            message,
        };
        let string = |c: usize| -> Result<String, FeatureError> {
            match cells.get(c) {
                Some(Field::Str(s)) => Ok(s.clone()),
                Some(f) => Err(bad(
                    names[c],
                    format!("expected a string, found {}", kind(f)),
                )),
                None => Err(bad(names[c], "missing".into())),
            }
        };
        let key = match keys[..] {
            [p, rsp] => FeatureKey::Pair {
                prompt: string(p)?,
                response: string(rsp)?,
            },
            _ => FeatureKey::Text(string(keys[0])?),
        };
        vector_buf.clear();
        let mut push = |field: String, f: &Field, component: usize| {
            let x = number(f)
                .ok_or_else(|| bad(&field, format!("expected a number, found {}", kind(f))))?;
            if x.is_finite() && x.abs() > f64::from(f32::MAX) {
                return Err(FeatureError::NonFinite {
                    path: path.to_path_buf(),
                    unit: "row",
                    row,
                    component,
                    value: x,
                });
            }
            vector_buf.push(x as f32);
            Ok(())
        };
        match &vector {
            Vector::List(c) => match cells.get(*c) {
                Some(Field::ListInternal(l)) => {
                    for (k, f) in l.elements().iter().enumerate() {
                        push(format!("{}[{k}]", names[*c]), f, k)?;
                    }
                }
                Some(f) => {
                    return Err(bad(
                        names[*c],
                        format!("expected a list of numbers, found {}", kind(f)),
                    ))
                }
                None => return Err(bad(names[*c], "missing".into())),
            },
            Vector::Columns(cols) => {
                for (k, &c) in cols.iter().enumerate() {
                    let f = cells
                        .get(c)
                        .ok_or_else(|| bad(names[c], "missing".into()))?;
                    push(names[c].to_string(), f, k)?;
                }
            }
        }
        b.push(row, key, &vector_buf)?;
    }
    b.finish()
}

/// A numeric cell's value.
fn number(f: &Field) -> Option<f64> {
    Some(match *f {
        Field::Float(x) => f64::from(x),
        Field::Double(x) => x,
        Field::Float16(x) => f64::from(x.to_f32()),
        Field::Byte(x) => f64::from(x),
        Field::Short(x) => f64::from(x),
        Field::Int(x) => f64::from(x),
        Field::Long(x) => x as f64,
        Field::UByte(x) => f64::from(x),
        Field::UShort(x) => f64::from(x),
        Field::UInt(x) => f64::from(x),
        Field::ULong(x) => x as f64,
        _ => return None,
    })
}

/// A cell's type in words, for messages.
fn kind(f: &Field) -> &'static str {
    match f {
        Field::Null => "null",
        Field::Bool(_) => "a boolean",
        Field::Str(_) => "a string",
        Field::Bytes(_) => "bytes",
        Field::Group(_) => "a struct",
        Field::ListInternal(_) => "a list",
        Field::MapInternal(_) => "a map",
        _ if number(f).is_some() => "a number",
        _ => "a date or time",
    }
}

/// Writes the table as snappy-compressed parquet: the key columns and a list<float>
/// `embedding` column, atomically.
pub fn write(t: &FeatureTable, path: &Path) -> Result<(), FeatureError> {
    let key_cols: &[&str] = if t.text_keyed() {
        &["text"]
    } else {
        &["prompt", "response"]
    };
    let fields: String = key_cols
        .iter()
        .map(|k| format!("REQUIRED BYTE_ARRAY {k} (UTF8); "))
        .collect();
    let schema = format!(
        "message features {{ {fields}REQUIRED group embedding (LIST) {{ REPEATED group list {{ REQUIRED FLOAT element; }} }} }}"
    );
    let schema = Arc::new(parse_message_type(&schema).map_err(|e| FeatureError::io(path, e))?);
    let props = Arc::new(
        WriterProperties::builder()
            .set_compression(Compression::SNAPPY)
            .build(),
    );
    let to_io = |e: parquet::errors::ParquetError| std::io::Error::other(e.to_string());
    // The parquet writer needs a `Send` sink, which fsutil's `&mut dyn Write` is not: write a
    // temporary file next to `path` and rename it into place the same way.
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| FeatureError::io(path, "the path has no file name"))?;
    let tmp = dir.join(format!(
        ".{}.tmp.{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let result = (|| -> std::io::Result<()> {
        let f = std::fs::File::create(&tmp)?;
        let w = std::io::BufWriter::with_capacity(1 << 20, f);
        let mut fw = SerializedFileWriter::new(w, schema, props).map_err(to_io)?;
        let dim = t.dim();
        for start in (0..t.len()).step_by(ROW_GROUP) {
            let end = (start + ROW_GROUP).min(t.len());
            let keys = &t.keys()[start..end];
            let mut rg = fw.next_row_group().map_err(to_io)?;
            let mut c = 0;
            while let Some(mut col) = rg.next_column().map_err(to_io)? {
                if c < key_cols.len() {
                    let v: Vec<ByteArray> = keys
                        .iter()
                        .map(|k| {
                            ByteArray::from(match (k, c) {
                                (FeatureKey::Pair { prompt, .. }, 0) => prompt.as_str(),
                                (FeatureKey::Pair { response, .. }, _) => response.as_str(),
                                (FeatureKey::Text(text), _) => text.as_str(),
                            })
                        })
                        .collect();
                    col.typed::<ByteArrayType>()
                        .write_batch(&v, None, None)
                        .map_err(to_io)?;
                } else {
                    let values = &t.values()[start * dim..end * dim];
                    let def = vec![1i16; values.len()];
                    let rep: Vec<i16> =
                        (0..values.len()).map(|k| i16::from(k % dim != 0)).collect();
                    col.typed::<FloatType>()
                        .write_batch(values, Some(&def), Some(&rep))
                        .map_err(to_io)?;
                }
                col.close().map_err(to_io)?;
                c += 1;
            }
            rg.close().map_err(to_io)?;
        }
        let w = fw.into_inner().map_err(to_io)?;
        let f = w.into_inner().map_err(|e| e.into_error())?;
        f.sync_all()?;
        vrf_format::fsutil::rename(&tmp, path)?;
        vrf_format::fsutil::sync_dir(&dir)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(|e| FeatureError::io(path, e))
}
