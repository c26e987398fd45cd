//! The ten deterministic scorers: raw measures read from the response text, the shared
//! quality measure, their lexicons and the normalisation over a response pool.

use super::words::*;
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::sync::OnceLock;

/// Number of scorers ("reward models").
pub const N_SCORERS: usize = 10;

/// Scorer names, in scorer order.
pub const SCORER_NAMES: [&str; N_SCORERS] = [
    "length",
    "list",
    "formality",
    "warmth",
    "examples",
    "enthusiasm",
    "hedging",
    "jargon",
    "questions",
    "summary",
];

fn lexicon_set(words: &[&'static str]) -> HashSet<&'static str> {
    words.iter().copied().collect()
}

struct Lexicons {
    specific: HashSet<&'static str>,
    vague: HashSet<&'static str>,
    informal: HashSet<&'static str>,
    formal: HashSet<&'static str>,
    warm: HashSet<&'static str>,
    enthusiasm: HashSet<&'static str>,
    hedge: HashSet<&'static str>,
    jargon: HashSet<&'static str>,
    example: HashSet<&'static str>,
}

fn lexicons() -> &'static Lexicons {
    static L: OnceLock<Lexicons> = OnceLock::new();
    L.get_or_init(|| Lexicons {
        specific: TOPICS.iter().flat_map(|t| t.1.iter().copied()).collect(),
        vague: lexicon_set(&VAGUE_WORDS),
        informal: lexicon_set(&INFORMAL_WORDS),
        formal: lexicon_set(&FORMAL_WORDS),
        warm: lexicon_set(&WARM_WORDS),
        enthusiasm: lexicon_set(&ENTHUSIASM_WORDS),
        hedge: lexicon_set(&HEDGE_WORDS),
        jargon: lexicon_set(&JARGON_WORDS),
        example: lexicon_set(&EXAMPLE_WORDS),
    })
}

/// Lower-cased words: maximal runs of letters, digits and apostrophes.
fn words(text: &str) -> Vec<String> {
    text.split(|c: char| !(c.is_alphanumeric() || c == '\''))
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect()
}

fn count_in(ws: &[String], set: &HashSet<&'static str>) -> usize {
    ws.iter().filter(|w| set.contains(w.as_str())).count()
}

/// Strips a leading list marker ("- ", "* ", "• ", "3. ", "3) ") and reports its kind.
fn strip_marker(line: &str) -> (&str, ListMarker) {
    let l = line.trim_start();
    for b in ["- ", "* ", "• "] {
        if let Some(rest) = l.strip_prefix(b) {
            return (rest, ListMarker::Bullet);
        }
    }
    let digits = l.chars().take_while(char::is_ascii_digit).count();
    if digits > 0 {
        let rest = &l[digits..];
        for sep in [". ", ") "] {
            if let Some(r) = rest.strip_prefix(sep) {
                return (r, ListMarker::Number);
            }
        }
    }
    (l, ListMarker::None)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ListMarker {
    None,
    Bullet,
    Number,
}

/// Sentences of a text: lines (list markers stripped) split after '.', '!' or '?' + whitespace.
fn sentences(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    for line in text.lines() {
        let (line, _) = strip_marker(line);
        let mut start = 0;
        let b = line.as_bytes();
        for i in 0..b.len() {
            let end_here = matches!(b[i], b'.' | b'!' | b'?')
                && (i + 1 == b.len() || b[i + 1].is_ascii_whitespace());
            if end_here {
                let s = line[start..=i].trim();
                if !s.is_empty() {
                    out.push(s);
                }
                start = i + 1;
            }
        }
        let s = line[start..].trim();
        if !s.is_empty() {
            out.push(s);
        }
    }
    out
}

fn is_summary(sentence: &str) -> bool {
    let l = sentence.to_lowercase();
    SUMMARY_PREFIXES.iter().any(|p| l.starts_with(p))
}

/// Raw measures of the ten styles, read from the response text (docs/METHOD.md §6), in [`SCORER_NAMES`] order:
///
/// 0. **length** — number of *body* sentences: sentences that are not a question (ending '?'),
///    an exclamation (ending '!'), a summary line, a warm courtesy (holds a warmth word) or an
///    example (holds "example"/"instance"/"illustrate").
/// 1. **list** — layout: 3 if a line starts with a number marker ("1." or "1)"), else 2 if a line
///    starts with a bullet ("-", "*", "•"), else 1 if the text has two or more non-empty lines,
///    else 0 (one paragraph).
/// 2. **formality** — formal discourse markers ("furthermore", "moreover", …) minus informal ones
///    ("honestly", "basically", "yeah", …).
/// 3. **warmth** — number of warmth words ("hope", "glad", "happy", "worry", …).
/// 4. **examples** — number of example markers ("example", "instance", "illustrate").
/// 5. **enthusiasm** — number of '!' plus number of enthusiasm words ("exciting", "awesome", …).
/// 6. **hedging** — number of hedge words ("perhaps", "maybe", "probably", "might", …).
/// 7. **jargon** — number of jargon words ("optimize", "heuristic", "leverage", "metrics", …).
/// 8. **questions** — number of '?' (questions back to the reader).
/// 9. **summary** — number of words in sentences opening with a summary phrase ("In short",
///    "TL;DR", "To sum up", …): 0 without a summary, more for a fuller one.
pub fn scorers(text: &str) -> [f64; N_SCORERS] {
    let lx = lexicons();
    let ws = words(text);
    let sents = sentences(text);
    let length = sents
        .iter()
        .filter(|s| {
            let sw = words(s);
            !(s.ends_with('?')
                || s.ends_with('!')
                || is_summary(s)
                || count_in(&sw, &lx.warm) > 0
                || count_in(&sw, &lx.example) > 0)
        })
        .count();
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let markers: Vec<ListMarker> = lines.iter().map(|l| strip_marker(l).1).collect();
    let list = if markers.contains(&ListMarker::Number) {
        3
    } else if markers.contains(&ListMarker::Bullet) {
        2
    } else if lines.len() >= 2 {
        1
    } else {
        0
    };
    let formality = count_in(&ws, &lx.formal) as f64 - count_in(&ws, &lx.informal) as f64;
    let bangs = text.matches('!').count();
    [
        length as f64,
        list as f64,
        formality,
        count_in(&ws, &lx.warm) as f64,
        count_in(&ws, &lx.example) as f64,
        (bangs + count_in(&ws, &lx.enthusiasm)) as f64,
        count_in(&ws, &lx.hedge) as f64,
        count_in(&ws, &lx.jargon) as f64,
        text.matches('?').count() as f64,
        sents
            .iter()
            .filter(|s| is_summary(s))
            .map(|s| words(s).len())
            .sum::<usize>() as f64,
    ]
}

/// Shared quality measure: (specific topic terms − vague filler words) / (their sum), in [−1, 1];
/// 0 when the text has neither. Specific terms are the union of all topics' term lists; vague
/// words are "stuff", "things", "whatever", "everything", "something".
pub fn quality(text: &str) -> f64 {
    let lx = lexicons();
    let ws = words(text);
    let s = count_in(&ws, &lx.specific) as f64;
    let v = count_in(&ws, &lx.vague) as f64;
    if s + v == 0.0 {
        0.0
    } else {
        (s - v) / (s + v)
    }
}

/// Mean and standard deviation of each raw measure (10 styles, then quality) over a response pool.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScorerStats {
    /// Means of the 10 style measures and (last) the quality measure.
    pub mean: Vec<f64>,
    /// Standard deviations (population; 1 where a measure is constant).
    pub std: Vec<f64>,
    /// Weight of the z-normalised quality in every scorer.
    pub quality_weight: f64,
}

impl ScorerStats {
    /// Fits the normalisation on a pool of response texts.
    pub fn fit<'a>(texts: impl IntoIterator<Item = &'a str>, quality_weight: f64) -> Self {
        let raws: Vec<[f64; N_SCORERS + 1]> = texts.into_iter().map(raw_all).collect();
        let n = raws.len().max(1) as f64;
        let mut mean = vec![0.0; N_SCORERS + 1];
        let mut std = vec![0.0; N_SCORERS + 1];
        for r in &raws {
            for j in 0..=N_SCORERS {
                mean[j] += r[j] / n;
            }
        }
        for r in &raws {
            for j in 0..=N_SCORERS {
                std[j] += (r[j] - mean[j]).powi(2) / n;
            }
        }
        for s in &mut std {
            *s = if *s > 1e-12 { s.sqrt() } else { 1.0 };
        }
        Self {
            mean,
            std,
            quality_weight,
        }
    }

    /// The ten normalised scorers of a text: z(style j) + quality_weight · z(quality).
    pub fn score(&self, text: &str) -> [f64; N_SCORERS] {
        let r = raw_all(text);
        let zq = (r[N_SCORERS] - self.mean[N_SCORERS]) / self.std[N_SCORERS];
        std::array::from_fn(|j| (r[j] - self.mean[j]) / self.std[j] + self.quality_weight * zq)
    }
}

fn raw_all(text: &str) -> [f64; N_SCORERS + 1] {
    let s = scorers(text);
    std::array::from_fn(|j| if j < N_SCORERS { s[j] } else { quality(text) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synth::generate::rng_for;
    use crate::synth::render::{render_response, Style};

    #[test]
    fn lexicons_are_disjoint_and_templates_neutral() {
        let lx = lexicons();
        let sets = [
            &lx.specific,
            &lx.vague,
            &lx.informal,
            &lx.formal,
            &lx.warm,
            &lx.enthusiasm,
            &lx.hedge,
            &lx.jargon,
            &lx.example,
        ];
        for (i, a) in sets.iter().enumerate() {
            for b in &sets[i + 1..] {
                assert!(
                    a.is_disjoint(b),
                    "{:?}",
                    a.intersection(b).collect::<Vec<_>>()
                );
            }
        }
        // Neutral templates and topic names carry no marker words.
        let neutral: Vec<String> = CONTENT
            .iter()
            .chain(&OPENERS)
            .chain(&EXAMPLE_BODIES)
            .chain(&QUESTIONS)
            .chain(SUMMARIES.iter().flatten())
            .map(|s| s.to_string())
            .chain(TOPICS.iter().map(|t| t.0.to_string()))
            .collect();
        for s in &neutral {
            let ws = words(&s.replace("{A}", "").replace("{B}", "").replace("{t}", ""));
            for set in &sets {
                assert_eq!(count_in(&ws, set), 0, "{s}");
            }
        }
        // Each marker phrase holds exactly one word of its own lexicon.
        let check = |bank: &[&str], set: &HashSet<&'static str>| {
            for p in bank {
                let ws = words(p);
                assert_eq!(count_in(&ws, set), 1, "{p}");
                for other in sets.iter().filter(|o| !std::ptr::eq(**o, set)) {
                    assert_eq!(count_in(&ws, other), 0, "{p}");
                }
            }
        };
        check(&INFORMAL_PREFIXES, &lx.informal);
        check(&FORMAL_PREFIXES, &lx.formal);
        check(&WARM_SENTENCES, &lx.warm);
        check(&ENTHUSIASM_SENTENCES, &lx.enthusiasm);
        check(&HEDGE_PREFIXES, &lx.hedge);
        check(&HEDGE_SUFFIXES, &lx.hedge);
        check(&JARGON_SUFFIXES, &lx.jargon);
        check(&EXAMPLE_PREFIXES, &lx.example);
    }

    #[test]
    fn measures_read_the_text() {
        let text = "Honestly, start with gluten before you move on to stuff.\n\
                    - Maybe check yeast first, then turn to proofing as a heuristic.\n\
                    - For example, many beginners start with hydration.\n\
                    I hope this helps. This is exciting! What is your current level?\n\
                    TL;DR: start small with things.";
        let s = scorers(text);
        assert_eq!(s, [2.0, 2.0, -1.0, 1.0, 1.0, 2.0, 1.0, 1.0, 1.0, 6.0]);
        // specific: gluten, yeast, proofing, hydration (4); vague: stuff, things (2).
        assert!((quality(text) - 2.0 / 6.0).abs() < 1e-12);
        assert_eq!(scorers("1) Do this.\n2) Do that.")[1], 3.0);
        assert_eq!(scorers("One line. Two sentences.")[1], 0.0);
        assert_eq!(scorers("Line one.\nLine two.")[1], 1.0);
        assert_eq!(quality("nothing relevant"), 0.0);
    }

    #[test]
    fn measures_track_the_latent_levels() {
        // Each measure follows its own latent level and is (nearly) blind to the others.
        let mut rng = rng_for(7, 7);
        let n = 3000;
        let mut lv = Vec::new();
        let mut ms = Vec::new();
        let mut qs = Vec::new();
        for k in 0..n {
            let st = Style::draw(&mut rng);
            let text = render_response(&mut rng, k % TOPICS.len(), &st);
            qs.push((st.quality, quality(&text)));
            let levels = st.levels();
            lv.push(levels);
            ms.push(scorers(&text));
        }
        let corr = |a: &dyn Fn(usize) -> f64, b: &dyn Fn(usize) -> f64| {
            let (ma, mb) = (
                (0..n).map(a).sum::<f64>() / n as f64,
                (0..n).map(b).sum::<f64>() / n as f64,
            );
            let cov: f64 = (0..n).map(|i| (a(i) - ma) * (b(i) - mb)).sum();
            let va: f64 = (0..n).map(|i| (a(i) - ma).powi(2)).sum();
            let vb: f64 = (0..n).map(|i| (b(i) - mb).powi(2)).sum();
            cov / (va * vb).sqrt()
        };
        let cq = corr(&|i| qs[i].0, &|i| qs[i].1);
        assert!(cq > 0.7, "quality: corr(latent, measure) = {cq}");
        for j in 0..N_SCORERS {
            let cq = corr(&|i| qs[i].0, &|i| ms[i][j]);
            assert!(
                cq.abs() < 0.1,
                "{} measure vs quality: {cq}",
                SCORER_NAMES[j]
            );
            let c = corr(&|i| lv[i][j], &|i| ms[i][j]);
            assert!(c > 0.9, "{}: corr(level, measure) = {c}", SCORER_NAMES[j]);
            for k in 0..N_SCORERS {
                if k != j {
                    let c = corr(&|i| lv[i][k], &|i| ms[i][j]);
                    assert!(
                        c.abs() < 0.15,
                        "{} measure vs {} level: {c}",
                        SCORER_NAMES[j],
                        SCORER_NAMES[k]
                    );
                }
            }
        }
    }
}
