//! The HTTP routes of `vrf serve` and the middleware every request passes (auth, deadline,
//! metrics). Handlers check input first, then tokenize, then wait for the batcher, then do the
//! per-user math; a refused request has cost no backbone time and written nothing. The
//! deadline is enforced where work waits (the batcher queue) and checked once more before a
//! store write, so a 504 always means nothing was written.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{DefaultBodyLimit, Extension, MatchedPath, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use ndarray::{s, Array1, Array2};

use super::api::{
    check_id, questions, references, Health, InlinePosterior, Inputs, Limits, NextQuestionRequest,
    NextQuestionResponse, ObserveRequest, RankResponse, Ranked, ScoreRequest, ScoreResponse,
    UserView, MAX_LATENT_ABS, MAX_LATENT_VAR, MIN_LATENT_VAR,
};
use super::auth::Token;
use super::batcher::{BatchError, Batcher};
use super::error::ApiError;
use super::extract::{ApiJson, ApiPath};
use super::metrics::Metrics;
use super::store::{StoreError, StoredUser, UserStore};
use crate::session::{Features, Question, Reference, Scores, VrfModel};
use vrf_format::math::{best_question, Posterior, UserPosterior};

/// What every handler shares.
pub(crate) struct AppState {
    pub model: Arc<VrfModel>,
    pub store: Arc<dyn UserStore>,
    pub batcher: Batcher,
    pub metrics: Arc<Metrics>,
    pub limits: Limits,
    pub token: Option<Token>,
    /// Forgetting factor applied before each observation (`None`: no forgetting).
    pub decay: Option<f32>,
    pub timeout: Duration,
    pub digest: String,
}

type Shared = Arc<AppState>;

/// When the request must be answered by (set by the middleware from `--timeout-ms`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Deadline(Instant);

/// The service's router.
pub(crate) fn router(state: Shared) -> Router {
    let limit = state.limits.max_body_bytes;
    Router::new()
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .route("/v1/users/{id}", get(get_user).delete(delete_user))
        .route("/v1/users/{id}/observe", post(observe))
        .route("/v1/users/{id}/next-question", post(next_question))
        .route("/v1/score", post(score))
        .route("/v1/rank", post(rank))
        .fallback(|| async { ApiError::not_found("no such route (see docs/openapi.yaml)") })
        .method_not_allowed_fallback(|| async { ApiError::method_not_allowed() })
        .layer(middleware::from_fn_with_state(Arc::clone(&state), guard))
        .layer(DefaultBodyLimit::max(limit))
        .with_state(state)
}

/// Auth (all routes but `/health`), the request's deadline, and request metrics.
async fn guard(State(st): State<Shared>, mut req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |p| p.as_str().to_string());
    let started = Instant::now();
    let authorised = match &st.token {
        Some(token) if route != "/health" => token.accepts(
            req.headers()
                .get(header::AUTHORIZATION)
                .map(|v| v.as_bytes()),
        ),
        _ => true,
    };
    let resp = if !authorised {
        ApiError::unauthorized().into_response()
    } else {
        req.extensions_mut().insert(Deadline(started + st.timeout));
        next.run(req).await
    };
    st.metrics
        .observe_request(&route, resp.status().as_u16(), started.elapsed());
    resp
}

/// Backbone outputs of `texts`, batched with concurrent requests; 504 past the deadline.
async fn features(
    st: &AppState,
    texts: &[(&str, &str)],
    deadline: Deadline,
) -> Result<Features, ApiError> {
    // Tokenizing a large request takes a while: let the runtime move other tasks off this
    // worker meanwhile.
    let encoder = st.model.text_encoder()?;
    let (rows, truncated) = tokio::task::block_in_place(|| encoder.encode_rows(texts))
        .map_err(|e| ApiError::validation(e.to_string()))?;
    let at = tokio::time::Instant::from_std(deadline.0);
    let Ok(out) = tokio::time::timeout_at(at, st.batcher.features(rows)).await else {
        return Err(ApiError::timeout(st.timeout));
    };
    let out = match out {
        Ok(out) => out,
        Err(e @ BatchError::QueueFull(_)) => {
            st.metrics.queue_rejected();
            return Err(e.into());
        }
        Err(e) => return Err(e.into()),
    };
    Ok(Features {
        hidden: out.hidden,
        rewards: out.rewards,
        truncated,
    })
}

/// The first `at` texts' features and the rest's.
fn split_features(f: Features, at: usize) -> (Features, Features) {
    let (before, after): (Vec<usize>, Vec<usize>) = f.truncated.iter().partition(|&&i| i < at);
    let head = |a: &Array2<f32>| a.slice(s![..at, ..]).to_owned();
    let tail = |a: &Array2<f32>| a.slice(s![at.., ..]).to_owned();
    (
        Features {
            hidden: head(&f.hidden),
            rewards: head(&f.rewards),
            truncated: before,
        },
        Features {
            hidden: tail(&f.hidden),
            rewards: tail(&f.rewards),
            truncated: after.into_iter().map(|i| i - at).collect(),
        },
    )
}

/// Runs a store operation on the blocking pool (SQLite waits on disk), timed in the metrics.
async fn store_op<T: Send + 'static>(
    st: &Shared,
    op: &'static str,
    f: impl FnOnce(&AppState) -> Result<T, StoreError> + Send + 'static,
) -> Result<T, ApiError> {
    let shared = Arc::clone(st);
    let started = Instant::now();
    let r = tokio::task::spawn_blocking(move || f(&shared))
        .await
        .map_err(|e| ApiError::internal(format!("store task failed: {e}")))?;
    let result = r.as_ref().map_or_else(StoreError::kind, |_| "ok");
    st.metrics.observe_store(op, result, started.elapsed());
    Ok(r?)
}

/// The view of a stored user whose posterior is `p`.
fn stored_view(id: &str, u: &StoredUser, p: &UserPosterior) -> UserView {
    UserView {
        count: Some(u.state.count),
        created_at_ms: Some(u.created_at_ms),
        updated_at_ms: Some(u.updated_at_ms),
        ..UserView::new(id, "store", p)
    }
}

/// A stored user's posterior, else a seen user's; 404 when neither has the id.
async fn lookup(st: &Shared, id: &str) -> Result<(UserPosterior, Option<StoredUser>), ApiError> {
    check_id(id)?;
    let key = id.to_string();
    if let Some(u) = store_op(st, "get", move |s| s.store.get(&key)).await? {
        return Ok((st.model.posterior_of(&u.state)?, Some(u)));
    }
    Ok((st.model.seen_posterior(id)?, None))
}

async fn health(State(st): State<Shared>) -> Json<Health> {
    // The store's own timeouts bound the ping; a store that does not answer is `degraded`,
    // not an error: a balancer keeps sending scoring that needs no store.
    let store_ok = store_op(&st, "ping", |s| s.store.ping()).await.is_ok();
    Json(Health {
        status: if store_ok { "ok" } else { "degraded" }.into(),
        store: if store_ok { "ok" } else { "unavailable" }.into(),
        model_digest: st.digest.clone(),
        k: st.model.manifest().k,
        d: st.model.manifest().d,
        input: st.model.input(),
        queue_depth: st.batcher.depth(),
    })
}

async fn metrics(State(st): State<Shared>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        st.metrics.render(st.batcher.depth()),
    )
}

async fn get_user(
    State(st): State<Shared>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<UserView>, ApiError> {
    let (p, stored) = lookup(&st, &id).await?;
    Ok(Json(match stored {
        Some(u) => stored_view(&id, &u, &p),
        None => UserView::new(&id, "seen", &p),
    }))
}

async fn delete_user(
    State(st): State<Shared>,
    ApiPath(id): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    check_id(&id)?;
    let key = id.clone();
    if store_op(&st, "delete", move |s| s.store.delete(&key)).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found(format!("user {id:?} is not stored")))
    }
}

async fn observe(
    State(st): State<Shared>,
    Extension(deadline): Extension<Deadline>,
    ApiPath(id): ApiPath<String>,
    ApiJson(req): ApiJson<ObserveRequest>,
) -> Result<Json<UserView>, ApiError> {
    check_id(&id)?;
    let pf = match references(st.model.input(), req.references)? {
        Inputs::Text(refs) => {
            st.limits.check_references(&refs)?;
            let texts: Vec<(&str, &str)> = refs.iter().flat_map(Reference::texts).collect();
            st.model
                .pair_features_of(&features(&st, &texts, deadline).await?)?
        }
        Inputs::Vectors(refs) => {
            st.limits.check_vector_references(&refs)?;
            st.model.pair_features_vectors(&refs)?
        }
    };
    let key = id.clone();
    let stored = store_op(&st, "update", move |s| {
        let um = s.model.user_model();
        s.store.update(&key, &mut |old| {
            let mut state = old.map_or_else(|| um.new_state(), |o| o.state.clone());
            match s.decay {
                Some(d) => um.observe_forgetting(&mut state, pf.features.view(), d)?,
                None => um.observe(&mut state, pf.features.view())?,
            }
            // Past the deadline the client has its 504: write nothing it was not told of.
            if Instant::now() >= deadline.0 {
                return Err(StoreError::Expired);
            }
            Ok(state)
        })
    })
    .await?;
    let p = st.model.posterior_of(&stored.state)?;
    Ok(Json(stored_view(&id, &stored, &p)))
}

fn inline_posterior(st: &AppState, p: &InlinePosterior) -> Result<UserPosterior, ApiError> {
    let d = st.model.manifest().d;
    if p.mean.len() != d || p.var.len() != d {
        return Err(ApiError::validation(format!(
            "`posterior` has {}/{} mean/var entries; this model's latent dimension is {d}",
            p.mean.len(),
            p.var.len()
        )));
    }
    if let Some(m) = p.mean.iter().find(|m| m.abs() > MAX_LATENT_ABS) {
        return Err(ApiError::validation(format!(
            "`posterior.mean` has {m}; entries are within ±{MAX_LATENT_ABS}"
        )));
    }
    if let Some(v) = p
        .var
        .iter()
        .find(|v| !(MIN_LATENT_VAR..=MAX_LATENT_VAR).contains(*v))
    {
        return Err(ApiError::validation(format!(
            "`posterior.var` has {v}; entries are between {MIN_LATENT_VAR} and {MAX_LATENT_VAR}"
        )));
    }
    let f32s = |x: &[f64]| x.iter().map(|&v| v as f32).collect::<Array1<f32>>();
    let q = Posterior::new(f32s(&p.mean), f32s(&p.var))
        .map_err(|e| ApiError::validation(format!("`posterior`: {e}")))?;
    Ok(st.model.user_model().posterior_from_latent(&q)?)
}

/// The user of a scoring request's `user` id: stored, else seen, else (asked for, and the model
/// has a population prior) the prior; the flag says it had no answers.
async fn resolve_user(
    st: &Shared,
    id: &str,
    cold_start: bool,
) -> Result<(UserPosterior, bool), ApiError> {
    match lookup(st, id).await {
        Ok((p, stored)) => Ok((p, stored.is_some_and(|u| u.state.count == 0))),
        Err(e) if cold_start && e.status == StatusCode::NOT_FOUND => {
            if !st.model.has_prior() {
                return Err(ApiError::validation(
                    "`cold_start` needs a model with a population prior; this one has none \
                     (format version 1 or exported with --population-prior false)",
                ));
            }
            Ok((st.model.cold_start()?, true))
        }
        Err(e) => Err(e),
    }
}

/// Scores of a request's candidates under its user, the user, and whether the user had no
/// answers (cold start).
async fn scores(
    st: &Shared,
    req: &ScoreRequest,
    deadline: Deadline,
) -> Result<(Scores, UserPosterior, bool), ApiError> {
    let given = [
        req.user.is_some(),
        req.posterior.is_some(),
        req.references.is_some(),
    ];
    if given.iter().filter(|g| **g).count() != 1 {
        return Err(ApiError::validation(
            "give exactly one of `user`, `posterior` and `references`",
        ));
    }
    if let Some(dim) = st.model.input().features_dim() {
        return vector_scores(st, req, dim).await;
    }
    let (prompt, responses) = st.limits.text_candidates(req)?;
    let refs: Option<Vec<Reference>> = match &req.references {
        Some(r) => match references(st.model.input(), r.clone())? {
            Inputs::Text(t) => Some(t),
            Inputs::Vectors(_) => {
                return Err(ApiError::internal(
                    "a text model's references parsed as vectors",
                ))
            }
        },
        None => None,
    };
    let mut texts: Vec<(&str, &str)> = Vec::new();
    if let Some(refs) = &refs {
        st.limits.check_references(refs)?;
        texts.extend(refs.iter().flat_map(Reference::texts));
    }
    let n_ref = texts.len();
    texts.extend(responses.iter().map(|r| (prompt, r.as_str())));
    if req.cold_start && req.user.is_none() {
        return Err(ApiError::validation(
            "`cold_start` applies to a `user` id only",
        ));
    }
    // A known user is resolved before any backbone time is spent.
    let known = match (&req.user, &req.posterior) {
        (Some(id), _) => Some(resolve_user(st, id, req.cold_start).await?),
        (_, Some(p)) => Some((inline_posterior(st, p)?, false)),
        _ => None,
    };
    // Inline references and candidates go to the backbone as one request.
    let (refs_f, cand_f) = split_features(features(st, &texts, deadline).await?, n_ref);
    let (user, cold) = match known {
        Some(u) => u,
        None => {
            let pf = st.model.pair_features_of(&refs_f)?;
            (st.model.user_model().posterior(pf.features.view())?, false)
        }
    };
    let scores = st.model.user_model().score(&user, cand_f.rewards.view())?;
    Ok((
        Scores {
            scores,
            rewards: cand_f.rewards,
            truncated: cand_f.truncated,
        },
        user,
        cold,
    ))
}

/// [`scores`] for a model fitted on external features: no backbone, no batcher.
async fn vector_scores(
    st: &Shared,
    req: &ScoreRequest,
    dim: usize,
) -> Result<(Scores, UserPosterior, bool), ApiError> {
    let candidates = st.limits.vector_candidates(dim, req)?;
    if req.cold_start && req.user.is_none() {
        return Err(ApiError::validation(
            "`cold_start` applies to a `user` id only",
        ));
    }
    let (user, cold) = match (&req.user, &req.posterior, &req.references) {
        (Some(id), _, _) => resolve_user(st, id, req.cold_start).await?,
        (_, Some(p), _) => (inline_posterior(st, p)?, false),
        (_, _, Some(r)) => match references(st.model.input(), r.clone())? {
            Inputs::Vectors(refs) => {
                st.limits.check_vector_references(&refs)?;
                let pf = st.model.pair_features_vectors(&refs)?;
                (st.model.user_model().posterior(pf.features.view())?, false)
            }
            Inputs::Text(_) => {
                return Err(ApiError::internal(
                    "a features model's references parsed as texts",
                ))
            }
        },
        _ => {
            return Err(ApiError::validation(
                "give exactly one of `user`, `posterior` and `references`",
            ))
        }
    };
    Ok((st.model.score_vectors(&user, &candidates)?, user, cold))
}

async fn score(
    State(st): State<Shared>,
    Extension(deadline): Extension<Deadline>,
    ApiJson(req): ApiJson<ScoreRequest>,
) -> Result<Json<ScoreResponse>, ApiError> {
    let (s, user, cold_start) = scores(&st, &req, deadline).await?;
    Ok(Json(ScoreResponse {
        best: s.best(),
        scores: s.scores.to_vec(),
        weights: user.weights.to_vec(),
        uncertainty: user.uncertainty,
        truncated: s.truncated,
        cold_start,
    }))
}

async fn rank(
    State(st): State<Shared>,
    Extension(deadline): Extension<Deadline>,
    ApiJson(req): ApiJson<ScoreRequest>,
) -> Result<Json<RankResponse>, ApiError> {
    let (s, user, cold_start) = scores(&st, &req, deadline).await?;
    Ok(Json(RankResponse {
        ranking: s
            .ranking()
            .into_iter()
            .map(|index| Ranked {
                index,
                score: s.scores[index],
            })
            .collect(),
        uncertainty: user.uncertainty,
        truncated: s.truncated,
        cold_start,
    }))
}

async fn next_question(
    State(st): State<Shared>,
    Extension(deadline): Extension<Deadline>,
    ApiPath(id): ApiPath<String>,
    ApiJson(req): ApiJson<NextQuestionRequest>,
) -> Result<Json<NextQuestionResponse>, ApiError> {
    check_id(&id)?;
    let asked = questions(st.model.input(), req.questions)?;
    match &asked {
        Inputs::Text(q) => st.limits.check_questions(q)?,
        Inputs::Vectors(q) => st.limits.check_vector_questions(q)?,
    }
    let key = id.clone();
    // A user not stored yet starts from the population (no evidence).
    let state = store_op(&st, "get", move |s| s.store.get(&key))
        .await?
        .map_or_else(|| st.model.new_state(), |u| u.state);
    let values = match &asked {
        Inputs::Text(questions) => {
            let texts: Vec<(&str, &str)> = questions.iter().flat_map(Question::texts).collect();
            st.model
                .question_values_of(&state, &features(&st, &texts, deadline).await?)?
        }
        Inputs::Vectors(questions) => st.model.question_values_vectors(&state, questions)?,
    };
    Ok(Json(NextQuestionResponse {
        best: best_question(&values).unwrap_or(0),
        values: values.into_iter().map(Into::into).collect(),
    }))
}
