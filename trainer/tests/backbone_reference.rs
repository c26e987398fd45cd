//! The backbone against Hugging Face `transformers`' Qwen3 (fixture made by
//! `models/fixtures/make_qwen3_fixture.py`: bf16, sharded checkpoint + f32 reference outputs).

use std::path::PathBuf;

use candle_core::{Device, Tensor};
use serde::Deserialize;
use vrf_trainer::backbone::{load_hf_dir, Qwen3};
use vrf_trainer::vars::SeededVarMap;

#[derive(Deserialize)]
struct Reference {
    input_ids: Vec<Vec<u32>>,
    lengths: Vec<usize>,
    /// Per sequence, the final-norm hidden state of each real position.
    hidden: Vec<Vec<Vec<f32>>>,
    pooled: Vec<Vec<f32>>,
}

const TOL: f32 = 1e-4;

fn fixture_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models/fixtures/tiny-qwen3")
}

fn max_abs(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

fn load() -> anyhow::Result<(Qwen3, Reference)> {
    let dir = fixture_dir();
    let reference: Reference =
        serde_json::from_str(&std::fs::read_to_string(dir.join("reference.json"))?)?;
    let dev = Device::Cpu;
    let vars = SeededVarMap::new(0);
    let cfg = load_hf_dir(&dir, &vars, &dev)?;
    assert_eq!(
        (cfg.hidden_size, cfg.head_dim, cfg.num_key_value_heads),
        (32, 16, 2)
    );
    assert_eq!(cfg.rope_theta, 1e6, "rope_theta from rope_parameters");
    assert_eq!(
        vars.all_named().len(),
        cfg.tensor_shapes().len(),
        "lm_head.weight must be ignored"
    );
    let model = Qwen3::new(&cfg, vars.builder(&dev))?;
    Ok((model, reference))
}

#[test]
fn matches_transformers_hidden_states_and_pooling() -> anyhow::Result<()> {
    let (model, r) = load()?;
    let (b, l) = (r.input_ids.len(), r.input_ids[0].len());
    let ids = Tensor::from_vec(r.input_ids.concat(), (b, l), &Device::Cpu)?;

    let hidden = model.forward(&ids)?.to_vec3::<f32>()?;
    let mut err_hidden = 0f32;
    for (i, &n) in r.lengths.iter().enumerate() {
        assert_eq!(r.hidden[i].len(), n);
        for (got, want) in hidden[i][..n].iter().zip(&r.hidden[i]) {
            err_hidden = err_hidden.max(max_abs(got, want));
        }
    }
    let pooled = model.pooled(&ids, &r.lengths)?.to_vec2::<f32>()?;
    let err_pooled = (0..b)
        .map(|i| max_abs(&pooled[i], &r.pooled[i]))
        .fold(0.0, f32::max);
    let scale = r
        .pooled
        .iter()
        .flatten()
        .map(|x| x.abs())
        .fold(0.0, f32::max);
    println!(
        "max |hidden - transformers| = {err_hidden:.3e}, max |pooled - transformers| = {err_pooled:.3e} \
         (max |value| {scale:.2})"
    );
    assert!(
        err_hidden <= TOL,
        "hidden states differ from transformers by {err_hidden}"
    );
    assert!(
        err_pooled <= TOL,
        "pooled vectors differ from transformers by {err_pooled}"
    );
    Ok(())
}

#[test]
fn mixed_length_batch_pools_like_each_sequence_alone() -> anyhow::Result<()> {
    let (model, r) = load()?;
    let (b, l) = (r.input_ids.len(), r.input_ids[0].len());
    let ids = Tensor::from_vec(r.input_ids.concat(), (b, l), &Device::Cpu)?;
    let batch = model.pooled(&ids, &r.lengths)?.to_vec2::<f32>()?;
    let mut worst = 0f32;
    for (i, &n) in r.lengths.iter().enumerate() {
        let alone = Tensor::from_vec(r.input_ids[i][..n].to_vec(), (1, n), &Device::Cpu)?;
        let alone = model.pooled(&alone, &[n])?.to_vec2::<f32>()?;
        worst = worst.max(max_abs(&batch[i], &alone[0]));
        // Extra right padding never changes the pooled vector either.
        let padded: Vec<u32> = r.input_ids[i][..n]
            .iter()
            .copied()
            .chain(std::iter::repeat_n(0, 7))
            .collect();
        let padded = Tensor::from_vec(padded, (1, n + 7), &Device::Cpu)?;
        worst = worst.max(max_abs(
            &batch[i],
            &model.pooled(&padded, &[n])?.to_vec2::<f32>()?[0],
        ));
    }
    println!("max |batched - alone| = {worst:.3e}");
    assert!(
        worst <= 1e-5,
        "batched pooling differs from single-sequence pooling by {worst}"
    );
    Ok(())
}
