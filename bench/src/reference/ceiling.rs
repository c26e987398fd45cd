//! The Bayesian ceiling of the few-shot curve (docs/METHOD.md §5): at each k of the few-shot
//! draws, each unseen user's MAP ranker on the true scorers, prior at the global true ranker,
//! fitted on *exactly* the k reference pairs [`few_shot_draws`] gives that user in every
//! method's evaluation, and scored on the unseen users' eval pairs (the mean over the point's
//! draws, as every method's); k = 0 is the global ranker.
//!
//! The prior precision is chosen per k, like `true-map-ref`'s, by held-out log-loss on training
//! rows only: each seen user's reference pairs are cut to k (several seeded draws), the MAP fit
//! on those k is scored on the user's other training pairs (targets and the references left
//! out). The eval rows never reach the choice.

use std::collections::HashMap;

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use super::logistic::{fit, Penalty, Rows, Selection};
use super::{choose, evaluate, Fold, GRID};
use vrf_data::{Dataset, Split};
use vrf_trainer::eval::few_shot_draws;

/// Draws of k reference pairs per seen user in the choice of a k's prior precision.
const CUT_REPEATS: usize = 5;

/// One point of the ceiling curve.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CeilingPoint {
    /// Reference pairs per unseen user (0: the global true ranker).
    pub k: usize,
    /// Accuracy on unseen users' eval pairs (`None` without unseen eval pairs).
    pub unseen: Option<f64>,
    /// The prior precision chosen for this k and its cross-validation curve (`None` at k = 0).
    pub selection: Option<Selection>,
}

/// Unseen accuracy of per-user MAP fits (prior precision `strength` around `pop`) on `draws`,
/// one reference subset per unseen user in `ds.unseen`'s order.
pub(super) fn on_draws(
    ds: &Dataset,
    truth: &Rows,
    pop: &[f64],
    draws: &[Vec<usize>],
    strength: f64,
) -> Option<f64> {
    let pos: HashMap<usize, usize> = ds.unseen.iter().enumerate().map(|(j, &u)| (u, j)).collect();
    let pen = Penalty {
        strength,
        centre: Some(pop),
    };
    evaluate(ds, truth, &|u| {
        let items: Vec<(usize, f64)> = draws
            .get(*pos.get(&u)?)?
            .iter()
            .map(|&i| (i, 1.0))
            .collect();
        Some(fit(truth, &items, pen, Some(pop)))
    })[1]
}

/// The folds that choose k's prior precision: per seen user, `CUT_REPEATS` seeded draws of k of
/// its reference pairs (one when it has no more than k), the rest of its training pairs held out.
fn cut_folds(ds: &Dataset, k: usize) -> Vec<Fold> {
    let mut rng = ChaCha8Rng::seed_from_u64(0xCE11 + k as u64);
    let mut out = Vec::new();
    for &u in &ds.seen {
        let user = &ds.users[u];
        let repeats = if user.refs.len() > k { CUT_REPEATS } else { 1 };
        for _ in 0..repeats {
            let mut refs = user.refs.clone();
            refs.shuffle(&mut rng);
            let rest = refs.split_off(k.min(refs.len()));
            let test: Vec<(usize, f64)> = rest
                .into_iter()
                .chain(user.split(Split::Target).iter().copied())
                .map(|i| (i, 1.0))
                .collect();
            if refs.is_empty() || test.is_empty() {
                continue;
            }
            out.push(Fold {
                train: refs.into_iter().map(|i| (i, 1.0)).collect(),
                test,
            });
        }
    }
    out
}

/// The ceiling curve: k = 0 (the global ranker's unseen accuracy `global_unseen`), then each k
/// of [`few_shot_draws`] on its draws. Where no seen user gives a fold (no seen users, or none
/// with pairs beyond k references), `fallback` (`true-map-ref`'s choice) is used.
pub(super) fn curve(
    ds: &Dataset,
    truth: &Rows,
    pop: &[f64],
    global_unseen: Option<f64>,
    fallback: &Selection,
) -> Vec<CeilingPoint> {
    let mut out = vec![CeilingPoint {
        k: 0,
        unseen: global_unseen,
        selection: None,
    }];
    for point in few_shot_draws(ds) {
        let k = point.k;
        let folds = cut_folds(ds, k);
        let selection = if folds.is_empty() {
            fallback.clone()
        } else {
            choose(truth, &folds, Some(pop), &GRID)
        };
        out.push(CeilingPoint {
            k,
            // The mean over the point's draws; none where any draw has none.
            unseen: point
                .mean_over(|d| on_draws(ds, truth, pop, d, selection.strength).ok_or(()))
                .ok(),
            selection: Some(selection),
        });
    }
    out
}
