//! The JSON bodies of `vrf serve` (docs/openapi.yaml describes the same) and the checks every
//! request passes before it costs backbone time.

use serde::{Deserialize, Serialize};

use super::error::ApiError;
use crate::session::{Question, Reference};
use vrf_format::math::{QuestionValue, UserPosterior};

/// Request bounds: beyond them a request is refused (413 for the body, 422 for the rest).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest request body, bytes.
    pub max_body_bytes: usize,
    /// Most responses per score / rank request.
    pub max_candidates: usize,
    /// Most reference triplets per request.
    pub max_references: usize,
    /// Most candidate questions per next-question request.
    pub max_questions: usize,
    /// Longest prompt or response, bytes of UTF-8.
    pub max_text_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_body_bytes: 1 << 20,
            max_candidates: 64,
            max_references: 64,
            max_questions: 64,
            max_text_bytes: 16 << 10,
        }
    }
}

/// Longest user id, bytes.
pub const MAX_ID_BYTES: usize = 128;

/// `POST /v1/users/{id}/observe`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ObserveRequest {
    /// The user's new reference preferences.
    pub references: Vec<Reference>,
}

/// A posterior given inline: the latent mean and variance (`d` each).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InlinePosterior {
    /// Latent mean.
    pub mean: Vec<f32>,
    /// Latent variance (positive).
    pub var: Vec<f32>,
}

/// `POST /v1/score` and `POST /v1/rank`: a prompt, its candidates, and exactly one of `user`,
/// `posterior`, `references`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScoreRequest {
    /// The prompt.
    pub prompt: String,
    /// Candidate responses.
    pub responses: Vec<String>,
    /// A stored user's id, or a seen (training) user's.
    #[serde(default)]
    pub user: Option<String>,
    /// An inline posterior.
    #[serde(default)]
    pub posterior: Option<InlinePosterior>,
    /// Inline reference triplets (a user who is not stored).
    #[serde(default)]
    pub references: Option<Vec<Reference>>,
    /// With `user`: an id that is neither stored nor a seen user gets the population prior (cold
    /// start) instead of 404. Needs a model with a population prior.
    #[serde(default)]
    pub cold_start: bool,
}

/// `POST /v1/users/{id}/next-question`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NextQuestionRequest {
    /// Candidate pairs to ask about.
    pub questions: Vec<Question>,
}

/// A user as `GET /v1/users/{id}` and observe answer it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct UserView {
    /// The id.
    pub id: String,
    /// `store` (observed through this service) or `seen` (a training user).
    pub source: String,
    /// Observations so far (stored users).
    pub count: Option<usize>,
    /// Latent mean.
    pub mean: Vec<f32>,
    /// Latent variance.
    pub var: Vec<f32>,
    /// Basis weights `w` (sum to 1).
    pub weights: Vec<f32>,
    /// Mean latent variance: how much is still unknown about the user.
    pub uncertainty: f32,
    /// First observation, Unix milliseconds (stored users).
    pub created_at_ms: Option<i64>,
    /// Last update, Unix milliseconds (stored users).
    pub updated_at_ms: Option<i64>,
}

impl UserView {
    /// The view of a posterior.
    pub fn new(id: &str, source: &str, p: &UserPosterior) -> Self {
        Self {
            id: id.to_string(),
            source: source.to_string(),
            count: None,
            mean: p.mean.to_vec(),
            var: p.var.to_vec(),
            weights: p.weights.to_vec(),
            uncertainty: p.uncertainty,
            created_at_ms: None,
            updated_at_ms: None,
        }
    }
}

/// `POST /v1/score`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ScoreResponse {
    /// `r = φ·w` per response, in input order.
    pub scores: Vec<f32>,
    /// Index of the highest score (first on ties).
    pub best: usize,
    /// The user's basis weights.
    pub weights: Vec<f32>,
    /// The user's uncertainty.
    pub uncertainty: f32,
    /// Indices of responses truncated to the model's context (from the left, as in training).
    pub truncated: Vec<usize>,
    /// The user had no answers: these are the population's rewards (the model's prior).
    pub cold_start: bool,
}

/// One entry of a ranking.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Ranked {
    /// Index in the request's `responses`.
    pub index: usize,
    /// Its score.
    pub score: f32,
}

/// `POST /v1/rank`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RankResponse {
    /// Best first; ties in input order.
    pub ranking: Vec<Ranked>,
    /// The user's uncertainty.
    pub uncertainty: f32,
    /// Indices of responses truncated to the model's context.
    pub truncated: Vec<usize>,
    /// The user had no answers: the population's ranking (the model's prior).
    pub cold_start: bool,
}

/// One question's value in a next-question answer.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct QuestionValueView {
    /// `P(a ≻ b)` under the user's current posterior.
    pub p_first: f32,
    /// Expected information gain, nats.
    pub information_gain: f32,
    /// Expected uncertainty after the answer.
    pub expected_uncertainty: f32,
}

impl From<QuestionValue> for QuestionValueView {
    fn from(v: QuestionValue) -> Self {
        Self {
            p_first: v.p_first,
            information_gain: v.information_gain,
            expected_uncertainty: v.expected_uncertainty,
        }
    }
}

/// `POST /v1/users/{id}/next-question`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct NextQuestionResponse {
    /// Index of the most informative question.
    pub best: usize,
    /// Every question's value, in input order.
    pub values: Vec<QuestionValueView>,
}

/// `GET /health`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Health {
    /// `ok`.
    pub status: String,
    /// The served model's digest (what the store records).
    pub model_digest: String,
    /// Number of bases.
    pub k: usize,
    /// Latent dimension.
    pub d: usize,
    /// Requests waiting for the backbone.
    pub queue_depth: usize,
}

/// Errors unless `id` is a usable user id: 1 to [`MAX_ID_BYTES`] bytes of letters, digits and
/// `-_.:@`.
pub fn check_id(id: &str) -> Result<(), ApiError> {
    let ok = !id.is_empty()
        && id.len() <= MAX_ID_BYTES
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.:@".contains(c));
    if ok {
        Ok(())
    } else {
        Err(ApiError::validation(format!(
            "user id {id:?}: use 1 to {MAX_ID_BYTES} letters, digits or -_.:@"
        )))
    }
}

impl Limits {
    /// Errors unless the text `field` is within the length bound.
    pub fn check_text(&self, field: &str, text: &str) -> Result<(), ApiError> {
        if text.len() > self.max_text_bytes {
            return Err(ApiError::validation(format!(
                "`{field}` is {} bytes; the limit is {}",
                text.len(),
                self.max_text_bytes
            )));
        }
        Ok(())
    }

    /// Errors unless `n` items of `field` are between 1 and `max`.
    fn check_count(field: &str, n: usize, max: usize) -> Result<(), ApiError> {
        if n == 0 {
            return Err(ApiError::validation(format!("`{field}` is empty")));
        }
        if n > max {
            return Err(ApiError::validation(format!(
                "`{field}` has {n} entries; the limit is {max}"
            )));
        }
        Ok(())
    }

    /// Checks `field`'s `(prompt, first, second)` items, named `keys`: their number, text
    /// lengths, and that the two responses differ (an identical pair teaches nothing).
    fn check_pairs(
        &self,
        field: &str,
        max: usize,
        keys: [&str; 3],
        items: &[[&str; 3]],
    ) -> Result<(), ApiError> {
        Self::check_count(field, items.len(), max)?;
        for (i, item) in items.iter().enumerate() {
            for (key, text) in keys.iter().zip(item) {
                self.check_text(&format!("{field}[{i}].{key}"), text)?;
            }
            if item[1] == item[2] {
                return Err(ApiError::validation(format!(
                    "{field}[{i}]: {} and {} are the same text (no preference)",
                    keys[1], keys[2]
                )));
            }
        }
        Ok(())
    }

    /// Checks reference triplets: their number, text lengths, and that each pair differs.
    pub fn check_references(&self, refs: &[Reference]) -> Result<(), ApiError> {
        let items: Vec<[&str; 3]> = refs
            .iter()
            .map(|r| [r.prompt.as_str(), r.chosen.as_str(), r.rejected.as_str()])
            .collect();
        self.check_pairs(
            "references",
            self.max_references,
            ["prompt", "chosen", "rejected"],
            &items,
        )
    }

    /// Checks a prompt and its candidates.
    pub fn check_candidates(&self, prompt: &str, responses: &[String]) -> Result<(), ApiError> {
        self.check_text("prompt", prompt)?;
        Self::check_count("responses", responses.len(), self.max_candidates)?;
        for (i, r) in responses.iter().enumerate() {
            self.check_text(&format!("responses[{i}]"), r)?;
        }
        Ok(())
    }

    /// Checks candidate questions: their number, text lengths, and that each pair differs.
    pub fn check_questions(&self, questions: &[Question]) -> Result<(), ApiError> {
        let items: Vec<[&str; 3]> = questions
            .iter()
            .map(|q| [q.prompt.as_str(), q.a.as_str(), q.b.as_str()])
            .collect();
        self.check_pairs(
            "questions",
            self.max_questions,
            ["prompt", "a", "b"],
            &items,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_counts_are_checked() {
        check_id("user-1_a.b:c@d").unwrap();
        for bad in ["", "a b", "é", "a/b", &"x".repeat(MAX_ID_BYTES + 1)] {
            assert!(check_id(bad).is_err(), "{bad:?}");
        }
        let l = Limits {
            max_candidates: 2,
            max_text_bytes: 4,
            ..Limits::default()
        };
        l.check_candidates("p", &["a".into(), "b".into()]).unwrap();
        let e = l
            .check_candidates("p", &["a".into(), "b".into(), "c".into()])
            .unwrap_err();
        assert!(e.message.contains("limit is 2"), "{}", e.message);
        let e = l.check_candidates("p", &[]).unwrap_err();
        assert!(e.message.contains("empty"), "{}", e.message);
        let e = l.check_candidates("toolong", &["a".into()]).unwrap_err();
        assert!(e.message.contains("`prompt`"), "{}", e.message);
        let e = l
            .check_references(&[Reference::new("p", "same", "same")])
            .unwrap_err();
        assert!(e.message.contains("references[0]"), "{}", e.message);
    }
}
