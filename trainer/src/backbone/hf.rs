//! Loading a Hugging Face Qwen3 directory (single or sharded safetensors) into a var map.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use candle_core::{DType, Device};

use super::{read_json, BackboneError, Qwen3Config, Result};
use crate::vars::SeededVarMap;

/// Reads a Hugging Face Qwen3 directory (`config.json` plus `model.safetensors` or a sharded
/// `model.safetensors.index.json`) and inserts every backbone tensor, converted to f32, into
/// `vars` under its HF name. `lm_head.weight` and other non-backbone tensors are ignored.
pub fn load_hf_dir(
    dir: impl AsRef<Path>,
    vars: &SeededVarMap,
    device: &Device,
) -> Result<Qwen3Config> {
    let dir = dir.as_ref();
    let cfg = Qwen3Config::from_file(dir.join("config.json"))?;
    let expected = cfg.tensor_shapes();

    // Which file holds each expected tensor.
    let single = dir.join("model.safetensors");
    let index = dir.join("model.safetensors.index.json");
    let mut by_file: BTreeMap<PathBuf, Vec<(String, Vec<usize>)>> = BTreeMap::new();
    if single.is_file() {
        by_file.insert(single, expected);
    } else if index.is_file() {
        let json: serde_json::Value = read_json(&index)?;
        let map = json
            .get("weight_map")
            .and_then(|m| m.as_object())
            .ok_or_else(|| BackboneError::Safetensors {
                file: index.clone(),
                context: "no weight_map object".into(),
                cause: Box::new(candle_core::Error::Msg("malformed index".into())),
            })?;
        let weight_map: HashMap<&str, &str> = map
            .iter()
            .filter_map(|(k, v)| Some((k.as_str(), v.as_str()?)))
            .collect();
        for (name, shape) in expected {
            let Some(file) = weight_map.get(name.as_str()) else {
                return Err(BackboneError::MissingTensor { name, file: index });
            };
            if Path::new(file).components().count() != 1 {
                return Err(BackboneError::Safetensors {
                    file: index,
                    context: format!("shard name {file:?} for {name}"),
                    cause: Box::new(candle_core::Error::Msg(
                        "shard must be a plain file name in the directory".into(),
                    )),
                });
            }
            by_file
                .entry(dir.join(file))
                .or_default()
                .push((name, shape));
        }
    } else {
        return Err(BackboneError::NoWeights { dir: dir.into() });
    }

    for (file, tensors) in by_file {
        let bytes = std::fs::read(&file).map_err(|source| BackboneError::Io {
            path: file.clone(),
            cause: source,
        })?;
        let st = candle_core::safetensors::BufferedSafetensors::new(bytes).map_err(|source| {
            BackboneError::Safetensors {
                file: file.clone(),
                context: "cannot parse safetensors".into(),
                cause: Box::new(source),
            }
        })?;
        for (name, shape) in tensors {
            let view = st.get(&name).map_err(|_| BackboneError::MissingTensor {
                name: name.clone(),
                file: file.clone(),
            })?;
            if view.shape() != shape.as_slice() {
                return Err(BackboneError::ShapeMismatch {
                    name,
                    file,
                    expected: shape,
                    got: view.shape().to_vec(),
                });
            }
            let dtype_name = format!("{:?}", view.dtype());
            let t = candle_core::safetensors::Load::load(&view, device).map_err(|_| {
                BackboneError::UnsupportedDtype {
                    name: name.clone(),
                    file: file.clone(),
                    dtype: dtype_name.clone(),
                }
            })?;
            if !matches!(
                t.dtype(),
                DType::F32 | DType::F16 | DType::BF16 | DType::F64
            ) {
                return Err(BackboneError::UnsupportedDtype {
                    name,
                    file,
                    dtype: dtype_name,
                });
            }
            let t = t.to_dtype(DType::F32)?;
            vars.insert(&name, t)
                .map_err(|source| BackboneError::Safetensors {
                    file: file.clone(),
                    context: format!("inserting {name}"),
                    cause: Box::new(source),
                })?;
        }
    }
    Ok(cfg)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backbone::test_ids as ids;
    use crate::backbone::Qwen3;
    use candle_core::Tensor;

    /// Writes a checkpoint of a seeded tiny model (all tensors but `skip`) in `dtype`.
    fn write_checkpoint(
        dir: &Path,
        cfg: &Qwen3Config,
        dtype: DType,
        skip: Option<&str>,
    ) -> anyhow::Result<SeededVarMap> {
        let vars = SeededVarMap::new(5);
        Qwen3::new(cfg, vars.builder(&Device::Cpu))?;
        let mut tensors: HashMap<String, Tensor> = HashMap::new();
        for (name, v) in vars.all_named() {
            if Some(name.as_str()) != skip {
                tensors.insert(name, v.as_tensor().to_dtype(dtype)?);
            }
        }
        tensors.insert(
            "lm_head.weight".into(),
            Tensor::zeros((cfg.vocab_size, cfg.hidden_size), dtype, &Device::Cpu)?,
        );
        candle_core::safetensors::save(&tensors, dir.join("model.safetensors"))?;
        std::fs::write(dir.join("config.json"), serde_json::to_string(cfg)?)?;
        Ok(vars)
    }

    #[test]
    fn load_round_trip_bf16_and_missing_tensor_error() -> anyhow::Result<()> {
        let dev = Device::Cpu;
        let cfg = Qwen3Config::tiny(20);
        let x = ids(2, 5, 20, 3)?;

        let dir = tempfile::tempdir()?;
        let src = write_checkpoint(dir.path(), &cfg, DType::BF16, None)?;
        let loaded = SeededVarMap::new(99);
        let model = Qwen3::from_hf_dir(dir.path(), &loaded, &dev)?;
        assert_eq!(model.config(), &cfg);
        assert_eq!(
            loaded.all_named().len(),
            cfg.tensor_shapes().len(),
            "lm_head must be ignored"
        );
        let want = Qwen3::new(&cfg, src.builder(&dev))?.forward(&x)?;
        let diff = (model.forward(&x)? - want)?
            .abs()?
            .max_all()?
            .to_scalar::<f32>()?;
        assert!(diff < 0.05, "bf16 round trip differs by {diff}");

        let dir = tempfile::tempdir()?;
        write_checkpoint(
            dir.path(),
            &cfg,
            DType::F32,
            Some("model.layers.1.self_attn.k_norm.weight"),
        )?;
        let err = load_hf_dir(dir.path(), &SeededVarMap::new(0), &dev)
            .expect_err("missing tensor")
            .to_string();
        assert!(
            err.contains("model.layers.1.self_attn.k_norm.weight")
                && err.contains("model.safetensors"),
            "{err}"
        );

        let dir = tempfile::tempdir()?;
        let mut other = cfg.clone();
        other.intermediate_size = 96;
        write_checkpoint(dir.path(), &other, DType::F32, None)?;
        std::fs::write(dir.path().join("config.json"), serde_json::to_string(&cfg)?)?;
        let err = load_hf_dir(dir.path(), &SeededVarMap::new(0), &dev)
            .expect_err("wrong shape")
            .to_string();
        assert!(
            err.contains("model.layers.0.mlp.gate_proj.weight") && err.contains("[96, 64]"),
            "{err}"
        );

        // An integer tensor is rejected with its name, file and dtype.
        let dir = tempfile::tempdir()?;
        write_checkpoint(dir.path(), &cfg, DType::F32, None)?;
        let path = dir.path().join("model.safetensors");
        let mut tensors = candle_core::safetensors::load(&path, &dev)?;
        tensors.insert(
            "model.norm.weight".into(),
            Tensor::zeros(cfg.hidden_size, DType::U32, &dev)?,
        );
        candle_core::safetensors::save(&tensors, &path)?;
        let err = load_hf_dir(dir.path(), &SeededVarMap::new(0), &dev)
            .expect_err("integer dtype")
            .to_string();
        assert!(
            err.contains("model.norm.weight")
                && err.contains("model.safetensors")
                && err.contains("U32"),
            "{err}"
        );

        let dir = tempfile::tempdir()?;
        let err = load_hf_dir(dir.path(), &SeededVarMap::new(0), &dev)
            .expect_err("no config")
            .to_string();
        assert!(err.contains("config.json"), "{err}");
        std::fs::write(dir.path().join("config.json"), serde_json::to_string(&cfg)?)?;
        let err = load_hf_dir(dir.path(), &SeededVarMap::new(0), &dev)
            .expect_err("no weights")
            .to_string();
        assert!(err.contains("model.safetensors"), "{err}");
        Ok(())
    }
}
