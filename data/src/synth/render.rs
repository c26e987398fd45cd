//! Response rendering: latent style levels, sentences with prefixes and suffixes, and the
//! layout (paragraph, lines, bullets, numbers) of one response.

use super::words::*;
use rand::seq::SliceRandom;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Beta, Distribution};

/// The latent style levels and quality of one response (only used to render it).
///
/// Levels are Binomial(3, ½) (formality Binomial(4, ½) − 2; body sentences 1 + Binomial(2, ½)
/// content sentences + a Bernoulli(½) opener): bell-shaped like the Gaussian
/// scores of real reward models. Uniform levels would make the extremes of 8 responses tie
/// more often, letting the shared quality decide more pairs and a global ranker do better.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Style {
    content: usize,
    opener: bool,
    list: usize,
    formality: i32,
    warmth: usize,
    examples: usize,
    enthusiasm: usize,
    hedging: usize,
    jargon: usize,
    questions: usize,
    summary: usize,
    pub(super) quality: f64,
}

fn binomial_half(rng: &mut ChaCha8Rng, n: usize) -> usize {
    (0..n).filter(|_| rng.random_bool(0.5)).count()
}

impl Style {
    pub(super) fn draw(rng: &mut ChaCha8Rng) -> Self {
        let beta = Beta::new(2.0, 2.0).expect("valid Beta parameters");
        Self {
            content: 1 + binomial_half(rng, 2),
            opener: rng.random_bool(0.5),
            list: binomial_half(rng, 3),
            formality: binomial_half(rng, 4) as i32 - 2,
            warmth: binomial_half(rng, 3),
            examples: binomial_half(rng, 3),
            enthusiasm: binomial_half(rng, 3),
            hedging: binomial_half(rng, 3),
            jargon: binomial_half(rng, 3),
            questions: binomial_half(rng, 3),
            summary: binomial_half(rng, 3),
            quality: beta.sample(rng),
        }
    }

    /// The levels in scorer order (length counts the opener as a body sentence).
    #[cfg(test)]
    pub(super) fn levels(&self) -> [f64; super::N_SCORERS] {
        [
            (self.content + self.opener as usize) as f64,
            self.list as f64,
            self.formality as f64,
            self.warmth as f64,
            self.examples as f64,
            self.enthusiasm as f64,
            self.hedging as f64,
            self.jargon as f64,
            self.questions as f64,
            self.summary as f64,
        ]
    }
}

struct Sentence {
    prefixes: Vec<&'static str>,
    core: String,
    suffixes: Vec<&'static str>,
    end: char,
}

impl Sentence {
    fn new(core: String, end: char) -> Self {
        Self {
            prefixes: Vec::new(),
            core,
            suffixes: Vec::new(),
            end,
        }
    }

    fn render(&self) -> String {
        let mut s = String::new();
        for (i, p) in self.prefixes.iter().enumerate() {
            if i == 0 {
                s.push_str(p);
            } else {
                s.push_str(&lower_first(p));
            }
            s.push(' ');
        }
        if self.prefixes.is_empty() {
            s.push_str(&upper_first(&self.core));
        } else {
            s.push_str(&lower_first(&self.core));
        }
        for x in &self.suffixes {
            s.push_str(x);
        }
        s.push(self.end);
        s
    }
}

fn lower_first(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_lowercase().chain(c).collect(),
        None => String::new(),
    }
}

fn upper_first(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

fn pick<T: Copy>(rng: &mut ChaCha8Rng, bank: &[T]) -> T {
    bank[rng.random_range(0..bank.len())]
}

/// Fills `{A}`/`{B}` with distinct topic terms (probability `quality` each) or vague filler.
fn fill(rng: &mut ChaCha8Rng, template: &str, topic: usize, quality: f64) -> String {
    let terms = &TOPICS[topic].1;
    let a = rng.random_range(0..terms.len());
    let b = (a + rng.random_range(1..terms.len())) % terms.len();
    let mut out = template.to_string();
    for (slot, term) in [("{A}", terms[a]), ("{B}", terms[b])] {
        if out.contains(slot) {
            let word = if rng.random_bool(quality) {
                term
            } else {
                pick(rng, &VAGUE_WORDS)
            };
            out = out.replace(slot, word);
        }
    }
    out
}

/// Renders one response for a prompt on `topic`.
pub(super) fn render_response(rng: &mut ChaCha8Rng, topic: usize, st: &Style) -> String {
    let q = st.quality;
    // Body sentences: an optional opener and the content sentences.
    let mut body: Vec<Sentence> = Vec::new();
    if st.opener {
        body.push(Sentence::new(
            pick(rng, &OPENERS).replace("{t}", TOPICS[topic].0),
            '.',
        ));
    }
    let mut content_ids: Vec<usize> = (0..CONTENT.len()).collect();
    content_ids.shuffle(rng);
    for &c in content_ids.iter().take(st.content) {
        body.push(Sentence::new(fill(rng, CONTENT[c], topic, q), '.'));
    }
    let nb = body.len();
    // Formality: |level| informal (level < 0) or formal (level > 0) discourse markers.
    let bank = if st.formality < 0 {
        &INFORMAL_PREFIXES
    } else {
        &FORMAL_PREFIXES
    };
    for _ in 0..st.formality.unsigned_abs() {
        let i = rng.random_range(0..nb);
        body[i].prefixes.insert(0, pick(rng, bank));
    }
    // Jargon suffixes, then hedges (prefix or suffix).
    for _ in 0..st.jargon {
        let i = rng.random_range(0..nb);
        body[i].suffixes.push(pick(rng, &JARGON_SUFFIXES));
    }
    for _ in 0..st.hedging {
        let i = rng.random_range(0..nb);
        if rng.random_bool(0.5) {
            body[i].prefixes.push(pick(rng, &HEDGE_PREFIXES));
        } else {
            body[i].suffixes.push(pick(rng, &HEDGE_SUFFIXES));
        }
    }
    // Items: content sentences, each followed by the examples attached to it.
    let opener = if st.opener {
        Some(body.remove(0).render())
    } else {
        None
    };
    let mut ex_after = vec![0usize; body.len()];
    for _ in 0..st.examples {
        let i = rng.random_range(0..body.len());
        ex_after[i] += 1;
    }
    let mut items: Vec<String> = Vec::new();
    for (s, n_ex) in body.iter().zip(&ex_after) {
        items.push(s.render());
        for _ in 0..*n_ex {
            let tpl = pick(rng, &EXAMPLE_BODIES);
            let e = fill(rng, tpl, topic, q);
            items.push(format!("{} {e}.", pick(rng, &EXAMPLE_PREFIXES)));
        }
    }
    // Framing sentences before and after the items.
    let mut pre: Vec<String> = opener.into_iter().collect();
    let mut post: Vec<String> = Vec::new();
    let mut warm: Vec<&str> = WARM_SENTENCES.to_vec();
    warm.shuffle(rng);
    for w in warm.iter().take(st.warmth) {
        if rng.random_bool(0.5) {
            pre.insert(0, w.to_string());
        } else {
            post.push(w.to_string());
        }
    }
    let mut enth: Vec<&str> = ENTHUSIASM_SENTENCES.to_vec();
    enth.shuffle(rng);
    for e in enth.iter().take(st.enthusiasm) {
        if rng.random_bool(0.6) {
            let at = rng.random_range(0..=pre.len());
            pre.insert(at, e.to_string());
        } else {
            post.push(e.to_string());
        }
    }
    let mut qs: Vec<&str> = QUESTIONS.to_vec();
    qs.shuffle(rng);
    for qq in qs.iter().take(st.questions) {
        let qq = fill(rng, qq, topic, q);
        if rng.random_bool(0.3) {
            pre.push(qq);
        } else {
            post.push(qq);
        }
    }
    let summary = if st.summary > 0 {
        let tpl = pick(rng, &SUMMARIES[st.summary - 1]);
        Some(fill(rng, tpl, topic, q))
    } else {
        None
    };

    if st.list == 0 {
        let mut all = pre;
        all.extend(items);
        all.extend(post);
        all.extend(summary);
        return all.join(" ");
    }
    let mut lines: Vec<String> = Vec::new();
    if !pre.is_empty() {
        lines.push(pre.join(" "));
    }
    let bullet = pick(rng, &BULLETS);
    let paren = rng.random_bool(0.3);
    for (n, it) in items.iter().enumerate() {
        lines.push(match st.list {
            1 => it.clone(),
            2 => format!("{bullet}{it}"),
            _ => format!("{}{} {it}", n + 1, if paren { ")" } else { "." }),
        });
    }
    if !post.is_empty() {
        lines.push(post.join(" "));
    }
    lines.extend(summary);
    lines.join("\n")
}
