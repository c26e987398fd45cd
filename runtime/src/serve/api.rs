//! The JSON bodies of `vrf serve` (docs/openapi.yaml describes the same) and the checks every
//! request passes before it costs backbone time.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::error::ApiError;
use crate::session::{Question, Reference, VectorQuestion, VectorReference};
use vrf_format::manifest::InputSpec;
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
    /// Longest prompt or response text, characters (Unicode scalar values).
    ///
    /// Characters, not bytes: JSON Schema's `maxLength` (docs/openapi.yaml) counts characters,
    /// so a character limit is the one bound the schema can state exactly. With a byte limit
    /// the schema would have to choose between promising acceptance of texts the server refuses
    /// (`maxLength` = bytes) or forbidding texts the server accepts (`maxLength` = bytes / 4),
    /// and a contract test (Schemathesis) catches either. The memory bound stays with
    /// `max_body_bytes` (a text is at most 4 bytes per character anyway).
    pub max_text_chars: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_body_bytes: 1 << 20,
            max_candidates: 64,
            max_references: 64,
            max_questions: 64,
            max_text_chars: 16 << 10,
        }
    }
}

/// Longest user id, bytes.
pub const MAX_ID_BYTES: usize = 128;

/// Largest magnitude of an inline posterior's mean entries (docs/openapi.yaml states it).
pub const MAX_LATENT_ABS: f64 = 1e6;
/// Smallest inline posterior variance entry.
pub const MIN_LATENT_VAR: f64 = 1e-6;
/// Largest inline posterior variance entry.
pub const MAX_LATENT_VAR: f64 = 1e6;

/// A request body type: where its JSON objects are, so that [`check_objects`] can refuse an
/// array (or another value) where an object belongs before serde sees it (serde would read a
/// struct from a JSON array too).
pub trait WireBody: serde::de::DeserializeOwned {
    /// Positions of objects below the body (itself always one): `field` for an object field,
    /// `field[]` for each item of an array field.
    const OBJECTS: &'static [&'static str];
}

/// The JSON type of `v`, for messages.
fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Errors (422, naming the field) unless the body is an object, each of `objects` (see
/// [`WireBody::OBJECTS`]) present is an object, and no top-level field is `null` (the schema
/// has no nullable field: an optional field is left out, not null).
pub fn check_objects(body: &Value, objects: &[&str]) -> Result<(), ApiError> {
    let Some(top) = body.as_object() else {
        return Err(ApiError::validation(format!(
            "the body must be a JSON object, not {}",
            json_type(body)
        )));
    };
    if let Some((k, _)) = top.iter().find(|(_, v)| v.is_null()) {
        return Err(ApiError::validation(format!(
            "`{k}` is null; leave an optional field out instead"
        )));
    }
    for path in objects {
        let (field, items) = match path.strip_suffix("[]") {
            Some(f) => (f, true),
            None => (*path, false),
        };
        match (top.get(field), items) {
            (Some(Value::Array(list)), true) => {
                for (i, item) in list.iter().enumerate() {
                    if !item.is_object() {
                        return Err(ApiError::validation(format!(
                            "`{field}[{i}]` must be a JSON object, not {}",
                            json_type(item)
                        )));
                    }
                }
            }
            (Some(v), false) if !v.is_object() => {
                return Err(ApiError::validation(format!(
                    "`{field}` must be a JSON object, not {}",
                    json_type(v)
                )));
            }
            // Absent, or an array field that is not an array: typed deserialization says so.
            _ => {}
        }
    }
    Ok(())
}

/// One response as the API takes it: a text (a model with a backbone) or a feature vector (a
/// model fitted on external features, `input.kind = "features"`). Which one a model takes is
/// checked after parsing ([`references`], [`questions`]), so the error can say so.
#[derive(Debug, Clone, PartialEq)]
pub enum WireInput {
    /// A response text.
    Text(String),
    /// A feature vector, as JSON numbers.
    Vector(Vec<f64>),
}

impl<'de> Deserialize<'de> for WireInput {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = WireInput;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a string (a response text) or an array of numbers (a feature vector)")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<WireInput, E> {
                Ok(WireInput::Text(v.to_string()))
            }
            fn visit_string<E: serde::de::Error>(self, v: String) -> Result<WireInput, E> {
                Ok(WireInput::Text(v))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<WireInput, A::Error> {
                let mut v = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1 << 16));
                while let Some(x) = seq.next_element::<f64>()? {
                    v.push(x);
                }
                Ok(WireInput::Vector(v))
            }
        }
        d.deserialize_any(Visitor)
    }
}

/// A reference preference as the API takes it: exactly these fields (unknown ones are refused,
/// unlike the library's [`Reference`], which other readers share). A text model needs
/// `prompt` and texts; a features model vectors and no `prompt`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WireReference {
    /// The prompt (text models only).
    #[serde(default)]
    pub prompt: Option<String>,
    /// The preferred response.
    pub chosen: WireInput,
    /// The other response.
    pub rejected: WireInput,
}

/// A candidate question as the API takes it: exactly these fields.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WireQuestion {
    /// The prompt (text models only).
    #[serde(default)]
    pub prompt: Option<String>,
    /// The first response.
    pub a: WireInput,
    /// The second response.
    pub b: WireInput,
}

/// Items of a request in the kind of input the served model takes.
#[derive(Debug, Clone, PartialEq)]
pub enum Inputs<T, V> {
    /// A model with a backbone: texts.
    Text(Vec<T>),
    /// A model fitted on external features: vectors.
    Vectors(Vec<V>),
}

/// The prompt and two responses of item `i` of `field` (keys `keys`), as texts for a text
/// model or vectors (no prompt) for a features model; 422 naming the item otherwise.
fn item(
    input: InputSpec,
    at: &str,
    prompt: Option<String>,
    [(k1, v1), (k2, v2)]: [(&str, WireInput); 2],
) -> Result<Inputs<[String; 3], [Vec<f32>; 2]>, ApiError> {
    match input.features_dim() {
        None => {
            let prompt = prompt.ok_or_else(|| {
                ApiError::validation(format!("`{at}.prompt` is missing (this model takes texts)"))
            })?;
            let text = |k: &str, v: WireInput| match v {
                WireInput::Text(t) => Ok(t),
                WireInput::Vector(_) => Err(ApiError::validation(format!(
                    "`{at}.{k}` is a feature vector; this model takes texts"
                ))),
            };
            Ok(Inputs::Text(vec![[prompt, text(k1, v1)?, text(k2, v2)?]]))
        }
        Some(dim) => {
            if prompt.is_some() {
                return Err(ApiError::validation(format!(
                    "`{at}.prompt`: this model takes feature vectors of dimension {dim}, not texts; leave `prompt` out"
                )));
            }
            let a = vector(&format!("{at}.{k1}"), dim, v1)?;
            let b = vector(&format!("{at}.{k2}"), dim, v2)?;
            if a == b {
                return Err(ApiError::validation(format!(
                    "{at}: {k1} and {k2} are the same vector (no preference)"
                )));
            }
            Ok(Inputs::Vectors(vec![[a, b]]))
        }
    }
}

/// The largest feature value a request may carry: docs/openapi.yaml's `FeatureVector` bound,
/// within f32's range. A round decimal rather than f32::MAX (3.4028234663852886e38) because
/// serde_json's parser can be one ulp off there, which would put the server and the schema on
/// either side of the bound; 3.4e38 and its neighbours parse exactly.
const MAX_FEATURE_VALUE: f64 = 3.4e38;

/// A feature vector of a features model from the wire: `dim` numbers within ±3.4e38; 422
/// naming `at` otherwise (also for a text where a vector belongs).
pub fn vector(at: &str, dim: usize, v: WireInput) -> Result<Vec<f32>, ApiError> {
    let v = match v {
        WireInput::Vector(v) => v,
        WireInput::Text(_) => {
            return Err(ApiError::validation(format!(
                "`{at}` is a text; this model takes feature vectors of dimension {dim}"
            )))
        }
    };
    if v.len() != dim {
        return Err(ApiError::validation(format!(
            "`{at}` has {} values; this model's feature vectors have dimension {dim}",
            v.len()
        )));
    }
    v.iter()
        .enumerate()
        .map(|(j, &x)| {
            if x.is_finite() && x.abs() <= MAX_FEATURE_VALUE {
                Ok(x as f32)
            } else {
                Err(ApiError::validation(format!(
                    "`{at}[{j}]` = {x:e} is beyond ±3.4e38, the range of feature values"
                )))
            }
        })
        .collect()
}

/// Merges per-item results into one list of the model's kind.
fn collect<T, V>(
    items: impl Iterator<Item = Result<Inputs<T, V>, ApiError>>,
    input: InputSpec,
) -> Result<Inputs<T, V>, ApiError> {
    let (mut texts, mut vectors) = (Vec::new(), Vec::new());
    for item in items {
        match item? {
            Inputs::Text(t) => texts.extend(t),
            Inputs::Vectors(v) => vectors.extend(v),
        }
    }
    Ok(if input.is_text() {
        Inputs::Text(texts)
    } else {
        Inputs::Vectors(vectors)
    })
}

/// Wire references in the served model's kind of input (`input`); 422 naming the first item
/// of the other kind.
pub fn references(
    input: InputSpec,
    refs: Vec<WireReference>,
) -> Result<Inputs<Reference, VectorReference>, ApiError> {
    let items = refs.into_iter().enumerate().map(|(i, r)| {
        item(
            input,
            &format!("references[{i}]"),
            r.prompt,
            [("chosen", r.chosen), ("rejected", r.rejected)],
        )
    });
    Ok(match collect(items, input)? {
        Inputs::Text(t) => Inputs::Text(
            t.into_iter()
                .map(|[p, c, r]| Reference::new(p, c, r))
                .collect(),
        ),
        Inputs::Vectors(v) => Inputs::Vectors(
            v.into_iter()
                .map(|[c, r]| VectorReference::new(c, r))
                .collect(),
        ),
    })
}

/// Wire questions in the served model's kind of input, as [`references`].
pub fn questions(
    input: InputSpec,
    questions: Vec<WireQuestion>,
) -> Result<Inputs<Question, VectorQuestion>, ApiError> {
    let items = questions.into_iter().enumerate().map(|(i, q)| {
        item(
            input,
            &format!("questions[{i}]"),
            q.prompt,
            [("a", q.a), ("b", q.b)],
        )
    });
    Ok(match collect(items, input)? {
        Inputs::Text(t) => Inputs::Text(
            t.into_iter()
                .map(|[p, a, b]| Question::new(p, a, b))
                .collect(),
        ),
        Inputs::Vectors(v) => Inputs::Vectors(
            v.into_iter()
                .map(|[a, b]| VectorQuestion::new(a, b))
                .collect(),
        ),
    })
}

/// `POST /v1/users/{id}/observe`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ObserveRequest {
    /// The user's new reference preferences.
    pub references: Vec<WireReference>,
}

impl WireBody for ObserveRequest {
    const OBJECTS: &'static [&'static str] = &["references[]"];
}

/// A posterior given inline: the latent mean and variance (`d` each).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InlinePosterior {
    /// Latent mean, each entry within ±[`MAX_LATENT_ABS`].
    pub mean: Vec<f64>,
    /// Latent variance, each entry in [[`MIN_LATENT_VAR`], [`MAX_LATENT_VAR`]].
    pub var: Vec<f64>,
}

/// `POST /v1/score` and `POST /v1/rank`: a prompt and its candidate responses (a text model)
/// or the candidates' feature vectors (a features model), and exactly one of `user`,
/// `posterior`, `references`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScoreRequest {
    /// The prompt (text models).
    #[serde(default)]
    pub prompt: Option<String>,
    /// Candidate responses (text models).
    #[serde(default)]
    pub responses: Option<Vec<String>>,
    /// Candidates' feature vectors (features models).
    #[serde(default)]
    pub features: Option<Vec<WireInput>>,
    /// A stored user's id, or a seen (training) user's.
    #[serde(default)]
    pub user: Option<String>,
    /// An inline posterior.
    #[serde(default)]
    pub posterior: Option<InlinePosterior>,
    /// Inline reference triplets (a user who is not stored).
    #[serde(default)]
    pub references: Option<Vec<WireReference>>,
    /// With `user`: an id that is neither stored nor a seen user gets the population prior (cold
    /// start) instead of 404. Needs a model with a population prior.
    #[serde(default)]
    pub cold_start: bool,
}

impl WireBody for ScoreRequest {
    const OBJECTS: &'static [&'static str] = &["posterior", "references[]"];
}

/// `POST /v1/users/{id}/next-question`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NextQuestionRequest {
    /// Candidate pairs to ask about.
    pub questions: Vec<WireQuestion>,
}

impl WireBody for NextQuestionRequest {
    const OBJECTS: &'static [&'static str] = &["questions[]"];
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
    /// `ok`, or `degraded` while the user store does not answer (scoring that needs no store
    /// still works).
    pub status: String,
    /// The user store: `ok` or `unavailable`.
    pub store: String,
    /// The served model's digest (what the store records).
    pub model_digest: String,
    /// Number of bases.
    pub k: usize,
    /// Latent dimension.
    pub d: usize,
    /// What the model takes: `{"kind": "text"}` or `{"kind": "features", "dim": H}`.
    pub input: InputSpec,
    /// Requests waiting for the backbone.
    pub queue_depth: usize,
}

/// Errors unless `id` is a usable user id: 1 to [`MAX_ID_BYTES`] bytes of letters, digits and
/// `-_.:@`, but not `.` or `..` (URL-normalising clients rewrite those path segments, so such a
/// user could never be reached again).
pub fn check_id(id: &str) -> Result<(), ApiError> {
    if id == "." || id == ".." {
        return Err(ApiError::validation(format!(
            "user id {id:?}: `.` and `..` are not user ids (URL path normalisation removes them)"
        )));
    }
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
        // Cheap first: a text within the limit in bytes is within it in characters.
        if text.len() > self.max_text_chars {
            let n = text.chars().count();
            if n > self.max_text_chars {
                return Err(ApiError::validation(format!(
                    "`{field}` is {n} characters; the limit is {}",
                    self.max_text_chars
                )));
            }
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

    /// Checks reference pairs of vectors: their number, and that each pair differs (checked
    /// already by [`references`]).
    pub fn check_vector_references(&self, refs: &[VectorReference]) -> Result<(), ApiError> {
        Self::check_count("references", refs.len(), self.max_references)
    }

    /// Checks candidate questions of vectors: their number.
    pub fn check_vector_questions(&self, questions: &[VectorQuestion]) -> Result<(), ApiError> {
        Self::check_count("questions", questions.len(), self.max_questions)
    }

    /// A features model's candidates from a score request: present, instead of `prompt` and
    /// `responses`, within the candidate limit, each a vector of the model's dimension.
    pub fn vector_candidates(
        &self,
        dim: usize,
        req: &ScoreRequest,
    ) -> Result<Vec<Vec<f32>>, ApiError> {
        if req.prompt.is_some() || req.responses.is_some() {
            return Err(ApiError::validation(format!(
                "this model takes feature vectors of dimension {dim}, not texts: give `features` (one vector per candidate) instead of `prompt` and `responses`"
            )));
        }
        let features = req.features.as_ref().ok_or_else(|| {
            ApiError::validation("`features` is missing (one feature vector per candidate)")
        })?;
        Self::check_count("features", features.len(), self.max_candidates)?;
        features
            .iter()
            .enumerate()
            .map(|(i, v)| vector(&format!("features[{i}]"), dim, v.clone()))
            .collect()
    }

    /// A text model's prompt and candidates from a score request: present, without `features`.
    pub fn text_candidates<'a>(
        &self,
        req: &'a ScoreRequest,
    ) -> Result<(&'a str, &'a [String]), ApiError> {
        if req.features.is_some() {
            return Err(ApiError::validation(
                "this model takes texts, not feature vectors: give `prompt` and `responses` instead of `features`",
            ));
        }
        let (Some(prompt), Some(responses)) = (&req.prompt, &req.responses) else {
            return Err(ApiError::validation(
                "`prompt` and `responses` are required (this model takes texts)",
            ));
        };
        self.check_candidates(prompt, responses)?;
        Ok((prompt, responses))
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
        check_id("...").unwrap();
        check_id(".a").unwrap();
        for bad in [
            "",
            ".",
            "..",
            "a b",
            "é",
            "a/b",
            &"x".repeat(MAX_ID_BYTES + 1),
        ] {
            assert!(check_id(bad).is_err(), "{bad:?}");
        }
        let l = Limits {
            max_candidates: 2,
            max_text_chars: 4,
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
        // Four characters of eight bytes are within a four-character limit.
        l.check_candidates("éééé", &["a".into()]).unwrap();
        assert!(check_objects(&serde_json::json!([1]), &[]).is_err());
        let e = check_objects(&serde_json::json!({"questions": [["p"]]}), &["questions[]"])
            .unwrap_err();
        assert!(e.message.contains("`questions[0]`"), "{}", e.message);
        let e = check_objects(&serde_json::json!({"posterior": [1]}), &["posterior"]).unwrap_err();
        assert!(e.message.contains("`posterior`"), "{}", e.message);
        assert!(check_objects(&serde_json::json!({"user": null}), &[]).is_err());
        let e = l
            .check_references(&[Reference::new("p", "same", "same")])
            .unwrap_err();
        assert!(e.message.contains("references[0]"), "{}", e.message);
    }
}
