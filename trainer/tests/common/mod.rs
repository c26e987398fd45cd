//! Fixtures shared by the end-to-end test crates (`mod common;`).

use std::path::{Path, PathBuf};

use vrf_data::{write_jsonl, Split, Triplet};

const TOPICS: [&str; 16] = [
    "bread", "tea", "maps", "cats", "bikes", "rain", "jazz", "chess", "tents", "kites", "soap",
    "clay", "ink", "rice", "wool", "bees",
];
const EVAL_TOPICS: [&str; 6] = ["salt", "glue", "snow", "corn", "silk", "fern"];

fn responses(topic: &str) -> ([String; 2], [String; 2]) {
    (
        [
            format!("the sun helps {topic} a lot"),
            format!("a sunny day for {topic}"),
        ],
        [
            format!("the moon helps {topic} a lot"),
            format!("a moonlit night for {topic}"),
        ],
    )
}

/// Users who prefer "sun" answers (and, with `mixed`, every other user prefers "moon").
/// With `eval_on_train`, eval rows repeat the user's target rows, so eval accuracy is the fit.
pub fn tiny_data(dir: &Path, mixed: bool, eval_on_train: bool) -> PathBuf {
    let mut rows = Vec::new();
    let mut push = |user: &str, topic: &str, k: usize, moon_lover: bool, split: Split| {
        let (sun, moon) = responses(topic);
        let (c, r) = if moon_lover {
            (&moon[k % 2], &sun[(k + 1) % 2])
        } else {
            (&sun[k % 2], &moon[(k + 1) % 2])
        };
        rows.push(Triplet {
            user: user.into(),
            prompt: format!("What helps with {topic}?"),
            chosen: c.clone(),
            rejected: r.clone(),
            split,
        });
    };
    for u in 0..6 {
        let id = format!("s{u}");
        let moon = mixed && u % 2 == 1;
        for j in 0..3 {
            push(&id, TOPICS[(u + j) % 16], u + j, moon, Split::Ref);
        }
        for j in 3..11 {
            push(&id, TOPICS[(u + j) % 16], u + j, moon, Split::Target);
            if eval_on_train {
                push(&id, TOPICS[(u + j) % 16], u + j, moon, Split::Eval);
            }
        }
        if !eval_on_train {
            for (j, t) in EVAL_TOPICS.iter().enumerate().take(4) {
                push(&id, t, u + j, moon, Split::Eval);
            }
        }
    }
    for u in 0..4 {
        let id = format!("n{u}");
        let moon = mixed && u % 2 == 1;
        for j in 0..3 {
            push(&id, TOPICS[(2 * u + j) % 16], u + j, moon, Split::Ref);
        }
        for (j, t) in EVAL_TOPICS.iter().enumerate().skip(2) {
            push(&id, t, u + j, moon, Split::Eval);
        }
    }
    let p = dir.join("tiny.jsonl");
    write_jsonl(&p, &rows).unwrap();
    p
}
