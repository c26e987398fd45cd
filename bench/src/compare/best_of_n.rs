//! Best-of-N alignment without an LLM judge (the paper's Fig. 3c): the synthetic benchmark knows
//! each user's true utility of every candidate (their true scorer weights · the response's
//! scorer values), so for each (user, eval prompt) each method picks the best of the prompt's
//! candidates by its personalised reward; reported are the mean true-utility regret against the
//! user's true best, how often the pick is the true best, and the win rate over BT's pick.

use serde::Serialize;

use super::{agg, Ms, RunAnalysis};

/// The index of the largest reward (the first of equal ones); `None` for no candidates.
pub fn pick_best(rewards: &[f64]) -> Option<usize> {
    let mut best: Option<usize> = None;
    for (i, r) in rewards.iter().enumerate() {
        if r.is_nan() {
            continue;
        }
        if best.is_none_or(|b| *r > rewards[b]) {
            best = Some(i);
        }
    }
    best
}

/// True-utility regret of picking candidate `pick`: max utility − utility of the pick (≥ 0).
pub fn regret(utilities: &[f64], pick: usize) -> f64 {
    let best = utilities.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    (best - utilities[pick]).max(0.0)
}

/// Head-to-head counts of one method's picks against another's on the same queries.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct WinRate {
    /// Queries where the method's pick has the higher true utility.
    pub wins: usize,
    /// Queries where both picks are equally good (e.g. the same response).
    pub ties: usize,
    /// Queries where the other pick is better.
    pub losses: usize,
}

impl WinRate {
    /// (wins + ties / 2) / queries, in [0, 1]; NaN for no queries.
    pub fn rate(&self) -> f64 {
        let n = self.wins + self.ties + self.losses;
        if n == 0 {
            f64::NAN
        } else {
            (self.wins as f64 + 0.5 * self.ties as f64) / n as f64
        }
    }
}

/// Compares the true utilities of two methods' picks query by query (up to the shorter list).
pub fn win_rate(ours: &[f64], theirs: &[f64]) -> WinRate {
    let mut w = WinRate::default();
    for (a, b) in ours.iter().zip(theirs) {
        if (a - b).abs() <= 1e-12 * a.abs().max(b.abs()).max(1.0) {
            w.ties += 1;
        } else if a > b {
            w.wins += 1;
        } else {
            w.losses += 1;
        }
    }
    w
}

/// One run's best-of-N picks: per query (user, eval prompt) in a fixed order.
#[derive(Clone, Debug, Default)]
pub struct Picks {
    /// Whether the query's user is a seen user.
    pub seen: Vec<bool>,
    /// True utility of the picked candidate.
    pub utility: Vec<f64>,
    /// Regret of the pick.
    pub regret: Vec<f64>,
}

impl Picks {
    /// Picks by `rewards` per query, scored with the queries' true `utilities`.
    pub fn new(seen: &[bool], rewards: &[Vec<f64>], utilities: &[Vec<f64>]) -> Self {
        let mut p = Picks::default();
        for ((&s, r), u) in seen.iter().zip(rewards).zip(utilities) {
            let Some(i) = pick_best(r).filter(|&i| i < u.len()) else {
                continue;
            };
            p.seen.push(s);
            p.utility.push(u[i]);
            p.regret.push(regret(u, i));
        }
        p
    }

    /// Mean regret over the queries of seen users (`Some(true)`), unseen (`Some(false)`) or all.
    pub fn mean_regret(&self, seen: Option<bool>) -> f64 {
        let v: Vec<f64> = self
            .regret
            .iter()
            .zip(&self.seen)
            .filter(|(_, s)| seen.is_none_or(|x| x == **s))
            .map(|(r, _)| *r)
            .collect();
        if v.is_empty() {
            f64::NAN
        } else {
            v.iter().sum::<f64>() / v.len() as f64
        }
    }

    /// Fraction of queries whose pick is a true best (regret 0).
    pub fn best_rate(&self) -> f64 {
        if self.regret.is_empty() {
            return f64::NAN;
        }
        self.regret.iter().filter(|&&r| r <= 1e-12).count() as f64 / self.regret.len() as f64
    }
}

/// One method's best-of-N results on one α (mean ± std over seeds).
#[derive(Clone, Debug, Serialize)]
pub struct BestOfNRow {
    /// Method (or reference picker) name.
    pub method: String,
    /// Dirichlet α of the benchmark.
    pub alpha: f64,
    /// Queries per run.
    pub queries: usize,
    /// Mean true-utility regret over seen users' queries.
    pub regret_seen: Ms,
    /// Over unseen users' queries.
    pub regret_unseen: Ms,
    /// Over all queries.
    pub regret: Ms,
    /// Fraction of picks that are a true best.
    pub best_rate: Ms,
    /// Win rate over BT's pick (ties count half); `None` without a BT run.
    pub win_rate_vs_bt: Option<Ms>,
}

/// A row from several runs' picks (one per seed), with BT's picks of the same seeds.
pub fn row(method: &str, alpha: f64, picks: &[(u64, &Picks)], bt: &[(u64, &Picks)]) -> BestOfNRow {
    let f =
        |g: &dyn Fn(&Picks) -> f64| agg::ms(&picks.iter().map(|(_, p)| g(p)).collect::<Vec<_>>());
    let win = (!bt.is_empty()).then(|| {
        agg::ms(
            &picks
                .iter()
                .filter_map(|(s, p)| {
                    bt.iter()
                        .find(|(b, _)| b == s)
                        .map(|(_, b)| win_rate(&p.utility, &b.utility).rate())
                })
                .collect::<Vec<_>>(),
        )
    });
    BestOfNRow {
        method: method.into(),
        alpha,
        queries: picks.first().map_or(0, |(_, p)| p.regret.len()),
        regret_seen: f(&|p| p.mean_regret(Some(true))),
        regret_unseen: f(&|p| p.mean_regret(Some(false))),
        regret: f(&|p| p.mean_regret(None)),
        best_rate: f(&|p| p.best_rate()),
        win_rate_vs_bt: win,
    }
}

/// The rows of one α: every method's, with BT's picks as the opponent.
pub fn rows(alpha: f64, runs: &[Vec<RunAnalysis>]) -> Vec<BestOfNRow> {
    let picks_of = |rs: &[RunAnalysis]| -> Vec<(u64, Picks)> {
        rs.iter()
            .filter_map(|r| r.picks.clone().map(|p| (r.seed, p)))
            .collect()
    };
    let bt: Vec<(u64, Picks)> = runs
        .iter()
        .find(|rs| rs.first().is_some_and(|r| r.method == "bt"))
        .map(|rs| picks_of(rs))
        .unwrap_or_default();
    let bt_refs: Vec<(u64, &Picks)> = bt.iter().map(|(s, p)| (*s, p)).collect();
    runs.iter()
        .filter_map(|rs| {
            let first = rs.first()?;
            let p = picks_of(rs);
            let refs: Vec<(u64, &Picks)> = p.iter().map(|(s, p)| (*s, p)).collect();
            Some(row(&first.method, alpha, &refs, &bt_refs))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regret_and_win_rate_on_a_hand_made_example() {
        // Two queries of three candidates; true utilities per candidate.
        let u = vec![vec![0.0, 2.0, 1.0], vec![3.0, -1.0, 0.5]];
        // Method A picks the true best twice; B picks candidate 2 both times.
        let a = Picks::new(
            &[true, false],
            &[vec![0.1, 0.9, 0.2], vec![5.0, 1.0, 2.0]],
            &u,
        );
        let b = Picks::new(
            &[true, false],
            &[vec![0.0, 0.0, 1.0], vec![0.0, 0.0, 1.0]],
            &u,
        );
        assert_eq!(a.regret, vec![0.0, 0.0]);
        assert_eq!(b.regret, vec![1.0, 2.5]);
        assert_eq!(a.best_rate(), 1.0);
        assert_eq!(b.best_rate(), 0.0);
        assert!((b.mean_regret(None) - 1.75).abs() < 1e-12);
        assert_eq!(b.mean_regret(Some(true)), 1.0);
        assert_eq!(b.mean_regret(Some(false)), 2.5);
        let w = win_rate(&a.utility, &b.utility);
        assert_eq!((w.wins, w.ties, w.losses), (2, 0, 0));
        assert_eq!(w.rate(), 1.0);
        assert_eq!(win_rate(&b.utility, &a.utility).rate(), 0.0);
        // Against itself every query ties: 0.5.
        assert_eq!(win_rate(&a.utility, &a.utility).rate(), 0.5);
        // Equal rewards pick the first; NaN rewards are skipped.
        assert_eq!(pick_best(&[1.0, 1.0]), Some(0));
        assert_eq!(pick_best(&[f64::NAN, 0.0]), Some(1));
        assert_eq!(pick_best(&[]), None);
        assert!(WinRate::default().rate().is_nan());
    }
}
