//! `vrf`: serve an exported VRF model from the command line (JSON in, JSON out).
//!
//! Inputs are JSONL files (one object per line, `-` for stdin); outputs are JSON lines on stdout.

use std::io::{BufRead, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Args, Parser, Subcommand};
use serde::{Deserialize, Serialize};
use vrf_format::manifest::{Manifest, MANIFEST_FILE};
use vrf_runtime::serve::{
    export_users, import_users, is_postgres_url, BatchOptions, ConnOptions, Limits, PgOptions,
    PgStore, ServeOptions, Server, SqliteStore, Token, TransferError, UserStore,
};
use vrf_runtime::{
    ExecutionProvider, Reference, RuntimeOptions, UserPosterior, VectorReference, VrfModel,
};

#[derive(Parser)]
#[command(
    name = "vrf",
    version,
    about = "Personalised reward scoring with an exported VRF model"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Args)]
struct ModelArgs {
    /// Model directory written by `vrf-trainer export`.
    #[arg(long)]
    model: PathBuf,
    /// ONNX Runtime intra-op threads.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Execution provider: cpu, cuda or cuda:N (cuda needs the `cuda` feature; no CPU fallback).
    #[arg(long, default_value = "cpu")]
    provider: ExecutionProvider,
    /// Most texts per backbone call (longer inputs are sorted by length and split; on CPU 8
    /// was faster than 16 or 32 per text, README: `vrf serve`).
    #[arg(long, default_value_t = 8)]
    batch_size: usize,
    /// ONNX Runtime library (default: $ORT_DYLIB_PATH).
    #[arg(long)]
    ort_lib: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Cmd {
    /// Hidden state and basis rewards per text: input lines {"prompt", "response"} ({"vector"}
    /// for a model on external features).
    Features {
        #[command(flatten)]
        m: ModelArgs,
        /// JSONL input (`-` for stdin).
        #[arg(long, default_value = "-")]
        input: PathBuf,
    },
    /// Pair features of reference triplets: input lines {"prompt", "chosen", "rejected"}
    /// ({"chosen": [..], "rejected": [..]} vectors for a model on external features).
    PairFeatures {
        #[command(flatten)]
        m: ModelArgs,
        /// JSONL of reference triplets (`-` for stdin).
        #[arg(long, default_value = "-")]
        refs: PathBuf,
    },
    /// A user's posterior (mean, var, weights, uncertainty): from reference triplets, or a
    /// seen user's cached posterior with --seen.
    User {
        #[command(flatten)]
        m: ModelArgs,
        /// JSONL of reference triplets {"prompt", "chosen", "rejected"}, or of vector pairs
        /// {"chosen": [..], "rejected": [..]} for a model on features (`-` for stdin).
        #[arg(long, conflicts_with = "seen")]
        refs: Option<PathBuf>,
        /// Id of a seen (training) user.
        #[arg(long)]
        seen: Option<String>,
    },
    /// Personalised scores of candidates: input lines {"prompt", "responses": [..]}
    /// ({"features": [[..], ..]} for a model on external features).
    Score(CandidateArgs),
    /// Candidates sorted best first: input lines {"prompt", "responses": [..]}
    /// ({"features": [[..], ..]} for a model on external features).
    Rank(CandidateArgs),
    /// Personalised scoring over HTTP/JSON (docs/openapi.yaml), with a durable user store.
    Serve(ServeArgs),
    /// Move users between stores (SQLite file ↔ PostgreSQL): JSONL with the model's digest.
    #[command(subcommand)]
    Store(StoreCmd),
}

/// Where users are kept (`serve`, `store export|import`).
#[derive(Args)]
struct StoreArgs {
    /// User store: an SQLite file (created if missing), or a PostgreSQL URL
    /// `postgres://user@host:port/db` shared by any number of replicas (password in the URL or
    /// $PGPASSWORD; never logged). Refused if it belongs to another model.
    #[arg(long, default_value = "vrf-users.sqlite")]
    store: PathBuf,
    /// PostgreSQL: longest one store operation may take, waiting for a connection included,
    /// milliseconds (beyond it: 503 with Retry-After).
    #[arg(long, default_value_t = 5_000)]
    store_timeout_ms: u64,
    /// PostgreSQL: most connections per process.
    #[arg(long, default_value_t = 16)]
    store_connections: usize,
}

/// `vrf store …`.
#[derive(Subcommand)]
enum StoreCmd {
    /// Write every user of a store as JSONL (a header with the model digest, one user a line).
    Export {
        /// Model directory whose users the store holds (only its vrf.json is read).
        #[arg(long)]
        model: PathBuf,
        #[command(flatten)]
        s: StoreArgs,
        /// Output file, written atomically (`-` for stdout).
        #[arg(long, default_value = "-")]
        out: PathBuf,
    },
    /// Read an export into a store of the same model, replacing users with the same ids.
    Import {
        /// Model directory whose users the store holds (only its vrf.json is read).
        #[arg(long)]
        model: PathBuf,
        #[command(flatten)]
        s: StoreArgs,
        /// JSONL written by `vrf store export` (`-` for stdin).
        #[arg(long, default_value = "-")]
        input: PathBuf,
    },
}

/// What `serve` takes.
#[derive(Args)]
struct ServeArgs {
    #[command(flatten)]
    m: ModelArgs,
    /// Most texts of concurrent requests gathered at once; sorted by length, they run in
    /// backbone calls of `--batch-size`.
    #[arg(long, default_value_t = 64)]
    max_batch_texts: usize,
    /// Listening address; any but a loopback one needs a token.
    #[arg(long, default_value = "127.0.0.1:8080")]
    bind: SocketAddr,
    #[command(flatten)]
    s: StoreArgs,
    /// File holding the bearer token (else $VRF_API_TOKEN; neither: no auth, loopback only).
    #[arg(long)]
    token_file: Option<PathBuf>,
    /// Forgetting: the evidence halves every this many observations (PoG models).
    #[arg(long)]
    half_life: Option<f32>,
    /// How long the batcher waits for more requests after the first, milliseconds (0: a call
    /// takes what queued while the previous one ran).
    #[arg(long, default_value_t = 0)]
    batch_wait_ms: u64,
    /// Most requests waiting for the backbone; beyond it: 503 with Retry-After.
    #[arg(long, default_value_t = 64)]
    max_queue: usize,
    /// Per-request timeout, milliseconds (504 beyond it).
    #[arg(long, default_value_t = 30_000)]
    timeout_ms: u64,
    /// Largest request body, bytes (413 beyond it).
    #[arg(long, default_value_t = 1 << 20)]
    max_body_bytes: usize,
    /// Most responses per score / rank request, and most references or questions per request.
    #[arg(long, default_value_t = 64)]
    max_candidates: usize,
    /// Longest prompt or response, characters (Unicode scalar values, as JSON Schema's
    /// `maxLength` counts them).
    #[arg(long, default_value_t = 16 << 10)]
    max_text_chars: usize,
    /// HTTP worker threads.
    #[arg(long, default_value_t = 2)]
    http_threads: usize,
    /// Most open connections; more wait in the kernel's backlog.
    #[arg(long, default_value_t = 1024)]
    max_connections: usize,
    /// Longest a client may take to send a request's head, milliseconds.
    #[arg(long, default_value_t = 10_000)]
    header_timeout_ms: u64,
}

/// What `score` and `rank` take.
#[derive(Args)]
struct CandidateArgs {
    #[command(flatten)]
    m: ModelArgs,
    #[command(flatten)]
    who: UserArgs,
    /// JSONL input (`-` for stdin).
    #[arg(long, default_value = "-")]
    input: PathBuf,
}

#[derive(Args)]
#[group(required = true, multiple = false)]
struct UserArgs {
    /// A user JSON as printed by `vrf user` (its `weights` are used).
    #[arg(long)]
    user: Option<PathBuf>,
    /// Id of a seen (training) user.
    #[arg(long)]
    seen: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TextLine {
    prompt: String,
    response: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RefLine {
    prompt: String,
    chosen: String,
    rejected: String,
    #[serde(default)]
    #[allow(dead_code)]
    user: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CandidatesLine {
    prompt: String,
    responses: Vec<String>,
}

/// A reference pair of a model on external features: the two responses' vectors.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct VectorRefLine {
    chosen: Vec<f32>,
    rejected: Vec<f32>,
    #[serde(default)]
    #[allow(dead_code)]
    user: Option<String>,
}

/// One text's vector, for `vrf features` on a model on external features.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct VectorLine {
    vector: Vec<f32>,
}

/// Candidates of a model on external features: one vector each.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct VectorCandidatesLine {
    features: Vec<Vec<f32>>,
}

#[derive(Serialize, Deserialize)]
struct UserJson {
    mean: Vec<f32>,
    var: Vec<f32>,
    weights: Vec<f32>,
    uncertainty: f32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    references: Option<usize>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    truncated_references: Vec<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    seen_id: Option<String>,
}

/// `vrf features` output line (f32 fields print in their shortest exact form).
#[derive(Serialize)]
struct FeaturesOut {
    hidden: Vec<f32>,
    rewards: Vec<f32>,
    truncated: bool,
}

/// `vrf pair-features` output line.
#[derive(Serialize)]
struct PairFeatureOut {
    feature: Vec<f32>,
}

/// `vrf score` output line.
#[derive(Serialize)]
struct ScoreOut {
    scores: Vec<f32>,
    best: usize,
    rewards: Vec<Vec<f32>>,
}

/// One entry of `vrf rank` output (no response text for a model on external features).
#[derive(Serialize)]
struct Ranked<'a> {
    index: usize,
    score: f32,
    #[serde(skip_serializing_if = "Option::is_none")]
    response: Option<&'a str>,
}

/// `vrf rank` output line.
#[derive(Serialize)]
struct RankOut<'a> {
    ranking: Vec<Ranked<'a>>,
}

impl UserJson {
    fn new(u: UserPosterior) -> Self {
        Self {
            mean: u.mean.to_vec(),
            var: u.var.to_vec(),
            weights: u.weights.to_vec(),
            uncertainty: u.uncertainty,
            references: None,
            truncated_references: Vec::new(),
            seen_id: None,
        }
    }
}

fn load(m: &ModelArgs) -> anyhow::Result<VrfModel> {
    let mut opts = RuntimeOptions::new()
        .with_threads(m.threads)
        .with_provider(m.provider)
        .with_batch_size(m.batch_size);
    if let Some(lib) = &m.ort_lib {
        opts = opts.with_ort_library(lib);
    }
    VrfModel::load(&m.model, &opts).with_context(|| format!("loading model {}", m.model.display()))
}

/// Parses every line of a JSONL file (or stdin); errors name the file and line.
fn read_jsonl<T: for<'de> Deserialize<'de>>(path: &Path) -> anyhow::Result<Vec<T>> {
    let (name, reader): (String, Box<dyn BufRead>) = if path == Path::new("-") {
        ("<stdin>".into(), Box::new(std::io::stdin().lock()))
    } else {
        let f = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
        (
            path.display().to_string(),
            Box::new(std::io::BufReader::new(f)),
        )
    };
    let mut out = Vec::new();
    for (i, line) in reader.lines().enumerate() {
        let line = line.with_context(|| format!("{name}:{}: reading", i + 1))?;
        if line.trim().is_empty() {
            continue;
        }
        out.push(
            serde_json::from_str(&line)
                .with_context(|| format!("{name}:{}: invalid input line", i + 1))?,
        );
    }
    Ok(out)
}

fn emit<T: Serialize>(out: &mut impl Write, v: &T) -> anyhow::Result<()> {
    serde_json::to_writer(&mut *out, v)?;
    writeln!(out)?;
    Ok(())
}

fn references(path: &Path) -> anyhow::Result<Vec<Reference>> {
    let refs: Vec<RefLine> = read_jsonl(path)?;
    if refs.is_empty() {
        bail!(
            "{}: no reference triplets (a user posterior needs at least one)",
            path.display()
        );
    }
    Ok(refs
        .into_iter()
        .map(|r| Reference::new(r.prompt, r.chosen, r.rejected))
        .collect())
}

/// Reference pairs `{"chosen": [..], "rejected": [..]}` of a model on external features.
fn vector_references(path: &Path, model: &VrfModel) -> anyhow::Result<Vec<VectorReference>> {
    let refs: Vec<VectorRefLine> =
        read_vector_lines(path, model, r#"{"chosen": [..], "rejected": [..]}"#)?;
    if refs.is_empty() {
        bail!(
            "{}: no reference pairs (a user posterior needs at least one)",
            path.display()
        );
    }
    Ok(refs
        .into_iter()
        .map(|r| VectorReference::new(r.chosen, r.rejected))
        .collect())
}

/// [`read_jsonl`] for a model on external features: a line that does not parse says what the
/// model takes and the line shape it expects.
fn read_vector_lines<T: for<'de> Deserialize<'de>>(
    path: &Path,
    model: &VrfModel,
    shape: &str,
) -> anyhow::Result<Vec<T>> {
    read_jsonl(path).with_context(|| {
        format!(
            "this model takes {} (lines {shape}), not texts",
            model.manifest().input.describe()
        )
    })
}

/// Whether `model` takes feature vectors (its input lines are then vectors, not texts).
fn takes_vectors(model: &VrfModel) -> bool {
    model.manifest().input.features_dim().is_some()
}

/// The user `score` and `rank` serve: a `vrf user` JSON file or a seen user.
fn posterior_of(model: &VrfModel, who: &UserArgs) -> anyhow::Result<UserPosterior> {
    match (&who.user, &who.seen) {
        (Some(path), _) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            let u: UserJson = serde_json::from_str(&text)
                .with_context(|| format!("{}: not a user JSON from `vrf user`", path.display()))?;
            let k = model.manifest().k;
            if u.weights.len() != k {
                bail!(
                    "{}: `weights` has {} entries, the model has K = {k}",
                    path.display(),
                    u.weights.len()
                );
            }
            Ok(UserPosterior {
                mean: u.mean.into(),
                var: u.var.into(),
                weights: u.weights.into(),
                uncertainty: u.uncertainty,
            })
        }
        (None, Some(id)) => Ok(model.seen_posterior(id)?),
        (None, None) => bail!("pass --user FILE or --seen ID"),
    }
}

fn warn_truncated(what: &str, idx: &[usize], max_len: usize) {
    if !idx.is_empty() {
        eprintln!(
            "warning: {what}: {} item(s) longer than {max_len} tokens were truncated from the left, as in training: {idx:?}",
            idx.len()
        );
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    match cli.cmd {
        Cmd::Features { m, input } => {
            let model = load(&m)?;
            if takes_vectors(&model) {
                let lines: Vec<VectorLine> =
                    read_vector_lines(&input, &model, r#"{"vector": [..]}"#)?;
                let vectors: Vec<Vec<f32>> = lines.into_iter().map(|l| l.vector).collect();
                let f = model.features_of_vectors(&vectors)?;
                for i in 0..vectors.len() {
                    emit(
                        &mut out,
                        &FeaturesOut {
                            hidden: f.hidden.row(i).to_vec(),
                            rewards: f.rewards.row(i).to_vec(),
                            truncated: false,
                        },
                    )?;
                }
                out.flush()?;
                return Ok(());
            }
            let lines: Vec<TextLine> = read_jsonl(&input)?;
            let texts: Vec<(&str, &str)> = lines
                .iter()
                .map(|l| (l.prompt.as_str(), l.response.as_str()))
                .collect();
            let f = model.features(&texts)?;
            for i in 0..lines.len() {
                emit(
                    &mut out,
                    &FeaturesOut {
                        hidden: f.hidden.row(i).to_vec(),
                        rewards: f.rewards.row(i).to_vec(),
                        truncated: f.truncated.contains(&i),
                    },
                )?;
            }
            warn_truncated(
                &format!("{} (line indices from 0)", input.display()),
                &f.truncated,
                model.text_encoder()?.max_len,
            );
        }
        Cmd::PairFeatures { m, refs: path } => {
            let model = load(&m)?;
            if takes_vectors(&model) {
                let pf = model.pair_features_vectors(&vector_references(&path, &model)?)?;
                for row in pf.features.rows() {
                    let feature = row.to_vec();
                    emit(&mut out, &PairFeatureOut { feature })?;
                }
                out.flush()?;
                return Ok(());
            }
            let refs = references(&path)?;
            let pf = model.pair_features(&refs)?;
            for row in pf.features.rows() {
                emit(
                    &mut out,
                    &PairFeatureOut {
                        feature: row.to_vec(),
                    },
                )?;
            }
            warn_truncated(
                &format!("{} (reference indices from 0)", path.display()),
                &pf.truncated,
                model.text_encoder()?.max_len,
            );
        }
        Cmd::User { m, refs, seen } => {
            let model = load(&m)?;
            let u = match (refs, seen) {
                (_, Some(id)) => {
                    let mut u = UserJson::new(model.seen_posterior(&id)?);
                    u.seen_id = Some(id);
                    u
                }
                (Some(path), None) if takes_vectors(&model) => {
                    let refs = vector_references(&path, &model)?;
                    let mut u = UserJson::new(model.posterior_vectors(&refs)?);
                    u.references = Some(refs.len());
                    u
                }
                (Some(path), None) => {
                    let refs = references(&path)?;
                    let pf = model.pair_features(&refs)?;
                    let mut u = UserJson::new(model.user_model().posterior(pf.features.view())?);
                    u.references = Some(refs.len());
                    u.truncated_references = pf.truncated;
                    u
                }
                (None, None) => bail!("pass --refs FILE (reference triplets) or --seen ID"),
            };
            emit(&mut out, &u)?;
        }
        Cmd::Score(a) => score(&a, false, &mut out)?,
        Cmd::Rank(a) => score(&a, true, &mut out)?,
        Cmd::Serve(a) => serve(a)?,
        Cmd::Store(c) => store_cmd(c)?,
    }
    out.flush()?;
    Ok(())
}

fn score(a: &CandidateArgs, rank: bool, out: &mut impl Write) -> anyhow::Result<()> {
    let (m, who, input) = (&a.m, &a.who, a.input.as_path());
    let model = load(m)?;
    let user = posterior_of(&model, who)?;
    if takes_vectors(&model) {
        let lines: Vec<VectorCandidatesLine> =
            read_vector_lines(input, &model, r#"{"features": [[..], ..]}"#)?;
        for (i, l) in lines.iter().enumerate() {
            let s = model
                .score_vectors(&user, &l.features)
                .with_context(|| format!("{}:{}", input.display(), i + 1))?;
            if rank {
                let ranking: Vec<_> = s
                    .ranking()
                    .into_iter()
                    .map(|j| Ranked {
                        index: j,
                        score: s.scores[j],
                        response: None,
                    })
                    .collect();
                emit(out, &RankOut { ranking })?;
            } else {
                let rewards: Vec<Vec<f32>> =
                    s.rewards.rows().into_iter().map(|r| r.to_vec()).collect();
                let (scores, best) = (s.scores.to_vec(), s.best());
                emit(
                    out,
                    &ScoreOut {
                        scores,
                        best,
                        rewards,
                    },
                )?;
            }
        }
        return Ok(());
    }
    let lines: Vec<CandidatesLine> = read_jsonl(input)?;
    for (i, l) in lines.iter().enumerate() {
        let responses: Vec<&str> = l.responses.iter().map(String::as_str).collect();
        let s = model
            .score(&user, &l.prompt, &responses)
            .with_context(|| format!("{}:{}", input.display(), i + 1))?;
        warn_truncated(
            &format!("{}:{} (response indices from 0)", input.display(), i + 1),
            &s.truncated,
            model.text_encoder()?.max_len,
        );
        if rank {
            let ranking: Vec<_> = s
                .ranking()
                .into_iter()
                .map(|j| Ranked {
                    index: j,
                    score: s.scores[j],
                    response: Some(responses[j]),
                })
                .collect();
            emit(out, &RankOut { ranking })?;
        } else {
            let rewards: Vec<Vec<f32>> = s.rewards.rows().into_iter().map(|r| r.to_vec()).collect();
            emit(
                out,
                &ScoreOut {
                    scores: s.scores.to_vec(),
                    best: s.best(),
                    rewards,
                },
            )?;
        }
    }
    Ok(())
}

/// The token: `--token-file`, else `$VRF_API_TOKEN`, else none.
fn token(a: &ServeArgs) -> anyhow::Result<Option<Token>> {
    let text = match &a.token_file {
        Some(path) => std::fs::read_to_string(path)
            .with_context(|| format!("reading token file {}", path.display()))?,
        None => match std::env::var("VRF_API_TOKEN") {
            Ok(t) => t,
            Err(std::env::VarError::NotPresent) => return Ok(None),
            Err(e) => bail!("VRF_API_TOKEN: {e}"),
        },
    };
    let origin = a
        .token_file
        .as_ref()
        .map_or_else(|| "VRF_API_TOKEN".to_string(), |p| p.display().to_string());
    Ok(Some(Token::new(&text).with_context(|| origin)?))
}

fn serve(a: ServeArgs) -> anyhow::Result<()> {
    // The token first: a bad one fails before the model loads or the store file is created.
    let token = token(&a)?;
    let model = Arc::new(load(&a.m)?);
    // The store's bound never outlives the request's.
    let store_timeout = Duration::from_millis(a.s.store_timeout_ms.min(a.timeout_ms));
    let (store, store_name) = open_store(&a.s, model.manifest(), store_timeout)?;
    // For the log line only: on PostgreSQL counting is a full scan, which a large store may
    // not finish within the store timeout; that must not stop the service from starting.
    let users = store
        .len()
        .map_or_else(|e| format!("? ({e})"), |n| n.to_string());
    let mut opts = ServeOptions::default();
    opts.bind = a.bind;
    opts.token = token;
    opts.half_life = a.half_life;
    opts.batch = BatchOptions {
        max_texts: a.max_batch_texts,
        max_wait: Duration::from_millis(a.batch_wait_ms),
        queue: a.max_queue,
    };
    opts.request_timeout = Duration::from_millis(a.timeout_ms);
    opts.limits = Limits {
        max_body_bytes: a.max_body_bytes,
        max_candidates: a.max_candidates,
        max_references: a.max_candidates,
        max_questions: a.max_candidates,
        max_text_chars: a.max_text_chars,
    };
    opts.http_threads = a.http_threads;
    opts.conn = ConnOptions {
        max_connections: a.max_connections,
        header_timeout: Duration::from_millis(a.header_timeout_ms),
        // In-flight requests end by their own timeout; give them that, and a little more.
        drain_timeout: Duration::from_millis(a.timeout_ms) + Duration::from_secs(5),
    };
    opts.stop_on_signals = true;
    let auth = if opts.token.is_some() {
        "bearer token"
    } else {
        "none (loopback)"
    };
    let digest = model.manifest().digest();
    let server = Server::start(Arc::clone(&model), store, opts)?;
    eprintln!(
        "vrf serve: listening on http://{} (model {}, digest {}…, checksums {:?}; store {}, {users} users; auth: {auth})",
        server.local_addr(),
        model.dir().display(),
        &digest[..12],
        model.checksums(),
        store_name,
    );
    server.wait()?;
    eprintln!("vrf serve: stopped");
    Ok(())
}

/// The store `s` names, for the model `manifest` describes, and its name for logs (a
/// PostgreSQL URL without its password).
fn open_store(
    s: &StoreArgs,
    manifest: &Manifest,
    timeout: Duration,
) -> anyhow::Result<(Arc<dyn UserStore>, String)> {
    if let Some(url) = s.store.to_str().filter(|u| is_postgres_url(u)) {
        let mut opts = PgOptions::default();
        opts.op_timeout = timeout;
        opts.max_connections = s.store_connections;
        let store = PgStore::for_model(url, manifest, &opts)?;
        let name = store.redacted_url().to_string();
        return Ok((Arc::new(store), name));
    }
    let store = SqliteStore::for_model(&s.store, manifest)?;
    Ok((Arc::new(store), s.store.display().to_string()))
}

/// The manifest of the model directory `dir` (no weights, tokenizer or graph are loaded).
fn read_manifest(dir: &Path) -> anyhow::Result<Manifest> {
    let path = dir.join(MANIFEST_FILE);
    let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
    Ok(Manifest::from_json(&bytes, &path.display().to_string())?)
}

fn store_cmd(c: StoreCmd) -> anyhow::Result<()> {
    match c {
        StoreCmd::Export { model, s, out } => {
            let manifest = read_manifest(&model)?;
            let timeout = Duration::from_millis(s.store_timeout_ms);
            let (store, name) = open_store(&s, &manifest, timeout)?;
            let digest = manifest.digest();
            let (pooling, d) = (manifest.encoder.pooling, manifest.d);
            let n = if out == Path::new("-") {
                let mut w = std::io::BufWriter::new(std::io::stdout().lock());
                export_users(store.as_ref(), &digest, pooling, d, &mut w, "<stdout>")?
            } else {
                let file = out.display().to_string();
                let mut typed: Option<TransferError> = None;
                let mut n = 0;
                let r = vrf_format::fsutil::write_atomic_with(&out, |w| {
                    match export_users(store.as_ref(), &digest, pooling, d, w, &file) {
                        Ok(k) => {
                            n = k;
                            Ok(())
                        }
                        Err(e) => {
                            typed = Some(e);
                            Err(std::io::Error::other("export failed"))
                        }
                    }
                });
                if let Some(e) = typed {
                    return Err(e.into());
                }
                r.with_context(|| format!("writing {file}"))?;
                n
            };
            eprintln!("vrf store export: {n} users from {name}");
        }
        StoreCmd::Import { model, s, input } => {
            let manifest = read_manifest(&model)?;
            let timeout = Duration::from_millis(s.store_timeout_ms);
            let (store, name) = open_store(&s, &manifest, timeout)?;
            let digest = manifest.digest();
            let n = if input == Path::new("-") {
                let mut r = std::io::stdin().lock();
                import_users(store.as_ref(), &digest, &mut r, "<stdin>")?
            } else {
                let file = input.display().to_string();
                let f = std::fs::File::open(&input).with_context(|| format!("reading {file}"))?;
                let mut r = std::io::BufReader::new(f);
                import_users(store.as_ref(), &digest, &mut r, &file)?
            };
            eprintln!("vrf store import: {n} users into {name}");
        }
    }
    Ok(())
}

fn main() -> std::process::ExitCode {
    match run(Cli::parse()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
