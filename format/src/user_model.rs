//! The per-user half of an exported model: encoder + bases + τ, loaded from
//! `user_model.safetensors`, and a user's running state (pure; shared with the wasm crate).

use ndarray::{Array1, Array2, ArrayView1, ArrayView2, Axis};
use safetensors::SafeTensors;
use serde::{Deserialize, Serialize};

use crate::error::ModelError;
use crate::manifest::{InputSpec, Manifest, Pooling, UserModelSpec, USER_MODEL_FILE};
use crate::math::{
    calibrated_preference_probability, mean_pool, pair_features, personalised_rewards,
    pog_with_prior, question_value_with_prior, Bases, BasisHeads, Encoder, Linear, Mlp,
    NaturalParams, Posterior, QuestionValue, UserPosterior,
};
use crate::MathError;

/// Tensor names inside `user_model.safetensors`.
pub mod names {
    /// Encoder first layer weight `[hidden_dim, input_dim]`.
    pub const ENC_L1_W: &str = "encoder.l1.weight";
    /// Encoder first layer bias `[hidden_dim]`.
    pub const ENC_L1_B: &str = "encoder.l1.bias";
    /// Encoder second layer weight `[2d, hidden_dim]` (μ rows first, any μ scale folded in).
    pub const ENC_L2_W: &str = "encoder.l2.weight";
    /// Encoder second layer bias `[2d]`.
    pub const ENC_L2_B: &str = "encoder.l2.bias";
    /// Basis means `[K, d]`.
    pub const BASES_MEANS: &str = "bases.means";
    /// Basis log-variances `[K, d]`.
    pub const BASES_LOG_VAR: &str = "bases.log_var";
    /// Population prior mean `m₀` `[d]` (format version 2, `encoder.prior`).
    pub const PRIOR_MEAN: &str = "prior.mean";
    /// Population prior log-variance `log s₀²` `[d]` (format version 2, `encoder.prior`).
    pub const PRIOR_LOG_VAR: &str = "prior.log_var";
    /// Basis heads first layer weight `[H, H]` (features models, format version 3).
    pub const HEADS_L1_W: &str = "heads.l1.weight";
    /// Basis heads first layer bias `[H]` (features models).
    pub const HEADS_L1_B: &str = "heads.l1.bias";
    /// Basis heads second layer weight `[K, H]` (features models).
    pub const HEADS_L2_W: &str = "heads.l2.weight";
    /// Basis heads second layer bias `[K]` (features models).
    pub const HEADS_L2_B: &str = "heads.l2.bias";
    /// The heads' names, in file order (after [`ALL`]).
    pub const HEADS: [&str; 4] = [HEADS_L1_W, HEADS_L1_B, HEADS_L2_W, HEADS_L2_B];
    /// All names of every model, in file order.
    pub const ALL: [&str; 6] = [
        ENC_L1_W,
        ENC_L1_B,
        ENC_L2_W,
        ENC_L2_B,
        BASES_MEANS,
        BASES_LOG_VAR,
    ];
}

/// Encoder, bases, τ and pooling of an exported model: pair features → user posterior → weights.
#[derive(Debug, Clone, PartialEq)]
pub struct UserModel {
    encoder: Encoder,
    bases: Bases,
    tau: f32,
    pooling: Pooling,
    dphi: bool,
    hidden: usize,
    prior: Option<Posterior>,
    temperature: f32,
    heads: Option<BasisHeads>,
}

/// One tensor as a model file stores it, before any check: the dtype as safetensors names it
/// (`F32`), the shape, and the little-endian data bytes.
#[derive(Debug, Clone, PartialEq)]
pub struct RawTensor<'a> {
    /// Dtype name, e.g. `F32`.
    pub dtype: String,
    /// Shape.
    pub shape: Vec<usize>,
    /// Data, little-endian.
    pub data: &'a [u8],
}

/// The tensor `name` as f32 values, checked against the dtype and the manifest's shape.
fn tensor<'a>(
    lookup: &mut impl FnMut(&'static str) -> Result<Option<RawTensor<'a>>, ModelError>,
    name: &'static str,
    shape: &[usize],
) -> Result<Vec<f32>, ModelError> {
    let t = lookup(name)?.ok_or(ModelError::MissingTensor {
        file: USER_MODEL_FILE,
        name,
    })?;
    if t.dtype != "F32" {
        return Err(ModelError::TensorDtype {
            name,
            dtype: t.dtype,
        });
    }
    if t.shape != shape {
        return Err(ModelError::TensorShape {
            name,
            expected: shape.to_vec(),
            got: t.shape,
        });
    }
    // The safetensors crate guarantees this; a caller's own header parser (wasm) may not.
    let want = shape.iter().product::<usize>() * 4;
    if t.data.len() != want {
        return Err(ModelError::Safetensors {
            file: USER_MODEL_FILE,
            message: format!(
                "tensor `{name}` has {} data bytes, its shape needs {want}",
                t.data.len()
            ),
        });
    }
    Ok(t.data
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect())
}

fn array2(v: Vec<f32>, rows: usize, cols: usize) -> Array2<f32> {
    Array2::from_shape_vec((rows, cols), v).expect("shape was checked against the file")
}

impl UserModel {
    /// Builds from parts (tests, or a caller holding the tensors already).
    pub fn new(
        encoder: Encoder,
        bases: Bases,
        tau: f32,
        pooling: Pooling,
        dphi: bool,
        hidden: usize,
    ) -> Result<Self, ModelError> {
        let want = 2 * hidden + if dphi { bases.k() } else { 0 };
        if encoder.in_dim() != want {
            return Err(MathError::DimensionMismatch {
                field: "encoder input (2H + K·dphi)",
                expected: want,
                got: encoder.in_dim(),
            }
            .into());
        }
        if encoder.d() != bases.d() {
            return Err(MathError::DimensionMismatch {
                field: "bases (d)",
                expected: encoder.d(),
                got: bases.d(),
            }
            .into());
        }
        crate::math::check_positive("tau", tau)?;
        Ok(Self {
            encoder,
            bases,
            tau,
            pooling,
            dphi,
            hidden,
            prior: None,
            temperature: 1.0,
            heads: None,
        })
    }

    /// The same model with calibration temperature `T` in its preference probabilities
    /// `σ(z / T)` (docs/METHOD.md §4).
    pub fn with_temperature(mut self, temperature: f32) -> Result<Self, ModelError> {
        self.temperature = crate::math::check_positive("temperature", temperature)?;
        Ok(self)
    }

    /// The calibration temperature of preference probabilities (1: none).
    pub fn temperature(&self) -> f32 {
        self.temperature
    }

    /// The same model with a population prior `p₀` in every posterior (docs/METHOD.md §2); PoG
    /// pooling only.
    pub fn with_prior(mut self, prior: Posterior) -> Result<Self, ModelError> {
        if self.pooling != Pooling::Pog {
            return Err(ModelError::Manifest {
                origin: "user model".into(),
                message: "a population prior is defined only for `pog` pooling".into(),
            });
        }
        crate::math::check_len("prior (d)", self.d(), prior.d())?;
        self.prior = Some(prior);
        Ok(self)
    }

    /// The same model taking feature vectors through `heads` (a model fitted on external
    /// features): the heads map `H` to `K`.
    pub fn with_heads(mut self, heads: BasisHeads) -> Result<Self, ModelError> {
        crate::math::check_len("heads input (H)", self.hidden, heads.dim())?;
        crate::math::check_len("heads output (K)", self.k(), heads.k())?;
        self.heads = Some(heads);
        Ok(self)
    }

    /// The basis heads of a model that takes feature vectors; `None` for a text model (whose
    /// heads are part of its ONNX graph).
    pub fn heads(&self) -> Option<&BasisHeads> {
        self.heads.as_ref()
    }

    /// What the model takes: texts, or feature vectors of dimension `H`.
    pub fn input(&self) -> InputSpec {
        match self.heads {
            Some(_) => InputSpec::Features { dim: self.hidden },
            None => InputSpec::Text,
        }
    }

    /// Basis rewards φ `[N, K]` of feature vectors `[N, H]` through the model's heads; a
    /// [`ModelError::WrongInput`] for a text model. Errors name `field` and the bad row.
    pub fn basis_rewards(
        &self,
        field: &'static str,
        vectors: ArrayView2<'_, f32>,
    ) -> Result<Array2<f32>, ModelError> {
        let heads = self.heads.as_ref().ok_or(ModelError::WrongInput {
            expected: InputSpec::Text.describe(),
            given: "feature vectors",
        })?;
        crate::math::check_vectors(field, heads.dim(), vectors)?;
        Ok(heads.forward(vectors)?)
    }

    /// The population prior `p₀`, when the model has one: the posterior of a user with no answers.
    pub fn prior(&self) -> Option<&Posterior> {
        self.prior.as_ref()
    }

    /// Loads `user_model.safetensors` bytes, checking them against the manifest's SHA-256 and
    /// dimensions.
    pub fn from_bytes(manifest: &Manifest, bytes: &[u8]) -> Result<Self, ModelError> {
        manifest.verify(USER_MODEL_FILE, bytes)?;
        Self::from_unverified_bytes(manifest, bytes)
    }

    /// As [`UserModel::from_bytes`] but without the checksum (for bytes already verified).
    pub fn from_unverified_bytes(manifest: &Manifest, bytes: &[u8]) -> Result<Self, ModelError> {
        let st = SafeTensors::deserialize(bytes).map_err(|e| ModelError::Safetensors {
            file: USER_MODEL_FILE,
            message: e.to_string(),
        })?;
        Self::from_tensors(&manifest.user_model_spec(), |name| {
            Ok(st.tensor(name).ok().map(|t| RawTensor {
                dtype: format!("{:?}", t.dtype()),
                shape: t.shape().to_vec(),
                data: t.data(),
            }))
        })
    }

    /// Builds from the manifest's fields and a lookup of the tensors by name (`Ok(None)`: no such
    /// tensor; `Err`: the file is malformed), checking every tensor's dtype and shape against the
    /// spec. [`UserModel::from_bytes`] looks tensors up with the safetensors crate; the wasm crate
    /// with the browser's JSON parser.
    pub fn from_tensors<'a>(
        spec: &UserModelSpec,
        mut lookup: impl FnMut(&'static str) -> Result<Option<RawTensor<'a>>, ModelError>,
    ) -> Result<Self, ModelError> {
        let (inp, hid, d, k) = (
            spec.encoder.input_dim,
            spec.encoder.hidden_dim,
            spec.d,
            spec.k,
        );
        let l = &mut lookup;
        let l1 = Linear::new(
            array2(tensor(l, names::ENC_L1_W, &[hid, inp])?, hid, inp),
            Array1::from(tensor(l, names::ENC_L1_B, &[hid])?),
        )?;
        let l2 = Linear::new(
            array2(tensor(l, names::ENC_L2_W, &[2 * d, hid])?, 2 * d, hid),
            Array1::from(tensor(l, names::ENC_L2_B, &[2 * d])?),
        )?;
        let encoder = Encoder::new(Mlp::new(l1, l2)?, d)?;
        let bases = Bases::new(
            array2(tensor(l, names::BASES_MEANS, &[k, d])?, k, d),
            array2(tensor(l, names::BASES_LOG_VAR, &[k, d])?, k, d),
        )?;
        let model = Self::new(
            encoder,
            bases,
            spec.tau,
            spec.encoder.pooling,
            spec.encoder.dphi,
            spec.hidden,
        )?
        .with_temperature(spec.temperature)?;
        let model = match spec.input {
            InputSpec::Text => model,
            InputSpec::Features { dim: h } => {
                let l1 = Linear::new(
                    array2(tensor(l, names::HEADS_L1_W, &[h, h])?, h, h),
                    Array1::from(tensor(l, names::HEADS_L1_B, &[h])?),
                )?;
                let l2 = Linear::new(
                    array2(tensor(l, names::HEADS_L2_W, &[k, h])?, k, h),
                    Array1::from(tensor(l, names::HEADS_L2_B, &[k])?),
                )?;
                model.with_heads(BasisHeads::new(l1, l2)?)?
            }
        };
        if !spec.encoder.prior {
            return Ok(model);
        }
        let mean = Array1::from(tensor(l, names::PRIOR_MEAN, &[d])?);
        let var = Array1::from(tensor(l, names::PRIOR_LOG_VAR, &[d])?).mapv(libm::expf);
        model.with_prior(Posterior::new(mean, var)?)
    }

    /// The encoder.
    pub fn encoder(&self) -> &Encoder {
        &self.encoder
    }

    /// The bases.
    pub fn bases(&self) -> &Bases {
        &self.bases
    }

    /// Softmax temperature τ.
    pub fn tau(&self) -> f32 {
        self.tau
    }

    /// Pooling of per-pair Gaussians.
    pub fn pooling(&self) -> Pooling {
        self.pooling
    }

    /// Number of bases K.
    pub fn k(&self) -> usize {
        self.bases.k()
    }

    /// Latent dimension d.
    pub fn d(&self) -> usize {
        self.encoder.d()
    }

    /// Backbone hidden size H the encoder expects.
    pub fn hidden(&self) -> usize {
        self.hidden
    }

    /// Whether pair features end with Δφ.
    pub fn uses_dphi(&self) -> bool {
        self.dphi
    }

    /// Width of one pair feature.
    pub fn feature_dim(&self) -> usize {
        self.encoder.in_dim()
    }

    /// Pair features `[M, F]` from chosen/rejected hidden states `[M, H]` and, when the model
    /// uses Δφ, their basis rewards `[M, K]`.
    pub fn pair_features(
        &self,
        h_chosen: ArrayView2<'_, f32>,
        h_rejected: ArrayView2<'_, f32>,
        rewards: Option<(ArrayView2<'_, f32>, ArrayView2<'_, f32>)>,
    ) -> Result<Array2<f32>, ModelError> {
        crate::math::check_len("h_chosen (columns = H)", self.hidden, h_chosen.ncols())?;
        let dphi = match (self.dphi, rewards) {
            (true, Some((pc, pr))) => {
                crate::math::check_len("rewards_chosen (columns = K)", self.k(), pc.ncols())?;
                crate::math::check_len("rewards_rejected (columns = K)", self.k(), pr.ncols())?;
                crate::math::check_len("rewards_rejected (rows)", pc.nrows(), pr.nrows())?;
                Some(&pc - &pr)
            }
            (true, None) => return Err(ModelError::NeedsRewards),
            (false, _) => None,
        };
        Ok(pair_features(
            h_chosen,
            h_rejected,
            dphi.as_ref().map(|a| a.view()),
        )?)
    }

    /// A user's posterior, weights and uncertainty from reference pair features `[M, F]`, in one
    /// pass (encoder → pooling → W₂ → softmax).
    /// With no rows, a model with a population prior gives the prior (cold start); one without
    /// refuses with [`MathError::EmptyReferenceSet`].
    pub fn posterior(&self, features: ArrayView2<'_, f32>) -> Result<UserPosterior, ModelError> {
        if features.nrows() == 0 {
            return match &self.prior {
                Some(p0) => self.posterior_from_latent(p0),
                None => Err(MathError::EmptyReferenceSet.into()),
            };
        }
        let (mu, logvar) = self.encoder.encode(features)?;
        let q = match self.pooling {
            Pooling::Pog => pog_with_prior(mu.view(), logvar.view(), self.prior.as_ref())?,
            Pooling::Mean => mean_pool(mu.view(), logvar.view())?,
        };
        self.posterior_from_latent(&q)
    }

    /// A user's posterior with its basis weights and uncertainty, from their latent Gaussian
    /// (e.g. a seen user's cached one).
    pub fn posterior_from_latent(&self, q: &Posterior) -> Result<UserPosterior, ModelError> {
        Ok(UserPosterior::from_posterior(q, &self.bases, self.tau)?)
    }

    /// A fresh user with no observations.
    pub fn new_state(&self) -> UserState {
        UserState::empty(self.pooling, self.d())
    }

    /// Adds reference pair features `[M, F]` to a user's state (one or many at a time).
    pub fn observe(
        &self,
        state: &mut UserState,
        features: ArrayView2<'_, f32>,
    ) -> Result<(), ModelError> {
        self.check_state(state)?;
        let (mu, logvar) = self.encoder.encode(features)?;
        state.observe_encoded(mu.view(), logvar.view())
    }

    /// A state must have been built for this model's pooling and latent dimension.
    fn check_state(&self, state: &UserState) -> Result<(), ModelError> {
        if state.d() != self.d() || state.pooling != self.pooling {
            return Err(ModelError::StateMismatch {
                message: format!(
                    "state is {:?} pooling in d = {}, model is {:?} in d = {}",
                    state.pooling,
                    state.d(),
                    self.pooling,
                    self.d()
                ),
            });
        }
        Ok(())
    }

    /// As [`UserModel::observe`] with forgetting: before each observation the evidence so far is
    /// scaled by `decay` in (0, 1] (`0.5^(1/h)` halves an observation's weight after `h` more).
    /// PoG pooling only.
    pub fn observe_forgetting(
        &self,
        state: &mut UserState,
        features: ArrayView2<'_, f32>,
        decay: f32,
    ) -> Result<(), ModelError> {
        self.check_state(state)?;
        // One encoder pass; only the accumulation is sequential.
        let (mu, logvar) = self.encoder.encode(features)?;
        let mut next = state.clone();
        for (m, l) in mu.outer_iter().zip(logvar.outer_iter()) {
            next.decay(decay)?;
            next.observe_encoded(m.insert_axis(Axis(0)), l.insert_axis(Axis(0)))?;
        }
        *state = next;
        Ok(())
    }

    /// The expected information gain of asking each question `(a, b)` (math::active): rows of
    /// `features_ab [Q, F]` are the pair features with `a` chosen, of `features_ba` with `b`
    /// chosen, of `delta [Q, K]` the basis-reward differences `φ(a) − φ(b)`. Before the first
    /// observation the population stand-in ([`Bases::population`]) takes the posterior's place.
    /// PoG pooling only.
    pub fn question_values(
        &self,
        state: &UserState,
        features_ab: ArrayView2<'_, f32>,
        features_ba: ArrayView2<'_, f32>,
        delta: ArrayView2<'_, f32>,
    ) -> Result<Vec<QuestionValue>, ModelError> {
        state.require_pog("active questions")?;
        state.validate(self.pooling, self.d())?;
        crate::math::check_len(
            "features_ba (rows)",
            features_ab.nrows(),
            features_ba.nrows(),
        )?;
        crate::math::check_len("delta (rows)", features_ab.nrows(), delta.nrows())?;
        crate::math::check_len("delta (columns = K)", self.k(), delta.ncols())?;
        let reference = match (state.count, &self.prior) {
            (0, Some(p0)) => p0.clone(),
            (0, None) => self.bases.population()?,
            _ => state.natural().posterior_with_prior(self.prior.as_ref())?,
        };
        let weights = self.posterior_from_latent(&reference)?.weights;
        let (mu_ab, lv_ab) = self.encoder.encode(features_ab)?;
        let (mu_ba, lv_ba) = self.encoder.encode(features_ba)?;
        let current = state.natural();
        (0..delta.nrows())
            .map(|q| {
                let p = calibrated_preference_probability(
                    weights.view(),
                    delta.row(q),
                    self.temperature,
                )?;
                Ok(question_value_with_prior(
                    &current,
                    self.prior.as_ref(),
                    &reference,
                    p,
                    (mu_ab.row(q), lv_ab.row(q)),
                    (mu_ba.row(q), lv_ba.row(q)),
                )?)
            })
            .collect()
    }

    /// The posterior (mean, variance, weights, uncertainty) of a user's state; an error before
    /// its first observation.
    /// With a population prior, a state with no observations gives the prior (cold start).
    pub fn posterior_of(&self, state: &UserState) -> Result<UserPosterior, ModelError> {
        match (self.pooling, &self.prior) {
            (Pooling::Pog, Some(p0)) => {
                state.validate(self.pooling, self.d())?;
                let q = state.natural().posterior_with_prior(Some(p0))?;
                self.posterior_from_latent(&q)
            }
            _ => self.posterior_from_latent(&state.posterior()?),
        }
    }

    /// Personalised rewards `φ·w` under a user's weights of candidates with basis rewards
    /// `[N, K]`.
    pub fn score(
        &self,
        user: &UserPosterior,
        rewards: ArrayView2<'_, f32>,
    ) -> Result<Array1<f32>, ModelError> {
        Ok(personalised_rewards(user.weights.view(), rewards)?)
    }

    /// `P(a ≻ b)` for a user from the two responses' basis rewards `[K]`, with the variance
    /// attenuation of docs/METHOD.md Eq. 8.
    pub fn preference_probability(
        &self,
        user: &UserPosterior,
        rewards_a: ArrayView1<'_, f32>,
        rewards_b: ArrayView1<'_, f32>,
    ) -> Result<f32, ModelError> {
        crate::math::check_len("rewards_b (K)", rewards_a.len(), rewards_b.len())?;
        let delta = &rewards_a - &rewards_b;
        Ok(calibrated_preference_probability(
            user.weights.view(),
            delta.view(),
            self.temperature,
        )?)
    }
}

/// A user's running evidence, updated one observation at a time; serialisable so a client can
/// keep it (e.g. in local storage).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserState {
    /// Pooling the state was built for.
    pub pooling: Pooling,
    /// Number of observations.
    pub count: usize,
    /// PoG: `Σ exp(−ℓ_i)`; mean pooling: `Σ exp(ℓ_i)`.
    pub a: Vec<f32>,
    /// PoG: `Σ exp(−ℓ_i)·μ_i`; mean pooling: `Σ μ_i`.
    pub b: Vec<f32>,
}

impl UserState {
    /// No observations, in dimension `d`.
    pub fn empty(pooling: Pooling, d: usize) -> Self {
        Self {
            pooling,
            count: 0,
            a: vec![0.0; d],
            b: vec![0.0; d],
        }
    }

    /// Latent dimension.
    pub fn d(&self) -> usize {
        self.a.len()
    }

    /// Compact JSON, byte for byte what `serde_json::to_string` writes (f32 values in their
    /// shortest round-tripping form, non-finite ones as `null`), without serde_json: the wasm
    /// crate's `saveState` uses it so the module carries no JSON serializer.
    pub fn to_json(&self) -> String {
        fn floats(out: &mut String, values: &[f32]) {
            out.push('[');
            let mut buf = zmij::Buffer::new();
            for (i, v) in values.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(if v.is_finite() {
                    buf.format_finite(*v)
                } else {
                    "null"
                });
            }
            out.push(']');
        }
        let mut out = format!(
            r#"{{"pooling":"{}","count":{},"a":"#,
            self.pooling.as_str(),
            self.count
        );
        floats(&mut out, &self.a);
        out.push_str(r#","b":"#);
        floats(&mut out, &self.b);
        out.push('}');
        out
    }

    /// Checks a state that came from outside (e.g. restored JSON) is usable in dimension `d`.
    pub fn validate(&self, pooling: Pooling, d: usize) -> Result<(), ModelError> {
        let bad = |message: String| Err(ModelError::StateMismatch { message });
        if self.pooling != pooling {
            return bad(format!(
                "state pooling {:?}, model pooling {:?}",
                self.pooling, pooling
            ));
        }
        if self.a.len() != d || self.b.len() != d {
            return bad(format!(
                "state has {}/{} entries, model latent dimension is {d}",
                self.a.len(),
                self.b.len()
            ));
        }
        if self.a.iter().chain(&self.b).any(|v| !v.is_finite()) || self.a.iter().any(|v| *v < 0.0) {
            return bad("state holds non-finite or negative precision values".into());
        }
        if self.count == 0 && self.a.iter().chain(&self.b).any(|v| *v != 0.0) {
            return bad("state has count 0 but non-zero sums".into());
        }
        if self.count > 0 && self.a.iter().any(|v| *v <= 0.0) {
            return bad("state has observations but a zero precision/variance sum".into());
        }
        Ok(())
    }

    /// Forgetting: scales the evidence by `factor` in (0, 1]; the count is kept. PoG only (the
    /// mean-pooling state divides by the count, which decay would break).
    pub fn decay(&mut self, factor: f32) -> Result<(), ModelError> {
        self.require_pog("forgetting")?;
        let mut p = self.natural();
        p.decay(factor)?;
        self.a = p.precision().to_vec();
        self.b = p.eta().to_vec();
        Ok(())
    }

    fn require_pog(&self, what: &str) -> Result<(), ModelError> {
        match self.pooling {
            Pooling::Pog => Ok(()),
            Pooling::Mean => Err(ModelError::StateMismatch {
                message: format!("{what} needs PoG pooling; this model mean-pools"),
            }),
        }
    }

    fn observe_encoded(
        &mut self,
        mu: ArrayView2<'_, f32>,
        logvar: ArrayView2<'_, f32>,
    ) -> Result<(), ModelError> {
        match self.pooling {
            Pooling::Pog => {
                let mut p = self.natural();
                p.observe_batch(mu, logvar)?;
                self.a = p.precision().to_vec();
                self.b = p.eta().to_vec();
            }
            Pooling::Mean => {
                let a = &ArrayView1::from(&self.a) + &logvar.mapv(libm::expf).sum_axis(Axis(0));
                let b = &ArrayView1::from(&self.b) + &mu.sum_axis(Axis(0));
                if a.iter().chain(b.iter()).any(|v| !v.is_finite()) {
                    return Err(MathError::NonFinite {
                        field: "state (overflowed)",
                        index: 0,
                    }
                    .into());
                }
                self.a = a.to_vec();
                self.b = b.to_vec();
            }
        }
        self.count += mu.nrows();
        Ok(())
    }

    fn natural(&self) -> NaturalParams {
        NaturalParams::from_parts(
            Array1::from(self.a.clone()),
            Array1::from(self.b.clone()),
            self.count,
        )
    }

    /// The posterior of the evidence so far; an error before the first observation.
    pub fn posterior(&self) -> Result<Posterior, ModelError> {
        if self.count == 0 {
            return Err(MathError::EmptyReferenceSet.into());
        }
        match self.pooling {
            Pooling::Pog => Ok(self.natural().posterior()?),
            Pooling::Mean => {
                let n = self.count as f32;
                Ok(Posterior::new(
                    self.b.iter().map(|v| v / n).collect(),
                    self.a.iter().map(|v| v / n).collect(),
                )?)
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::manifest::{tests::manifest, FileEntry};
    use crate::math::testutil::{assert_close, Rng};
    use std::collections::HashMap;

    /// Safetensors bytes of a random user model matching `format::tests::manifest()`.
    pub(crate) fn bytes(seed: u64) -> Vec<u8> {
        bytes_with(seed, false)
    }

    /// As [`bytes`], with the population prior's two tensors when `prior`.
    fn bytes_with(seed: u64, prior: bool) -> Vec<u8> {
        bytes_extra(seed, prior, &[])
    }

    /// As [`bytes_with`], plus random tensors of the given names and shapes.
    fn bytes_extra(seed: u64, prior: bool, extra: &[(&str, Vec<usize>)]) -> Vec<u8> {
        let mut rng = Rng::new(seed);
        let m = manifest();
        let (inp, hid, d, k) = (m.encoder.input_dim, m.encoder.hidden_dim, m.d, m.k);
        let mut shapes: Vec<(&str, Vec<usize>)> = vec![
            (names::ENC_L1_W, vec![hid, inp]),
            (names::ENC_L1_B, vec![hid]),
            (names::ENC_L2_W, vec![2 * d, hid]),
            (names::ENC_L2_B, vec![2 * d]),
            (names::BASES_MEANS, vec![k, d]),
            (names::BASES_LOG_VAR, vec![k, d]),
        ];
        if prior {
            shapes.push((names::PRIOR_MEAN, vec![d]));
            shapes.push((names::PRIOR_LOG_VAR, vec![d]));
        }
        shapes.extend(extra.iter().cloned());
        let data: Vec<(String, Vec<usize>, Vec<u8>)> = shapes
            .iter()
            .map(|(n, s)| {
                let v = rng.normal_vec(s.iter().product(), 0.5);
                (
                    n.to_string(),
                    s.clone(),
                    v.iter().flat_map(|x| x.to_le_bytes()).collect(),
                )
            })
            .collect();
        let views: HashMap<String, safetensors::tensor::TensorView<'_>> = data
            .iter()
            .map(|(n, s, b)| {
                (
                    n.clone(),
                    safetensors::tensor::TensorView::new(safetensors::Dtype::F32, s.clone(), b)
                        .unwrap(),
                )
            })
            .collect();
        safetensors::serialize(&views, None).unwrap()
    }

    #[test]
    fn a_model_with_a_prior_serves_users_with_no_answers_and_shrinks_the_rest() {
        let b = bytes_with(5, true);
        let mut m = manifest();
        m.encoder.prior = true;
        m.files.insert(USER_MODEL_FILE.into(), FileEntry::of(&b));
        let with = UserModel::from_bytes(&m, &b).unwrap();
        let p0 = with
            .prior()
            .expect("the manifest says it has a prior")
            .clone();
        let none = Array2::<f32>::zeros((0, with.feature_dim()));
        // No answers: the prior itself, by the one-pass and the incremental path.
        let cold = with.posterior(none.view()).unwrap();
        assert_close(cold.mean.view(), p0.mean(), 0.0);
        assert_close(cold.var.view(), p0.var(), 0.0);
        assert_eq!(with.posterior_of(&with.new_state()).unwrap(), cold);
        // One answer: the prior is one more factor, so the variance is below both the prior's
        // and the pair's alone, and the incremental path agrees.
        let mut rng = Rng::new(9);
        let f = rng.normal_array((1, with.feature_dim()), 1.0);
        let one = with.posterior(f.view()).unwrap();
        let mut state = with.new_state();
        with.observe(&mut state, f.view()).unwrap();
        assert_close(
            with.posterior_of(&state).unwrap().mean.view(),
            one.mean.view(),
            1e-5,
        );
        let (mu, lv) = with.encoder().encode(f.view()).unwrap();
        for j in 0..with.d() {
            assert!(one.var[j] < p0.var()[j] && one.var[j] < lv[[0, j]].exp());
            let _ = mu[[0, j]];
        }
        // The same file read as a version-1 model (no `encoder.prior`): no prior, no cold start.
        let (without, _, _) = model_and_manifest(5);
        assert!(without.prior().is_none());
        assert_eq!(
            without.posterior(none.view()).unwrap_err().to_string(),
            ModelError::from(MathError::EmptyReferenceSet).to_string()
        );
        // A prior in a version-1 manifest, or with mean pooling, is refused by name.
        let mut v1 = m.clone();
        v1.format_version = 1;
        assert!(v1
            .validate("vrf.json")
            .unwrap_err()
            .to_string()
            .contains("encoder.prior"));
        let mut mean = m.clone();
        mean.encoder.pooling = Pooling::Mean;
        assert!(mean
            .validate("vrf.json")
            .unwrap_err()
            .to_string()
            .contains("pog"));
        // A missing prior tensor is named.
        let plain = bytes(5);
        let mut m2 = m.clone();
        m2.files
            .insert(USER_MODEL_FILE.into(), FileEntry::of(&plain));
        assert!(UserModel::from_bytes(&m2, &plain)
            .unwrap_err()
            .to_string()
            .contains(names::PRIOR_MEAN));
    }

    pub(crate) fn model_and_manifest(seed: u64) -> (UserModel, Manifest, Vec<u8>) {
        let b = bytes(seed);
        let mut m = manifest();
        m.files.insert(USER_MODEL_FILE.into(), FileEntry::of(&b));
        (UserModel::from_bytes(&m, &b).unwrap(), m, b)
    }

    #[test]
    fn loads_checks_checksum_and_shapes() {
        let (_, m, mut b) = model_and_manifest(3);
        let last = b.len() - 1;
        b[last] ^= 1;
        assert!(matches!(
            UserModel::from_bytes(&m, &b).unwrap_err(),
            ModelError::Checksum { .. }
        ));
        let mut m2 = m.clone();
        m2.d = 3;
        m2.files
            .insert(USER_MODEL_FILE.into(), FileEntry::of(&bytes(3)));
        let e = UserModel::from_bytes(&m2, &bytes(3)).unwrap_err();
        assert!(e.to_string().contains("encoder.l2.weight"), "{e}");
    }

    /// The heads' tensors with shapes `[h1, h]`, `[h1]`, `[k, h1]`, `[k]`.
    fn heads_shapes(h1: usize, h: usize, k: usize) -> Vec<(&'static str, Vec<usize>)> {
        vec![
            (names::HEADS_L1_W, vec![h1, h]),
            (names::HEADS_L1_B, vec![h1]),
            (names::HEADS_L2_W, vec![k, h1]),
            (names::HEADS_L2_B, vec![k]),
        ]
    }

    #[test]
    fn a_features_model_loads_its_heads_and_checks_their_shapes() {
        let mut m = crate::manifest::tests::features_manifest();
        let (h, k) = (m.hidden, m.k);
        let load = |m: &mut Manifest, b: &[u8]| {
            m.files.insert(USER_MODEL_FILE.into(), FileEntry::of(b));
            UserModel::from_bytes(m, b)
        };
        let good = bytes_extra(7, false, &heads_shapes(h, h, k));
        let model = load(&mut m, &good).unwrap();
        assert_eq!(model.input(), InputSpec::Features { dim: h });
        let heads = model.heads().expect("a features model has heads");
        // φ through the model is the heads' MLP on the vectors.
        let mut rng = Rng::new(2);
        let vecs = rng.normal_array((4, h), 1.0);
        let phi = model.basis_rewards("vectors", vecs.view()).unwrap();
        assert_eq!(phi.dim(), (4, k));
        assert_eq!(phi, heads.mlp().forward(vecs.view()).unwrap());
        // Bad vectors are named by field and row.
        let mut bad = vecs.clone();
        bad[[2, 1]] = f32::INFINITY;
        let err = model.basis_rewards("vectors", bad.view()).unwrap_err();
        assert!(err.to_string().contains("`vectors` at row 2"), "{err}");
        let err = model
            .basis_rewards("vectors", Array2::zeros((1, h + 1)).view())
            .unwrap_err();
        assert!(err.to_string().contains("`vectors`"), "{err}");
        // Wrong heads shapes and a missing head tensor are named.
        for (extra, name) in [
            (heads_shapes(h + 1, h, k), names::HEADS_L1_W),
            (heads_shapes(h, h, k + 1), names::HEADS_L2_W),
        ] {
            let b = bytes_extra(7, false, &extra);
            let e = load(&mut m, &b).unwrap_err();
            assert!(
                matches!(e, ModelError::TensorShape { name: n, .. } if n == name),
                "{e}"
            );
        }
        let b = bytes_extra(7, false, &heads_shapes(h, h, k)[..3]);
        let e = load(&mut m, &b).unwrap_err();
        assert!(e.to_string().contains(names::HEADS_L2_B), "{e}");
        // A text model has no heads and refuses vectors with a typed error.
        let (text, _, _) = model_and_manifest(7);
        assert_eq!(text.input(), InputSpec::Text);
        let e = text.basis_rewards("vectors", vecs.view()).unwrap_err();
        assert!(matches!(e, ModelError::WrongInput { .. }), "{e}");
        assert!(e.to_string().contains("takes texts"), "{e}");
    }

    #[test]
    fn incremental_state_matches_one_pass_for_both_poolings() {
        let (model, _, _) = model_and_manifest(4);
        let mut rng = Rng::new(9);
        let f = rng.normal_array((7, model.feature_dim()), 1.0);
        for pooling in [Pooling::Pog, Pooling::Mean] {
            let mut m = model.clone();
            m.pooling = pooling;
            let once = m.posterior(f.view()).unwrap();
            let mut s = m.new_state();
            assert!(m.posterior_of(&s).is_err());
            for row in f.rows() {
                m.observe(&mut s, row.insert_axis(Axis(0))).unwrap();
            }
            let json = serde_json::to_string(&s).unwrap();
            let s: UserState = serde_json::from_str(&json).unwrap();
            s.validate(pooling, m.d()).unwrap();
            let inc = m.posterior_of(&s).unwrap();
            assert_close(inc.mean.view(), once.mean.view(), 1e-5);
            assert_close(inc.var.view(), once.var.view(), 1e-5);
            assert_close(inc.weights.view(), once.weights.view(), 1e-5);
        }
    }

    #[test]
    fn state_json_is_what_serde_json_writes() {
        let mut rng = Rng::new(11);
        let mut a = rng.normal_vec(16, 3.0).to_vec();
        a.extend([
            0.0, -0.0, 1.0, 2.5, 1e-7, 1e-6, 3.4e38, 1e13, 1e16, 1e-45, 0.1, 123456.79,
        ]);
        let b: Vec<f32> = a.iter().map(|v| v * -7.25).collect();
        for (pooling, count) in [(Pooling::Pog, 0), (Pooling::Mean, 12345)] {
            let s = UserState {
                pooling,
                count,
                a: a.clone(),
                b: b.clone(),
            };
            assert_eq!(s.to_json(), serde_json::to_string(&s).unwrap());
        }
        let mut s = UserState::empty(Pooling::Pog, 2);
        s.a[1] = f32::NAN;
        s.b[0] = f32::NEG_INFINITY;
        assert_eq!(s.to_json(), serde_json::to_string(&s).unwrap());
    }

    #[test]
    fn forgetting_halves_old_evidence_and_keeps_the_mean() {
        let (model, _, _) = model_and_manifest(6);
        let mut rng = Rng::new(13);
        let f = rng.normal_array((4, model.feature_dim()), 1.0);
        let mut plain = model.new_state();
        model.observe(&mut plain, f.view()).unwrap();
        let mut kept = model.new_state();
        model.observe_forgetting(&mut kept, f.view(), 1.0).unwrap();
        assert_close(ArrayView1::from(&kept.a), ArrayView1::from(&plain.a), 1e-6);
        // Half-life of one observation: the first observation weighs 1/8 after three more.
        let mut half = model.new_state();
        model.observe_forgetting(&mut half, f.view(), 0.5).unwrap();
        let (mu, lv) = model.encoder().encode(f.view()).unwrap();
        let w = [0.125f32, 0.25, 0.5, 1.0];
        for j in 0..model.d() {
            let want: f32 = (0..4).map(|i| w[i] * libm::expf(-lv[[i, j]])).sum();
            assert!((half.a[j] - want).abs() <= 1e-4 * want, "{j}");
            let eta: f32 = (0..4)
                .map(|i| w[i] * libm::expf(-lv[[i, j]]) * mu[[i, j]])
                .sum();
            assert!((half.b[j] - eta).abs() <= 1e-4 * eta.abs().max(1.0), "{j}");
        }
        assert_eq!(half.count, 4);
        let before = model.posterior_of(&half).unwrap();
        half.decay(0.5).unwrap();
        let after = model.posterior_of(&half).unwrap();
        assert_close(after.mean.view(), before.mean.view(), 1e-5);
        assert_close(after.var.view(), (&before.var * 2.0).view(), 1e-5);
        assert!(half.decay(0.0).is_err() && half.decay(1.5).is_err());
        let mut m = model.clone();
        m.pooling = Pooling::Mean;
        let mut s = m.new_state();
        let e = m.observe_forgetting(&mut s, f.view(), 0.5).unwrap_err();
        assert!(e.to_string().contains("PoG"), "{e}");
        assert_eq!(s.count, 0, "a refused update leaves the state as it was");
    }

    #[test]
    fn question_values_follow_the_math_and_refuse_bad_shapes() {
        let (model, _, _) = model_and_manifest(7);
        let mut rng = Rng::new(17);
        let (q, f, k) = (5, model.feature_dim(), model.k());
        let (ab, ba) = (rng.normal_array((q, f), 1.0), rng.normal_array((q, f), 1.0));
        let delta = rng.normal_array((q, k), 1.0);
        let mut state = model.new_state();
        // Before any observation the population stands in for the posterior.
        let v0 = model
            .question_values(&state, ab.view(), ba.view(), delta.view())
            .unwrap();
        assert_eq!(v0.len(), q);
        assert!(v0
            .iter()
            .all(|v| v.information_gain >= 0.0 && (0.0..=1.0).contains(&v.p_first)));
        model
            .observe(&mut state, rng.normal_array((3, f), 1.0).view())
            .unwrap();
        let v = model
            .question_values(&state, ab.view(), ba.view(), delta.view())
            .unwrap();
        // Question 2 by hand: the two possible posteriors, weighted by P(a ≻ b).
        let now = model.posterior_of(&state).unwrap();
        let p = crate::math::preference_probability(now.weights.view(), delta.row(2)).unwrap();
        let q_now = state.posterior().unwrap();
        let kl_after = |feat: &Array2<f32>| {
            let mut s = state.clone();
            model
                .observe(&mut s, feat.row(2).insert_axis(Axis(0)))
                .unwrap();
            crate::math::kl_diag(&s.posterior().unwrap(), &q_now).unwrap()
        };
        let want = p * kl_after(&ab) + (1.0 - p) * kl_after(&ba);
        assert!((v[2].information_gain - want).abs() <= 1e-4 * want.max(1.0));
        assert!((v[2].p_first - p).abs() < 1e-6);
        let short = rng.normal_array((q - 1, f), 1.0);
        assert!(model
            .question_values(&state, ab.view(), short.view(), delta.view())
            .is_err());
        let wide = rng.normal_array((q, k + 1), 1.0);
        assert!(model
            .question_values(&state, ab.view(), ba.view(), wide.view())
            .is_err());
    }

    #[test]
    fn dphi_models_need_rewards() {
        let (model, _, _) = model_and_manifest(5);
        let h = Array2::<f32>::zeros((2, 3));
        assert!(matches!(
            model.pair_features(h.view(), h.view(), None).unwrap_err(),
            ModelError::NeedsRewards
        ));
        let r = Array2::<f32>::ones((2, 5));
        let f = model
            .pair_features(h.view(), h.view(), Some((r.view(), r.view())))
            .unwrap();
        assert_eq!(f.dim(), (2, 11));
    }
}
