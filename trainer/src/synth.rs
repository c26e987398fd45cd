//! The embedded synthetic PersonalLLM benchmark (SPEC §6).
//!
//! Prompts come from templates (topic × question kind × context) and are split into a train pool
//! and an eval pool. Each prompt gets [`SynthConfig::responses_per_prompt`] responses rendered
//! from templates with ten independently drawn style levels and a latent quality, with synonym
//! banks and topic words for lexical variety. Ten deterministic scorers read the response
//! **text** (never the latent levels): scorer j is the z-normalised measure of style j plus
//! `quality_weight` × the z-normalised quality measure, so scorers correlate as reward models do.
//! Users are Dirichlet(α·1) mixtures of the scorers; each user's pair on a prompt is the
//! highest- vs the lowest-scoring response.
//!
//! Style levels are drawn independently per response and each measure reads markers that only its
//! own style writes, so the ten measures are (nearly) independent.

use crate::data::{self, write_atomic, DataError, Split, Triplet};
use rand::seq::{index, SliceRandom};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Beta, Dirichlet, Distribution};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::path::{Path, PathBuf};
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

/// Errors from the generator.
#[derive(Debug, thiserror::Error)]
pub enum SynthError {
    /// The configuration is unusable.
    #[error("invalid synthetic config: {0}")]
    Config(String),
    /// All responses of a prompt tie for a user (no preference can be formed).
    #[error("all responses of prompt {prompt:?} tie for user {user}")]
    Degenerate {
        /// The user.
        user: String,
        /// The prompt.
        prompt: String,
    },
    /// Writing the output failed.
    #[error(transparent)]
    Data(#[from] DataError),
}

/// Generator settings (SPEC §6; per-user sizes follow the paper's Table 3 for PersonalLLM).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SynthConfig {
    /// Users with target (training) rows.
    pub seen_users: usize,
    /// Users with only reference and eval rows.
    pub unseen_users: usize,
    /// Dirichlet concentration of user weights (0.1 very diverse, 10 near uniform).
    pub alpha: f64,
    /// RNG seed; the output is a deterministic function of the config.
    pub seed: u64,
    /// Prompts in the training pool (ref and target rows).
    pub train_prompts: usize,
    /// Prompts in the eval pool (eval rows only).
    pub eval_prompts: usize,
    /// Responses generated per prompt.
    pub responses_per_prompt: usize,
    /// Weight of the shared quality measure in every scorer.
    pub quality_weight: f64,
    /// Reference triplets per user (seen and unseen).
    pub ref_per_user: usize,
    /// Target triplets per seen user.
    pub target_per_user: usize,
    /// Eval triplets per seen user.
    pub seen_eval_per_user: usize,
    /// Eval triplets per unseen user.
    pub unseen_eval_per_user: usize,
}

impl Default for SynthConfig {
    fn default() -> Self {
        Self {
            seen_users: 200,
            unseen_users: 200,
            alpha: 0.1,
            seed: 0,
            train_prompts: 300,
            eval_prompts: 100,
            responses_per_prompt: 8,
            quality_weight: 0.3,
            ref_per_user: 9,
            target_per_user: 36,
            seen_eval_per_user: 45,
            unseen_eval_per_user: 9,
        }
    }
}

impl SynthConfig {
    /// Checks the settings against each other and the template pool.
    pub fn validate(&self) -> Result<(), SynthError> {
        let bad = |m: String| Err(SynthError::Config(m));
        if !(self.alpha.is_finite() && self.alpha > 0.0) {
            return bad(format!("alpha must be positive, got {}", self.alpha));
        }
        if !self.quality_weight.is_finite() || self.quality_weight < 0.0 {
            return bad(format!(
                "quality_weight must be ≥ 0, got {}",
                self.quality_weight
            ));
        }
        if self.responses_per_prompt < 2 {
            return bad("responses_per_prompt must be at least 2".into());
        }
        if self.ref_per_user == 0 {
            return bad(
                "ref_per_user must be at least 1 (users are inferred from reference rows)".into(),
            );
        }
        let need_train = self.ref_per_user + self.target_per_user;
        if self.train_prompts < need_train {
            return bad(format!(
                "train_prompts = {} < ref + target per user = {need_train}",
                self.train_prompts
            ));
        }
        let need_eval = self.seen_eval_per_user.max(self.unseen_eval_per_user);
        if self.eval_prompts < need_eval {
            return bad(format!(
                "eval_prompts = {} < eval rows per user = {need_eval}",
                self.eval_prompts
            ));
        }
        let pool = prompt_pool_size();
        if self.train_prompts + self.eval_prompts > pool {
            return bad(format!(
                "train_prompts + eval_prompts = {} exceeds the {pool} distinct template prompts",
                self.train_prompts + self.eval_prompts
            ));
        }
        if self.seen_users + self.unseen_users == 0 {
            return bad("no users".into());
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Lexicons. Each scorer reads its own marker words; the tests check the banks are disjoint and
// that the neutral templates contain none of them.

/// Topics: (name used in prompts, topic-specific terms used by good answers).
const TOPICS: [(&str, [&str; 8]); 30] = [
    (
        "baking bread",
        [
            "hydration",
            "gluten",
            "proofing",
            "starter",
            "crumb",
            "scoring",
            "kneading",
            "yeast",
        ],
    ),
    (
        "vegetable gardening",
        [
            "compost",
            "mulch",
            "seedlings",
            "watering",
            "sunlight",
            "spacing",
            "pests",
            "soil",
        ],
    ),
    (
        "personal budgeting",
        [
            "expenses",
            "savings",
            "income",
            "spreadsheet",
            "subscriptions",
            "receipts",
            "envelopes",
            "debt",
        ],
    ),
    (
        "marathon training",
        [
            "mileage",
            "tempo",
            "intervals",
            "cadence",
            "taper",
            "stretching",
            "shoes",
            "pacing",
        ],
    ),
    (
        "learning guitar",
        [
            "chords",
            "strumming",
            "fretboard",
            "scales",
            "calluses",
            "tuning",
            "metronome",
            "rhythm",
        ],
    ),
    (
        "job interviews",
        [
            "resume",
            "portfolio",
            "references",
            "attire",
            "handshake",
            "rehearsal",
            "company",
            "recruiter",
        ],
    ),
    (
        "travel planning",
        [
            "itinerary",
            "flights",
            "visas",
            "luggage",
            "insurance",
            "hostels",
            "currency",
            "bookings",
        ],
    ),
    (
        "home workouts",
        [
            "squats",
            "pushups",
            "planks",
            "lunges",
            "warmups",
            "resistance",
            "recovery",
            "form",
        ],
    ),
    (
        "python programming",
        [
            "functions",
            "loops",
            "variables",
            "modules",
            "debugger",
            "indentation",
            "exceptions",
            "classes",
        ],
    ),
    (
        "sleeping better",
        [
            "bedtime",
            "caffeine",
            "darkness",
            "naps",
            "mattress",
            "screens",
            "melatonin",
            "alarms",
        ],
    ),
    (
        "photography",
        [
            "aperture",
            "exposure",
            "composition",
            "lighting",
            "shutter",
            "lenses",
            "framing",
            "tripod",
        ],
    ),
    (
        "moving house",
        [
            "boxes",
            "labels",
            "movers",
            "utilities",
            "inventory",
            "packing",
            "deposit",
            "lease",
        ],
    ),
    (
        "public speaking",
        [
            "posture", "slides", "pauses", "audience", "outline", "gestures", "voice", "nerves",
        ],
    ),
    (
        "studying for exams",
        [
            "flashcards",
            "syllabus",
            "revision",
            "quizzes",
            "deadlines",
            "highlighters",
            "breaks",
            "recall",
        ],
    ),
    (
        "dog training",
        [
            "treats",
            "leash",
            "commands",
            "crate",
            "clicker",
            "socialization",
            "walks",
            "rewards",
        ],
    ),
    (
        "writing essays",
        [
            "thesis",
            "paragraphs",
            "citations",
            "drafts",
            "transitions",
            "evidence",
            "editing",
            "introduction",
        ],
    ),
    (
        "brewing coffee",
        [
            "grind",
            "beans",
            "grinder",
            "filters",
            "ratio",
            "extraction",
            "kettle",
            "roast",
        ],
    ),
    (
        "bike maintenance",
        [
            "chain",
            "tires",
            "brakes",
            "gears",
            "lubricant",
            "spokes",
            "pressure",
            "derailleur",
        ],
    ),
    (
        "time management",
        [
            "calendar",
            "priorities",
            "batching",
            "interruptions",
            "reminders",
            "agenda",
            "timers",
            "delegation",
        ],
    ),
    (
        "keeping houseplants",
        [
            "repotting",
            "drainage",
            "humidity",
            "fertilizer",
            "pruning",
            "pots",
            "windowsills",
            "roots",
        ],
    ),
    (
        "learning a language",
        [
            "vocabulary",
            "grammar",
            "pronunciation",
            "conversation",
            "immersion",
            "podcasts",
            "verbs",
            "accent",
        ],
    ),
    (
        "saving energy at home",
        [
            "insulation",
            "thermostat",
            "appliances",
            "bulbs",
            "heating",
            "windows",
            "meters",
            "standby",
        ],
    ),
    (
        "hiking",
        [
            "trails",
            "boots",
            "maps",
            "blisters",
            "layers",
            "elevation",
            "backpack",
            "compass",
        ],
    ),
    (
        "watercolor painting",
        [
            "brushes", "pigments", "washes", "paper", "palette", "blending", "glazing", "masking",
        ],
    ),
    (
        "negotiating a salary",
        [
            "offer",
            "counteroffer",
            "equity",
            "bonus",
            "raise",
            "market",
            "timing",
            "title",
        ],
    ),
    (
        "meditation",
        [
            "breathing",
            "mantra",
            "cushion",
            "awareness",
            "stillness",
            "thoughts",
            "mindfulness",
            "visualization",
        ],
    ),
    (
        "email etiquette",
        [
            "subject",
            "greeting",
            "tone",
            "signature",
            "replies",
            "attachments",
            "brevity",
            "recipients",
        ],
    ),
    (
        "cooking pasta",
        [
            "salt", "sauce", "semolina", "boiling", "texture", "garlic", "noodles", "colander",
        ],
    ),
    (
        "starting a small business",
        [
            "customers",
            "pricing",
            "invoices",
            "marketing",
            "permits",
            "suppliers",
            "branding",
            "cashflow",
        ],
    ),
    (
        "playing chess",
        [
            "openings",
            "endgames",
            "tactics",
            "pawns",
            "castling",
            "checkmate",
            "puzzles",
            "blunders",
        ],
    ),
];

const QUESTION_KINDS: [&str; 12] = [
    "How do I get started with {t}?",
    "What are common mistakes people make with {t}?",
    "Can you give me some tips for {t}?",
    "How can I get better at {t}?",
    "What should a beginner know about {t}?",
    "Is {t} worth the effort?",
    "How much time should I spend on {t} each week?",
    "What do I need before I start {t}?",
    "How do I stay motivated with {t}?",
    "What is the best way to learn {t}?",
    "How do I know if I am making progress with {t}?",
    "Any advice on {t} for someone with little free time?",
];

const CONTEXTS: [&str; 7] = [
    "",
    "Beginner here. ",
    "I gave up once. ",
    "Tight budget. ",
    "Weekends only. ",
    "A friend suggested it. ",
    "I want fast results. ",
];

/// Vague filler that low-quality answers use where a good answer names a specific term.
const VAGUE_WORDS: [&str; 5] = ["stuff", "things", "whatever", "everything", "something"];

/// Content sentences; `{A}`/`{B}` are filled with a topic term (quality) or vague filler.
const CONTENT: [&str; 16] = [
    "Start with {A} before {B}",
    "Spend a few minutes on {A} daily",
    "Watch {A} closely, since it shapes {B}",
    "Keep a log of {A} and {B}",
    "Progress comes from {A}, not {B}",
    "Check {A} first, then {B}",
    "A steady habit around {A} helps {B}",
    "Practice {A} in short sessions",
    "Do not rush {A} or {B}",
    "Set one small goal for {A} each week",
    "Compare {A} with {B} after a month",
    "Learn how {A} affects {B}",
    "Give {A} more time than you expect",
    "Fix {A} early, before it hurts {B}",
    "Ask someone experienced about {A}",
    "Track what changes when you adjust {A}",
];

const OPENERS: [&str; 6] = [
    "Here is my take on {t}",
    "Good {t} comes down to habits",
    "With {t}, small steps add up",
    "Most people overcomplicate {t}",
    "The core of {t} is simple",
    "A few points about {t}",
];

/// Informal discourse markers (formality −1 each).
const INFORMAL_WORDS: [&str; 6] = ["honestly", "basically", "yeah", "okay", "tbh", "anyway"];
const INFORMAL_PREFIXES: [&str; 6] = [
    "Honestly,",
    "Basically,",
    "Yeah, so",
    "Okay, so",
    "Tbh,",
    "Anyway,",
];
/// Formal discourse markers (formality +1 each).
const FORMAL_WORDS: [&str; 6] = [
    "furthermore",
    "moreover",
    "additionally",
    "notably",
    "importantly",
    "accordingly",
];
const FORMAL_PREFIXES: [&str; 6] = [
    "Furthermore,",
    "Moreover,",
    "Additionally,",
    "Notably,",
    "Importantly,",
    "Accordingly,",
];

/// Warmth words; each warm sentence holds exactly one.
const WARM_WORDS: [&str; 7] = [
    "hope", "glad", "happy", "worry", "wishing", "rooting", "kind",
];
const WARM_SENTENCES: [&str; 8] = [
    "Hope this helps.",
    "Glad you asked.",
    "Happy to help.",
    "Do not worry.",
    "Wishing you luck.",
    "Rooting for you.",
    "Be kind to yourself.",
    "Hope it goes well.",
];

/// Enthusiasm words; each interjection holds one and ends with '!'.
const ENTHUSIASM_WORDS: [&str; 7] = [
    "exciting",
    "awesome",
    "fantastic",
    "amazing",
    "love",
    "wonderful",
    "brilliant",
];
const ENTHUSIASM_SENTENCES: [&str; 8] = [
    "Exciting!",
    "How awesome!",
    "Fantastic choice!",
    "You will love it!",
    "Amazing goal!",
    "Wonderful!",
    "Brilliant idea!",
    "So exciting!",
];

/// Hedge words; each hedge holds one.
const HEDGE_WORDS: [&str; 6] = [
    "perhaps", "possibly", "maybe", "probably", "might", "arguably",
];
const HEDGE_PREFIXES: [&str; 5] = ["Perhaps", "Maybe", "Possibly", "Arguably", "Probably"];
const HEDGE_SUFFIXES: [&str; 4] = [", probably", ", or it might not", ", possibly", ", maybe"];

/// Jargon words; each jargon phrase holds one.
const JARGON_WORDS: [&str; 9] = [
    "optimize",
    "heuristic",
    "granular",
    "leverage",
    "framework",
    "iterate",
    "metrics",
    "benchmark",
    "scalable",
];
const JARGON_SUFFIXES: [&str; 9] = [
    " to optimize",
    " as a heuristic",
    " in granular steps",
    " for leverage",
    " in a framework",
    " and iterate",
    " via metrics",
    " as a benchmark",
    " if scalable",
];

/// Example markers; each example sentence holds one.
const EXAMPLE_WORDS: [&str; 3] = ["example", "instance", "illustrate"];
const EXAMPLE_PREFIXES: [&str; 4] = [
    "For example,",
    "For instance,",
    "Example:",
    "To illustrate,",
];
const EXAMPLE_BODIES: [&str; 6] = [
    "try {A} first",
    "start with {A}",
    "try {A} for a week",
    "pair {A} with {B}",
    "skip {B} and do {A}",
    "many beginners begin with {A}",
];

/// Questions back to the reader.
const QUESTIONS: [&str; 8] = [
    "What is your level?",
    "How much time do you have?",
    "Tried {A} yet?",
    "What matters most to you?",
    "Any deadline?",
    "What have you tried?",
    "Which part is hardest?",
    "Does {A} fit your week?",
];

/// Summary lines start with one of these (lowercase) prefixes.
const SUMMARY_PREFIXES: [&str; 6] = [
    "in short",
    "to sum up",
    "bottom line",
    "tl;dr",
    "all in all",
    "in summary",
];
/// Summary lines by level: short, medium, long.
const SUMMARIES: [[&str; 3]; 3] = [
    ["In short: {A}.", "TL;DR: {A}.", "Bottom line: {A}."],
    [
        "In short, focus on {A}.",
        "To sum up: {A} first.",
        "All in all, {A} matters most.",
    ],
    [
        "To sum up: {A} first, {B} second.",
        "In summary, work on {A} and {B}.",
        "Bottom line: keep {A} and {B} simple.",
    ],
];

const BULLETS: [&str; 3] = ["- ", "* ", "• "];

fn prompt_pool_size() -> usize {
    TOPICS.len() * QUESTION_KINDS.len() * CONTEXTS.len()
}

/// The prompt with the given pool index, and its topic index.
fn prompt_at(i: usize) -> (String, usize) {
    let c = i % CONTEXTS.len();
    let q = (i / CONTEXTS.len()) % QUESTION_KINDS.len();
    let t = i / (CONTEXTS.len() * QUESTION_KINDS.len());
    (
        format!(
            "{}{}",
            CONTEXTS[c],
            QUESTION_KINDS[q].replace("{t}", TOPICS[t].0)
        ),
        t,
    )
}

// ---------------------------------------------------------------------------------------------
// Rendering.

/// The latent style levels and quality of one response (only used to render it).
///
/// Levels are Binomial(3, ½) (formality Binomial(4, ½) − 2; body sentences 1 + Binomial(2, ½)
/// content sentences + a Bernoulli(½) opener): bell-shaped like the Gaussian
/// scores of real reward models. Uniform levels would make the extremes of 8 responses tie
/// more often, letting the shared quality decide more pairs and a global ranker do better.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Style {
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
    quality: f64,
}

fn binomial_half(rng: &mut ChaCha8Rng, n: usize) -> usize {
    (0..n).filter(|_| rng.random_bool(0.5)).count()
}

impl Style {
    fn draw(rng: &mut ChaCha8Rng) -> Self {
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
    fn levels(&self) -> [f64; N_SCORERS] {
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
fn render_response(rng: &mut ChaCha8Rng, topic: usize, st: &Style) -> String {
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

// ---------------------------------------------------------------------------------------------
// Scorers: deterministic functions of the response text.

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

/// Raw measures of the ten styles, read from the response text (SPEC §6), in [`SCORER_NAMES`] order:
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

// ---------------------------------------------------------------------------------------------
// Generation.

/// One prompt of the pool and its responses.
#[derive(Debug, Clone, PartialEq)]
pub struct SynthPrompt {
    /// The prompt text.
    pub text: String,
    /// Whether the prompt belongs to the eval pool.
    pub eval: bool,
    /// The rendered responses (distinct).
    pub responses: Vec<String>,
    /// Normalised scorer vectors of the responses.
    pub scores: Vec<[f64; N_SCORERS]>,
}

/// The generator's output.
#[derive(Debug, Clone)]
pub struct Synthetic {
    /// The settings used.
    pub config: SynthConfig,
    /// All triplets: per user, ref then target then eval rows; seen users first.
    pub triplets: Vec<Triplet>,
    /// Each user's true scorer weights.
    pub user_weights: Vec<(String, Vec<f64>)>,
    /// Normalisation of the scorers over all generated responses.
    pub stats: ScorerStats,
    /// The prompt pool (train prompts first, then eval prompts).
    pub prompts: Vec<SynthPrompt>,
}

/// Contents of the `*.synth_meta.json` file written next to the JSONL.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SynthMeta {
    /// The settings used.
    pub config: SynthConfig,
    /// Scorer names, in weight order.
    pub scorers: Vec<String>,
    /// Scorer normalisation.
    pub stats: ScorerStats,
    /// Each user's true weights over the scorers.
    pub user_weights: Vec<(String, Vec<f64>)>,
}

/// A ChaCha stream keyed by (seed, tag), so each part of the output has its own RNG.
fn rng_for(seed: u64, tag: u64) -> ChaCha8Rng {
    fn splitmix(mut z: u64) -> u64 {
        z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    ChaCha8Rng::seed_from_u64(splitmix(seed ^ splitmix(tag)))
}

const TAG_PROMPTS: u64 = 1;
const TAG_USERS: u64 = 2;
const TAG_RESPONSES: u64 = 1 << 32;

fn user_id(prefix: char, i: usize, n: usize) -> String {
    let width = n.saturating_sub(1).to_string().len().max(4);
    format!("{prefix}{i:0width$}")
}

/// Generates the benchmark for a config (deterministic in the config).
pub fn generate(cfg: &SynthConfig) -> Result<Synthetic, SynthError> {
    cfg.validate()?;
    // Prompt pools.
    let mut rng = rng_for(cfg.seed, TAG_PROMPTS);
    let chosen = index::sample(
        &mut rng,
        prompt_pool_size(),
        cfg.train_prompts + cfg.eval_prompts,
    )
    .into_vec();
    let mut prompts: Vec<SynthPrompt> = Vec::with_capacity(chosen.len());
    let mut topics = Vec::with_capacity(chosen.len());
    for (k, &pi) in chosen.iter().enumerate() {
        let (text, topic) = prompt_at(pi);
        let mut rrng = rng_for(cfg.seed, TAG_RESPONSES + k as u64);
        let mut responses: Vec<String> = Vec::with_capacity(cfg.responses_per_prompt);
        let mut tries = 0;
        while responses.len() < cfg.responses_per_prompt {
            let style = Style::draw(&mut rrng);
            let r = render_response(&mut rrng, topic, &style);
            tries += 1;
            if !responses.contains(&r) || tries > 1000 {
                responses.push(r);
            }
        }
        prompts.push(SynthPrompt {
            text,
            eval: k >= cfg.train_prompts,
            responses,
            scores: Vec::new(),
        });
        topics.push(topic);
    }
    // Scorer normalisation over every generated response.
    let stats = ScorerStats::fit(
        prompts
            .iter()
            .flat_map(|p| p.responses.iter().map(String::as_str)),
        cfg.quality_weight,
    );
    for p in &mut prompts {
        p.scores = p.responses.iter().map(|r| stats.score(r)).collect();
    }
    // Users.
    let mut rng = rng_for(cfg.seed, TAG_USERS);
    let dirichlet = Dirichlet::new([cfg.alpha; N_SCORERS])
        .map_err(|e| SynthError::Config(format!("Dirichlet: {e}")))?;
    let n_seen = cfg.seen_users;
    let n_unseen = cfg.unseen_users;
    let mut triplets = Vec::new();
    let mut user_weights = Vec::with_capacity(n_seen + n_unseen);
    let train_pool: Vec<usize> = (0..cfg.train_prompts).collect();
    let eval_pool: Vec<usize> = (cfg.train_prompts..cfg.train_prompts + cfg.eval_prompts).collect();
    for u in 0..n_seen + n_unseen {
        let seen = u < n_seen;
        let id = if seen {
            user_id('s', u, n_seen)
        } else {
            user_id('n', u - n_seen, n_unseen)
        };
        let w: [f64; N_SCORERS] = dirichlet.sample(&mut rng);
        let n_target = if seen { cfg.target_per_user } else { 0 };
        let n_eval = if seen {
            cfg.seen_eval_per_user
        } else {
            cfg.unseen_eval_per_user
        };
        let train =
            index::sample(&mut rng, train_pool.len(), cfg.ref_per_user + n_target).into_vec();
        let eval = index::sample(&mut rng, eval_pool.len(), n_eval).into_vec();
        let rows = train
            .iter()
            .enumerate()
            .map(|(i, &p)| {
                (
                    train_pool[p],
                    if i < cfg.ref_per_user {
                        Split::Ref
                    } else {
                        Split::Target
                    },
                )
            })
            .chain(eval.iter().map(|&p| (eval_pool[p], Split::Eval)));
        for (p, split) in rows {
            let pr = &prompts[p];
            let (c, r) = best_and_worst(&pr.scores, &w).ok_or_else(|| SynthError::Degenerate {
                user: id.clone(),
                prompt: pr.text.clone(),
            })?;
            triplets.push(Triplet {
                user: id.clone(),
                prompt: pr.text.clone(),
                chosen: pr.responses[c].clone(),
                rejected: pr.responses[r].clone(),
                split,
            });
        }
        user_weights.push((id, w.to_vec()));
    }
    Ok(Synthetic {
        config: cfg.clone(),
        triplets,
        user_weights,
        stats,
        prompts,
    })
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Indices of the highest- and lowest-scoring responses under weights `w` (first on ties);
/// `None` when all tie.
fn best_and_worst(scores: &[[f64; N_SCORERS]], w: &[f64]) -> Option<(usize, usize)> {
    let comp: Vec<f64> = scores.iter().map(|s| dot(s, w)).collect();
    let mut hi = 0;
    let mut lo = 0;
    for (i, &c) in comp.iter().enumerate() {
        if c > comp[hi] {
            hi = i;
        }
        if c < comp[lo] {
            lo = i;
        }
    }
    (comp[hi] > comp[lo]).then_some((hi, lo))
}

/// Path of the metadata file written next to a JSONL file: `<stem>.synth_meta.json`.
pub fn meta_path(jsonl: &Path) -> PathBuf {
    let stem = jsonl
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "synth".into());
    jsonl.with_file_name(format!("{stem}.synth_meta.json"))
}

impl Synthetic {
    /// The metadata (config, scorer normalisation, true user weights).
    pub fn meta(&self) -> SynthMeta {
        SynthMeta {
            config: self.config.clone(),
            scorers: SCORER_NAMES.iter().map(|s| s.to_string()).collect(),
            stats: self.stats.clone(),
            user_weights: self.user_weights.clone(),
        }
    }

    /// Writes the triplets to `jsonl` and the metadata to [`meta_path`]`(jsonl)`, both atomically.
    pub fn write(&self, jsonl: impl AsRef<Path>) -> Result<PathBuf, SynthError> {
        let jsonl = jsonl.as_ref();
        data::write_jsonl(jsonl, &self.triplets)?;
        let meta = meta_path(jsonl);
        let json = serde_json::to_string_pretty(&self.meta()).map_err(DataError::from)?;
        write_atomic(&meta, json.as_bytes()).map_err(|source| DataError::Io {
            path: meta.clone(),
            source,
        })?;
        Ok(meta)
    }

    /// Accuracies of reference rankers with perfect scorer features, computed from the texts.
    pub fn sanity(&self) -> SanityReport {
        let weights: std::collections::HashMap<&str, &[f64]> = self
            .user_weights
            .iter()
            .map(|(u, w)| (u.as_str(), w.as_slice()))
            .collect();
        let diff = |t: &Triplet| -> [f64; N_SCORERS] {
            let c = self.stats.score(&t.chosen);
            let r = self.stats.score(&t.rejected);
            std::array::from_fn(|j| c[j] - r[j])
        };
        let train: Vec<[f64; N_SCORERS]> = self
            .triplets
            .iter()
            .filter(|t| t.split != Split::Eval)
            .map(diff)
            .collect();
        let eval: Vec<([f64; N_SCORERS], &[f64])> = self
            .triplets
            .iter()
            .filter(|t| t.split == Split::Eval)
            .map(|t| (diff(t), weights[t.user.as_str()]))
            .collect();
        let uniform = vec![1.0 / N_SCORERS as f64; N_SCORERS];
        let mut mean_w = vec![0.0; N_SCORERS];
        for (_, w) in &self.user_weights {
            for j in 0..N_SCORERS {
                mean_w[j] += w[j] / self.user_weights.len() as f64;
            }
        }
        let fitted = fit_global(&train);
        let acc = |f: &dyn Fn(&[f64; N_SCORERS], &[f64]) -> f64| {
            let ok = eval.iter().filter(|(d, w)| f(d, w) > 0.0).count();
            ok as f64 / eval.len().max(1) as f64
        };
        SanityReport {
            eval_pairs: eval.len(),
            uniform: acc(&|d, _| dot(d, &uniform)),
            mean_weight: acc(&|d, _| dot(d, &mean_w)),
            fitted_global: acc(&|d, _| dot(d, &fitted)),
            oracle: acc(&|d, w| dot(d, w)),
            fitted_weights: fitted,
        }
    }
}

/// Eval-pair accuracies of rankers that see the true normalised scorers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SanityReport {
    /// Number of eval pairs.
    pub eval_pairs: usize,
    /// One global ranker with uniform weights over the scorers.
    pub uniform: f64,
    /// One global ranker with the mean user weight.
    pub mean_weight: f64,
    /// One global ranker fitted by logistic regression on the ref + target pairs.
    pub fitted_global: f64,
    /// Each user's true weights (perfect personalisation).
    pub oracle: f64,
    /// The fitted global weights.
    pub fitted_weights: Vec<f64>,
}

/// Logistic regression without intercept on pair differences (full-batch gradient descent).
fn fit_global(diffs: &[[f64; N_SCORERS]]) -> Vec<f64> {
    let mut w = vec![1.0 / N_SCORERS as f64; N_SCORERS];
    if diffs.is_empty() {
        return w;
    }
    let n = diffs.len() as f64;
    for _ in 0..500 {
        let mut g = [0.0; N_SCORERS];
        for d in diffs {
            let z = dot(d, &w);
            let p = 1.0 / (1.0 + (-z).exp());
            for j in 0..N_SCORERS {
                g[j] += (p - 1.0) * d[j] / n;
            }
        }
        for j in 0..N_SCORERS {
            w[j] -= 0.5 * g[j];
        }
    }
    w
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::Dataset;

    fn small() -> SynthConfig {
        SynthConfig {
            seen_users: 6,
            unseen_users: 5,
            train_prompts: 120,
            eval_prompts: 60,
            ..SynthConfig::default()
        }
    }

    #[test]
    fn deterministic_per_seed() {
        let a = generate(&small()).unwrap();
        let b = generate(&small()).unwrap();
        assert_eq!(a.triplets, b.triplets);
        assert_eq!(a.user_weights, b.user_weights);
        let c = generate(&SynthConfig { seed: 1, ..small() }).unwrap();
        assert_ne!(a.triplets, c.triplets);
        assert_ne!(a.user_weights, c.user_weights);
    }

    #[test]
    fn counts_per_user_and_split() {
        let cfg = small();
        let s = generate(&cfg).unwrap();
        let ds = Dataset::from_triplets(s.triplets.clone()).unwrap();
        assert_eq!(ds.seen.len(), cfg.seen_users);
        assert_eq!(ds.unseen.len(), cfg.unseen_users);
        for &u in &ds.seen {
            let u = &ds.users[u];
            assert!(u.id.starts_with('s'));
            assert_eq!((u.refs.len(), u.targets.len(), u.evals.len()), (9, 36, 45));
        }
        for &u in &ds.unseen {
            let u = &ds.users[u];
            assert!(u.id.starts_with('n'));
            assert_eq!((u.refs.len(), u.targets.len(), u.evals.len()), (9, 0, 9));
        }
        assert_eq!(s.user_weights.len(), 11);
        for (_, w) in &s.user_weights {
            assert!((w.iter().sum::<f64>() - 1.0).abs() < 1e-9 && w.iter().all(|&x| x >= 0.0));
        }
    }

    #[test]
    fn prompts_disjoint_and_pairs_valid() {
        let s = generate(&small()).unwrap();
        let eval: HashSet<&str> = s
            .prompts
            .iter()
            .filter(|p| p.eval)
            .map(|p| p.text.as_str())
            .collect();
        let train: HashSet<&str> = s
            .prompts
            .iter()
            .filter(|p| !p.eval)
            .map(|p| p.text.as_str())
            .collect();
        assert_eq!(eval.len(), 60);
        assert_eq!(train.len(), 120);
        assert!(eval.is_disjoint(&train));
        let ds = Dataset::from_triplets(s.triplets.clone()).unwrap();
        for u in &ds.users {
            let mut ps = HashSet::new();
            for &i in u.refs.iter().chain(&u.targets) {
                assert!(train.contains(ds.triplets[i].prompt.as_str()));
                assert!(
                    ps.insert(ds.triplets[i].prompt.as_str()),
                    "train prompts of a user are distinct"
                );
            }
            let mut ps = HashSet::new();
            for &i in &u.evals {
                assert!(eval.contains(ds.triplets[i].prompt.as_str()));
                assert!(ps.insert(ds.triplets[i].prompt.as_str()));
            }
        }
        for t in &s.triplets {
            assert_ne!(t.chosen, t.rejected);
        }
        for p in &s.prompts {
            let uniq: HashSet<&String> = p.responses.iter().collect();
            assert_eq!(uniq.len(), p.responses.len());
        }
        // Oracle rankers agree with every label.
        let rep = s.sanity();
        assert_eq!(rep.oracle, 1.0);
    }

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

    #[test]
    fn write_produces_jsonl_and_meta() {
        let dir = tempfile::tempdir().unwrap();
        let s = generate(&small()).unwrap();
        let path = dir.path().join("synth.jsonl");
        let meta = s.write(&path).unwrap();
        assert_eq!(meta, dir.path().join("synth.synth_meta.json"));
        assert_eq!(data::read_jsonl(&path).unwrap(), s.triplets);
        let m: SynthMeta = serde_json::from_str(&std::fs::read_to_string(&meta).unwrap()).unwrap();
        assert_eq!(m.user_weights.len(), s.user_weights.len());
        for ((ua, wa), (ub, wb)) in m.user_weights.iter().zip(&s.user_weights) {
            assert_eq!(ua, ub);
            assert!(wa
                .iter()
                .zip(wb)
                .all(|(a, b)| (a - b).abs() <= 1e-15 * b.abs().max(1e-300)));
        }
        assert_eq!(m.config, small());
    }

    #[test]
    fn config_validation() {
        assert!(generate(&SynthConfig {
            alpha: 0.0,
            ..small()
        })
        .is_err());
        assert!(generate(&SynthConfig {
            train_prompts: 10,
            ..small()
        })
        .is_err());
        assert!(generate(&SynthConfig {
            eval_prompts: 5000,
            ..small()
        })
        .is_err());
        assert!(generate(&SynthConfig {
            responses_per_prompt: 1,
            ..small()
        })
        .is_err());
        let cfg: SynthConfig = serde_json::from_str("{\"alpha\": 1.0}").unwrap();
        assert_eq!(
            cfg,
            SynthConfig {
                alpha: 1.0,
                ..SynthConfig::default()
            }
        );
    }
}
