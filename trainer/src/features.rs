//! `vrf-trainer features`: a feature table (docs/features.md) of a backbone's pooled states,
//! the exact vectors the heads read ([`Corpus::embed`]), one row per unique `(prompt, response)`
//! of a data set (and, for PAL-B, per unique `(prompt, "")`), keyed by the pair.
//!
//! Rows are computed in blocks of texts, each block in batches of similar length, and streamed
//! to `OUT.partial` (JSON lines) as each block finishes, so memory holds one block. A rerun with
//! the same arguments checks the partial file row by row against the texts it should hold, drops
//! a torn last line and continues; blocks are fixed slices of the text list, so a resumed file
//! is byte for byte the uninterrupted one. At the end the partial file is renamed to `OUT`
//! (`.jsonl`) or converted (`.npy`, `.parquet`) atomically.

use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

use candle_core::{DType, Device};
use indicatif::{ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};
use vrf_data::Dataset;

use crate::backbone::load_hf_dir;
use crate::checkpoint::{read_json, write_json};
use crate::config::{BackboneSource, Method, Recompute, RunConfig};
use crate::corpus::{Corpus, TextSource};
use crate::error::{Result, TrainError};
use crate::export::load_trained;
use crate::model::{ModelInput, RewardModel};
use crate::tokenize::{TextEncoder, TextTemplate};
use crate::vars::SeededVarMap;

/// Texts per block: enough to group lengths well, few enough that a block's vectors are small.
const BLOCK_BATCHES: usize = 32;

/// Where the backbone comes from.
#[derive(Clone, Debug)]
pub enum BackboneFrom {
    /// A fitted run directory: its checkpoint's backbone, tokenizer, template and max length.
    Run(PathBuf),
    /// A Hugging Face Qwen3 directory (`config.json`, safetensors, `tokenizer.json`), with the
    /// default template and this maximum length in tokens.
    Hf {
        /// The directory.
        dir: PathBuf,
        /// Maximum tokens per text (longer texts lose their beginning, as in training).
        max_len: usize,
    },
}

/// Options of [`compute_features`].
#[derive(Clone, Debug)]
pub struct FeaturesOptions {
    /// Texts per backbone call.
    pub batch: usize,
    /// Also a row for every unique `(prompt, "")` (PAL-B's prompt embedding).
    pub prompts: bool,
    /// Show a progress bar.
    pub progress: bool,
    /// Stop, leaving the partial file, once a block brings the rows written to at least this
    /// many (simulates an interruption; `None`: run to the end).
    pub stop_after: Option<usize>,
}

impl Default for FeaturesOptions {
    fn default() -> Self {
        Self {
            batch: 32,
            prompts: false,
            progress: false,
            stop_after: None,
        }
    }
}

/// What [`compute_features`] did.
#[derive(Clone, Debug, PartialEq)]
pub struct FeaturesReport {
    /// Rows of the table (or, when stopped, planned).
    pub rows: usize,
    /// Of which `(prompt, "")` rows.
    pub prompt_rows: usize,
    /// Vector length (the backbone's hidden size).
    pub dim: usize,
    /// Rows found in a partial file from an earlier attempt and kept.
    pub resumed: usize,
    /// Rows written so far (`rows` when finished).
    pub written: usize,
    /// Whether the table is complete at `out` (false: stopped by `stop_after`).
    pub finished: bool,
}

/// The arguments a partial file was started with, kept beside it (`OUT.partial.json`) so a
/// rerun with other ones is refused instead of mixing vectors of two backbones.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Plan {
    data: PathBuf,
    backbone: String,
    max_len: usize,
    template: String,
    batch: usize,
    prompts: bool,
    rows: usize,
    dim: usize,
}

/// A row of the partial file: the JSON-lines table format keyed by the pair.
#[derive(Serialize)]
struct RowOut<'a> {
    prompt: &'a str,
    response: &'a str,
    embedding: &'a [f32],
}

/// A row read back from a partial file.
#[derive(Deserialize)]
struct RowIn {
    prompt: String,
    response: String,
    embedding: Vec<f32>,
}

/// `OUT.partial`, where rows go until the table is complete.
pub fn partial_path(out: &Path) -> PathBuf {
    let mut p = out.as_os_str().to_owned();
    p.push(".partial");
    PathBuf::from(p)
}

fn plan_path(out: &Path) -> PathBuf {
    let mut p = partial_path(out).into_os_string();
    p.push(".json");
    PathBuf::from(p)
}

/// The texts of a table of `ds`: every unique `(prompt, response)` in first-appearance order,
/// then (with `prompts`) every unique `(prompt, "")` not already among them; and how many of the
/// latter there are.
pub fn table_texts(ds: &Dataset, prompts: bool) -> (Vec<(String, String)>, usize) {
    let mut texts = ds.texts().texts;
    let n = texts.len();
    if prompts {
        let mut seen: HashSet<(String, String)> = texts.iter().cloned().collect();
        for t in &ds.triplets {
            let key = (t.prompt.clone(), String::new());
            if seen.insert(key.clone()) {
                texts.push(key);
            }
        }
    }
    let added = texts.len() - n;
    (texts, added)
}

/// A backbone model, its tokenizer and what describes it in a [`Plan`].
struct Loaded {
    model: RewardModel,
    encoder: TextEncoder,
    describe: String,
    template: String,
    max_len: usize,
}

fn load(from: &BackboneFrom, dev: &Device) -> Result<Loaded> {
    match from {
        BackboneFrom::Run(run) => {
            let t = load_trained(run, dev)?;
            let encoder = t.encoder.ok_or_else(|| {
                TrainError::Config(format!(
                    "{} was fitted on external features: it has no backbone to compute features with",
                    run.display()
                ))
            })?;
            Ok(Loaded {
                model: t.model,
                encoder,
                describe: format!(
                    "run {} at step {}",
                    absolute(run).display(),
                    t.state.global_step
                ),
                template: t.cfg.template,
                max_len: t.cfg.train.max_len,
            })
        }
        BackboneFrom::Hf { dir, max_len } => {
            let mut cfg = RunConfig {
                backbone: BackboneSource::Hf {
                    path: dir.to_string_lossy().into_owned(),
                },
                ..RunConfig::default()
            };
            // Only the backbone is used: BT builds no encoder or bases, and inference needs no
            // recomputation.
            cfg.method = Method::Bt;
            cfg.train.recompute = Recompute::Off;
            cfg.train.max_len = *max_len;
            cfg.validate()?;
            let template = TextTemplate::new(cfg.template.clone())?;
            let encoder = TextEncoder::from_file(dir.join("tokenizer.json"), template, *max_len)?;
            let vars = SeededVarMap::new(0);
            let bc = load_hf_dir(dir, &vars, dev)?;
            let model = RewardModel::new(&cfg, ModelInput::Backbone(bc), vars, 0, dev)?;
            Ok(Loaded {
                model,
                encoder,
                describe: format!("hf {}", absolute(dir).display()),
                template: cfg.template,
                max_len: *max_len,
            })
        }
    }
}

fn absolute(p: &Path) -> PathBuf {
    std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf())
}

/// Output formats this command writes, by extension.
fn check_out_format(out: &Path) -> Result<bool> {
    let ext = out
        .extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase());
    match ext.as_deref() {
        Some("jsonl" | "ndjson") => Ok(true),
        Some("npy" | "parquet") => Ok(false),
        _ => Err(TrainError::Config(format!(
            "--out {}: unknown feature-table format (expected .jsonl, .npy or .parquet)",
            out.display()
        ))),
    }
}

/// Computes the table of `data`'s texts with the backbone of `from` into `out` (see the module
/// documentation), continuing `OUT.partial` when an earlier attempt left one.
pub fn compute_features(
    data: &Path,
    from: &BackboneFrom,
    out: &Path,
    opts: &FeaturesOptions,
    dev: &Device,
) -> Result<FeaturesReport> {
    let jsonl_out = check_out_format(out)?;
    if opts.batch == 0 {
        return Err(TrainError::Config("--batch must be at least 1".into()));
    }
    let ds = Dataset::load(data)?;
    let (texts, prompt_rows) = table_texts(&ds, opts.prompts);
    let loaded = load(from, dev)?;
    let dim = loaded.model.hidden_size();
    let plan = Plan {
        data: absolute(data),
        backbone: loaded.describe.clone(),
        max_len: loaded.max_len,
        template: loaded.template.clone(),
        batch: opts.batch,
        prompts: opts.prompts,
        rows: texts.len(),
        dim,
    };
    let partial = partial_path(out);
    let plan_file = plan_path(out);
    let resumed = if partial.exists() {
        check_plan(&plan_file, &partial, &plan)?;
        scan_partial(&partial, &texts, dim)?
    } else {
        write_json(&plan_file, &plan)?;
        0
    };
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&partial)
        .map_err(|e| TrainError::io(&partial, e))?;
    let mut w = BufWriter::new(file);

    let source = TextSource::Tokens(Box::new(loaded.encoder));
    let bar = progress_bar(opts.progress, texts.len(), resumed);
    let block = opts.batch.saturating_mul(BLOCK_BATCHES);
    let mut written = resumed;
    // Blocks are fixed slices of the text list: a resumed run recomputes the block it stopped
    // in with the same batches, so its rows are those of the uninterrupted run.
    let mut lo = resumed - resumed % block;
    while lo < texts.len() {
        let hi = (lo + block).min(texts.len());
        let vectors = embed_block(&loaded.model, &source, &texts[lo..hi], opts.batch, &bar)?;
        for (i, v) in vectors.chunks_exact(dim).enumerate().skip(written - lo) {
            let (prompt, response) = &texts[lo + i];
            let row = RowOut {
                prompt,
                response,
                embedding: v,
            };
            serde_json::to_writer(&mut w, &row).map_err(|e| TrainError::io(&partial, e.into()))?;
            w.write_all(b"\n")
                .map_err(|e| TrainError::io(&partial, e))?;
        }
        w.flush().map_err(|e| TrainError::io(&partial, e))?;
        w.get_ref()
            .sync_data()
            .map_err(|e| TrainError::io(&partial, e))?;
        written = hi;
        lo = hi;
        if opts.stop_after.is_some_and(|s| written >= s) && written < texts.len() {
            bar.abandon();
            return Ok(FeaturesReport {
                rows: texts.len(),
                prompt_rows,
                dim,
                resumed,
                written,
                finished: false,
            });
        }
    }
    drop(w);
    bar.finish_and_clear();
    finish(&partial, out, jsonl_out)?;
    let _ = std::fs::remove_file(&plan_file);
    Ok(FeaturesReport {
        rows: texts.len(),
        prompt_rows,
        dim,
        resumed,
        written,
        finished: true,
    })
}

fn progress_bar(show: bool, total: usize, done: usize) -> ProgressBar {
    if !show {
        return ProgressBar::hidden();
    }
    let b = ProgressBar::new(total as u64);
    let style =
        ProgressStyle::with_template("features [{elapsed_precise}] {bar:30} {pos}/{len} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar());
    b.set_style(style);
    b.set_position(done as u64);
    b
}

/// The pooled states of `texts`, row-major `[texts.len(), H]` f32 in their order, computed in
/// batches of `batch` texts of similar token length.
fn embed_block(
    model: &RewardModel,
    source: &TextSource,
    texts: &[(String, String)],
    batch: usize,
    bar: &ProgressBar,
) -> Result<Vec<f32>> {
    let corpus = Corpus::from_texts(texts.to_vec(), source)?;
    let h = model.hidden_size();
    let mut order: Vec<usize> = (0..texts.len()).collect();
    order.sort_by_key(|&i| corpus.token_len(i).unwrap_or(0));
    let mut out = vec![0f32; texts.len() * h];
    for ids in order.chunks(batch) {
        let e = corpus
            .states(model, ids)?
            .to_device(&Device::Cpu)?
            .to_dtype(DType::F32)?
            .flatten_all()?
            .to_vec1::<f32>()?;
        for (row, &i) in ids.iter().enumerate() {
            out[i * h..(i + 1) * h].copy_from_slice(&e[row * h..(row + 1) * h]);
        }
        bar.inc(ids.len() as u64);
    }
    Ok(out)
}

/// Refuses to continue a partial file started with other arguments.
fn check_plan(plan_file: &Path, partial: &Path, plan: &Plan) -> Result<()> {
    let fix = format!(
        "delete {} (and {}) to start over, or rerun with the arguments it was started with",
        partial.display(),
        plan_file.display()
    );
    if !plan_file.exists() {
        return Err(TrainError::Config(format!(
            "{} exists without its {}: {fix}",
            partial.display(),
            plan_file.display()
        )));
    }
    let old: Plan = read_json(plan_file)?;
    let differs: Vec<String> = [
        (
            "data",
            old.data.display().to_string(),
            plan.data.display().to_string(),
        ),
        ("backbone", old.backbone.clone(), plan.backbone.clone()),
        (
            "max length",
            old.max_len.to_string(),
            plan.max_len.to_string(),
        ),
        ("template", old.template.clone(), plan.template.clone()),
        ("batch", old.batch.to_string(), plan.batch.to_string()),
        (
            "prompt rows",
            old.prompts.to_string(),
            plan.prompts.to_string(),
        ),
        ("rows", old.rows.to_string(), plan.rows.to_string()),
        ("dimension", old.dim.to_string(), plan.dim.to_string()),
    ]
    .into_iter()
    .filter(|(_, a, b)| a != b)
    .map(|(what, a, b)| format!("{what} was {a:?}, now {b:?}"))
    .collect();
    if differs.is_empty() {
        return Ok(());
    }
    Err(TrainError::Config(format!(
        "{} was started with other arguments ({}): {fix}",
        partial.display(),
        differs.join("; ")
    )))
}

/// Checks each complete row of the partial file against the text it should hold, cuts a torn
/// last line off the file, and returns how many rows it keeps.
fn scan_partial(partial: &Path, texts: &[(String, String)], dim: usize) -> Result<usize> {
    let io = |e: std::io::Error| TrainError::io(partial, e);
    let mut r = BufReader::new(File::open(partial).map_err(io)?);
    let (mut rows, mut good_bytes, mut line) = (0usize, 0u64, Vec::new());
    loop {
        line.clear();
        let n = r.read_until(b'\n', &mut line).map_err(io)?;
        if n == 0 {
            break;
        }
        if line.last() != Some(&b'\n') {
            // A row cut short by the interruption: dropped and recomputed.
            break;
        }
        let at = rows + 1;
        let bad = |msg: String| {
            TrainError::Config(format!(
                "{}: line {at}: {msg}; delete it to start over",
                partial.display()
            ))
        };
        let row: RowIn = serde_json::from_slice(&line).map_err(|e| bad(e.to_string()))?;
        let Some((prompt, response)) = texts.get(rows) else {
            return Err(bad(format!("the data has only {} texts", texts.len())));
        };
        if (&row.prompt, &row.response) != (prompt, response) {
            return Err(bad(format!(
                "holds prompt {:?} / response {:?} but text {at} of the data is prompt {:?} / response {:?}",
                short(&row.prompt),
                short(&row.response),
                short(prompt),
                short(response)
            )));
        }
        if row.embedding.len() != dim {
            return Err(bad(format!(
                "the vector has {} components, the backbone {dim}",
                row.embedding.len()
            )));
        }
        rows += 1;
        good_bytes += n as u64;
    }
    drop(r);
    let f = OpenOptions::new().write(true).open(partial).map_err(io)?;
    f.set_len(good_bytes).map_err(io)?;
    f.sync_data().map_err(io)?;
    Ok(rows)
}

/// The first 60 characters of `s`.
fn short(s: &str) -> String {
    match s.char_indices().nth(60) {
        Some((cut, _)) => format!("{}…", &s[..cut]),
        None => s.to_string(),
    }
}

/// Puts the complete partial file at `out`: renamed (JSON lines) or converted.
fn finish(partial: &Path, out: &Path, jsonl_out: bool) -> Result<()> {
    if jsonl_out {
        vrf_format::fsutil::rename(partial, out).map_err(|e| TrainError::io(out, e))?;
        if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
            vrf_format::fsutil::sync_dir(dir).map_err(|e| TrainError::io(dir, e))?;
        }
        return Ok(());
    }
    let table = vrf_data::features::jsonl::read(partial)?;
    table.write(out)?;
    std::fs::remove_file(partial).map_err(|e| TrainError::io(partial, e))?;
    Ok(())
}
