//! `vrf-trainer features`: the table of a fitted run's backbone holds exactly the states the
//! heads read, a VRF fit runs on it, an interrupted computation resumes to the identical file,
//! and a Hugging Face directory of the same backbone gives the same vectors.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use vrf_data::{Dataset, FeatureKey, FeatureTable};
use vrf_trainer::config::{BackboneSource, RunConfig};
use vrf_trainer::corpus::{Corpus, TextSource};
use vrf_trainer::export::load_trained;
use vrf_trainer::features::{
    compute_features, partial_path, table_texts, BackboneFrom, FeaturesOptions,
};
use vrf_trainer::model::prefix;
use vrf_trainer::run::{fit_run, FitOptions};
use vrf_trainer::train::FitOutcome;

mod common;
use common::tiny_data;

fn cfg() -> RunConfig {
    let mut c = RunConfig::spec_literal();
    c.model.k = 2;
    c.model.d = 3;
    c.train.epochs = 1;
    c.train.max_len = 24;
    c.train.prompts_per_step = 4;
    c.train.users_per_step = 3;
    c.train.targets_per_user = 4;
    c.train.checkpoint_every = 0;
    c.train.s2_epochs = 1;
    c.train.s2_users_per_step = 2;
    c
}

fn fit(dir: &Path, c: &RunConfig, data: &Path) {
    let opts = FitOptions::new(false, false);
    match fit_run(dir, c, data, &Device::Cpu, &opts).unwrap() {
        FitOutcome::Finished(_) => {}
        FitOutcome::Stopped(s) => panic!("unexpected stop: {s}"),
    }
}

fn opts(batch: usize, stop_after: Option<usize>) -> FeaturesOptions {
    FeaturesOptions {
        batch,
        prompts: true,
        progress: false,
        stop_after,
    }
}

fn key(p: &str, r: &str) -> FeatureKey {
    FeatureKey::Pair {
        prompt: p.into(),
        response: r.into(),
    }
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// A Hugging Face directory of run `run`'s backbone: its config, tokenizer and backbone weights.
fn hf_dir_of(run: &Path, dir: &Path) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::copy(run.join("backbone_config.json"), dir.join("config.json")).unwrap();
    std::fs::copy(run.join("tokenizer.json"), dir.join("tokenizer.json")).unwrap();
    let t = load_trained(run, &Device::Cpu).unwrap();
    let tensors: HashMap<String, Tensor> = t
        .model
        .vars
        .all_named()
        .into_iter()
        .filter(|(n, _)| n.starts_with(prefix::BACKBONE))
        .map(|(n, v)| (n, v.as_tensor().clone()))
        .collect();
    assert!(!tensors.is_empty());
    candle_core::safetensors::save(&tensors, dir.join("model.safetensors")).unwrap();
    dir.to_path_buf()
}

#[test]
fn table_is_the_heads_input_fits_and_resumes_identically() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tiny_data(tmp.path(), true, false);
    let run = tmp.path().join("run");
    fit(&run, &cfg(), &data);
    let dev = Device::Cpu;

    // The table of the run's backbone against Corpus::embed on the run's own corpus.
    let out = tmp.path().join("feats.jsonl");
    let from = BackboneFrom::Run(run.clone());
    let r = compute_features(&data, &from, &out, &opts(3, None), &dev).unwrap();
    assert!(r.finished && r.resumed == 0);
    let table = FeatureTable::read(&out).unwrap();
    let ds = Dataset::load(&data).unwrap();
    let t = load_trained(&run, &dev).unwrap();
    let source = TextSource::Tokens(Box::new(t.encoder.clone().unwrap()));
    let corpus = Corpus::build(&ds, &source).unwrap();
    let all: Vec<usize> = (0..corpus.len()).collect();
    let want = corpus.embed(&t.model, &all, 5).unwrap();
    let want: Vec<Vec<f32>> = want.to_vec2().unwrap();
    let hidden = t.model.hidden_size();
    assert_eq!(table.dim(), hidden);
    for (i, (p, resp)) in corpus.index.texts.iter().enumerate() {
        let got = table.get(&key(p, resp)).expect("a row per text");
        let err = max_abs_diff(got, &want[i]);
        assert!(err <= 1e-6, "text {i}: max abs difference {err}");
    }
    // One (prompt, "") row per prompt, equal to the prompt's own embedding.
    let prompts: Vec<(String, String)> = table_texts(&ds, true).0[corpus.len()..].to_vec();
    assert_eq!(r.prompt_rows, prompts.len());
    assert_eq!(table.len(), corpus.len() + prompts.len());
    assert!(!prompts.is_empty() && prompts.iter().all(|(_, r)| r.is_empty()));
    let pc = Corpus::from_texts(prompts.clone(), &source).unwrap();
    let pw: Vec<Vec<f32>> = pc
        .embed(&t.model, &(0..pc.len()).collect::<Vec<_>>(), 4)
        .unwrap()
        .to_vec2()
        .unwrap();
    for ((p, _), w) in prompts.iter().zip(&pw) {
        let err = max_abs_diff(table.get(&key(p, "")).unwrap(), w);
        assert!(err <= 1e-6, "prompt {p:?}: {err}");
    }

    // A VRF fit on the table.
    let mut fc = cfg();
    fc.backbone = BackboneSource::Features {
        path: out.to_string_lossy().into_owned(),
    };
    fit(&tmp.path().join("on-features"), &fc, &data);
    // A run fitted on features has no backbone to compute features with.
    let e = compute_features(
        &data,
        &BackboneFrom::Run(tmp.path().join("on-features")),
        &tmp.path().join("x.jsonl"),
        &opts(3, None),
        &dev,
    )
    .unwrap_err();
    assert!(e.to_string().contains("external features"), "{e}");

    // Uninterrupted vs interrupted (after the first block, then a torn line) and resumed.
    let whole = tmp.path().join("whole.jsonl");
    compute_features(&data, &from, &whole, &opts(1, None), &dev).unwrap();
    let cut = tmp.path().join("cut.jsonl");
    let r = compute_features(&data, &from, &cut, &opts(1, Some(1)), &dev).unwrap();
    assert!(!r.finished && r.written < r.rows, "{r:?}");
    assert!(!cut.exists());
    let partial = partial_path(&cut);
    let written = std::fs::read_to_string(&partial).unwrap();
    assert_eq!(written.lines().count(), r.written);
    // Interrupted in the middle of the first block's writes, a row cut short.
    let kept: String = written.lines().take(20).map(|l| format!("{l}\n")).collect();
    let torn = format!("{kept}{{\"prompt\": \"What helps");
    std::fs::write(&partial, torn).unwrap();
    // Other arguments are refused rather than mixed in.
    let e = compute_features(&data, &from, &cut, &opts(2, None), &dev).unwrap_err();
    assert!(e.to_string().contains("batch was"), "{e}");
    let r2 = compute_features(&data, &from, &cut, &opts(1, None), &dev).unwrap();
    assert!(r2.finished);
    assert_eq!(r2.resumed, 20);
    assert_eq!(std::fs::read(&cut).unwrap(), std::fs::read(&whole).unwrap());
    assert!(!partial.exists());
    // The partial is checked row by row: a row of another text is an error naming its line.
    let r = compute_features(
        &data,
        &from,
        &cut.with_extension("x.jsonl"),
        &opts(1, Some(1)),
        &dev,
    )
    .unwrap();
    let partial = partial_path(&cut.with_extension("x.jsonl"));
    let text = std::fs::read_to_string(&partial).unwrap();
    let swapped = text.replacen("What helps", "What hurts", 1);
    std::fs::write(&partial, swapped).unwrap();
    let e = compute_features(
        &data,
        &from,
        &cut.with_extension("x.jsonl"),
        &opts(1, None),
        &dev,
    )
    .unwrap_err();
    assert!(e.to_string().contains("line 1"), "{e}");
    assert!(r.written > 0);

    // The same backbone as a Hugging Face directory gives the same vectors; parquet output.
    let hf = hf_dir_of(&run, &tmp.path().join("hf"));
    let pq = tmp.path().join("hf.parquet");
    let from_hf = BackboneFrom::Hf {
        dir: hf,
        max_len: cfg().train.max_len,
    };
    compute_features(&data, &from_hf, &pq, &opts(4, None), &dev).unwrap();
    let t2 = FeatureTable::read(&pq).unwrap();
    assert_eq!(t2.len(), table.len());
    for (i, k) in table.keys().iter().enumerate() {
        let err = max_abs_diff(t2.get(k).unwrap(), table.row(i));
        assert!(err <= 1e-6, "row {i}: {err}");
    }
}
