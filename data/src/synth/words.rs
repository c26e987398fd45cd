//! Word banks and templates: topics, question kinds, contexts, neutral content and the marker
//! phrases each style writes.

// Each scorer reads its own marker words; the tests check the banks are disjoint and
// that the neutral templates contain none of them.

/// Topics: (name used in prompts, topic-specific terms used by good answers).
pub(super) const TOPICS: [(&str, [&str; 8]); 30] = [
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

pub(super) const QUESTION_KINDS: [&str; 12] = [
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

pub(super) const CONTEXTS: [&str; 7] = [
    "",
    "Beginner here. ",
    "I gave up once. ",
    "Tight budget. ",
    "Weekends only. ",
    "A friend suggested it. ",
    "I want fast results. ",
];

/// Vague filler that low-quality answers use where a good answer names a specific term.
pub(super) const VAGUE_WORDS: [&str; 5] =
    ["stuff", "things", "whatever", "everything", "something"];

/// Content sentences; `{A}`/`{B}` are filled with a topic term (quality) or vague filler.
pub(super) const CONTENT: [&str; 16] = [
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

pub(super) const OPENERS: [&str; 6] = [
    "Here is my take on {t}",
    "Good {t} comes down to habits",
    "With {t}, small steps add up",
    "Most people overcomplicate {t}",
    "The core of {t} is simple",
    "A few points about {t}",
];

/// Informal discourse markers (formality −1 each).
pub(super) const INFORMAL_WORDS: [&str; 6] =
    ["honestly", "basically", "yeah", "okay", "tbh", "anyway"];
pub(super) const INFORMAL_PREFIXES: [&str; 6] = [
    "Honestly,",
    "Basically,",
    "Yeah, so",
    "Okay, so",
    "Tbh,",
    "Anyway,",
];
/// Formal discourse markers (formality +1 each).
pub(super) const FORMAL_WORDS: [&str; 6] = [
    "furthermore",
    "moreover",
    "additionally",
    "notably",
    "importantly",
    "accordingly",
];
pub(super) const FORMAL_PREFIXES: [&str; 6] = [
    "Furthermore,",
    "Moreover,",
    "Additionally,",
    "Notably,",
    "Importantly,",
    "Accordingly,",
];

/// Warmth words; each warm sentence holds exactly one.
pub(super) const WARM_WORDS: [&str; 7] = [
    "hope", "glad", "happy", "worry", "wishing", "rooting", "kind",
];
pub(super) const WARM_SENTENCES: [&str; 8] = [
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
pub(super) const ENTHUSIASM_WORDS: [&str; 7] = [
    "exciting",
    "awesome",
    "fantastic",
    "amazing",
    "love",
    "wonderful",
    "brilliant",
];
pub(super) const ENTHUSIASM_SENTENCES: [&str; 8] = [
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
pub(super) const HEDGE_WORDS: [&str; 6] = [
    "perhaps", "possibly", "maybe", "probably", "might", "arguably",
];
pub(super) const HEDGE_PREFIXES: [&str; 5] =
    ["Perhaps", "Maybe", "Possibly", "Arguably", "Probably"];
pub(super) const HEDGE_SUFFIXES: [&str; 4] =
    [", probably", ", or it might not", ", possibly", ", maybe"];

/// Jargon words; each jargon phrase holds one.
pub(super) const JARGON_WORDS: [&str; 9] = [
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
pub(super) const JARGON_SUFFIXES: [&str; 9] = [
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
pub(super) const EXAMPLE_WORDS: [&str; 3] = ["example", "instance", "illustrate"];
pub(super) const EXAMPLE_PREFIXES: [&str; 4] = [
    "For example,",
    "For instance,",
    "Example:",
    "To illustrate,",
];
pub(super) const EXAMPLE_BODIES: [&str; 6] = [
    "try {A} first",
    "start with {A}",
    "try {A} for a week",
    "pair {A} with {B}",
    "skip {B} and do {A}",
    "many beginners begin with {A}",
];

/// Questions back to the reader.
pub(super) const QUESTIONS: [&str; 8] = [
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
pub(super) const SUMMARY_PREFIXES: [&str; 6] = [
    "in short",
    "to sum up",
    "bottom line",
    "tl;dr",
    "all in all",
    "in summary",
];
/// Summary lines by level: short, medium, long.
pub(super) const SUMMARIES: [[&str; 3]; 3] = [
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

pub(super) const BULLETS: [&str; 3] = ["- ", "* ", "• "];
