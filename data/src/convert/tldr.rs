//! TL;DR human feedback (Stiennon et al., 2020; OpenAI `summarize_from_feedback`, the
//! `comparisons` JSON lines): one user per `worker`. The paper's protocol (Appendix A.1,
//! Table 3): keep workers with at least 50 comparisons, draw 20 seen and 20 unseen by seed; a
//! seen user has 50 ref + 50 (or 100) target comparisons and the rest as eval, an unseen user
//! 50 ref and the rest as eval. The prompt is the post with its subreddit and title.

use super::error::{ConvertError, Result};
use super::output::{self, ConvertReport, Skips, SplitStats};
use super::table::{read_rows, Row};
use crate::{Split, Triplet};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// The protocol's knobs; the defaults are the paper's (target 50; the other TL;DR row uses 100).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TldrOptions {
    /// Seed of the worker draw and of each worker's split.
    pub seed: u64,
    /// Workers need at least this many comparisons to be kept.
    pub min_comparisons: usize,
    /// Seen users drawn.
    pub seen_users: usize,
    /// Unseen users drawn.
    pub unseen_users: usize,
    /// Reference comparisons per user.
    pub n_ref: usize,
    /// Target comparisons per seen user (the paper: 50 or 100).
    pub n_target: usize,
}

impl Default for TldrOptions {
    fn default() -> Self {
        Self {
            seed: 0,
            min_comparisons: 50,
            seen_users: 20,
            unseen_users: 20,
            n_ref: 50,
            n_target: 50,
        }
    }
}

/// The TL;DR prompt of a Reddit post, as in the summarisation papers.
pub fn prompt(subreddit: &str, title: &str, post: &str) -> String {
    format!("SUBREDDIT: r/{subreddit}\nTITLE: {title}\nPOST: {post}\nTL;DR:")
}

/// The comparison files under `inputs`: files as given, directories' `*.json`/`*.jsonl` sorted.
pub fn input_files(inputs: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for p in inputs {
        if p.is_dir() {
            let rd = std::fs::read_dir(p).map_err(|e| ConvertError::io(p, e))?;
            let mut found: Vec<PathBuf> = rd
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|f| {
                    f.is_file()
                        && f.extension()
                            .is_some_and(|x| x == "json" || x == "jsonl" || x == "parquet")
                })
                .collect();
            found.sort();
            if found.is_empty() {
                return Err(ConvertError::Protocol(format!(
                    "{}: no *.json, *.jsonl or *.parquet comparison files",
                    p.display()
                )));
            }
            files.extend(found);
        } else {
            files.push(p.clone());
        }
    }
    if files.is_empty() {
        return Err(ConvertError::Protocol("no --input given".into()));
    }
    Ok(files)
}

/// One comparison as a (prompt, chosen, rejected) of one worker; `None` when skipped.
fn comparison(row: &Row, skips: &mut Skips) -> Result<Option<(String, Triplet)>> {
    let f = row.fields();
    let worker = f.str("worker")?.to_string();
    let info = f.object("info")?;
    let Some(post) = info.opt_str("post")? else {
        // The CNN/DM comparisons carry an `article` instead: not a TL;DR user preference.
        skips.add("comparison without info.post (CNN/DM article)", || {
            row.place()
        });
        return Ok(None);
    };
    let title = info.opt_str("title")?.unwrap_or("");
    let subreddit = info.opt_str("subreddit")?.unwrap_or("");
    let summaries = f.objects("summaries")?;
    if summaries.len() != 2 {
        return Err(row.error(
            "summaries",
            format!("expected 2 summaries, found {}", summaries.len()),
        ));
    }
    let choice = f.i64("choice")?;
    if !(0..2).contains(&choice) {
        return Err(row.error(
            "choice",
            format!("unknown choice index {choice} (expected 0 or 1)"),
        ));
    }
    let chosen = summaries[choice as usize].str("text")?;
    let rejected = summaries[1 - choice as usize].str("text")?;
    if chosen.trim() == rejected.trim() {
        skips.add("identical summaries", || row.place());
        return Ok(None);
    }
    let t = output::triplet(
        &worker,
        &prompt(subreddit, title, post),
        chosen,
        rejected,
        Split::Eval,
    );
    Ok(Some((worker, t)))
}

/// Converts the comparison files into triplets and the report.
pub fn convert(inputs: &[PathBuf], opt: &TldrOptions) -> Result<(Vec<Triplet>, ConvertReport)> {
    if opt.n_ref == 0 || opt.n_target == 0 || opt.seen_users == 0 {
        return Err(ConvertError::Protocol(
            "need at least one seen user, one ref and one target comparison".into(),
        ));
    }
    let mut skips = Skips::default();
    let mut by_worker: BTreeMap<String, Vec<Triplet>> = BTreeMap::new();
    for file in input_files(inputs)? {
        for row in read_rows(&file)? {
            if let Some((w, t)) = comparison(&row, &mut skips)? {
                by_worker.entry(w).or_default().push(t);
            }
        }
    }
    let mut workers: Vec<(String, Vec<Triplet>)> = by_worker
        .into_iter()
        .filter(|(w, c)| {
            let keep = c.len() >= opt.min_comparisons;
            if !keep {
                skips.add(
                    &format!("worker with fewer than {} comparisons", opt.min_comparisons),
                    || w.clone(),
                );
            }
            keep
        })
        .collect();
    let mut rng = ChaCha8Rng::seed_from_u64(opt.seed);
    workers.shuffle(&mut rng);
    // Seen users are drawn first among workers with room for ref + target + one eval row, then
    // unseen users among the rest with room for ref + one eval row.
    let (need_seen, need_unseen) = (opt.n_ref + opt.n_target + 1, opt.n_ref + 1);
    let mut seen = Vec::new();
    let mut rest = Vec::new();
    for w in workers {
        if seen.len() < opt.seen_users && w.1.len() >= need_seen {
            seen.push(w);
        } else {
            rest.push(w);
        }
    }
    let unseen: Vec<_> = rest
        .into_iter()
        .filter(|w| w.1.len() >= need_unseen)
        .take(opt.unseen_users)
        .collect();
    if seen.len() < opt.seen_users || unseen.len() < opt.unseen_users {
        return Err(ConvertError::Protocol(format!(
            "TL;DR: the protocol needs {} seen workers with ≥ {need_seen} comparisons and {} \
             unseen with ≥ {need_unseen}; the input has {} and {}",
            opt.seen_users,
            opt.unseen_users,
            seen.len(),
            unseen.len()
        )));
    }
    let mut triplets = Vec::new();
    for (side, group) in [(true, seen), (false, unseen)] {
        for (_, mut rows) in group {
            rows.shuffle(&mut rng);
            for (j, mut t) in rows.into_iter().enumerate() {
                t.split = if j < opt.n_ref {
                    Split::Ref
                } else if side && j < opt.n_ref + opt.n_target {
                    Split::Target
                } else {
                    Split::Eval
                };
                triplets.push(t);
            }
        }
    }
    let report = ConvertReport {
        dataset: "tldr".into(),
        options: serde_json::to_value(opt).unwrap_or_default(),
        stats: SplitStats::of(&triplets),
        skipped: skips,
    };
    Ok((triplets, report))
}
