//! `.npy` tables: a 2-D little-endian float32 or float64 array in C order (NumPy's format,
//! version 1 to 3), its row i keyed by line i of the ids file next to it, `X.npy` →
//! `X.ids.jsonl`, each line `{"prompt": …, "response": …}` or `{"text": …}`.

use super::jsonl::{for_each_object, key_of, KeyFields};
use super::{Builder, FeatureError, FeatureTable};
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

const MAGIC: &[u8; 6] = b"\x93NUMPY";

/// The ids file of an `.npy` table: `X.npy` → `X.ids.jsonl`.
pub fn ids_path(npy: &Path) -> PathBuf {
    npy.with_extension("ids.jsonl")
}

/// The element types read.
#[derive(Clone, Copy)]
enum Dtype {
    F32,
    F64,
}

impl Dtype {
    fn size(self) -> usize {
        match self {
            Dtype::F32 => 4,
            Dtype::F64 => 8,
        }
    }
}

/// Reads an `.npy` table and its ids file.
pub fn read(path: &Path) -> Result<FeatureTable, FeatureError> {
    let ids = ids_path(path);
    let mut keys = Vec::new();
    for_each_object(&ids, |line, obj| {
        keys.push((line, key_of(&ids, "line", line, obj)?));
        Ok(())
    })?;
    let file = std::fs::File::open(path).map_err(|e| FeatureError::io(path, e))?;
    let file_len = file
        .metadata()
        .map_err(|e| FeatureError::io(path, e))?
        .len();
    let mut r = BufReader::with_capacity(1 << 20, file);
    let (dtype, rows, dim, header_len) = read_header(path, &mut r)?;
    if rows != keys.len() {
        return Err(FeatureError::RowCount {
            path: path.to_path_buf(),
            ids,
            rows,
            ids_rows: keys.len(),
        });
    }
    let data_len = rows
        .checked_mul(dim)
        .and_then(|n| n.checked_mul(dtype.size()))
        .and_then(|n| u64::try_from(n).ok());
    let have = file_len.saturating_sub(header_len as u64);
    if data_len != Some(have) {
        return Err(FeatureError::Unsupported {
            path: path.to_path_buf(),
            message: format!(
                "the header's shape ({rows}, {dim}) needs {} data bytes but the file has {have} (truncated or not an array of that shape)",
                data_len.map_or_else(|| "more".to_string(), |n| n.to_string())
            ),
        });
    }
    if dim == 0 {
        return Err(FeatureError::ZeroDim {
            path: path.to_path_buf(),
        });
    }
    let mut b = Builder::new(path.to_path_buf(), "row");
    let mut bytes = vec![0u8; dim * dtype.size()];
    let mut vector = vec![0f32; dim];
    for (i, (_, key)) in keys.into_iter().enumerate() {
        r.read_exact(&mut bytes)
            .map_err(|e| FeatureError::io(path, format!("row {}: {e}", i + 1)))?;
        match dtype {
            Dtype::F32 => {
                for (x, c) in vector.iter_mut().zip(bytes.chunks_exact(4)) {
                    *x = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
                }
            }
            Dtype::F64 => {
                for (k, c) in bytes.chunks_exact(8).enumerate() {
                    let mut a = [0u8; 8];
                    a.copy_from_slice(c);
                    let v = f64::from_le_bytes(a);
                    if v.is_finite() && v.abs() > f64::from(f32::MAX) {
                        return Err(FeatureError::NonFinite {
                            path: path.to_path_buf(),
                            unit: "row",
                            row: i + 1,
                            component: k,
                            value: v,
                        });
                    }
                    vector[k] = v as f32;
                }
            }
        }
        b.push(i + 1, key, &vector)?;
    }
    b.finish()
}

/// Reads the magic, version and header; returns the dtype, shape and total header length.
fn read_header(
    path: &Path,
    r: &mut impl Read,
) -> Result<(Dtype, usize, usize, usize), FeatureError> {
    let bad = |message: String| FeatureError::Unsupported {
        path: path.to_path_buf(),
        message,
    };
    let mut pre = [0u8; 8];
    r.read_exact(&mut pre)
        .map_err(|_| bad("not an .npy file (shorter than its magic string)".into()))?;
    if &pre[..6] != MAGIC {
        return Err(bad("not an .npy file (no \\x93NUMPY magic string)".into()));
    }
    let (len, prefix) = match pre[6] {
        1 => {
            let mut l = [0u8; 2];
            r.read_exact(&mut l)
                .map_err(|e| FeatureError::io(path, e))?;
            (usize::from(u16::from_le_bytes(l)), 10)
        }
        2 | 3 => {
            let mut l = [0u8; 4];
            r.read_exact(&mut l)
                .map_err(|e| FeatureError::io(path, e))?;
            (u32::from_le_bytes(l) as usize, 12)
        }
        v => {
            return Err(bad(format!(
                ".npy format version {v} is not supported (1 to 3 are)"
            )))
        }
    };
    if len > 1 << 20 {
        return Err(bad(format!("an .npy header of {len} bytes is implausible")));
    }
    let mut header = vec![0u8; len];
    r.read_exact(&mut header)
        .map_err(|e| FeatureError::io(path, format!("reading the .npy header: {e}")))?;
    let header = String::from_utf8_lossy(&header);
    let value = |name: &str| -> Result<&str, FeatureError> {
        header_value(&header, name).ok_or_else(|| {
            bad(format!(
                "the .npy header has no '{name}': {}",
                header.trim()
            ))
        })
    };
    let descr = value("descr")?;
    let descr = descr
        .strip_prefix(['\'', '"'])
        .and_then(|d| d.split(['\'', '"']).next())
        .ok_or_else(|| {
            bad(format!(
                "unreadable 'descr' in the .npy header: {}",
                header.trim()
            ))
        })?;
    let dtype = match descr {
        "<f4" => Dtype::F32,
        "<f8" => Dtype::F64,
        d => {
            return Err(bad(format!(
                "dtype '{d}' is not supported: expected little-endian float32 ('<f4') or float64 ('<f8')"
            )))
        }
    };
    if value("fortran_order")?.starts_with("True") {
        return Err(bad(
            "Fortran-order arrays are not supported: save a C-order array (numpy.ascontiguousarray)"
                .into(),
        ));
    }
    let shape = value("shape")?;
    let inner = shape
        .strip_prefix('(')
        .and_then(|s| s.split(')').next())
        .ok_or_else(|| {
            bad(format!(
                "unreadable 'shape' in the .npy header: {}",
                header.trim()
            ))
        })?;
    let dims: Vec<usize> = inner
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.trim_end_matches('L').parse::<usize>())
        .collect::<Result<_, _>>()
        .map_err(|_| bad(format!("unreadable 'shape' ({inner}) in the .npy header")))?;
    let [rows, dim] = dims[..] else {
        return Err(bad(format!(
            "shape ({inner}) is not supported: expected a 2-D array (rows, dim)"
        )));
    };
    Ok((dtype, rows, dim, prefix + len))
}

/// The text after `'name':` in a Python dict literal, leading spaces removed.
fn header_value<'a>(header: &'a str, name: &str) -> Option<&'a str> {
    ["'", "\""].iter().find_map(|q| {
        let pat = format!("{q}{name}{q}");
        let at = header.find(&pat)? + pat.len();
        let rest = header[at..].trim_start().strip_prefix(':')?;
        Some(rest.trim_start())
    })
}

/// Writes the table as a float32 `.npy` (format 1.0) and its ids file, each atomically (the
/// ids file first).
pub fn write(t: &FeatureTable, path: &Path) -> Result<(), FeatureError> {
    let ids = ids_path(path);
    vrf_format::fsutil::write_atomic_with(&ids, |w| {
        for key in t.keys() {
            serde_json::to_writer(&mut *w, &KeyFields::from(key))?;
            w.write_all(b"\n")?;
        }
        Ok(())
    })
    .map_err(|e| FeatureError::io(&ids, e))?;
    let mut header = format!(
        "{{'descr': '<f4', 'fortran_order': False, 'shape': ({}, {}), }}",
        t.len(),
        t.dim()
    );
    // Padded so the data starts on a 64-byte boundary, as NumPy writes it.
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let len = u16::try_from(header.len()).map_err(|e| FeatureError::io(path, e))?;
    vrf_format::fsutil::write_atomic_with(path, |w| {
        w.write_all(MAGIC)?;
        w.write_all(&[1, 0])?;
        w.write_all(&len.to_le_bytes())?;
        w.write_all(header.as_bytes())?;
        for x in t.values() {
            w.write_all(&x.to_le_bytes())?;
        }
        Ok(())
    })
    .map_err(|e| FeatureError::io(path, e))
}
