//! vrf-wasm: the per-user VRF math (encoder, product of Gaussians, W₂, softmax) for browsers.
//!
//! It reuses `vrf-format`'s pure-ndarray math and model format (no ONNX, no I/O, no
//! threads), so there is a single copy of the formulas: this crate only converts between
//! JavaScript values and [`vrf_format::UserModel`] / [`vrf_format::UserState`], and turns every
//! refusal into a JS `Error` whose message says what is wrong.
//!
//! JSON (the manifest, the safetensors header, the saved state) is read with the JavaScript
//! engine's own parser ([`json`]) into the runtime's plain types, which the runtime then checks
//! exactly as on its native path ([`check_version`], [`UserModelSpec::validate`],
//! [`verify_file`], [`UserModel::from_tensors`], [`UserState::validate`]): the module carries no
//! JSON parser of its own.
#![warn(missing_docs)]

use ndarray::{ArrayView1, ArrayView2};
use vrf_format::manifest::{
    check_version, verify_file, EncoderSpec, FileEntry, InputSpec, Pooling, UserModelSpec,
    MANIFEST_FILE, USER_MODEL_FILE,
};
use vrf_format::{ModelError, UserPosterior};
use vrf_format::{RawTensor, UserModel, UserState};
use wasm_bindgen::prelude::*;

pub use vrf_format::math;

mod json;

/// A JS `Error` whose message is `vrf: <what>: <why>`.
fn js_error(what: &str, why: impl std::fmt::Display) -> JsError {
    JsError::new(&format!("vrf: {what}: {why}"))
}

/// Views a flat row-major buffer as `[rows, cols]`, refusing lengths that are not a positive
/// multiple of `cols` (JS callers pass flat `Float32Array`s).
fn rows<'a>(
    what: &str,
    field: &str,
    data: &'a [f32],
    cols: usize,
) -> Result<ArrayView2<'a, f32>, JsError> {
    if data.is_empty() || cols == 0 || !data.len().is_multiple_of(cols) {
        return Err(js_error(
            what,
            format!(
                "`{field}` has {} values, expected a positive multiple of {cols}",
                data.len()
            ),
        ));
    }
    Ok(ArrayView2::from_shape((data.len() / cols, cols), data).expect("length checked above"))
}

/// The posterior of a user: mean and variance in the latent space, weights over the bases and
/// the scalar uncertainty (mean variance).
#[wasm_bindgen]
pub struct Posterior {
    inner: UserPosterior,
    count: usize,
}

#[wasm_bindgen]
impl Posterior {
    /// Posterior mean `μ_u`, length `d`.
    #[wasm_bindgen(getter)]
    pub fn mean(&self) -> Vec<f32> {
        self.inner.mean.to_vec()
    }

    /// Posterior variance `σ_u²`, length `d`.
    #[wasm_bindgen(getter)]
    pub fn var(&self) -> Vec<f32> {
        self.inner.var.to_vec()
    }

    /// Weights over the `K` bases (non-negative, sum to 1).
    #[wasm_bindgen(getter)]
    pub fn weights(&self) -> Vec<f32> {
        self.inner.weights.to_vec()
    }

    /// Scalar uncertainty: the mean over dimensions of `σ_u²`.
    #[wasm_bindgen(getter)]
    pub fn uncertainty(&self) -> f32 {
        self.inner.uncertainty
    }

    /// Number of reference pairs the posterior rests on.
    #[wasm_bindgen(getter)]
    pub fn count(&self) -> usize {
        self.count
    }

    /// True when the user has no answers yet: the model's population prior (cold start).
    #[wasm_bindgen(getter, js_name = coldStart)]
    pub fn cold_start(&self) -> bool {
        self.count == 0
    }
}

/// Personalised scores of a batch of candidates and the index of the best one.
#[wasm_bindgen]
pub struct Scores {
    scores: Vec<f32>,
    best: usize,
}

#[wasm_bindgen]
impl Scores {
    /// Personalised reward `φ·w` of each candidate, in input order.
    #[wasm_bindgen(getter)]
    pub fn scores(&self) -> Vec<f32> {
        self.scores.clone()
    }

    /// Index of the highest-scoring candidate (the first one on ties).
    #[wasm_bindgen(getter)]
    pub fn best(&self) -> usize {
        self.best
    }
}

/// One user's preference posterior over an exported model's bases, updated in the browser.
#[wasm_bindgen]
pub struct VrfUser {
    model: UserModel,
    state: UserState,
}

#[wasm_bindgen]
impl VrfUser {
    /// Builds from the text of `vrf.json` and the bytes of `user_model.safetensors`; the bytes
    /// must match the manifest's SHA-256 and dimensions.
    #[wasm_bindgen(constructor)]
    pub fn new(
        #[wasm_bindgen(js_name = manifestJson)] manifest_json: &str,
        #[wasm_bindgen(js_name = userModel)] user_model: &[u8],
    ) -> Result<VrfUser, JsError> {
        let (spec, entry) = read_manifest(manifest_json).map_err(|e| js_error("manifest", e))?;
        let model = verify_file(USER_MODEL_FILE, entry.as_ref(), user_model)
            .and_then(|()| read_user_model(&spec, user_model))
            .map_err(|e| js_error("user model", e))?;
        let state = model.new_state();
        Ok(VrfUser { model, state })
    }

    /// Number of bases `K`.
    #[wasm_bindgen(getter)]
    pub fn k(&self) -> usize {
        self.model.k()
    }

    /// Latent dimension `d`.
    #[wasm_bindgen(getter)]
    pub fn d(&self) -> usize {
        self.model.d()
    }

    /// Backbone hidden size `H` of the hidden states `observeHidden` takes.
    #[wasm_bindgen(getter)]
    pub fn hidden(&self) -> usize {
        self.model.hidden()
    }

    /// Width `F` of one pair feature (`2H`, plus `K` when the model uses Δφ).
    #[wasm_bindgen(getter, js_name = featureDim)]
    pub fn feature_dim(&self) -> usize {
        self.model.feature_dim()
    }

    /// Whether the model has a population prior: before the first observation the posterior is
    /// that prior (cold start) instead of an error.
    #[wasm_bindgen(getter, js_name = hasPrior)]
    pub fn has_prior(&self) -> bool {
        self.model.prior().is_some()
    }

    /// Whether pair features end with Δφ, so `observeHidden` needs the basis rewards.
    #[wasm_bindgen(getter, js_name = usesDphi)]
    pub fn uses_dphi(&self) -> bool {
        self.model.uses_dphi()
    }

    /// Number of reference pairs observed since construction, restore or reset.
    #[wasm_bindgen(getter)]
    pub fn count(&self) -> usize {
        self.state.count
    }

    /// Adds reference pairs given as pair features: `M·F` values, row-major (`M ≥ 1`).
    pub fn observe(&mut self, features: &[f32]) -> Result<(), JsError> {
        let f = rows("observe", "features", features, self.model.feature_dim())?;
        self.model
            .observe(&mut self.state, f)
            .map_err(|e| js_error("observe", e))
    }

    /// Adds reference pairs given as the chosen and rejected responses' hidden states (`M·H`
    /// values each) and, for a Δφ model, their basis rewards (`M·K` values each).
    #[wasm_bindgen(js_name = observeHidden)]
    pub fn observe_hidden(
        &mut self,
        #[wasm_bindgen(js_name = hChosen)] h_chosen: &[f32],
        #[wasm_bindgen(js_name = hRejected)] h_rejected: &[f32],
        #[wasm_bindgen(js_name = rewardsChosen)] rewards_chosen: Option<Vec<f32>>,
        #[wasm_bindgen(js_name = rewardsRejected)] rewards_rejected: Option<Vec<f32>>,
    ) -> Result<(), JsError> {
        const WHAT: &str = "observeHidden";
        let (h, k) = (self.model.hidden(), self.model.k());
        let hc = rows(WHAT, "hChosen", h_chosen, h)?;
        let hr = rows(WHAT, "hRejected", h_rejected, h)?;
        let rewards = match (&rewards_chosen, &rewards_rejected) {
            (Some(c), Some(r)) => Some((
                rows(WHAT, "rewardsChosen", c, k)?,
                rows(WHAT, "rewardsRejected", r, k)?,
            )),
            (None, None) => None,
            _ => {
                return Err(js_error(
                    WHAT,
                    "pass both rewardsChosen and rewardsRejected, or neither",
                ))
            }
        };
        let f = self
            .model
            .pair_features(hc, hr, rewards)
            .map_err(|e| js_error(WHAT, e))?;
        self.model
            .observe(&mut self.state, f.view())
            .map_err(|e| js_error(WHAT, e))
    }

    /// The posterior of the pairs observed so far; before the first observation the population prior (cold start), or an error for a model without one.
    pub fn posterior(&self) -> Result<Posterior, JsError> {
        Ok(Posterior {
            inner: self.user_posterior("posterior")?,
            count: self.state.count,
        })
    }

    /// Weights over the bases (as `posterior().weights`); before the first observation the population prior (cold start), or an error for a model without one.
    pub fn weights(&self) -> Result<Vec<f32>, JsError> {
        Ok(self.user_posterior("weights")?.weights.to_vec())
    }

    /// Scalar uncertainty (as `posterior().uncertainty`); before the first observation the population prior (cold start), or an error for a model without one.
    pub fn uncertainty(&self) -> Result<f32, JsError> {
        Ok(self.user_posterior("uncertainty")?.uncertainty)
    }

    /// Personalised scores of candidates given their basis rewards (`N·K` values, row-major)
    /// and the index of the best; before the first observation the population prior (cold start), or an error for a model without one.
    pub fn score(&self, rewards: &[f32]) -> Result<Scores, JsError> {
        let phi = rows("score", "rewards", rewards, self.model.k())?;
        let user = self.user_posterior("score")?;
        let scores = self
            .model
            .score(&user, phi)
            .map_err(|e| js_error("score", e))?
            .to_vec();
        // `rows` refused an empty batch and the math non-finite rewards.
        let best = math::argmax(&scores).unwrap_or(0);
        Ok(Scores { scores, best })
    }

    /// `P(a ≻ b)` for this user from two responses' basis rewards (`K` values each).
    #[wasm_bindgen(js_name = preferenceProbability)]
    pub fn preference_probability(
        &self,
        #[wasm_bindgen(js_name = rewardsA)] rewards_a: &[f32],
        #[wasm_bindgen(js_name = rewardsB)] rewards_b: &[f32],
    ) -> Result<f32, JsError> {
        const WHAT: &str = "preferenceProbability";
        let k = self.model.k();
        for (field, r) in [("rewardsA", rewards_a), ("rewardsB", rewards_b)] {
            if r.len() != k {
                return Err(js_error(
                    WHAT,
                    format!("`{field}` has {} values, expected K = {k}", r.len()),
                ));
            }
        }
        let user = self.user_posterior(WHAT)?;
        self.model
            .preference_probability(
                &user,
                ArrayView1::from(rewards_a),
                ArrayView1::from(rewards_b),
            )
            .map_err(|e| js_error(WHAT, e))
    }

    /// The user's state (pooling, count and natural parameters) as JSON, e.g. for local storage.
    #[wasm_bindgen(js_name = saveState)]
    pub fn save_state(&self) -> String {
        self.state.to_json()
    }

    /// Replaces the state by one from `saveState`; throws (keeping the current state) if the
    /// JSON is malformed or does not fit this model.
    #[wasm_bindgen(js_name = loadState)]
    pub fn load_state(&mut self, json: &str) -> Result<(), JsError> {
        let state = read_state(json)
            .map_err(|e| js_error("loadState", format!("malformed state JSON: {e}")))?;
        state
            .validate(self.model.pooling(), self.model.d())
            .map_err(|e| js_error("loadState", e))?;
        self.state = state;
        Ok(())
    }

    /// Expected information gain (nats) of asking each of Q candidate questions `(a, b)`: pair
    /// features with `a` chosen and with `b` chosen (`Q·F` values each) and the basis-reward
    /// differences `φ(a) − φ(b)` (`Q·K` values). Ask the question with the largest value
    /// (`math.best_question` natively). Works before the first observation too.
    #[wasm_bindgen(js_name = questionValues)]
    pub fn question_values(
        &self,
        #[wasm_bindgen(js_name = featuresAb)] features_ab: &[f32],
        #[wasm_bindgen(js_name = featuresBa)] features_ba: &[f32],
        delta: &[f32],
    ) -> Result<Vec<f32>, JsError> {
        const WHAT: &str = "questionValues";
        let f = self.model.feature_dim();
        let ab = rows(WHAT, "featuresAb", features_ab, f)?;
        let ba = rows(WHAT, "featuresBa", features_ba, f)?;
        let delta = rows(WHAT, "delta", delta, self.model.k())?;
        let values = self
            .model
            .question_values(&self.state, ab, ba, delta)
            .map_err(|e| js_error(WHAT, e))?;
        Ok(values.iter().map(|v| v.information_gain).collect())
    }

    /// Whether the model was fitted on external feature vectors (its manifest's `input.kind` is
    /// `features`): the `*Vectors` methods then take those vectors (`hidden` values each).
    #[wasm_bindgen(getter, js_name = takesVectors)]
    pub fn takes_vectors(&self) -> bool {
        self.model.heads().is_some()
    }

    /// Basis rewards φ (`N·K` values, row-major) of feature vectors (`N·H` values) through the
    /// model's heads; throws for a model with a backbone.
    #[wasm_bindgen(js_name = basisRewards)]
    pub fn basis_rewards(&self, vectors: &[f32]) -> Result<Vec<f32>, JsError> {
        const WHAT: &str = "basisRewards";
        let v = rows(WHAT, "vectors", vectors, self.model.hidden())?;
        let phi = self
            .model
            .basis_rewards("vectors", v)
            .map_err(|e| js_error(WHAT, e))?;
        Ok(phi.into_raw_vec_and_offset().0)
    }

    /// Adds reference pairs given as the chosen and rejected responses' feature vectors (`M·H`
    /// values each) of a model fitted on external features: φ from the heads, then as
    /// `observeHidden`.
    #[wasm_bindgen(js_name = observeVectors)]
    pub fn observe_vectors(&mut self, chosen: &[f32], rejected: &[f32]) -> Result<(), JsError> {
        const WHAT: &str = "observeVectors";
        let f = self.vector_pair_features(WHAT, ("chosen", chosen), ("rejected", rejected))?;
        self.model
            .observe(&mut self.state, f.view())
            .map_err(|e| js_error(WHAT, e))
    }

    /// Personalised scores of candidates given as feature vectors (`N·H` values).
    #[wasm_bindgen(js_name = scoreVectors)]
    pub fn score_vectors(&self, vectors: &[f32]) -> Result<Scores, JsError> {
        const WHAT: &str = "scoreVectors";
        let v = rows(WHAT, "vectors", vectors, self.model.hidden())?;
        let phi = self
            .model
            .basis_rewards("vectors", v)
            .map_err(|e| js_error(WHAT, e))?;
        self.score(&phi.into_raw_vec_and_offset().0)
    }

    /// `P(a ≻ b)` for this user from two responses' feature vectors (`H` values each).
    #[wasm_bindgen(js_name = preferenceProbabilityVectors)]
    pub fn preference_probability_vectors(&self, a: &[f32], b: &[f32]) -> Result<f32, JsError> {
        const WHAT: &str = "preferenceProbabilityVectors";
        let h = self.model.hidden();
        let phi_a = self.phi(WHAT, "a", a, h)?;
        let phi_b = self.phi(WHAT, "b", b, h)?;
        self.preference_probability(&phi_a, &phi_b)
    }

    /// Expected information gain of Q candidate questions given as the two responses' feature
    /// vectors (`Q·H` values each), as `questionValues`.
    #[wasm_bindgen(js_name = questionValuesVectors)]
    pub fn question_values_vectors(&self, a: &[f32], b: &[f32]) -> Result<Vec<f32>, JsError> {
        const WHAT: &str = "questionValuesVectors";
        let h = self.model.hidden();
        let (va, vb) = (rows(WHAT, "a", a, h)?, rows(WHAT, "b", b, h)?);
        let pa = self
            .model
            .basis_rewards("a", va)
            .map_err(|e| js_error(WHAT, e))?;
        let pb = self
            .model
            .basis_rewards("b", vb)
            .map_err(|e| js_error(WHAT, e))?;
        let ab = self
            .model
            .pair_features(va, vb, Some((pa.view(), pb.view())))
            .map_err(|e| js_error(WHAT, e))?;
        let ba = self
            .model
            .pair_features(vb, va, Some((pb.view(), pa.view())))
            .map_err(|e| js_error(WHAT, e))?;
        let delta = &pa - &pb;
        let values = self
            .model
            .question_values(&self.state, ab.view(), ba.view(), delta.view())
            .map_err(|e| js_error(WHAT, e))?;
        Ok(values.iter().map(|v| v.information_gain).collect())
    }

    /// Forgetting: scales the evidence so far by `factor` in (0, 1] (e.g. `0.5 ** (1 / h)`
    /// before each new observation for a half-life of `h` observations); throws for other
    /// factors or a mean-pooling model.
    pub fn forget(&mut self, factor: f32) -> Result<(), JsError> {
        self.state.decay(factor).map_err(|e| js_error("forget", e))
    }

    /// Forgets every observation.
    pub fn reset(&mut self) {
        self.state = self.model.new_state();
    }
}

impl VrfUser {
    /// φ of one feature vector (`h` values) named `field`.
    fn phi(
        &self,
        what: &str,
        field: &'static str,
        v: &[f32],
        h: usize,
    ) -> Result<Vec<f32>, JsError> {
        if v.len() != h {
            return Err(js_error(
                what,
                format!("`{field}` has {} values, expected H = {h}", v.len()),
            ));
        }
        let v = rows(what, field, v, h)?;
        let phi = self
            .model
            .basis_rewards(field, v)
            .map_err(|e| js_error(what, e))?;
        Ok(phi.into_raw_vec_and_offset().0)
    }

    /// Pair features of reference pairs given as chosen and rejected feature vectors.
    fn vector_pair_features(
        &self,
        what: &str,
        (cn, chosen): (&'static str, &[f32]),
        (rn, rejected): (&'static str, &[f32]),
    ) -> Result<ndarray::Array2<f32>, JsError> {
        let h = self.model.hidden();
        let (c, r) = (rows(what, cn, chosen, h)?, rows(what, rn, rejected, h)?);
        let pc = self
            .model
            .basis_rewards(cn, c)
            .map_err(|e| js_error(what, e))?;
        let pr = self
            .model
            .basis_rewards(rn, r)
            .map_err(|e| js_error(what, e))?;
        self.model
            .pair_features(c, r, Some((pc.view(), pr.view())))
            .map_err(|e| js_error(what, e))
    }

    fn user_posterior(&self, what: &str) -> Result<UserPosterior, JsError> {
        self.model
            .posterior_of(&self.state)
            .map_err(|e| js_error(what, e))
    }
}

/// The fields of `vrf.json` the user model needs, checked as `Manifest::from_json` checks them
/// (version first), and the manifest's entry for `user_model.safetensors`.
fn read_manifest(text: &str) -> Result<(UserModelSpec, Option<FileEntry>), ModelError> {
    let bad = |message: String| ModelError::Manifest {
        origin: MANIFEST_FILE.to_string(),
        message,
    };
    let m = json::parse(text).map_err(bad)?;
    check_version(
        m.opt_string("format").as_deref(),
        m.opt_uint("format_version").map_err(bad)?,
        MANIFEST_FILE,
    )?;
    let enc = m.obj("encoder").map_err(bad)?;
    let pooling = enc.string("pooling").map_err(bad)?;
    let pooling = Pooling::from_name(&pooling).ok_or_else(|| {
        bad(format!(
            "field `encoder.pooling` is \"{pooling}\", expected \"pog\" or \"mean\""
        ))
    })?;
    let input = match m.opt_obj("input").map_err(bad)? {
        None => InputSpec::Text,
        Some(i) => match i.string("kind").map_err(bad)?.as_str() {
            "text" => InputSpec::Text,
            "features" => InputSpec::Features {
                dim: i.usize("dim").map_err(bad)?,
            },
            other => {
                return Err(bad(format!(
                    "field `input.kind` is \"{other}\", expected \"text\" or \"features\""
                )))
            }
        },
    };
    let spec = UserModelSpec {
        k: m.usize("k").map_err(bad)?,
        d: m.usize("d").map_err(bad)?,
        hidden: m.usize("hidden").map_err(bad)?,
        tau: m.number("tau").map_err(bad)? as f32,
        temperature: m.opt_number("temperature").map_err(bad)?.unwrap_or(1.0) as f32,
        encoder: EncoderSpec {
            input_dim: enc.usize("input_dim").map_err(bad)?,
            hidden_dim: enc.usize("hidden_dim").map_err(bad)?,
            dphi: enc.boolean("dphi").map_err(bad)?,
            pooling,
            prior: enc.opt_boolean("prior").map_err(bad)?.unwrap_or(false),
        },
        input,
    };
    spec.validate(MANIFEST_FILE)?;
    let entry = match m
        .obj("files")
        .and_then(|f| f.opt_obj(USER_MODEL_FILE))
        .map_err(bad)?
    {
        Some(e) => Some(FileEntry {
            sha256: e.string("sha256").map_err(bad)?,
            bytes: e.uint("bytes").map_err(bad)?,
        }),
        None => None,
    };
    Ok((spec, entry))
}

/// The user model from `user_model.safetensors` bytes: an 8-byte little-endian header length, a
/// JSON header (`{name: {dtype, shape, data_offsets: [start, end]}}`, offsets into the data
/// after the header), then the data; the runtime checks every tensor against the spec.
fn read_user_model(spec: &UserModelSpec, bytes: &[u8]) -> Result<UserModel, ModelError> {
    let bad = |message: String| ModelError::Safetensors {
        file: USER_MODEL_FILE,
        message,
    };
    let (len, rest) = match bytes.split_first_chunk::<8>() {
        Some((len, rest)) => (u64::from_le_bytes(*len), rest),
        None => return Err(bad("shorter than the 8-byte header length".into())),
    };
    if len > rest.len() as u64 {
        return Err(bad(format!(
            "header length {len} exceeds the {} bytes that follow it",
            rest.len()
        )));
    }
    let (header, data) = rest.split_at(len as usize);
    let header = std::str::from_utf8(header).map_err(|_| bad("header is not UTF-8".into()))?;
    let header = json::parse(header).map_err(|e| bad(format!("header: {e}")))?;
    UserModel::from_tensors(spec, |name| {
        let Some(t) = header.opt_obj(name).map_err(bad)? else {
            return Ok(None);
        };
        let (start, end) = match t.usizes("data_offsets").map_err(bad)?[..] {
            [start, end] if start <= end && end <= data.len() => (start, end),
            _ => {
                return Err(bad(format!(
                    "tensor `{name}`: data_offsets are not [start, end] within the {} data bytes",
                    data.len()
                )))
            }
        };
        Ok(Some(RawTensor {
            dtype: t.string("dtype").map_err(bad)?,
            shape: t.usizes("shape").map_err(bad)?,
            data: &data[start..end],
        }))
    })
}

/// A state from `saveState`'s JSON (not yet checked against the model).
fn read_state(text: &str) -> Result<UserState, String> {
    let s = json::parse(text)?;
    let pooling = s.string("pooling")?;
    Ok(UserState {
        pooling: Pooling::from_name(&pooling).ok_or_else(|| {
            format!("field `pooling` is \"{pooling}\", expected \"pog\" or \"mean\"")
        })?,
        count: s.usize("count")?,
        a: s.floats("a")?,
        b: s.floats("b")?,
    })
}
