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

pub use fit::{evaluate_run, fit};
pub(crate) use fit::{Embedded, Prompts};
use vrf_data::Dataset;
pub use vrf_trainer::config::BaselineConfig;
use vrf_trainer::config::{Method, RunConfig};
use vrf_trainer::corpus::{rows, Corpus};
use vrf_trainer::error::Result;
use vrf_trainer::optim::{AdamW, ParamGroup};

/// Why a baseline could not be trained or evaluated.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BaselineError {
    /// The method is not a baseline (VRF and BT have their own trainer).
    #[error("{0} is not one of the baselines (lore, pref, pal, vpl)")]
    NotABaseline(&'static str),
    /// A baseline run was handed to the VRF/BT evaluation.
    #[error("{0} is a baseline: it is evaluated by vrf_bench::baselines, not eval::evaluate")]
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
    Ok((vrf_trainer::loss::bt_loss(margins)? * weights)?.sum_all()?)
}

/// A scalar f32 tensor.
pub fn scalar(x: f64, dev: &Device) -> Result<Tensor> {
    Ok(Tensor::new(x as f32, dev)?.to_dtype(DType::F32)?)
}
