//! The dataset converters on fixtures written here in each published layout (PersonalLLM as
//! parquet and as JSON lines, TL;DR comparisons, PRISM conversations): protocol, statistics,
//! determinism, bad input, and a tiny fit of each output.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use candle_core::Device;
use parquet::data_type::{ByteArray, ByteArrayType, DoubleType, Int64Type};
use parquet::file::properties::WriterProperties;
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::parser::parse_message_type;
use serde_json::{json, Map, Value};
use vrf_data::convert::personal_llm::{self, PersonalLlmOptions, RESPONSES, REWARD_MODELS};
use vrf_data::convert::prism::{self, PrismOptions};
use vrf_data::convert::tldr::{self, TldrOptions};
use vrf_data::convert::{output, ConvertError};
use vrf_data::{Dataset, Split, Triplet};
use vrf_trainer::config::RunConfig;
use vrf_trainer::run::{fit_run, FitOptions};
use vrf_trainer::train::FitOutcome;

// ---------------------------------------------------------------- PersonalLLM fixtures

/// A deterministic score in [-2, 2] for (prompt, response, reward model).
fn score(p: usize, k: usize, m: usize) -> f64 {
    2.0 * ((p * 31 + k * 17 + m * 7) as f64 * 0.73).sin()
}

/// One PersonalLLM row as published: prompt, eight responses with their model and ten scores.
fn pllm_row(p: usize, split: &str) -> Map<String, Value> {
    let mut r = Map::new();
    r.insert("prompt_id".into(), json!(p as i64));
    r.insert("subset".into(), json!("fixture"));
    r.insert(
        "prompt".into(),
        json!(format!("{split} question number {p}?")),
    );
    for k in 1..=RESPONSES {
        r.insert(
            format!("response_{k}"),
            json!(format!("{split} answer {k} to question {p}")),
        );
        r.insert(format!("response_{k}_model"), json!(format!("model-{k}")));
        for (m, rm) in REWARD_MODELS.iter().enumerate() {
            r.insert(format!("response_{k}_{rm}"), json!(score(p, k, m)));
        }
    }
    r
}

fn pllm_rows(n: usize, split: &str) -> Vec<Map<String, Value>> {
    (0..n).map(|p| pllm_row(p, split)).collect()
}

fn write_json_lines(path: &Path, rows: &[Map<String, Value>]) {
    let text: String = rows
        .iter()
        .map(|r| serde_json::to_string(r).unwrap() + "\n")
        .collect();
    std::fs::write(path, text).unwrap();
}

/// The PersonalLLM columns in published order, with their parquet types.
fn pllm_columns() -> Vec<(String, &'static str)> {
    let mut c = vec![
        ("prompt_id".to_string(), "INT64"),
        ("subset".into(), "UTF8"),
        ("prompt".into(), "UTF8"),
    ];
    for k in 1..=RESPONSES {
        c.push((format!("response_{k}"), "UTF8"));
        c.push((format!("response_{k}_model"), "UTF8"));
        for rm in REWARD_MODELS {
            c.push((format!("response_{k}_{rm}"), "DOUBLE"));
        }
    }
    c
}

/// Writes rows as a snappy-compressed parquet file with the published schema (every column
/// optional, as pandas writes them).
fn write_parquet(path: &Path, rows: &[Map<String, Value>]) {
    let cols = pllm_columns();
    let fields: String = cols
        .iter()
        .map(|(name, ty)| match *ty {
            "UTF8" => format!("OPTIONAL BYTE_ARRAY {name} (UTF8);"),
            t => format!("OPTIONAL {t} {name};"),
        })
        .collect();
    let schema = Arc::new(parse_message_type(&format!("message schema {{ {fields} }}")).unwrap());
    let props = Arc::new(
        WriterProperties::builder()
            .set_compression(parquet::basic::Compression::SNAPPY)
            .build(),
    );
    let mut w = SerializedFileWriter::new(File::create(path).unwrap(), schema, props).unwrap();
    let mut rg = w.next_row_group().unwrap();
    let mut i = 0;
    while let Some(mut col) = rg.next_column().unwrap() {
        let (name, ty) = &cols[i];
        let vals: Vec<&Value> = rows.iter().map(|r| &r[name.as_str()]).collect();
        let def: Vec<i16> = vals.iter().map(|v| i16::from(!v.is_null())).collect();
        let present = vals.iter().filter(|v| !v.is_null());
        match *ty {
            "UTF8" => {
                let v: Vec<ByteArray> = present
                    .map(|v| ByteArray::from(v.as_str().unwrap()))
                    .collect();
                col.typed::<ByteArrayType>()
                    .write_batch(&v, Some(&def), None)
                    .unwrap();
            }
            "INT64" => {
                let v: Vec<i64> = present.map(|v| v.as_i64().unwrap()).collect();
                col.typed::<Int64Type>()
                    .write_batch(&v, Some(&def), None)
                    .unwrap();
            }
            _ => {
                let v: Vec<f64> = present.map(|v| v.as_f64().unwrap()).collect();
                col.typed::<DoubleType>()
                    .write_batch(&v, Some(&def), None)
                    .unwrap();
            }
        }
        col.close().unwrap();
        i += 1;
    }
    rg.close().unwrap();
    w.close().unwrap();
}

fn small_pllm() -> PersonalLlmOptions {
    PersonalLlmOptions {
        alpha: 0.5,
        seed: 3,
        seen_users: 8,
        unseen_users: 6,
        n_ref: 3,
        n_target: 6,
        seen_eval: 5,
        unseen_eval: 3,
    }
}

fn err_text(e: ConvertError) -> String {
    e.to_string()
}

#[test]
fn personal_llm_parquet_follows_the_protocol() {
    let dir = tempfile::tempdir().unwrap();
    let (train, test) = (
        dir.path().join("train.parquet"),
        dir.path().join("test.parquet"),
    );
    write_parquet(&train, &pllm_rows(40, "train"));
    write_parquet(&test, &pllm_rows(20, "test"));
    let opt = small_pllm();
    let (t, report, w) = personal_llm::convert(&train, &test, &opt).unwrap();

    let s = &report.stats;
    assert_eq!((s.seen_users, s.unseen_users), (8, 6));
    assert_eq!((s.seen_ref, s.seen_target, s.seen_eval), (3.0, 6.0, 5.0));
    assert_eq!((s.unseen_ref, s.unseen_eval), (3.0, 3.0));
    assert_eq!(s.triplets, 8 * 14 + 6 * 6);
    assert_eq!(w.user_weights.len(), 14);

    // Each pair is the highest- against the lowest-scoring response under the user's true
    // weights on z-normalised scores; training prompts come from train, eval from test, and no
    // user sees a prompt twice within a file.
    for (user, wu) in &w.user_weights {
        assert!((wu.iter().sum::<f64>() - 1.0).abs() < 1e-9);
        let mine: Vec<&Triplet> = t.iter().filter(|x| &x.user == user).collect();
        let mut prompts: Vec<&str> = mine.iter().map(|x| x.prompt.as_str()).collect();
        prompts.sort();
        prompts.dedup();
        assert_eq!(prompts.len(), mine.len(), "{user} repeats a prompt");
        for x in mine {
            let from = if x.split == Split::Eval {
                "test"
            } else {
                "train"
            };
            assert!(x.prompt.starts_with(from), "{user}: {x:?}");
            let p: usize = x
                .prompt
                .split(' ')
                .nth(3)
                .unwrap()
                .trim_end_matches('?')
                .parse()
                .unwrap();
            let comp = |k: usize| -> f64 {
                (0..10)
                    .map(|m| wu[m] * (score(p, k, m) - w.z_mean[m]) / w.z_std[m])
                    .sum()
            };
            let ks: Vec<f64> = (1..=RESPONSES).map(comp).collect();
            let k_of = |text: &str| -> usize { text.split(' ').nth(2).unwrap().parse().unwrap() };
            let max = ks.iter().cloned().fold(f64::MIN, f64::max);
            let min = ks.iter().cloned().fold(f64::MAX, f64::min);
            assert_eq!(ks[k_of(&x.chosen) - 1], max);
            assert_eq!(ks[k_of(&x.rejected) - 1], min);
        }
    }

    // Seeded and deterministic; the JSON-lines export of the same tables gives the same data.
    assert_eq!(personal_llm::convert(&train, &test, &opt).unwrap().0, t);
    let other = PersonalLlmOptions {
        seed: 4,
        ..opt.clone()
    };
    assert_ne!(personal_llm::convert(&train, &test, &other).unwrap().0, t);
    let (jtrain, jtest) = (
        dir.path().join("train.jsonl"),
        dir.path().join("test.jsonl"),
    );
    write_json_lines(&jtrain, &pllm_rows(40, "train"));
    write_json_lines(&jtest, &pllm_rows(20, "test"));
    assert_eq!(personal_llm::convert(&jtrain, &jtest, &opt).unwrap().0, t);
}

#[test]
fn personal_llm_bad_input_names_file_row_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let test = dir.path().join("test.jsonl");
    write_json_lines(&test, &pllm_rows(20, "test"));
    let opt = small_pllm();
    let train = dir.path().join("train.jsonl");

    let mut rows = pllm_rows(40, "train");
    rows[4].remove("response_3_gemma_7b");
    write_json_lines(&train, &rows);
    let e = err_text(personal_llm::convert(&train, &test, &opt).unwrap_err());
    assert!(
        e.contains("train.jsonl")
            && e.contains("row 5")
            && e.contains("response_3_gemma_7b")
            && e.contains("missing column"),
        "{e}"
    );

    let mut rows = pllm_rows(40, "train");
    rows[1].insert("response_2_beaver_7b".into(), json!("high"));
    write_json_lines(&train, &rows);
    let e = err_text(personal_llm::convert(&train, &test, &opt).unwrap_err());
    assert!(
        e.contains("row 2") && e.contains("expected a number, found a string"),
        "{e}"
    );

    // Null scores make a response unscored; a prompt left with one scored response is skipped
    // and counted, never paired.
    let mut rows = pllm_rows(40, "train");
    for k in 2..=RESPONSES {
        rows[0].insert(format!("response_{k}_oasst_pythia_1b"), Value::Null);
    }
    write_json_lines(&train, &rows);
    let (t, report, _) = personal_llm::convert(&train, &test, &opt).unwrap();
    assert_eq!(
        report
            .skipped
            .count("prompt with fewer than two scored responses"),
        1
    );
    assert_eq!(
        report
            .skipped
            .count("response without text or without all ten scores"),
        7
    );
    assert!(t.iter().all(|x| x.prompt != "train question number 0?"));

    // Too few prompts for the protocol: an error that says so, not a short dataset.
    write_json_lines(&train, &pllm_rows(5, "train"));
    let e = err_text(personal_llm::convert(&train, &test, &opt).unwrap_err());
    assert!(e.contains("needs 9 prompts"), "{e}");

    std::fs::write(dir.path().join("bad.parquet"), b"not parquet at all").unwrap();
    let e =
        err_text(personal_llm::convert(&dir.path().join("bad.parquet"), &test, &opt).unwrap_err());
    assert!(
        e.contains("bad.parquet") && e.contains("not parquet"),
        "{e}"
    );
}

// ---------------------------------------------------------------- TL;DR fixtures

fn tldr_row(worker: &str, i: usize, choice: i64) -> Value {
    json!({
        "info": {"id": format!("t3_{i}"), "post": format!("My post number {i} about my week."),
                 "title": format!("Title {i}"), "subreddit": "relationships"},
        "summaries": [
            {"text": format!("short summary {i}"), "policy": "sup2", "note": null},
            {"text": format!("a longer summary of post {i}"), "policy": "ref", "note": null}
        ],
        "choice": choice, "worker": worker, "batch": "batch3", "split": "train",
        "extra": {"confidence": 7}
    })
}

fn tldr_fixture(path: &Path) {
    let mut lines = Vec::new();
    let mut i = 0;
    for (w, n) in [
        ("w-a", 14),
        ("w-b", 12),
        ("w-c", 20),
        ("w-d", 16),
        ("w-e", 12),
        ("w-f", 13),
        ("w-g", 15),
        ("w-few", 5),
    ] {
        for j in 0..n {
            lines.push(tldr_row(w, i, (j % 2) as i64));
            i += 1;
        }
    }
    // A CNN/DM comparison (article, no post) and identical summaries: skipped and counted.
    let mut cnn = tldr_row("w-a", 999, 0);
    cnn["info"] = json!({"id": "cnn1", "article": "News.", "title": "t", "site": "cnn"});
    lines.push(cnn);
    let mut same = tldr_row("w-b", 998, 1);
    same["summaries"][1]["text"] = same["summaries"][0]["text"].clone();
    lines.push(same);
    let text: String = lines.iter().map(|v| v.to_string() + "\n").collect();
    std::fs::write(path, text).unwrap();
}

fn small_tldr() -> TldrOptions {
    TldrOptions {
        seed: 1,
        min_comparisons: 10,
        seen_users: 3,
        unseen_users: 3,
        n_ref: 4,
        n_target: 4,
    }
}

#[test]
fn tldr_follows_the_protocol() {
    let dir = tempfile::tempdir().unwrap();
    let cmp = dir.path().join("comparisons");
    std::fs::create_dir(&cmp).unwrap();
    tldr_fixture(&cmp.join("batch3.json"));
    let (t, report) = tldr::convert(std::slice::from_ref(&cmp), &small_tldr()).unwrap();
    let s = &report.stats;
    assert_eq!((s.seen_users, s.unseen_users), (3, 3));
    assert_eq!((s.seen_ref, s.seen_target, s.unseen_ref), (4.0, 4.0, 4.0));
    assert!(s.seen_eval >= 1.0 && s.unseen_eval >= 1.0);
    assert_eq!(
        report
            .skipped
            .count("comparison without info.post (CNN/DM article)"),
        1
    );
    assert_eq!(report.skipped.count("identical summaries"), 1);
    assert_eq!(
        report
            .skipped
            .count("worker with fewer than 10 comparisons"),
        1
    );
    assert!(t.iter().all(|x| x.user != "w-few"));
    for x in &t {
        assert!(
            x.prompt
                .starts_with("SUBREDDIT: r/relationships\nTITLE: Title "),
            "{x:?}"
        );
        let i: usize = x
            .prompt
            .split("number ")
            .nth(1)
            .unwrap()
            .split(' ')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        // Fixture rows alternate choice 0 / 1 per worker; the chosen text is summaries[choice].
        assert!(x.chosen.ends_with(&i.to_string()) && x.rejected.ends_with(&i.to_string()));
    }
    // A user's comparisons each land in exactly one split; the same seed gives the same data.
    let sizes = [
        ("w-a", 14),
        ("w-b", 12),
        ("w-c", 20),
        ("w-d", 16),
        ("w-e", 12),
        ("w-f", 13),
        ("w-g", 15),
    ];
    let users: std::collections::BTreeSet<&str> = t.iter().map(|x| x.user.as_str()).collect();
    assert_eq!(users.len(), 6);
    for u in users {
        let n = sizes.iter().find(|s| s.0 == u).unwrap().1;
        assert_eq!(t.iter().filter(|x| x.user == u).count(), n, "{u}");
    }
    assert_eq!(
        tldr::convert(std::slice::from_ref(&cmp), &small_tldr())
            .unwrap()
            .0,
        t
    );

    // An unknown choice index names the file, the row and the column.
    let bad = dir.path().join("bad.jsonl");
    let mut text = std::fs::read_to_string(cmp.join("batch3.json")).unwrap();
    text.push_str(&(tldr_row("w-a", 5000, 2).to_string() + "\n"));
    std::fs::write(&bad, text).unwrap();
    let e = tldr::convert(&[bad], &small_tldr())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("bad.jsonl") && e.contains("choice") && e.contains("unknown choice index 2"),
        "{e}"
    );

    // Not enough workers for the protocol: a clear error.
    let many = TldrOptions {
        seen_users: 5,
        ..small_tldr()
    };
    let e = tldr::convert(&[cmp], &many).unwrap_err().to_string();
    assert!(e.contains("needs 5 seen workers"), "{e}");
}

// ---------------------------------------------------------------- PRISM fixtures

fn prism_conversation(user: usize, c: usize, balanced: bool, tie: bool) -> Value {
    let mut history = Vec::new();
    for turn in 0..3 {
        history.push(json!({"turn": turn, "role": "user",
            "content": format!("u{user} c{c} t{turn}: tell me more"), "model_name": null,
            "score": null, "if_chosen": null, "within_turn_id": null}));
        let n = if turn == 0 { 4 } else { 2 };
        for k in 0..n {
            let score = if tie { 50 } else { 10 + 20 * k + user as i64 };
            history.push(json!({"turn": turn, "role": "model",
                "content": format!("answer u{user} c{c} t{turn} k{k}"), "model_name": format!("m{k}"),
                "score": score, "if_chosen": k == n - 1, "within_turn_id": k}));
        }
    }
    json!({"conversation_id": format!("c-{user}-{c}"), "user_id": format!("user{user}"),
        "included_in_balanced_subset": balanced, "conversation_type": "unguided",
        "opening_prompt": "hi", "conversation_history": history})
}

#[test]
fn prism_follows_the_protocol() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("conversations.jsonl");
    let mut lines = Vec::new();
    for u in 0..10 {
        for c in 0..2 {
            lines.push(prism_conversation(u, c, true, false));
        }
    }
    lines.push(prism_conversation(3, 9, true, true)); // three tied turns
    lines.push(prism_conversation(77, 0, false, false)); // outside the balanced subset
    let text: String = lines.iter().map(|v| v.to_string() + "\n").collect();
    std::fs::write(&path, text).unwrap();

    let (t, report) = prism::convert(&path, &PrismOptions::default()).unwrap();
    let s = &report.stats;
    assert_eq!((s.seen_users, s.unseen_users), (5, 5));
    // Six pairs per user (3 turns × 2 conversations): seen 1 ref + 2 target + 3 eval, unseen 3 + 3.
    assert_eq!((s.seen_ref, s.seen_target, s.seen_eval), (1.0, 2.0, 3.0));
    assert_eq!((s.unseen_ref, s.unseen_eval), (3.0, 3.0));
    assert_eq!(
        report
            .skipped
            .count("tie between the highest- and lowest-scored responses"),
        3
    );
    assert_eq!(
        report
            .skipped
            .count("conversation outside the balanced subset"),
        1
    );
    assert!(t.iter().all(|x| x.user != "user77"));
    for x in &t {
        // The highest-scored response (k = last) against the lowest (k0).
        assert!(x.rejected.ends_with("k0"), "{x:?}");
        assert!(
            x.chosen
                .ends_with(if x.prompt.contains(" t0:") && !x.prompt.contains("t1") {
                    "k3"
                } else {
                    "k1"
                }),
            "{x:?}"
        );
        // Later turns carry the conversation so far, continued with the chosen response.
        if x.prompt.contains("t2: tell me more") {
            assert!(
                x.prompt.contains("Assistant: answer") && x.prompt.contains("t1 k1"),
                "{}",
                x.prompt
            );
            assert!(x.prompt.starts_with("User: "));
        }
    }
    assert_eq!(
        prism::convert(&path, &PrismOptions::default()).unwrap().0,
        t
    );

    let mut bad = prism_conversation(1, 1, true, false);
    bad["conversation_history"][2]["role"] = json!("robot");
    std::fs::write(&path, bad.to_string() + "\n").unwrap();
    let e = prism::convert(&path, &PrismOptions::default())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("row 1") && e.contains("conversation_history[2].role") && e.contains("robot"),
        "{e}"
    );
}

// ---------------------------------------------------------------- outputs train

fn tiny_cfg() -> RunConfig {
    let mut c = RunConfig::spec_literal();
    c.model.k = 2;
    c.model.d = 4;
    c.train.epochs = 1;
    c.train.max_len = 32;
    c.train.prompts_per_step = 8;
    c.train.users_per_step = 3;
    c.train.targets_per_user = 4;
    c.train.checkpoint_every = 0;
    c.train.s2_epochs = 1;
    c.train.s2_users_per_step = 2;
    c
}

fn fit_ok(dir: &Path, data: &Path) {
    Dataset::load(data).unwrap().check_trainable().unwrap();
    let r = fit_run(
        dir,
        &tiny_cfg(),
        data,
        &Device::Cpu,
        &FitOptions {
            resume: false,
            progress: false,
            external: None,
        },
    )
    .unwrap();
    let FitOutcome::Finished(r) = r else {
        panic!("stopped")
    };
    assert!(
        r.seen_accuracy.is_finite() && r.unseen_accuracy.is_finite(),
        "{r:?}"
    );
}

#[test]
fn converted_datasets_load_and_fit() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    let out = |name: &str| -> PathBuf { p.join(name) };

    let (train, test) = (out("train.parquet"), out("test.parquet"));
    write_parquet(&train, &pllm_rows(40, "train"));
    write_parquet(&test, &pllm_rows(20, "test"));
    let (t, r, _) = personal_llm::convert(&train, &test, &small_pllm()).unwrap();
    output::write(&out("pllm.jsonl"), &t, &r).unwrap();
    let stats: Value =
        serde_json::from_str(&std::fs::read_to_string(out("pllm.stats.json")).unwrap()).unwrap();
    assert_eq!(stats["stats"]["seen_users"], 8);
    fit_ok(&out("run-pllm"), &out("pllm.jsonl"));

    tldr_fixture(&out("comparisons.jsonl"));
    let (t, r) = tldr::convert(&[out("comparisons.jsonl")], &small_tldr()).unwrap();
    output::write(&out("tldr.jsonl"), &t, &r).unwrap();
    fit_ok(&out("run-tldr"), &out("tldr.jsonl"));

    let lines: String = (0..6)
        .flat_map(|u| (0..2).map(move |c| prism_conversation(u, c, true, false).to_string() + "\n"))
        .collect();
    std::fs::write(out("conversations.jsonl"), lines).unwrap();
    let (t, r) = prism::convert(&out("conversations.jsonl"), &PrismOptions::default()).unwrap();
    output::write(&out("prism.jsonl"), &t, &r).unwrap();
    fit_ok(&out("run-prism"), &out("prism.jsonl"));
}
