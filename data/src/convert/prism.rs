//! PRISM (Kirk et al., 2024; `conversations.jsonl`): crowdworkers score several model responses
//! per turn of a conversation. The paper's protocol (Appendix A.1, Table 3): the demographically
//! balanced subset; per scored turn, the highest- against the lowest-scored response, the prompt
//! carrying the conversation so far; users split into seen and unseen by seed; ties dropped and
//! counted. Per-user splits follow Table 3's proportions (seen ≈ 1/6 ref, 1/3 target, the rest
//! eval; unseen ≈ 1/2 ref, the rest eval), as far as each user has data.

use super::error::{ConvertError, Result};
use super::output::{self, ConvertReport, Skips, SplitStats};
use super::table::{read_rows, Fields, Row};
use crate::{Split, Triplet};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

/// The protocol's knobs; the defaults reproduce Table 3's proportions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PrismOptions {
    /// Seed of the user split and of each user's split.
    pub seed: u64,
    /// Keep only conversations with `included_in_balanced_subset` (the paper's choice).
    pub balanced_only: bool,
    /// Fraction of users that are seen (the rest are unseen).
    pub seen_fraction: f64,
    /// Fraction of a seen user's pairs used as reference.
    pub seen_ref_fraction: f64,
    /// Fraction of a seen user's pairs used as target.
    pub seen_target_fraction: f64,
    /// Fraction of an unseen user's pairs used as reference.
    pub unseen_ref_fraction: f64,
}

impl Default for PrismOptions {
    fn default() -> Self {
        Self {
            seed: 0,
            balanced_only: true,
            seen_fraction: 0.5,
            seen_ref_fraction: 1.0 / 6.0,
            seen_target_fraction: 1.0 / 3.0,
            unseen_ref_fraction: 0.5,
        }
    }
}

/// A (prompt, chosen, rejected) pair before it is given a split.
type Pair = (String, String, String);

/// One entry of `conversation_history`.
struct Entry {
    turn: i64,
    within: i64,
    is_user: bool,
    content: String,
    score: Option<f64>,
    chosen: bool,
}

fn entry(e: &Fields<'_>) -> Result<Entry> {
    let role = e.str("role")?;
    let is_user = match role {
        "user" => true,
        "model" | "assistant" => false,
        other => return Err(e.error("role", format!("unknown role {other:?}"))),
    };
    Ok(Entry {
        turn: e.i64("turn")?,
        within: if is_user {
            0
        } else {
            e.opt("within_turn_id")
                .map(|_| e.i64("within_turn_id"))
                .transpose()?
                .unwrap_or(0)
        },
        is_user,
        content: e.str("content")?.to_string(),
        score: if is_user { None } else { e.opt_f64("score")? },
        chosen: if is_user {
            false
        } else {
            e.opt_bool("if_chosen")?.unwrap_or(false)
        },
    })
}

/// The transcript so far as a prompt.
fn render(history: &[(bool, &str)]) -> String {
    history
        .iter()
        .map(|(u, c)| format!("{}: {c}", if *u { "User" } else { "Assistant" }))
        .collect::<Vec<_>>()
        .join("\n\n")
}

/// The (prompt, chosen, rejected) pairs of one conversation.
fn conversation_pairs(row: &Row, skips: &mut Skips) -> Result<Vec<Pair>> {
    let f = row.fields();
    let mut entries = f
        .objects("conversation_history")?
        .iter()
        .map(entry)
        .collect::<Result<Vec<_>>>()?;
    entries.sort_by_key(|e| (e.turn, !e.is_user, e.within));
    let mut out = Vec::new();
    let mut history: Vec<(bool, &str)> = Vec::new();
    let mut i = 0;
    while i < entries.len() {
        let turn = entries[i].turn;
        let j = entries[i..]
            .iter()
            .position(|e| e.turn != turn)
            .map_or(entries.len(), |p| i + p);
        let this = &entries[i..j];
        for e in this.iter().filter(|e| e.is_user) {
            history.push((true, &e.content));
        }
        let scored: Vec<(f64, &Entry)> = this
            .iter()
            .filter(|e| !e.is_user)
            .filter_map(|e| e.score.map(|s| (s, e)))
            .collect();
        // The first highest- and the first lowest-scored response.
        let first = |better: fn(f64, f64) -> bool| {
            scored
                .iter()
                .copied()
                .reduce(|a, b| if better(b.0, a.0) { b } else { a })
        };
        let (best, worst) = (first(|b, a| b > a), first(|b, a| b < a));
        match (best, worst) {
            _ if scored.len() < 2 => skips.add("turn with fewer than two scored responses", || {
                format!("{} turn {turn}", row.place())
            }),
            (Some((hi, b)), Some((lo, w))) if hi > lo && b.content.trim() != w.content.trim() => {
                out.push((render(&history), b.content.clone(), w.content.clone()))
            }
            _ => skips.add(
                "tie between the highest- and lowest-scored responses",
                || format!("{} turn {turn}", row.place()),
            ),
        }
        // The conversation continues with the response the user chose (else the best scored).
        let next = this
            .iter()
            .filter(|e| !e.is_user)
            .find(|e| e.chosen)
            .or(best.map(|(_, e)| e));
        if let Some(n) = next {
            history.push((false, &n.content));
        }
        i = j;
    }
    Ok(out)
}

/// Converts `conversations.jsonl` (or its parquet) into triplets and the report.
pub fn convert(input: &Path, opt: &PrismOptions) -> Result<(Vec<Triplet>, ConvertReport)> {
    for (name, v) in [
        ("seen_fraction", opt.seen_fraction),
        ("seen_ref_fraction", opt.seen_ref_fraction),
        ("seen_target_fraction", opt.seen_target_fraction),
        ("unseen_ref_fraction", opt.unseen_ref_fraction),
    ] {
        if !(v > 0.0 && v < 1.0) {
            return Err(ConvertError::Protocol(format!(
                "{name} must be in (0, 1), got {v}"
            )));
        }
    }
    if opt.seen_ref_fraction + opt.seen_target_fraction >= 1.0 {
        return Err(ConvertError::Protocol(
            "seen_ref_fraction + seen_target_fraction must leave room for eval".into(),
        ));
    }
    let mut skips = Skips::default();
    let mut by_user: BTreeMap<String, Vec<Pair>> = BTreeMap::new();
    for row in read_rows(input)? {
        let f = row.fields();
        let user = f.str("user_id")?.to_string();
        if opt.balanced_only && f.opt_bool("included_in_balanced_subset")? != Some(true) {
            skips.add("conversation outside the balanced subset", || row.place());
            continue;
        }
        let pairs = conversation_pairs(&row, &mut skips)?;
        by_user.entry(user).or_default().extend(pairs);
    }
    let mut users: Vec<(String, Vec<Pair>)> = by_user.into_iter().collect();
    let mut rng = ChaCha8Rng::seed_from_u64(opt.seed);
    users.shuffle(&mut rng);
    let n_seen = ((users.len() as f64) * opt.seen_fraction).round() as usize;
    let mut triplets = Vec::new();
    for (k, (user, mut pairs)) in users.into_iter().enumerate() {
        let seen = k < n_seen;
        let n = pairs.len();
        // Seen users need one ref, one target and one eval pair; unseen one ref and one eval.
        let (n_ref, n_target) = if seen {
            if n < 3 {
                skips.add("seen user with fewer than three pairs", || user.clone());
                continue;
            }
            let r = ((n as f64 * opt.seen_ref_fraction).round() as usize).clamp(1, n - 2);
            let t = ((n as f64 * opt.seen_target_fraction).round() as usize).clamp(1, n - 1 - r);
            (r, t)
        } else {
            if n < 2 {
                skips.add("unseen user with fewer than two pairs", || user.clone());
                continue;
            }
            let r = ((n as f64 * opt.unseen_ref_fraction).round() as usize).clamp(1, n - 1);
            (r, 0)
        };
        pairs.shuffle(&mut rng);
        for (j, (p, c, r)) in pairs.iter().enumerate() {
            let split = if j < n_ref {
                Split::Ref
            } else if j < n_ref + n_target {
                Split::Target
            } else {
                Split::Eval
            };
            triplets.push(output::triplet(&user, p, c, r, split));
        }
    }
    let report = ConvertReport {
        dataset: "prism".into(),
        options: serde_json::to_value(opt).unwrap_or_default(),
        stats: SplitStats::of(&triplets),
        skipped: skips,
    };
    Ok((triplets, report))
}
