//! Safetensors files read and written one tensor at a time, so a multi-GB checkpoint costs its
//! size once in memory (the tensors), not twice (the tensors plus the whole file's bytes).

use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use candle_core::safetensors::Load;
use candle_core::{Device, Tensor};
use safetensors::tensor::TensorView;
use safetensors::{Dtype, View};
use serde_json::{json, Map, Value};

use super::CheckpointError;

/// Largest header accepted (the format's own limit is 100 MB).
const MAX_HEADER: u64 = 100 << 20;

fn format_err(path: &Path, reason: String) -> CheckpointError {
    CheckpointError::Format {
        path: path.to_path_buf(),
        reason,
    }
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> CheckpointError + '_ {
    move |cause| CheckpointError::Io {
        path: path.to_path_buf(),
        cause,
    }
}

/// Writes `tensors` (sorted by name) as a safetensors file at `path`, atomically, holding at
/// most one tensor's bytes at a time.
pub fn save(path: &Path, tensors: &HashMap<String, Tensor>) -> Result<(), CheckpointError> {
    let mut names: Vec<&String> = tensors.keys().collect();
    names.sort();
    let mut header = Map::new();
    let mut offset = 0usize;
    for name in &names {
        let t = &tensors[*name];
        let len = View::data_len(t);
        header.insert(
            (*name).clone(),
            json!({"dtype": View::dtype(t), "shape": t.dims(), "data_offsets": [offset, offset + len]}),
        );
        offset += len;
    }
    let mut header = serde_json::to_vec(&Value::Object(header))
        .map_err(|e| format_err(path, format!("serialising the header: {e}")))?;
    // The format pads the header with spaces so the data starts 8-byte aligned.
    header.resize(header.len().div_ceil(8) * 8, b' ');
    if let Some(dir) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
    }
    vrf_format::fsutil::write_atomic_with(path, |w| {
        w.write_all(&(header.len() as u64).to_le_bytes())?;
        w.write_all(&header)?;
        for name in &names {
            // `View::data` copies one tensor to host bytes (the only per-tensor copy).
            match View::data(&tensors[*name]) {
                std::borrow::Cow::Borrowed(b) => w.write_all(b)?,
                std::borrow::Cow::Owned(b) => w.write_all(&b)?,
            }
        }
        Ok(())
    })
    .map_err(io_err(path))
}

/// One tensor's entry in a safetensors header.
struct Entry {
    name: String,
    dtype: Dtype,
    shape: Vec<usize>,
    begin: u64,
    end: u64,
}

/// Parses and checks the header of the safetensors file `path` (`file_len` bytes); returns the
/// entries and where the data starts.
fn read_header(
    path: &Path,
    f: &mut File,
    file_len: u64,
) -> Result<(Vec<Entry>, u64), CheckpointError> {
    let mut n = [0u8; 8];
    f.read_exact(&mut n).map_err(|e| {
        format_err(
            path,
            format!("not a safetensors file (no header length): {e}"),
        )
    })?;
    let n = u64::from_le_bytes(n);
    if n > MAX_HEADER || 8 + n > file_len {
        return Err(format_err(
            path,
            format!("not a safetensors file: header length {n} for a {file_len}-byte file"),
        ));
    }
    let mut header = vec![0u8; n as usize];
    f.read_exact(&mut header).map_err(io_err(path))?;
    let header: Map<String, Value> = serde_json::from_slice(&header).map_err(|e| {
        format_err(
            path,
            format!("safetensors header is not a JSON object: {e}"),
        )
    })?;
    let data_start = 8 + n;
    let mut entries = Vec::new();
    for (name, v) in header {
        if name == "__metadata__" {
            continue;
        }
        let bad = |what: &str| format_err(path, format!("tensor `{name}`: {what}"));
        let dtype: Dtype = serde_json::from_value(v["dtype"].clone())
            .map_err(|e| bad(&format!("field `dtype`: {e}")))?;
        let shape: Vec<usize> = serde_json::from_value(v["shape"].clone())
            .map_err(|e| bad(&format!("field `shape`: {e}")))?;
        let [begin, end]: [u64; 2] = serde_json::from_value(v["data_offsets"].clone())
            .map_err(|e| bad(&format!("field `data_offsets`: {e}")))?;
        let want = shape
            .iter()
            .try_fold(dtype.bitsize() as u64, |a, &d| a.checked_mul(d as u64))
            .map(|bits| bits.div_ceil(8));
        if end < begin || Some(end - begin) != want {
            return Err(bad(&format!(
                "data_offsets [{begin}, {end}] do not hold a {dtype:?} tensor of shape {shape:?}"
            )));
        }
        // Checked: offsets come from the file, and a wrapped sum would pass this test.
        match data_start.checked_add(end) {
            Some(stop) if stop <= file_len => {}
            stop => {
                return Err(bad(&format!(
                    "data ends at byte {} but the file has {file_len} (truncated?)",
                    stop.map_or_else(|| "beyond 2^64".to_string(), |s| s.to_string())
                )))
            }
        }
        entries.push(Entry {
            name,
            dtype,
            shape,
            begin,
            end,
        });
    }
    entries.sort_by_key(|e| e.begin);
    Ok((entries, data_start))
}

/// Loads every tensor of the safetensors file `path` onto `device`, reading one tensor's bytes
/// at a time (no whole-file buffer, no memory map that would count every page as resident).
pub fn load(path: &Path, device: &Device) -> Result<HashMap<String, Tensor>, CheckpointError> {
    let mut out = HashMap::new();
    load_each(path, device, |name, t| {
        out.insert(name, t);
        Ok(())
    })?;
    Ok(out)
}

/// Hands each tensor of `path` to `f` as soon as it is read, so a caller that copies it into a
/// variable and drops it holds one tensor beyond its own copy, never the whole file.
pub fn load_each(
    path: &Path,
    device: &Device,
    mut f: impl FnMut(String, Tensor) -> candle_core::Result<()>,
) -> Result<(), CheckpointError> {
    let mut file = File::open(path).map_err(io_err(path))?;
    let file_len = file.metadata().map_err(io_err(path))?.len();
    let (entries, data_start) = read_header(path, &mut file, file_len)?;
    for e in entries {
        // A fresh buffer per tensor: a reused one would keep the largest tensor's size alive.
        let mut buf = vec![0u8; (e.end - e.begin) as usize];
        file.seek(SeekFrom::Start(data_start + e.begin))
            .and_then(|_| file.read_exact(&mut buf))
            .map_err(io_err(path))?;
        let view = TensorView::new(e.dtype, e.shape, &buf)
            .map_err(|err| format_err(path, format!("tensor `{}`: {err}", e.name)))?;
        let tensor_err = |cause| CheckpointError::Tensor {
            path: path.to_path_buf(),
            cause,
        };
        let t = view.load(device).map_err(tensor_err)?;
        drop(buf);
        f(e.name, t).map_err(tensor_err)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::DType;

    #[test]
    fn round_trip_matches_the_safetensors_crate() {
        let d = tempfile::tempdir().unwrap();
        let dev = Device::Cpu;
        let a = Tensor::arange(0f32, 12., &dev)
            .unwrap()
            .reshape((3, 4))
            .unwrap();
        let b = a.to_dtype(DType::BF16).unwrap().t().unwrap();
        let c = Tensor::new(&[7i64, -2], &dev).unwrap();
        let tensors = HashMap::from([
            ("a".to_string(), a.clone()),
            ("b.t".to_string(), b.clone()),
            ("c".to_string(), c.clone()),
        ]);
        let p = d.path().join("x.safetensors");
        save(&p, &tensors).unwrap();
        // The crate (and candle's whole-file loader) reads what we wrote.
        let theirs = candle_core::safetensors::load(&p, &dev).unwrap();
        let ours = load(&p, &dev).unwrap();
        for got in [&theirs, &ours] {
            assert_eq!(got.len(), 3);
            assert_eq!(
                got["a"].to_vec2::<f32>().unwrap(),
                a.to_vec2::<f32>().unwrap()
            );
            assert_eq!(got["b.t"].dims(), &[4, 3]);
            assert_eq!(
                got["b.t"]
                    .to_dtype(DType::F32)
                    .unwrap()
                    .to_vec2::<f32>()
                    .unwrap(),
                b.to_dtype(DType::F32).unwrap().to_vec2::<f32>().unwrap()
            );
            assert_eq!(got["c"].to_vec1::<i64>().unwrap(), vec![7, -2]);
        }
        // We read what the crate wrote.
        let q = d.path().join("y.safetensors");
        candle_core::safetensors::save(&tensors, &q).unwrap();
        assert_eq!(
            load(&q, &dev).unwrap()["c"].to_vec1::<i64>().unwrap(),
            vec![7, -2]
        );
    }

    #[test]
    fn truncated_and_foreign_files_are_named_errors() {
        let d = tempfile::tempdir().unwrap();
        let dev = Device::Cpu;
        let p = d.path().join("x.safetensors");
        let t = Tensor::zeros((64, 64), DType::F32, &dev).unwrap();
        save(&p, &HashMap::from([("w".to_string(), t)])).unwrap();
        let bytes = std::fs::read(&p).unwrap();
        std::fs::write(&p, &bytes[..bytes.len() - 10]).unwrap();
        let e = load(&p, &dev).unwrap_err().to_string();
        assert!(
            e.contains("x.safetensors") && e.contains("tensor `w`") && e.contains("truncated"),
            "{e}"
        );
        // Offsets near 2^64 are refused, not wrapped around.
        let header = br#"{"w":{"dtype":"F32","shape":[1],"data_offsets":[18446744073709551608,18446744073709551612]}}"#;
        let mut forged = (header.len() as u64).to_le_bytes().to_vec();
        forged.extend_from_slice(header);
        forged.extend_from_slice(&[0u8; 8]);
        std::fs::write(&p, &forged).unwrap();
        let e = load(&p, &dev).unwrap_err().to_string();
        assert!(e.contains("tensor `w`") && e.contains("beyond 2^64"), "{e}");
        std::fs::write(&p, b"not a tensor file at all").unwrap();
        let e = load(&p, &dev).unwrap_err().to_string();
        assert!(e.contains("not a safetensors file"), "{e}");
    }
}
