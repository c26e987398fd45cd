//! Reference rankers: linear logistic models on pair-difference features, fitted on the
//! training rows only and scored on the eval rows like the learned methods (docs/METHOD.md §5), that give
//! the embedded benchmark (docs/METHOD.md §6) its floors and ceilings. The true-feature rankers read the
//! generator's own scorers (from the `*.synth_meta.json` side-file); every strength is chosen by
//! cross-validation on training rows, never on eval rows.
//!
//! The rankers: a global bag of words (learned features, not personalised); a global ranker on
//! the 10 true scorers; per-user ridge on a user's 9 reference pairs; per-user MAP around the
//! global ranker's weights (the population mean) on the reference pairs — the personalised
//! ceiling the learned methods are measured against — and on all of a user's training pairs;
//! and the oracle (each user's true weights). [`ceiling`]: the per-user MAP ranker on the
//! few-shot draws, the ceiling of the few-shot curve at each k.

pub mod ceiling;
pub mod feature_table;
pub mod features;
pub mod logistic;

use std::collections::HashMap;
use std::path::Path;

use serde::Serialize;

use ceiling::CeilingPoint;
use features::{sparse_diff, BagOfWords};
use logistic::{accuracy, fit, log_loss, select, Penalty, Rows, Selection};
use vrf_data::synth::{meta_path, SynthMeta, N_SCORERS};
use vrf_data::{Dataset, Split, TextIndex};
use vrf_trainer::error::{Result, TrainError};
use vrf_trainer::eval::macro_average;

/// Id of the global ranker on the true scorers (the headroom's floor).
pub const TRUE_GLOBAL: &str = "true-global";
/// Id of the per-user MAP ranker on the reference pairs (the headroom's ceiling).
pub const TRUE_MAP_REF: &str = "true-map-ref";

/// Strengths tried, strongest first (fits are warm-started along the path).
const GRID: [f64; 11] = [1e4, 1e3, 100.0, 30.0, 10.0, 3.0, 1.0, 0.1, 0.01, 1e-3, 1e-4];
/// Strengths tried for the bag of words (thousands of features: fewer, costlier fits).
const BOW_GRID: [f64; 6] = [1e4, 3e3, 1e3, 300.0, 100.0, 30.0];
/// Folds of the global rankers' cross-validation (grouped by prompt).
const GLOBAL_FOLDS: usize = 5;
/// Folds over a seen user's reference + target pairs.
const USER_FOLDS: usize = 5;
/// Minimum document frequency of a bag-of-words feature over the training texts.
const MIN_DF: usize = 5;

/// One reference ranker's accuracies (fractions; `None` where it has no users of that group).
#[derive(Clone, Debug, Serialize)]
pub struct Ranker {
    /// Stable identifier.
    pub id: String,
    /// What it is, in words.
    pub label: String,
    /// Accuracy on seen users' eval pairs.
    pub seen: Option<f64>,
    /// Accuracy on unseen users' eval pairs.
    pub unseen: Option<f64>,
    /// Macro-average of seen and unseen.
    pub overall: Option<f64>,
    /// The chosen L2 strength / prior precision and its cross-validation curve (none for the
    /// oracle).
    pub selection: Option<Selection>,
}

/// All reference rankers on one data set.
#[derive(Clone, Debug, Serialize)]
pub struct ReferenceReport {
    /// Eval pairs of seen users.
    pub seen_pairs: usize,
    /// Eval pairs of unseen users.
    pub unseen_pairs: usize,
    /// Bag-of-words vocabulary size.
    pub bow_features: usize,
    /// The rankers, floor to ceiling.
    pub rankers: Vec<Ranker>,
    /// The few-shot ceiling: per-user MAP on the true scorers on each k's few-shot draws,
    /// unseen accuracy (k = 0: the global ranker).
    pub ceiling: Vec<CeilingPoint>,
}

/// Headroom captured by a method: (method − global true ranker) / (per-user MAP on the
/// reference pairs − global true ranker), for seen and unseen users.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Headroom {
    /// On seen users.
    pub seen: Option<f64>,
    /// On unseen users.
    pub unseen: Option<f64>,
}

impl ReferenceReport {
    /// The ranker with this id.
    pub fn get(&self, id: &str) -> Option<&Ranker> {
        self.rankers.iter().find(|r| r.id == id)
    }

    /// The headroom a method with these accuracies captures (`None` where undefined).
    pub fn headroom(&self, seen: f64, unseen: f64) -> Headroom {
        let (Some(lo), Some(hi)) = (self.get(TRUE_GLOBAL), self.get(TRUE_MAP_REF)) else {
            return Headroom::default();
        };
        let h = |x: f64, lo: Option<f64>, hi: Option<f64>| {
            let (lo, hi) = (lo?, hi?);
            (x.is_finite() && hi - lo > 1e-9).then(|| (x - lo) / (hi - lo))
        };
        Headroom {
            seen: h(seen, lo.seen, hi.seen),
            unseen: h(unseen, lo.unseen, hi.unseen),
        }
    }

    /// The few-shot ceiling's unseen accuracy at `k` (`None` where k is not on the curve).
    pub fn ceiling_at(&self, k: usize) -> Option<f64> {
        self.ceiling.iter().find(|p| p.k == k)?.unseen
    }

    /// The headroom a method with unseen accuracy `unseen` at k reference pairs captures:
    /// (method − global) / (ceiling at k − global); `None` where undefined (k off the curve, a
    /// gap below 1e-9 — always at k = 0 —, or a non-finite accuracy).
    pub fn headroom_at(&self, k: usize, unseen: f64) -> Option<f64> {
        let (lo, hi) = (self.ceiling_at(0)?, self.ceiling_at(k)?);
        (unseen.is_finite() && hi - lo > 1e-9).then(|| (unseen - lo) / (hi - lo))
    }

    /// A markdown table of the few-shot ceiling: unseen accuracy (%) and prior precision per k.
    pub fn ceiling_table(&self) -> String {
        let mut s = String::from("| k |");
        let mut acc = String::from("| unseen (%) |");
        let mut lambda = String::from("| λ (CV on seen users' training pairs cut to k) |");
        for p in &self.ceiling {
            s += &format!(" {} |", p.k);
            acc += &format!(
                " {} |",
                p.unseen.map_or("–".into(), |v| format!("{:.2}", 100.0 * v))
            );
            lambda += &format!(
                " {} |",
                p.selection
                    .as_ref()
                    .map_or("–".into(), |x| format!("{}", x.strength))
            );
        }
        format!(
            "{s}\n|---|{}\n{acc}\n{lambda}\n",
            "---|".repeat(self.ceiling.len())
        )
    }

    /// A markdown table: accuracy (%) per ranker and the chosen strength.
    pub fn table(&self) -> String {
        let pct = |x: Option<f64>| x.map_or("–".into(), |v| format!("{:.2}", 100.0 * v));
        let mut s = String::from(
            "| reference ranker | seen | unseen | overall | λ (CV on training rows) |\n|---|---|---|---|---|\n",
        );
        for r in &self.rankers {
            s += &format!(
                "| {} | {} | {} | {} | {} |\n",
                r.label,
                pct(r.seen),
                pct(r.unseen),
                pct(r.overall),
                r.selection
                    .as_ref()
                    .map_or("–".into(), |x| format!("{}", x.strength)),
            );
        }
        s
    }
}

/// The benchmark's side-file next to `jsonl`, if there is one.
pub fn load_meta(jsonl: &Path) -> Result<Option<SynthMeta>> {
    let p = meta_path(jsonl);
    if !p.exists() {
        return Ok(None);
    }
    Ok(Some(vrf_trainer::checkpoint::read_json(&p)?))
}

/// The bag of words learned from the training (non-eval) texts' responses, and which of
/// `texts.texts` are training texts.
pub fn train_bag_of_words(ds: &Dataset, texts: &TextIndex) -> (BagOfWords, Vec<bool>) {
    let mut train_text = vec![false; texts.texts.len()];
    for (i, t) in ds.triplets.iter().enumerate() {
        if t.split != Split::Eval {
            train_text[texts.chosen_text[i]] = true;
            train_text[texts.rejected_text[i]] = true;
        }
    }
    let bow = BagOfWords::fit(
        texts
            .texts
            .iter()
            .zip(&train_text)
            .filter(|(_, &t)| t)
            .map(|((_, r), _)| r.as_str()),
        MIN_DF,
    );
    (bow, train_text)
}

/// The reference rankers of a JSONL file, or `None` when it has no benchmark side-file.
pub fn for_data(jsonl: &Path) -> Result<Option<ReferenceReport>> {
    match load_meta(jsonl)? {
        Some(meta) => Ok(Some(rankers(&Dataset::load(jsonl)?, &meta)?)),
        None => Ok(None),
    }
}

/// Training / held-out items of one cross-validation fold.
struct Fold {
    train: Vec<(usize, f64)>,
    test: Vec<(usize, f64)>,
}

/// k folds over `items`, item at position p in fold `fold_of(p) % k`; folds with an empty side
/// are left out.
fn folds(items: &[(usize, f64)], k: usize, fold_of: impl Fn(usize) -> usize) -> Vec<Fold> {
    (0..k)
        .map(|f| {
            let (test, train) = items
                .iter()
                .enumerate()
                .partition::<Vec<_>, _>(|(p, _)| fold_of(*p) % k == f);
            Fold {
                train: train.into_iter().map(|(_, x)| *x).collect(),
                test: test.into_iter().map(|(_, x)| *x).collect(),
            }
        })
        .filter(|f| !f.train.is_empty() && !f.test.is_empty())
        .collect()
}

/// Chooses a strength by the pooled held-out log-loss over `folds`.
fn choose(rows: &Rows, folds: &[Fold], centre: Option<&[f64]>, grid: &[f64]) -> Selection {
    let mut warm: Vec<Option<Vec<f64>>> = vec![None; folds.len()];
    select(grid, |strength| {
        let pen = Penalty { strength, centre };
        let mut loss = (0.0, 0.0);
        for (f, w0) in folds.iter().zip(&mut warm) {
            let w = fit(rows, &f.train, pen, w0.as_deref());
            loss.0 += log_loss(rows, &f.test, &w);
            loss.1 += f.test.iter().map(|&(_, c)| c).sum::<f64>();
            *w0 = Some(w);
        }
        loss
    })
}

/// FNV-1a, so that prompt folds do not depend on the standard library's hasher.
fn fnv(s: &str) -> usize {
    s.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x0100_0000_01b3)
    }) as usize
}

/// One global ranker on `rows` over `items`, strength by k-fold over prompts.
fn global(
    ds: &Dataset,
    rows: &Rows,
    items: &[(usize, f64)],
    grid: &[f64],
) -> (Selection, Vec<f64>) {
    let fs = folds(
        items,
        GLOBAL_FOLDS,
        |p| fnv(&ds.triplets[items[p].0].prompt),
    );
    let sel = choose(rows, &fs, None, grid);
    let pen = Penalty {
        strength: sel.strength,
        centre: None,
    };
    let w = fit(rows, items, pen, None);
    (sel, w)
}

/// Per-user fits on each group's items (one group per user, index = user), one strength for all
/// chosen by pooling every user's held-out folds (`k` folds per user; `None`: leave one out).
fn per_user(
    rows: &Rows,
    groups: &[Vec<(usize, f64)>],
    k: Option<usize>,
    centre: Option<&[f64]>,
) -> (Selection, Vec<Vec<f64>>) {
    let fs: Vec<Fold> = groups
        .iter()
        .flat_map(|g| folds(g, k.unwrap_or(g.len()), |p| p))
        .collect();
    let sel = choose(rows, &fs, centre, &GRID);
    let pen = Penalty {
        strength: sel.strength,
        centre,
    };
    let ws = groups.iter().map(|g| fit(rows, g, pen, centre)).collect();
    (sel, ws)
}

/// Eval accuracy of per-user weights on seen and unseen users (pairs pooled within a group).
fn evaluate(
    ds: &Dataset,
    rows: &Rows,
    w_of: &dyn Fn(usize) -> Option<Vec<f64>>,
) -> [Option<f64>; 2] {
    [&ds.seen, &ds.unseen].map(|group| {
        let (mut ok, mut n) = (0.0, 0.0);
        for &u in group {
            let ev: Vec<(usize, f64)> = ds.users[u].evals.iter().map(|&i| (i, 1.0)).collect();
            if ev.is_empty() {
                continue;
            }
            let Some(w) = w_of(u) else { continue };
            ok += accuracy(rows, &ev, &w) * ev.len() as f64;
            n += ev.len() as f64;
        }
        (n > 0.0).then(|| ok / n)
    })
}

fn ranker(id: &str, label: &str, acc: [Option<f64>; 2], selection: Option<Selection>) -> Ranker {
    let [seen, unseen] = acc;
    let overall = macro_average(seen.unwrap_or(f64::NAN), unseen.unwrap_or(f64::NAN));
    Ranker {
        id: id.into(),
        label: label.into(),
        seen,
        unseen,
        overall: overall.is_finite().then_some(overall),
        selection,
    }
}

fn check_meta(ds: &Dataset, meta: &SynthMeta) -> Result<HashMap<String, Vec<f64>>> {
    let bad = |m: String| Err(TrainError::Other(format!("synth meta file: {m}")));
    let s = &meta.stats;
    if s.mean.len() != N_SCORERS + 1 || s.std.len() != N_SCORERS + 1 {
        return bad(format!(
            "scorer stats need {} means and stds, got {} and {}",
            N_SCORERS + 1,
            s.mean.len(),
            s.std.len()
        ));
    }
    if s.std.iter().any(|x| !(x.is_finite() && *x > 0.0)) {
        return bad("scorer stds must be positive".into());
    }
    let weights: HashMap<String, Vec<f64>> = meta.user_weights.iter().cloned().collect();
    for u in &ds.users {
        match weights.get(&u.id) {
            Some(w) if w.len() == N_SCORERS => {}
            Some(w) => {
                return bad(format!(
                    "user {} has {} weights, not {N_SCORERS}",
                    u.id,
                    w.len()
                ))
            }
            None => return bad(format!("no true weights for user {}", u.id)),
        }
    }
    Ok(weights)
}

/// Pair differences of the benchmark's normalised true scorers, one row per triplet of `ds`.
fn true_rows(ds: &Dataset, meta: &SynthMeta) -> Rows {
    let texts = ds.texts();
    let scores: Vec<[f64; N_SCORERS]> = texts
        .texts
        .iter()
        .map(|(_, r)| meta.stats.score(r))
        .collect();
    let mut truth = Rows::new(N_SCORERS);
    for i in 0..ds.triplets.len() {
        let (c, r) = (
            &scores[texts.chosen_text[i]],
            &scores[texts.rejected_text[i]],
        );
        let d: Vec<f64> = c.iter().zip(r).map(|(a, b)| a - b).collect();
        truth.push_dense(&d);
    }
    truth
}

/// Fits every reference ranker on `ds`'s training rows (seen users' ref + target, unseen users'
/// ref) and scores it on the eval rows; `meta` supplies the true scorers and user weights.
pub fn rankers(ds: &Dataset, meta: &SynthMeta) -> Result<ReferenceReport> {
    let true_w = check_meta(ds, meta)?;
    let texts = ds.texts();
    let n = ds.triplets.len();
    let is_train = |i: usize| ds.triplets[i].split != Split::Eval;
    let train: Vec<(usize, f64)> = (0..n).filter(|&i| is_train(i)).map(|i| (i, 1.0)).collect();

    let truth = true_rows(ds, meta);

    let mut out = Vec::new();

    // 1. Bag of words, learned on the training texts; identical training pairs merged.
    let (bow, _) = train_bag_of_words(ds, &texts);
    let feats: Vec<Vec<(usize, f64)>> = texts.texts.iter().map(|(_, r)| bow.features(r)).collect();
    let mut bag = Rows::new(bow.len());
    for i in 0..n {
        bag.push(sparse_diff(
            &feats[texts.chosen_text[i]],
            &feats[texts.rejected_text[i]],
        ));
    }
    let mut merged: Vec<(usize, f64)> = Vec::new();
    let mut seen_pair: HashMap<(usize, usize), usize> = HashMap::new();
    for &(i, _) in &train {
        let key = (texts.chosen_text[i], texts.rejected_text[i]);
        let slot = *seen_pair.entry(key).or_insert_with(|| {
            merged.push((i, 0.0));
            merged.len() - 1
        });
        merged[slot].1 += 1.0;
    }
    let (sel, w) = global(ds, &bag, &merged, &BOW_GRID);
    out.push(ranker(
        "bow-global",
        "bag of words (uni+bigrams, df ≥ 5), one global ranker",
        evaluate(ds, &bag, &|_| Some(w.clone())),
        Some(sel),
    ));

    // 2. One global ranker on the true scorers: also the population mean of the MAP rankers.
    let (sel, pop) = global(ds, &truth, &train, &GRID);
    let global_acc = evaluate(ds, &truth, &|_| Some(pop.clone()));
    out.push(ranker(
        TRUE_GLOBAL,
        "true scorers, one global ranker",
        global_acc,
        Some(sel),
    ));

    // 3.–5. Per-user rankers on the true scorers.
    let items_of = |splits: &[Split]| -> Vec<Vec<(usize, f64)>> {
        ds.users
            .iter()
            .map(|u| {
                splits
                    .iter()
                    .flat_map(|&s| u.split(s).iter().map(|&i| (i, 1.0)))
                    .collect()
            })
            .collect()
    };
    let refs = items_of(&[Split::Ref]);
    let (sel, ws) = per_user(&truth, &refs, None, None);
    out.push(ranker(
        "true-ridge-ref",
        "true scorers, per user on 9 ref pairs (ridge)",
        evaluate(ds, &truth, &|u| Some(ws[u].clone())),
        Some(sel),
    ));
    let (sel_ref, map_ref) = per_user(&truth, &refs, None, Some(&pop));
    out.push(ranker(
        TRUE_MAP_REF,
        "true scorers, per user on 9 ref pairs (MAP, prior at the global ranker)",
        evaluate(ds, &truth, &|u| Some(map_ref[u].clone())),
        Some(sel_ref.clone()),
    ));
    let ceiling = ceiling::curve(ds, &truth, &pop, global_acc[1], &sel_ref);
    let mut all = items_of(&[Split::Ref, Split::Target]);
    for &u in &ds.unseen {
        // Unseen users have nothing but their references: their MAP-on-ref fit stands.
        all[u].clear();
    }
    let (sel, map_all) = per_user(&truth, &all, Some(USER_FOLDS), Some(&pop));
    out.push(ranker(
        "true-map-all",
        "true scorers, per user on all training pairs (MAP; unseen: = ref)",
        evaluate(ds, &truth, &|u| {
            Some(if ds.users[u].is_seen() {
                map_all[u].clone()
            } else {
                map_ref[u].clone()
            })
        }),
        Some(sel),
    ));

    // The oracle: each user's true weights.
    out.push(ranker(
        "oracle",
        "true scorers, each user's true weights (oracle)",
        evaluate(ds, &truth, &|u| true_w.get(&ds.users[u].id).cloned()),
        None,
    ));

    let count = |g: &[usize]| g.iter().map(|&u| ds.users[u].evals.len()).sum();
    Ok(ReferenceReport {
        seen_pairs: count(&ds.seen),
        unseen_pairs: count(&ds.unseen),
        bow_features: bow.len(),
        rankers: out,
        ceiling,
    })
}

#[cfg(test)]
mod tests;
