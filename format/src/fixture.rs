//! Test and demo inputs computed by this crate's native math: the parity fixture the wasm tests
//! compare against, synthetic model files for when no trainer export is at hand, and the demo
//! page's data. The numbers all come from `vrf-format` (the same code the wasm build runs), so a
//! mismatch in wasm is a real platform difference, not a second formula.

use std::collections::{BTreeMap, HashMap};

use crate::manifest::{
    EncoderSpec, FileEntry, InputSpec, Manifest, OnnxSpec, Pooling, SeenUser, SeenUsers, TextSpec,
    BACKBONE_FILE, FORMAT, FORMAT_VERSION, MANIFEST_FILE, SEEN_USERS_FILE, USER_MODEL_FILE,
};
use crate::{names, UserModel};
use crate::{ModelError, UserPosterior};
use ndarray::{Array1, Array2, ArrayView2, Axis};
use serde::{Deserialize, Serialize};

/// Deterministic normal samples (splitmix64 + Box–Muller), so fixtures regenerate bit for bit.
pub struct Rng(u64);

impl Rng {
    /// A generator from a seed.
    pub fn new(seed: u64) -> Self {
        Self(seed ^ 0x9e37_79b9_7f4a_7c15)
    }

    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `(0, 1)`.
    pub fn uniform(&mut self) -> f64 {
        ((self.next_u64() >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }

    /// `n` samples of `N(0, std²)`.
    pub fn normal_vec(&mut self, n: usize, std: f32) -> Vec<f32> {
        (0..n)
            .map(|_| {
                let (u1, u2) = (self.uniform(), self.uniform());
                let z = (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
                (z as f32) * std
            })
            .collect()
    }
}

/// Dimensions of a synthetic model.
#[derive(Debug, Clone, Copy)]
pub struct Dims {
    /// Backbone hidden size H.
    pub hidden: usize,
    /// Encoder MLP hidden width.
    pub enc_hidden: usize,
    /// Latent dimension d.
    pub d: usize,
    /// Number of bases K.
    pub k: usize,
}

/// The manifest of a synthetic model (Δφ features, PoG pooling) listing `user_model` bytes.
pub fn synthetic_manifest(dims: Dims, tau: f32, user_model: &[u8], what: &str) -> Manifest {
    let mut files = BTreeMap::new();
    files.insert(USER_MODEL_FILE.to_string(), FileEntry::of(user_model));
    let mut source = BTreeMap::new();
    source.insert("generator".into(), format!("vrf-wasm fixture ({what})"));
    Manifest {
        format: FORMAT.into(),
        format_version: FORMAT_VERSION,
        k: dims.k,
        d: dims.d,
        hidden: dims.hidden,
        tau,
        temperature: 1.0,
        encoder: EncoderSpec {
            input_dim: 2 * dims.hidden + dims.k,
            hidden_dim: dims.enc_hidden,
            dphi: true,
            pooling: Pooling::Pog,
            prior: false,
        },
        input: InputSpec::Text,
        text: Some(TextSpec {
            template: "{prompt}\n{response}".into(),
            max_len: 64,
            pad_id: 0,
            truncation: "left".into(),
            padding: "right".into(),
        }),
        onnx: Some(OnnxSpec {
            file: BACKBONE_FILE.into(),
            opset: 17,
            input_ids: "input_ids".into(),
            attention_mask: "attention_mask".into(),
            hidden: "hidden".into(),
            rewards: "rewards".into(),
            external_data: None,
        }),
        files,
        source,
    }
}

/// `user_model.safetensors` bytes from the six tensors, in [`names::ALL`] order.
pub fn user_model_bytes(tensors: [(Vec<usize>, Vec<f32>); 6]) -> Vec<u8> {
    let named: Vec<(&str, Vec<usize>, Vec<f32>)> = names::ALL
        .iter()
        .zip(tensors)
        .map(|(n, (s, v))| (*n, s, v))
        .collect();
    named_tensor_bytes(&named)
}

/// Safetensors bytes of f32 tensors given by name, shape and values.
pub fn named_tensor_bytes(tensors: &[(&str, Vec<usize>, Vec<f32>)]) -> Vec<u8> {
    let data: Vec<(&str, Vec<usize>, Vec<u8>)> = tensors
        .iter()
        .map(|(n, s, v)| {
            (
                *n,
                s.clone(),
                v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            )
        })
        .collect();
    let views: HashMap<String, safetensors::tensor::TensorView<'_>> = data
        .iter()
        .map(|(n, s, b)| {
            let view = safetensors::tensor::TensorView::new(safetensors::Dtype::F32, s.clone(), b)
                .expect("sizes follow the shapes");
            (n.to_string(), view)
        })
        .collect();
    safetensors::serialize(&views, None).expect("in-memory serialisation cannot fail")
}

/// A random model (every weight `N(0, 0.3²)`): parity tests need generic values, not meaning.
pub fn random_model(dims: Dims, seed: u64) -> (Manifest, Vec<u8>) {
    let mut rng = Rng::new(seed);
    let Dims {
        hidden,
        enc_hidden: eh,
        d,
        k,
    } = dims;
    let inp = 2 * hidden + k;
    let shapes = [
        vec![eh, inp],
        vec![eh],
        vec![2 * d, eh],
        vec![2 * d],
        vec![k, d],
        vec![k, d],
    ];
    let tensors = shapes.map(|s| {
        let n = s.iter().product();
        (s, rng.normal_vec(n, 0.3))
    });
    let bytes = user_model_bytes(tensors);
    (
        synthetic_manifest(dims, 1.0, &bytes, "random weights"),
        bytes,
    )
}

/// A random model fitted on external feature vectors (format version 3, `input.kind =
/// "features"`, no `text`/`onnx`): encoder, bases, basis heads (`heads.l{1,2}`) and, when
/// `prior`, a population prior, every weight `N(0, 0.3²)` (heads `N(0, 0.5²)`, so φ varies).
pub fn random_features_model(dims: Dims, prior: bool, seed: u64) -> (Manifest, Vec<u8>) {
    let mut rng = Rng::new(seed);
    let Dims {
        hidden: h,
        enc_hidden: eh,
        d,
        k,
    } = dims;
    let inp = 2 * h + k;
    let mut shapes: Vec<(&str, Vec<usize>, f32)> = vec![
        (names::ENC_L1_W, vec![eh, inp], 0.3),
        (names::ENC_L1_B, vec![eh], 0.3),
        (names::ENC_L2_W, vec![2 * d, eh], 0.3),
        (names::ENC_L2_B, vec![2 * d], 0.3),
        (names::BASES_MEANS, vec![k, d], 0.3),
        (names::BASES_LOG_VAR, vec![k, d], 0.3),
        (names::HEADS_L1_W, vec![h, h], 0.5),
        (names::HEADS_L1_B, vec![h], 0.5),
        (names::HEADS_L2_W, vec![k, h], 0.5),
        (names::HEADS_L2_B, vec![k], 0.5),
    ];
    if prior {
        shapes.push((names::PRIOR_MEAN, vec![d], 0.3));
        shapes.push((names::PRIOR_LOG_VAR, vec![d], 0.3));
    }
    let tensors: Vec<(&str, Vec<usize>, Vec<f32>)> = shapes
        .into_iter()
        .map(|(n, s, std)| {
            let v = rng.normal_vec(s.iter().product(), std);
            (n, s, v)
        })
        .collect();
    let bytes = named_tensor_bytes(&tensors);
    let mut m = synthetic_manifest(dims, 1.0, &bytes, "random features model");
    m.input = InputSpec::Features { dim: h };
    m.text = None;
    m.onnx = None;
    m.encoder.prior = prior;
    (m, bytes)
}

/// Writes a complete features-model directory (`vrf.json`, `user_model.safetensors`,
/// `seen_users.json`) from [`random_features_model`], with `seen` seen users `user-0`, …
/// whose cached posteriors are the model's on a few random reference vectors. For runtime,
/// service and Python tests that need no backbone.
pub fn write_features_model_dir(
    dir: &std::path::Path,
    dims: Dims,
    prior: bool,
    seen: usize,
    seed: u64,
) -> std::io::Result<Manifest> {
    let (mut manifest, bytes) = random_features_model(dims, prior, seed);
    let model = UserModel::from_bytes(&manifest, &bytes).map_err(std::io::Error::other)?;
    let mut rng = Rng::new(seed ^ 0x5eed);
    let h = dims.hidden;
    let users = (0..seen)
        .map(|i| {
            let m = 3;
            let vec = |rng: &mut Rng| Array2::from_shape_vec((m, h), rng.normal_vec(m * h, 1.0));
            let (c, r) = (vec(&mut rng), vec(&mut rng));
            let (c, r) = (
                c.map_err(std::io::Error::other)?,
                r.map_err(std::io::Error::other)?,
            );
            let (pc, pr) = (
                model.basis_rewards("chosen", c.view()),
                model.basis_rewards("rejected", r.view()),
            );
            let (pc, pr) = (
                pc.map_err(std::io::Error::other)?,
                pr.map_err(std::io::Error::other)?,
            );
            let p = model
                .pair_features(c.view(), r.view(), Some((pc.view(), pr.view())))
                .and_then(|f| model.posterior(f.view()))
                .map_err(std::io::Error::other)?;
            Ok(SeenUser {
                id: format!("user-{i}"),
                mean: p.mean.to_vec(),
                var: p.var.to_vec(),
            })
        })
        .collect::<std::io::Result<Vec<_>>>()?;
    let seen_json = SeenUsers { users }.to_json();
    manifest
        .files
        .insert(SEEN_USERS_FILE.into(), FileEntry::of(seen_json.as_bytes()));
    std::fs::create_dir_all(dir)?;
    crate::fsutil::write_atomic(dir.join(USER_MODEL_FILE), &bytes)?;
    crate::fsutil::write_atomic(dir.join(SEEN_USERS_FILE), seen_json.as_bytes())?;
    crate::fsutil::write_atomic(dir.join(MANIFEST_FILE), manifest.to_json().as_bytes())?;
    Ok(manifest)
}

/// A hand-built model whose bases mean something: basis k sits at `r·e_k`, and a reference pair
/// moves the user toward the bases whose basis reward the chosen response had more of
/// (`μ = c·Σ_k Δφ_k·m_k`, using `gelu(x) − gelu(−x) = x`), with a constant per-pair variance.
/// It stands in for a trained export in the demo page until one is committed.
pub fn interpretable_model(dims: Dims, tau: f32) -> (Manifest, Vec<u8>) {
    let Dims { hidden, d, k, .. } = dims;
    assert!(k <= d, "one latent axis per basis");
    let eh = 2 * k;
    let inp = 2 * hidden + k;
    // c = 3: one answer moves the user well toward a basis, so a few answers show in the weights.
    let (r, c, logvar) = (3.0_f32, 3.0_f32, 1.0_f32);
    let mut l1 = Array2::<f32>::zeros((eh, inp));
    for j in 0..k {
        l1[[j, 2 * hidden + j]] = 1.0;
        l1[[k + j, 2 * hidden + j]] = -1.0;
    }
    let mut l2 = Array2::<f32>::zeros((2 * d, eh));
    for j in 0..k {
        // μ_j = c·r·(gelu(Δφ_j) − gelu(−Δφ_j)) = c·r·Δφ_j on axis j.
        l2[[j, j]] = c * r;
        l2[[j, k + j]] = -c * r;
    }
    let mut b2 = Array1::<f32>::zeros(2 * d);
    b2.slice_mut(ndarray::s![d..]).fill(logvar);
    let mut means = Array2::<f32>::zeros((k, d));
    for j in 0..k {
        means[[j, j]] = r;
    }
    let bytes = user_model_bytes([
        (vec![eh, inp], l1.into_raw_vec_and_offset().0),
        (vec![eh], vec![0.0; eh]),
        (vec![2 * d, eh], l2.into_raw_vec_and_offset().0),
        (vec![2 * d], b2.to_vec()),
        (vec![k, d], means.into_raw_vec_and_offset().0),
        (vec![k, d], vec![0.0; k * d]),
    ]);
    let dims = Dims {
        enc_hidden: eh,
        ..dims
    };
    (
        synthetic_manifest(dims, tau, &bytes, "interpretable demo"),
        bytes,
    )
}

/// The demo page's model: [`interpretable_model`] with H = 16, d = 32, K = 8, τ = 0.1.
pub fn demo_model() -> (Manifest, Vec<u8>) {
    let dims = Dims {
        hidden: 16,
        enc_hidden: 0,
        d: 32,
        k: 8,
    };
    interpretable_model(dims, 0.1)
}

/// Posterior summary after some observations, as the native runtime computed it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Expected {
    /// Pairs observed.
    pub count: usize,
    /// Posterior mean `[d]`.
    pub mean: Vec<f32>,
    /// Posterior variance `[d]`.
    pub var: Vec<f32>,
    /// Weights over the bases `[K]`.
    pub weights: Vec<f32>,
    /// Mean variance.
    pub uncertainty: f32,
}

impl Expected {
    fn of(p: &UserPosterior, count: usize) -> Self {
        Self {
            count,
            mean: p.mean.to_vec(),
            var: p.var.to_vec(),
            weights: p.weights.to_vec(),
            uncertainty: p.uncertainty,
        }
    }
}

/// Inputs and the native runtime's outputs for one model; the wasm tests replay the inputs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Parity {
    /// Pair features `[M, F]`, row-major, observed one row at a time.
    pub features: Vec<f32>,
    /// The posterior after each of the M observations.
    pub steps: Vec<Expected>,
    /// Chosen hidden states `[M, H]` of a second user.
    pub h_chosen: Vec<f32>,
    /// Rejected hidden states `[M, H]`.
    pub h_rejected: Vec<f32>,
    /// Chosen basis rewards `[M, K]`.
    pub rewards_chosen: Vec<f32>,
    /// Rejected basis rewards `[M, K]`.
    pub rewards_rejected: Vec<f32>,
    /// The second user's posterior after observing all M hidden-state pairs at once.
    pub hidden_posterior: Expected,
    /// Candidates' basis rewards `[N, K]`, scored with the first user's final weights.
    pub candidates: Vec<f32>,
    /// Personalised scores of the candidates.
    pub scores: Vec<f32>,
    /// Index of the best candidate.
    pub best: usize,
    /// `P(candidate 0 ≻ candidate 1)` for the first user.
    pub preference_0_over_1: f32,
    /// The first user's state JSON after all M observations.
    pub state_json: String,
}

fn view(v: &[f32], cols: usize) -> ArrayView2<'_, f32> {
    ArrayView2::from_shape((v.len() / cols, cols), v).expect("generated with whole rows")
}

/// Random inputs of the model's shapes (M pairs, N candidates) and the native runtime's outputs.
pub fn parity(
    manifest: &Manifest,
    bytes: &[u8],
    m: usize,
    n: usize,
    seed: u64,
) -> Result<Parity, ModelError> {
    let model = UserModel::from_bytes(manifest, bytes)?;
    let (f, h, k) = (model.feature_dim(), model.hidden(), model.k());
    let mut rng = Rng::new(seed);
    let features = rng.normal_vec(m * f, 1.0);
    let mut state = model.new_state();
    let mut steps = Vec::with_capacity(m);
    for row in view(&features, f).rows() {
        model.observe(&mut state, row.insert_axis(Axis(0)))?;
        steps.push(Expected::of(&model.posterior_of(&state)?, state.count));
    }
    let h_chosen = rng.normal_vec(m * h, 1.0);
    let h_rejected = rng.normal_vec(m * h, 1.0);
    let rewards_chosen = rng.normal_vec(m * k, 1.0);
    let rewards_rejected = rng.normal_vec(m * k, 1.0);
    let pf = model.pair_features(
        view(&h_chosen, h),
        view(&h_rejected, h),
        model
            .uses_dphi()
            .then(|| (view(&rewards_chosen, k), view(&rewards_rejected, k))),
    )?;
    let mut second = model.new_state();
    model.observe(&mut second, pf.view())?;
    let hidden_posterior = Expected::of(&model.posterior_of(&second)?, second.count);
    let candidates = rng.normal_vec(n * k, 1.0);
    let user = model.posterior_of(&state)?;
    let scores = model.score(&user, view(&candidates, k))?.to_vec();
    let best = crate::math::argmax(&scores).unwrap_or(0);
    let preference_0_over_1 = model.preference_probability(
        &user,
        ndarray::ArrayView1::from(&candidates[..k]),
        ndarray::ArrayView1::from(&candidates[k..2 * k]),
    )?;
    Ok(Parity {
        features,
        steps,
        h_chosen,
        h_rejected,
        rewards_chosen,
        rewards_rejected,
        hidden_posterior,
        candidates,
        scores,
        best,
        preference_0_over_1,
        state_json: serde_json::to_string(&state).expect("a state serialises"),
    })
}

/// One response of the demo: its text and basis rewards `φ [K]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Response {
    /// What the page shows.
    pub text: String,
    /// Basis rewards `[K]`.
    pub rewards: Vec<f32>,
}

/// A question of the demo: two responses and the pair feature for either answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Question {
    /// The prompt.
    pub prompt: String,
    /// First response.
    pub a: Response,
    /// Second response.
    pub b: Response,
    /// Pair feature `[F]` when the person prefers `a`.
    pub a_over_b: Vec<f32>,
    /// Pair feature `[F]` when the person prefers `b`.
    pub b_over_a: Vec<f32>,
}

/// Candidates the page ranks with the person's weights.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Candidates {
    /// The prompt.
    pub prompt: String,
    /// The responses.
    pub responses: Vec<Response>,
}

/// `demo.json`: what the demo page asks and ranks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Demo {
    /// Where the model and numbers come from, shown on the page.
    pub source: String,
    /// A label per basis `[K]`.
    pub basis_names: Vec<String>,
    /// The questions, in order.
    pub questions: Vec<Question>,
    /// The candidates to rank.
    pub candidates: Candidates,
}

const STYLES: [(&str, &str); 8] = [
    ("concise", "Short answer: {t}."),
    (
        "detailed",
        "Step by step, with background and caveats: {t}, explained in full.",
    ),
    ("formal", "Please find below a formal account: {t}."),
    ("casual", "Oh, easy — {t}, no big deal!"),
    ("playful", "Plot twist: {t} (and a pun on the way out)."),
    (
        "technical",
        "Formally: {t}; complexity and edge cases follow.",
    ),
    (
        "cautious",
        "It depends, and I may be wrong, but likely {t}.",
    ),
    ("creative", "Imagine a story where {t} is the hero."),
];

const TOPICS: [&str; 11] = [
    "how to boil an egg",
    "why the sky is blue",
    "how to sort a list",
    "what a mortgage is",
    "how vaccines work",
    "how to learn a language",
    "what entropy means",
    "how to write a cover letter",
    "why leaves change colour",
    "how to start running",
    "what to cook tonight",
];

/// Demo data on [`interpretable_model`] (`dims.k` ≤ 8): each response has one dominant style
/// (basis reward ≈ 1 on its basis, small elsewhere) and random hidden states.
pub fn synthetic_demo(manifest: &Manifest, bytes: &[u8], seed: u64) -> Result<Demo, ModelError> {
    let model = UserModel::from_bytes(manifest, bytes)?;
    let (h, k) = (model.hidden(), model.k());
    assert!(k <= STYLES.len(), "one style per basis");
    let mut rng = Rng::new(seed);
    let response = |style: usize, topic: &str, rng: &mut Rng| {
        let mut rewards = rng.normal_vec(k, 0.1);
        rewards[style] += 1.0;
        let text = STYLES[style].1.replace("{t}", topic);
        (Response { text, rewards }, rng.normal_vec(h, 1.0))
    };
    let mut questions = Vec::new();
    for (i, topic) in TOPICS[..TOPICS.len() - 1].iter().enumerate() {
        // Cycle through style pairs so every basis appears on both sides.
        let (sa, sb) = (i % k, (i + 1 + i / k) % k);
        let (a, ha) = response(sa, topic, &mut rng);
        let (b, hb) = response(sb, topic, &mut rng);
        let feature = |hc: &[f32], hr: &[f32], rc: &[f32], rr: &[f32]| {
            model
                .pair_features(view(hc, h), view(hr, h), Some((view(rc, k), view(rr, k))))
                .map(|f| f.into_raw_vec_and_offset().0)
        };
        let a_over_b = feature(&ha, &hb, &a.rewards, &b.rewards)?;
        let b_over_a = feature(&hb, &ha, &b.rewards, &a.rewards)?;
        questions.push(Question {
            prompt: format!("Explain {topic}."),
            a,
            b,
            a_over_b,
            b_over_a,
        });
    }
    let topic = TOPICS[TOPICS.len() - 1];
    let responses = (0..k).map(|s| response(s, topic, &mut rng).0).collect();
    Ok(Demo {
        source: "synthetic interpretable model (vrf-wasm demo_data); not a trained export".into(),
        basis_names: STYLES[..k].iter().map(|s| s.0.to_string()).collect(),
        questions,
        candidates: Candidates {
            prompt: format!("Tell me {topic}."),
            responses,
        },
    })
}

/// The runtime's atomic write (temporary file, fsync, rename), for the example programs.
pub use crate::fsutil::write_atomic;

/// What the hostile-input tests splice into inputs: the values parsers forget.
pub const SPECIALS: &[&[u8]] = &[
    b"NaN",
    b"-inf",
    b"1e999",
    b"-1",
    b"0",
    b"18446744073709551616",
    b"4294967296",
    b"\0",
    b"\xff\xfe\xc3",
    b"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[",
    b"{\"a\":{\"a\":{\"a\":{\"a\":",
    b"\"",
    b"null",
    b"\\u0000",
    b"\n",
    b"{}",
    b"[]",
];

/// One mutation of an input: (kind, position, length, special), any values (taken modulo).
pub type Mutation = (u8, usize, usize, usize);

/// Applies mutations to a valid input: flip a byte, truncate, duplicate or delete a range, or
/// splice in one of [`SPECIALS`]. Shared by the native property tests (proptest draws the
/// mutations) and the wasm tests ([`random_mutations`]).
pub fn mutate(mut v: Vec<u8>, ops: &[Mutation]) -> Vec<u8> {
    for &(kind, pos, len, special) in ops {
        let n = v.len();
        let at = if n == 0 { 0 } else { pos % (n + 1) };
        let span = len % 16 + 1;
        match kind % 6 {
            0 if n > 0 => v[pos % n] ^= ((len % 255) + 1) as u8,
            1 => v.truncate(at),
            2 => {
                let piece = v[at..(at + span).min(n)].to_vec();
                v.splice(at..at, piece);
            }
            3 => {
                v.drain(at..(at + span).min(n));
            }
            _ => {
                let s = SPECIALS[special % SPECIALS.len()];
                v.splice(at..at, s.iter().copied());
            }
        }
    }
    v
}

/// `cases` seeded lists of one to four mutations (for targets without proptest).
pub fn random_mutations(seed: u64, cases: usize) -> Vec<Vec<Mutation>> {
    let mut rng = Rng::new(seed);
    (0..cases)
        .map(|_| {
            let n = 1 + rng.next_u64() as usize % 4;
            (0..n)
                .map(|_| {
                    let r = rng.next_u64();
                    (
                        r as u8,
                        (r >> 8) as usize,
                        (r >> 24) as usize,
                        (r >> 40) as usize,
                    )
                })
                .collect()
        })
        .collect()
}
