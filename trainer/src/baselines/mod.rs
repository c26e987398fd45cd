//! The paper's comparison baselines (its Table 1 and Appendix A.2) in this harness: LoRe, PReF,
//! PAL-B and VPL, on the same backbone, tokenizer, data and step budget (`train.epochs`,
//! `train.prompts_per_step`, the learning-rate schedule) as VRF and BT.
//!
//! Each method is one module ([`lore`], [`pref`], [`pal`], [`vpl`]) with its parameters,
//! forward, loss and unseen-user path behind the [`Baseline`] trait; `fit` holds the shared
//! training loop (prompt-grouped steps over the seen users' reference and target pairs, like BT)
//! and the shared evaluation (seen / unseen / overall pairwise accuracy, the few-shot curve and
//! the methods' costs). Baselines are trainer-side comparisons: they are not exported.

mod fit;
pub mod lore;
pub mod pal;
pub mod pref;
pub mod vpl;

use candle_core::{DType, Device, Tensor, Var, D};
use candle_nn::VarBuilder;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};
use serde::{Deserialize, Serialize};

use crate::config::{ConfigError, Method, RunConfig};
use crate::corpus::{rows, Corpus};
use crate::data::Dataset;
use crate::error::Result;
use crate::optim::{AdamW, ParamGroup};
pub use fit::{evaluate_run, fit};
pub(crate) use fit::{Embedded, Prompts};

/// Settings of the baselines (defaults from the published code where it fixes them).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BaselineConfig {
    /// LoRe: rank K of the basis V (H → K).
    pub lore_k: usize,
    /// LoRe and PAL: Adam steps fitting an unseen user's weight logits (LoRe: 500).
    pub adapt_steps: usize,
    /// LoRe and PAL: Adam learning rate of that fit (LoRe: 0.1).
    pub adapt_lr: f64,
    /// PReF: number J of basis features φ (H → J).
    pub pref_j: usize,
    /// PReF: strength of the L2 penalty on the pair features ‖φ(c) − φ(r)‖₂ (PReF: 0.02).
    pub pref_l2: f64,
    /// PReF: rounds of the imputed SVD (missing entries re-filled from the rank-J fit; PReF: 10).
    pub pref_svd_iters: usize,
    /// PReF: fraction of the step budget spent regressing φ-differences on the SVD's pair
    /// factors before the likelihood phase (PReF's separate "SVD train" phase).
    pub pref_svd_fit_frac: f64,
    /// PReF: gradient-descent steps of an unseen user's logistic regression (PReF: 1000).
    pub pref_adapt_steps: usize,
    /// PReF: its learning rate (PReF: SGD at 0.01).
    pub pref_adapt_lr: f64,
    /// PAL-B: number K of prompt prototypes g_k.
    pub pal_k: usize,
    /// PAL-B: dimension of the preference embedding space.
    pub pal_dim: usize,
    /// VPL: latent dimension of z.
    pub vpl_latent: usize,
    /// VPL: hidden width of the pair encoder and the decoder MLPs.
    pub vpl_hidden: usize,
    /// VPL: weight β of the KL term.
    pub vpl_beta: f64,
    /// VPL: floor of the cosine KL annealing (VPL's annealer baseline: 0.1).
    pub vpl_anneal_floor: f64,
}

impl Default for BaselineConfig {
    fn default() -> Self {
        Self {
            lore_k: 8,
            adapt_steps: 500,
            adapt_lr: 0.1,
            pref_j: 8,
            pref_l2: 0.02,
            pref_svd_iters: 10,
            pref_svd_fit_frac: 0.2,
            pref_adapt_steps: 1000,
            pref_adapt_lr: 0.01,
            pal_k: 8,
            pal_dim: 32,
            vpl_latent: 32,
            vpl_hidden: 64,
            vpl_beta: 0.01,
            vpl_anneal_floor: 0.1,
        }
    }
}

impl BaselineConfig {
    /// Checks values that would otherwise fail deep inside training.
    pub fn validate(&self) -> std::result::Result<(), ConfigError> {
        let err = |field, reason: &str| {
            Err(ConfigError {
                field,
                reason: reason.to_string(),
            })
        };
        for (f, v) in [
            ("baseline.lore_k", self.lore_k),
            ("baseline.pref_j", self.pref_j),
            ("baseline.pal_k", self.pal_k),
            ("baseline.pal_dim", self.pal_dim),
            ("baseline.vpl_latent", self.vpl_latent),
            ("baseline.vpl_hidden", self.vpl_hidden),
        ] {
            if v == 0 {
                return err(f, "must be at least 1");
            }
        }
        for (f, v) in [
            ("baseline.adapt_lr", self.adapt_lr),
            ("baseline.pref_adapt_lr", self.pref_adapt_lr),
        ] {
            if !(v.is_finite() && v > 0.0) {
                return err(f, "must be positive");
            }
        }
        for (f, v) in [
            ("baseline.pref_l2", self.pref_l2),
            ("baseline.vpl_beta", self.vpl_beta),
        ] {
            if !(v.is_finite() && v >= 0.0) {
                return err(f, "must be a finite number ≥ 0");
            }
        }
        if !(0.0..1.0).contains(&self.pref_svd_fit_frac) {
            return err("baseline.pref_svd_fit_frac", "must be a fraction in [0, 1)");
        }
        if !(0.0..=1.0).contains(&self.vpl_anneal_floor) {
            return err("baseline.vpl_anneal_floor", "must be in [0, 1]");
        }
        Ok(())
    }
}

/// Why a baseline could not be trained or evaluated.
#[derive(Debug, thiserror::Error)]
pub enum BaselineError {
    /// The method is not a baseline (VRF and BT have their own trainer).
    #[error("{0} is not one of the baselines (lore, pref, pal, vpl)")]
    NotABaseline(&'static str),
    /// A baseline run was handed to the VRF/BT evaluation.
    #[error("{0} is a baseline: it is evaluated by vrf_trainer::baselines, not eval::evaluate")]
    NotHere(&'static str),
    /// The data has no seen user to train on.
    #[error("{0}: the data has no seen users to train on")]
    NoSeenUsers(&'static str),
    /// The loss became NaN or infinite.
    #[error("{method} step {step}: loss is {loss}; lower the learning rate or enable clipping")]
    NonFinite {
        /// The baseline.
        method: &'static str,
        /// The step.
        step: usize,
        /// The offending loss value.
        loss: f64,
    },
}

/// Triplets with the backbone states of their texts: a training step's pairs, or a group of
/// users' reference or eval pairs at evaluation.
pub struct Batch {
    /// Dataset triplet ids.
    pub triplets: Vec<usize>,
    /// Unique text id of each row of `e`.
    pub texts: Vec<usize>,
    /// Backbone states `[rows, H]` (with gradient in training steps).
    pub e: Tensor,
    /// Per triplet: the row of its chosen text in `e`.
    pub chosen: Vec<u32>,
    /// Per triplet: the row of its rejected text in `e`.
    pub rejected: Vec<u32>,
    /// Per triplet: its user's position in this batch's user list.
    pub user: Vec<u32>,
    /// Per batch user: position among the dataset's seen users (training and seen users only).
    pub seen_pos: Vec<u32>,
    /// Number of users in the batch.
    pub n_users: usize,
    /// Prompt states `[prompts, H]` and each triplet's row in it (methods that read the prompt).
    pub prompts: Option<(Tensor, Vec<u32>)>,
}

impl Batch {
    /// States of the chosen and of the rejected texts, `[triplets, H]` each.
    pub fn pair_states(&self) -> Result<(Tensor, Tensor)> {
        Ok((rows(&self.e, &self.chosen)?, rows(&self.e, &self.rejected)?))
    }

    /// `e(chosen) − e(rejected)` `[triplets, H]`.
    pub fn delta_e(&self) -> Result<Tensor> {
        let (c, r) = self.pair_states()?;
        Ok((c - r)?)
    }

    /// Rows of `reps` `[n_users, R]` for each triplet's user, `[triplets, R]`.
    pub fn user_rows(&self, reps: &Tensor) -> Result<Tensor> {
        Ok(rows(reps, &self.user)?)
    }

    /// Weight 1/n_u of each triplet, n_u its user's triplet count: Σ over triplets of
    /// weight × loss is the sum over users of their mean loss, so users fitted side by side
    /// get exactly the gradients of separate fits.
    pub fn per_user_weights(&self, dev: &Device) -> Result<Tensor> {
        let mut count = vec![0f32; self.n_users];
        for &u in &self.user {
            count[u as usize] += 1.0;
        }
        let w: Vec<f32> = self.user.iter().map(|&u| 1.0 / count[u as usize]).collect();
        Ok(Tensor::from_vec(w, self.user.len(), dev)?)
    }
}

/// A training step's loss, margins (for the step accuracy) and extra metrics.
pub struct TrainOut {
    /// The loss to differentiate.
    pub loss: Tensor,
    /// Reward margins r_u(chosen) − r_u(rejected) `[triplets]`.
    pub margins: Tensor,
    /// Extra metrics for `metrics.jsonl`.
    pub metrics: serde_json::Map<String, serde_json::Value>,
}

/// Where a training step stands in the budget.
#[derive(Clone, Copy, Debug)]
pub struct StepInfo {
    /// The step (0-based).
    pub step: usize,
    /// Steps in all.
    pub total: usize,
    /// The run's seed.
    pub seed: u64,
}

/// One comparison method: parameters, forward, loss and the unseen-user path.
pub trait Baseline {
    /// Which method it is.
    fn method(&self) -> Method;
    /// Name of the per-seen-user variable (trained at `train.latent_lr_mult` × the rate), if any.
    fn user_var(&self) -> Option<&'static str>;
    /// Whether batches must carry prompt states (PAL).
    fn needs_prompts(&self) -> bool {
        false
    }
    /// Whether a training step needs its users' reference pairs as context (VPL).
    fn needs_context(&self) -> bool {
        false
    }
    /// Set-up from the training data before the first step (PReF's SVD initialisation).
    fn init(&mut self, _ds: &Dataset, _corpus: &Corpus) -> Result<()> {
        Ok(())
    }
    /// Loss of a training step on seen users' triplets; `context`: the batch users' reference
    /// pairs (detached states), when [`Baseline::needs_context`].
    fn train_loss(&self, b: &Batch, context: Option<&Batch>, at: StepInfo) -> Result<TrainOut>;
    /// Seen users' representations `[refs.n_users, R]` (trained weights or vectors; VPL: the
    /// encoder on `refs`, the users' reference pairs).
    fn seen_reps(&self, refs: &Batch) -> Result<Tensor>;
    /// Unseen users' representations `[refs.n_users, R]` inferred from their reference pairs.
    fn adapt(&self, refs: &Batch, seed: u64) -> Result<Tensor>;
    /// Reward margins `[triplets]` of `b` for users with representations `reps` `[n_users, R]`.
    fn margins(&self, b: &Batch, reps: &Tensor) -> Result<Tensor>;
}

/// Builds the baseline of `cfg.method` over `vars` (variables under the method's name).
pub fn build(
    cfg: &RunConfig,
    vb: VarBuilder,
    hidden: usize,
    n_seen: usize,
) -> Result<Box<dyn Baseline>> {
    if n_seen == 0 {
        return Err(BaselineError::NoSeenUsers(cfg.method.name()).into());
    }
    let b = &cfg.baseline;
    Ok(match cfg.method {
        Method::Lore => Box::new(lore::Lore::new(vb.pp("lore"), hidden, n_seen, b)?),
        Method::Pref => Box::new(pref::Pref::new(vb.pp("pref"), hidden, n_seen, b)?),
        Method::Pal => Box::new(pal::Pal::new(vb.pp("pal"), hidden, n_seen, b)?),
        Method::Vpl => Box::new(vpl::Vpl::new(vb.pp("vpl"), hidden, b)?),
        m @ (Method::Vrf | Method::Bt) => return Err(BaselineError::NotABaseline(m.name()).into()),
    })
}

/// `x / ‖x‖` along the last dimension (ε-guarded).
pub fn normalize(x: &Tensor) -> Result<Tensor> {
    let n = (x.sqr()?.sum_keepdim(D::Minus1)? + 1e-12)?.sqrt()?;
    Ok(x.broadcast_div(&n)?)
}

/// The seen users' parameters `[n_seen, k]` (variable `users` under `vb`), initialised N(0, 1).
pub fn seen_users(vb: &VarBuilder, n_seen: usize, k: usize) -> Result<Tensor> {
    Ok(vb.get_with_hints(
        (n_seen, k),
        "users",
        candle_nn::Init::Randn {
            mean: 0.0,
            stdev: 1.0,
        },
    )?)
}

/// Standard-normal values `[rows, cols]` from a ChaCha RNG keyed by `seed` and `tag`.
pub fn seeded_randn(seed: u64, tag: &str, shape: (usize, usize), dev: &Device) -> Result<Tensor> {
    let h = tag.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
    });
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ h);
    let v: Vec<f32> = (0..shape.0 * shape.1)
        .map(|_| StandardNormal.sample(&mut rng))
        .collect();
    Ok(Tensor::from_vec(v, shape, dev)?)
}

/// The optimiser of a per-user fit.
#[derive(Clone, Copy, Debug)]
pub enum UserOptim {
    /// Adam (β = 0.9, 0.999), no weight decay (LoRe, PAL).
    Adam,
    /// Plain gradient descent (PReF).
    Sgd,
}

/// Fits free per-user parameters `[n_users, R]` from `init` by `steps` full-batch steps of
/// `optim` at rate `lr` on `loss(params)` (a scalar); returns the fitted values (detached).
pub fn fit_user_params(
    init: &Tensor,
    steps: usize,
    lr: f64,
    optim: UserOptim,
    loss: impl Fn(&Tensor) -> Result<Tensor>,
) -> Result<Tensor> {
    let var = Var::from_tensor(init)?;
    let mut adam = AdamW::new(
        vec![ParamGroup {
            vars: vec![("user".into(), var.clone())],
            lr_mult: 1.0,
        }],
        0.0,
    );
    for _ in 0..steps {
        let l = loss(var.as_tensor())?;
        let grads = l.backward()?;
        match optim {
            UserOptim::Adam => {
                adam.step(&grads, lr, 0.0)?;
            }
            UserOptim::Sgd => {
                if let Some(g) = grads.get(var.as_tensor()) {
                    var.set(&(var.as_tensor() - (g * lr)?)?)?;
                }
            }
        }
    }
    Ok(var.as_tensor().detach())
}

/// Σ over triplets of weight × softplus(−margin): the per-user mean BT losses, summed.
pub fn weighted_bt(margins: &Tensor, weights: &Tensor) -> Result<Tensor> {
    Ok((crate::loss::bt_loss(margins)? * weights)?.sum_all()?)
}

/// A scalar f32 tensor.
pub fn scalar(x: f64, dev: &Device) -> Result<Tensor> {
    Ok(Tensor::new(x as f32, dev)?.to_dtype(DType::F32)?)
}
