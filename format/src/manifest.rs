//! The portable model directory written by `vrf-trainer export` and read by the runtime.
//!
//! ```text
//! MODEL_DIR/
//!   vrf.json                 manifest (this module's [`Manifest`])
//!   backbone.onnx            backbone + basis-reward heads, opset 17
//!   tokenizer.json           Hugging Face tokenizer
//!   user_model.safetensors   encoder.l{1,2}.{weight,bias}, bases.{means,log_var}
//!   seen_users.json          cached posteriors of the training users, by id
//! ```
//!
//! A model fitted on external feature vectors (format version 3, `input.kind = "features"`) has
//! no `backbone.onnx` and no `tokenizer.json`: its basis heads live in `user_model.safetensors`
//! (`heads.l{1,2}.{weight,bias}`) and callers pass the vectors themselves.
//!
//! Everything here is pure (no ONNX, no file system) so the wasm crate can parse the same bytes.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::ModelError;

/// Value of [`Manifest::format`].
pub const FORMAT: &str = "vrf-model";
/// The manifest format version this runtime reads and the trainer writes.
pub const FORMAT_VERSION: u32 = 3;
/// First format version with the `input` field (models fitted on external feature vectors).
pub const FEATURES_FORMAT_VERSION: u32 = 3;
/// Oldest format version this crate reads: version 1 has no population prior (its models load
/// with the prior-less posterior of their time, and a user with no answers is an error).
pub const MIN_FORMAT_VERSION: u32 = 1;
/// Manifest file name.
pub const MANIFEST_FILE: &str = "vrf.json";
/// ONNX graph of the backbone and basis-reward heads.
pub const BACKBONE_FILE: &str = "backbone.onnx";
/// Hugging Face tokenizer.
pub const TOKENIZER_FILE: &str = "tokenizer.json";
/// Encoder and bases tensors.
pub const USER_MODEL_FILE: &str = "user_model.safetensors";
/// Cached seen-user posteriors.
pub const SEEN_USERS_FILE: &str = "seen_users.json";

/// How per-pair Gaussians are pooled into a user posterior.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Pooling {
    /// Product of Gaussians (docs/METHOD.md Eq. 5), the method's default.
    Pog,
    /// Mean of μ_i and of σ_i² (ablation e).
    Mean,
}

impl Pooling {
    /// The name in JSON (`pog`, `mean`).
    pub fn as_str(self) -> &'static str {
        match self {
            Pooling::Pog => "pog",
            Pooling::Mean => "mean",
        }
    }

    /// The pooling named `name` in JSON.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "pog" => Some(Pooling::Pog),
            "mean" => Some(Pooling::Mean),
            _ => None,
        }
    }
}

/// What a model scores: `(prompt, response)` texts through its backbone, or feature vectors
/// computed elsewhere (`{"kind": "features", "dim": D}`, format version 3). Absent: texts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum InputSpec {
    /// Texts, through `backbone.onnx` and `tokenizer.json`.
    #[default]
    Text,
    /// Feature vectors of dimension `dim` (= the manifest's `hidden`), e.g. frozen embeddings.
    Features {
        /// Length of every vector.
        dim: usize,
    },
}

impl InputSpec {
    /// Whether the model takes texts.
    pub fn is_text(&self) -> bool {
        matches!(self, InputSpec::Text)
    }

    /// The vectors' dimension, for a features model.
    pub fn features_dim(&self) -> Option<usize> {
        match self {
            InputSpec::Text => None,
            InputSpec::Features { dim } => Some(*dim),
        }
    }

    /// What the model takes, in words, for errors (`texts`, `feature vectors of dimension 16`).
    pub fn describe(&self) -> String {
        match self {
            InputSpec::Text => "texts".into(),
            InputSpec::Features { dim } => format!("feature vectors of dimension {dim}"),
        }
    }
}

/// The encoder's shape and input convention.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EncoderSpec {
    /// Width of a pair feature: `2H`, plus `K` when `dphi`.
    pub input_dim: usize,
    /// Hidden width of the encoder MLP.
    pub hidden_dim: usize,
    /// Whether each pair feature ends with `Δφ = φ(chosen) − φ(rejected)`.
    pub dphi: bool,
    /// Pooling of per-pair Gaussians.
    pub pooling: Pooling,
    /// Whether the posterior includes the learned population prior `p₀ = N(m₀, diag(s₀²))`
    /// (`prior.mean`, `prior.log_var` in `user_model.safetensors`; docs/METHOD.md §2): a user
    /// with no answers gets the prior (cold start). Format version 2; absent means false.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub prior: bool,
}

/// How `(prompt, response)` becomes token ids, exactly as in training.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TextSpec {
    /// Template with `{prompt}` and `{response}` placeholders.
    pub template: String,
    /// Maximum tokens per text; longer texts keep their last `max_len` tokens.
    pub max_len: usize,
    /// Id right-padded rows are filled with.
    pub pad_id: u32,
    /// Which end of an over-long text is cut (always `left`: the reward is read at the end).
    pub truncation: String,
    /// Which end rows are padded on (always `right`).
    pub padding: String,
}

/// Names and conventions of the ONNX graph.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OnnxSpec {
    /// Graph file, relative to the model directory.
    pub file: String,
    /// Default-domain opset.
    pub opset: i64,
    /// Token ids input, int64 `[batch, seq]`.
    pub input_ids: String,
    /// Attention mask input, int64 `[batch, seq]`, 1 for real tokens.
    pub attention_mask: String,
    /// Last-real-token final-norm state, f32 `[batch, H]`.
    pub hidden: String,
    /// Basis rewards φ, f32 `[batch, K]`.
    pub rewards: String,
    /// External-data file for initializers, when the graph exceeds protobuf's 2 GB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_data: Option<String>,
}

/// Size and digest of one file of the model directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    /// Lower-case hex SHA-256 of the file's bytes.
    pub sha256: String,
    /// File size in bytes.
    pub bytes: u64,
}

impl FileEntry {
    /// Digest and size of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        Self {
            sha256: sha256_hex(bytes),
            bytes: bytes.len() as u64,
        }
    }

    /// Digest and size of everything `reader` yields, read 64 KiB at a time (constant memory,
    /// for files too large to hold just to hash them).
    pub fn of_reader(mut reader: impl std::io::Read) -> std::io::Result<Self> {
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 64 << 10];
        let mut bytes = 0u64;
        loop {
            let n = reader.read(&mut buf)?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            bytes += n as u64;
        }
        Ok(Self {
            sha256: hex(&hasher.finalize()),
            bytes,
        })
    }
}

/// `vrf.json`: everything needed to serve the model, plus a digest of every file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// Always [`FORMAT`].
    pub format: String,
    /// Format version; see [`FORMAT_VERSION`].
    pub format_version: u32,
    /// Number of basis rewards / bases `K`.
    pub k: usize,
    /// Latent dimension `d`.
    pub d: usize,
    /// Backbone hidden size `H`.
    pub hidden: usize,
    /// Softmax temperature `τ` of the basis weights.
    pub tau: f32,
    /// Calibration temperature `T` of preference probabilities `σ(z / T)` (docs/METHOD.md §4),
    /// fitted on training users at evaluation; 1 (absent) for none.
    #[serde(
        default = "unit_temperature",
        skip_serializing_if = "is_unit_temperature"
    )]
    pub temperature: f32,
    /// What the model scores: texts (absent) or external feature vectors (format version 3).
    #[serde(default, skip_serializing_if = "InputSpec::is_text")]
    pub input: InputSpec,
    /// Encoder conventions.
    pub encoder: EncoderSpec,
    /// Tokenisation conventions; present iff the model takes texts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<TextSpec>,
    /// ONNX graph conventions; present iff the model takes texts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub onnx: Option<OnnxSpec>,
    /// Digest and size of every other file, by name relative to the directory.
    pub files: BTreeMap<String, FileEntry>,
    /// Free-form provenance (trainer version, run directory, method).
    #[serde(default)]
    pub source: BTreeMap<String, String>,
}

impl Manifest {
    /// Parses and validates `vrf.json` bytes; `origin` names the file in errors.
    pub fn from_json(bytes: &[u8], origin: &str) -> Result<Self, ModelError> {
        // Read the version first so a future format is reported as such, not as a field error.
        // (Typed, not via `serde_json::Value`: the wasm module then carries one JSON
        // deserializer instead of two.)
        #[derive(Deserialize)]
        struct Version {
            format: Option<String>,
            format_version: Option<u64>,
        }
        let manifest_error = |message: String| ModelError::Manifest {
            origin: origin.to_string(),
            message,
        };
        let raw: Version =
            serde_json::from_slice(bytes).map_err(|e| manifest_error(e.to_string()))?;
        check_version(raw.format.as_deref(), raw.format_version, origin)?;
        let m: Manifest =
            serde_json::from_slice(bytes).map_err(|e| manifest_error(e.to_string()))?;
        m.validate(origin)?;
        Ok(m)
    }

    /// Pretty JSON of the manifest.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a manifest always serialises")
    }

    /// Checks the dimensions agree with each other.
    pub fn validate(&self, origin: &str) -> Result<(), ModelError> {
        let bad = |message: String| {
            Err(ModelError::Manifest {
                origin: origin.to_string(),
                message,
            })
        };
        self.user_model_spec().validate(origin)?;
        if self.encoder.prior && self.format_version < 2 {
            return bad(format!(
                "field `encoder.prior` needs format_version 2, this manifest has {}",
                self.format_version
            ));
        }
        match self.input {
            InputSpec::Text => {
                let Some(text) = &self.text else {
                    return bad(
                        "field `text` is missing (a model that takes texts needs it)".into(),
                    );
                };
                if self.onnx.is_none() {
                    return bad(
                        "field `onnx` is missing (a model that takes texts needs it)".into(),
                    );
                }
                if text.max_len == 0 {
                    return bad("field `text.max_len` must be at least 1".into());
                }
                if text.truncation != "left" || text.padding != "right" {
                    return bad(format!(
                        "fields `text.truncation`/`text.padding` are {:?}/{:?}; this runtime supports left/right",
                        text.truncation, text.padding
                    ));
                }
            }
            InputSpec::Features { dim } => {
                if self.format_version < FEATURES_FORMAT_VERSION {
                    return bad(format!(
                        "field `input` needs format_version {FEATURES_FORMAT_VERSION}, this manifest has {}",
                        self.format_version
                    ));
                }
                if dim != self.hidden {
                    return bad(format!(
                        "field `input.dim` is {dim}, but `hidden` is {} (they must agree)",
                        self.hidden
                    ));
                }
                for (field, present) in
                    [("text", self.text.is_some()), ("onnx", self.onnx.is_some())]
                {
                    if present {
                        return bad(format!(
                            "field `{field}` must be absent: the model takes feature vectors (`input.kind` = \"features\")"
                        ));
                    }
                }
                for file in [BACKBONE_FILE, TOKENIZER_FILE] {
                    if self.files.contains_key(file) {
                        return bad(format!(
                            "field `files` lists {file}, but the model takes feature vectors and has no backbone"
                        ));
                    }
                }
            }
        }
        for name in self.files.keys() {
            if name.contains("..") || name.starts_with('/') {
                return bad(format!("file name {name:?} leaves the model directory"));
            }
        }
        Ok(())
    }

    /// Errors unless `bytes` are the file `name` the manifest lists (size and SHA-256).
    pub fn verify(&self, name: &str, bytes: &[u8]) -> Result<(), ModelError> {
        verify_file(name, self.files.get(name), bytes)
    }

    /// The model's identity: SHA-256 over every listed file's name and digest, so two exports
    /// of the same weights share it (provenance fields do not count). A user store records it.
    pub fn digest(&self) -> String {
        let mut listing = String::new();
        for (name, entry) in &self.files {
            listing.push_str(&format!("{name}\0{}\n", entry.sha256));
        }
        sha256_hex(listing.as_bytes())
    }

    /// The fields the per-user model needs.
    pub fn user_model_spec(&self) -> UserModelSpec {
        UserModelSpec {
            k: self.k,
            d: self.d,
            hidden: self.hidden,
            tau: self.tau,
            temperature: self.temperature,
            encoder: self.encoder.clone(),
            input: self.input,
        }
    }
}

/// Errors unless the manifest's `format` is [`FORMAT`] and its `format_version` is
/// [`FORMAT_VERSION`] (`None`: the field is missing); `origin` names the file in errors.
/// [`Manifest::from_json`] checks this before anything else, so a future format is reported as
/// such, not as a field error; the wasm crate, which reads the manifest with the browser's JSON
/// parser, calls it the same way.
pub fn check_version(
    format: Option<&str>,
    format_version: Option<u64>,
    origin: &str,
) -> Result<(), ModelError> {
    let manifest_error = |message: String| ModelError::Manifest {
        origin: origin.to_string(),
        message,
    };
    // Quoted by hand, not with `{:?}`: the wasm module then links no string escaping.
    match format {
        Some(FORMAT) => {}
        Some(other) => {
            return Err(manifest_error(format!(
                "field `format` is \"{other}\", expected \"{FORMAT}\""
            )))
        }
        None => {
            return Err(manifest_error(format!(
                "field `format` is missing or not a string, expected \"{FORMAT}\""
            )))
        }
    }
    match format_version {
        Some(v) if (u64::from(MIN_FORMAT_VERSION)..=u64::from(FORMAT_VERSION)).contains(&v) => {
            Ok(())
        }
        Some(v) => Err(ModelError::FormatVersion {
            origin: origin.to_string(),
            found: v,
            supported: FORMAT_VERSION,
        }),
        None => Err(manifest_error("field `format_version` is missing".into())),
    }
}

/// Errors unless `bytes` are the file `name` whose manifest entry is `entry` (size and SHA-256);
/// `None`: the manifest does not list it.
pub fn verify_file(name: &str, entry: Option<&FileEntry>, bytes: &[u8]) -> Result<(), ModelError> {
    check_entry(name, entry, FileEntry::of(bytes))
}

/// Errors unless `got` (a file's digest and size, e.g. from [`FileEntry::of_reader`]) is the
/// manifest's `entry` for `name`; `None`: the manifest does not list it.
pub fn check_entry(
    name: &str,
    entry: Option<&FileEntry>,
    got: FileEntry,
) -> Result<(), ModelError> {
    let entry = entry.ok_or_else(|| ModelError::UnlistedFile {
        file: name.to_string(),
    })?;
    if got != *entry {
        return Err(ModelError::Checksum {
            file: name.to_string(),
            expected: entry.sha256.clone(),
            got: got.sha256,
        });
    }
    Ok(())
}

fn unit_temperature() -> f32 {
    1.0
}

fn is_unit_temperature(t: &f32) -> bool {
    *t == 1.0
}

/// The manifest fields the per-user model ([`crate::UserModel`]) needs: what the wasm crate
/// reads from `vrf.json`, and what both it and [`Manifest::validate`] check the same way.
#[derive(Debug, Clone, PartialEq)]
pub struct UserModelSpec {
    /// Number of basis rewards / bases `K`.
    pub k: usize,
    /// Latent dimension `d`.
    pub d: usize,
    /// Backbone hidden size `H`.
    pub hidden: usize,
    /// Softmax temperature `τ` of the basis weights.
    pub tau: f32,
    /// Calibration temperature `T` of preference probabilities (1: none).
    pub temperature: f32,
    /// Encoder conventions.
    pub encoder: EncoderSpec,
    /// Texts or feature vectors: a features model's `user_model.safetensors` holds the heads.
    pub input: InputSpec,
}

impl UserModelSpec {
    /// Checks the dimensions agree with each other and τ is positive; `origin` names the
    /// manifest in errors.
    pub fn validate(&self, origin: &str) -> Result<(), ModelError> {
        let bad = |message: String| {
            Err(ModelError::Manifest {
                origin: origin.to_string(),
                message,
            })
        };
        for (field, v) in [("k", self.k), ("d", self.d), ("hidden", self.hidden)] {
            if v == 0 {
                return bad(format!("field `{field}` must be at least 1"));
            }
        }
        let want = 2 * self.hidden + if self.encoder.dphi { self.k } else { 0 };
        if self.encoder.input_dim != want {
            return bad(format!(
                "field `encoder.input_dim` is {}, but 2·hidden{} = {want}",
                self.encoder.input_dim,
                if self.encoder.dphi { " + k" } else { "" }
            ));
        }
        for (field, v) in [("tau", self.tau), ("temperature", self.temperature)] {
            if !(v.is_finite() && v > 0.0) {
                return bad(format!(
                    "field `{field}` = {} must be positive",
                    crate::error::Float(v)
                ));
            }
        }
        if let Some(dim) = self.input.features_dim() {
            if dim != self.hidden {
                return bad(format!(
                    "field `input.dim` is {dim}, but `hidden` is {} (they must agree)",
                    self.hidden
                ));
            }
        }
        if self.encoder.prior && self.encoder.pooling != Pooling::Pog {
            return bad(
                "field `encoder.prior` is true, but a population prior is defined only for `pog` pooling"
                    .into(),
            );
        }
        Ok(())
    }
}

/// Lower-case hex SHA-256.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// Lower-case hex of a digest.
fn hex(digest: &[u8]) -> String {
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// One cached posterior of a training ("seen") user.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SeenUser {
    /// The user's id in the training data.
    pub id: String,
    /// Posterior mean `[d]`.
    pub mean: Vec<f32>,
    /// Posterior variance `[d]`.
    pub var: Vec<f32>,
}

/// `seen_users.json`: the cached posteriors, in training order.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct SeenUsers {
    /// One entry per seen user.
    pub users: Vec<SeenUser>,
}

impl SeenUsers {
    /// Parses `seen_users.json` and checks every posterior has dimension `d`, positive variance,
    /// and a unique id.
    pub fn from_json(bytes: &[u8], d: usize, origin: &str) -> Result<Self, ModelError> {
        let s: SeenUsers = serde_json::from_slice(bytes).map_err(|e| ModelError::Manifest {
            origin: origin.to_string(),
            message: e.to_string(),
        })?;
        let mut ids = std::collections::HashSet::new();
        for (i, u) in s.users.iter().enumerate() {
            let bad = |message: String| ModelError::Manifest {
                origin: origin.to_string(),
                message: format!("users[{i}] (id {:?}): {message}", u.id),
            };
            if u.mean.len() != d || u.var.len() != d {
                return Err(bad(format!(
                    "mean/var have {}/{} entries, expected d = {d}",
                    u.mean.len(),
                    u.var.len()
                )));
            }
            if u.mean.iter().any(|v| !v.is_finite())
                || u.var.iter().any(|v| !(v.is_finite() && *v > 0.0))
            {
                return Err(bad("non-finite mean or non-positive variance".into()));
            }
            if !ids.insert(u.id.as_str()) {
                return Err(bad("duplicate id".into()));
            }
        }
        Ok(s)
    }

    /// Compact JSON (f32 values round-trip exactly).
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("seen users always serialise")
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A consistent manifest for H = 3, d = 4, K = 5 with Δφ.
    pub(crate) fn manifest() -> Manifest {
        Manifest {
            format: FORMAT.into(),
            format_version: FORMAT_VERSION,
            k: 5,
            d: 4,
            hidden: 3,
            tau: 1.0,
            temperature: 1.0,
            encoder: EncoderSpec {
                input_dim: 11,
                hidden_dim: 3,
                dphi: true,
                pooling: Pooling::Pog,
                prior: false,
            },
            input: InputSpec::Text,
            text: Some(TextSpec {
                template: "{prompt}|{response}".into(),
                max_len: 16,
                pad_id: 0,
                truncation: "left".into(),
                padding: "right".into(),
            }),
            onnx: Some(OnnxSpec {
                file: BACKBONE_FILE.into(),
                opset: 17,
                input_ids: "input_ids".into(),
                attention_mask: "attention_mask".into(),
                hidden: "hidden".into(),
                rewards: "rewards".into(),
                external_data: None,
            }),
            files: BTreeMap::new(),
            source: BTreeMap::new(),
        }
    }

    #[test]
    fn round_trip_and_version_and_dimension_errors() {
        let m = manifest();
        assert_eq!(
            Manifest::from_json(m.to_json().as_bytes(), "vrf.json").unwrap(),
            m
        );

        let mut v: serde_json::Value = serde_json::from_str(&m.to_json()).unwrap();
        v["format_version"] = 4.into();
        let e = Manifest::from_json(v.to_string().as_bytes(), "m/vrf.json").unwrap_err();
        assert!(
            matches!(e, ModelError::FormatVersion { found: 4, .. }),
            "{e}"
        );
        // Version 1 (before the population prior) still reads.
        v["format_version"] = 1.into();
        assert!(Manifest::from_json(v.to_string().as_bytes(), "m/vrf.json").is_ok());
        assert!(e.to_string().contains("m/vrf.json"), "{e}");

        let mut bad = m.clone();
        bad.encoder.input_dim = 6;
        let e = Manifest::from_json(bad.to_json().as_bytes(), "vrf.json").unwrap_err();
        assert!(e.to_string().contains("encoder.input_dim"), "{e}");

        let mut v: serde_json::Value = serde_json::from_str(&m.to_json()).unwrap();
        v.as_object_mut().unwrap().remove("tau");
        let e = Manifest::from_json(v.to_string().as_bytes(), "vrf.json").unwrap_err();
        assert!(e.to_string().contains("tau"), "{e}");
    }

    /// The features-model form of [`manifest`]: no `text`, no `onnx`, `input.dim` = hidden.
    pub(crate) fn features_manifest() -> Manifest {
        Manifest {
            input: InputSpec::Features { dim: 3 },
            text: None,
            onnx: None,
            ..manifest()
        }
    }

    #[test]
    fn a_features_manifest_round_trips_and_old_ones_read_as_text() {
        let m = features_manifest();
        let json = m.to_json();
        assert!(json.contains(r#""kind": "features""#), "{json}");
        assert!(
            !json.contains(r#""text""#) && !json.contains(r#""onnx""#),
            "{json}"
        );
        assert_eq!(Manifest::from_json(json.as_bytes(), "vrf.json").unwrap(), m);
        // A text manifest writes no `input` and reads back as text, as versions 1 and 2 do.
        let t = manifest();
        assert!(!t.to_json().contains(r#""input""#));
        let mut v: serde_json::Value = serde_json::from_str(&t.to_json()).unwrap();
        v["format_version"] = 2.into();
        let old = Manifest::from_json(v.to_string().as_bytes(), "vrf.json").unwrap();
        assert_eq!(old.input, InputSpec::Text);
        v["input"] = serde_json::json!({"kind": "text"});
        assert!(Manifest::from_json(v.to_string().as_bytes(), "vrf.json").is_ok());
    }

    #[test]
    fn input_and_its_sections_are_checked_together() {
        let err = |m: &Manifest| {
            Manifest::from_json(m.to_json().as_bytes(), "m/vrf.json")
                .unwrap_err()
                .to_string()
        };
        let mut m = features_manifest();
        m.input = InputSpec::Features { dim: 4 };
        assert!(err(&m).contains("`input.dim` is 4"), "{}", err(&m));
        let mut m = features_manifest();
        m.format_version = 2;
        assert!(
            err(&m).contains("field `input` needs format_version 3"),
            "{}",
            err(&m)
        );
        let mut m = features_manifest();
        m.text = manifest().text;
        assert!(
            err(&m).contains("field `text` must be absent"),
            "{}",
            err(&m)
        );
        let mut m = features_manifest();
        m.onnx = manifest().onnx;
        assert!(
            err(&m).contains("field `onnx` must be absent"),
            "{}",
            err(&m)
        );
        let mut m = features_manifest();
        m.files
            .insert(BACKBONE_FILE.into(), FileEntry::of(b"graph"));
        assert!(err(&m).contains("backbone.onnx"), "{}", err(&m));
        let mut m = manifest();
        m.text = None;
        assert!(err(&m).contains("field `text` is missing"), "{}", err(&m));
        let mut m = manifest();
        m.onnx = None;
        assert!(err(&m).contains("field `onnx` is missing"), "{}", err(&m));
        let mut v: serde_json::Value =
            serde_json::from_str(&features_manifest().to_json()).unwrap();
        v["input"] = serde_json::json!({"kind": "pixels"});
        let e = Manifest::from_json(v.to_string().as_bytes(), "vrf.json").unwrap_err();
        assert!(e.to_string().contains("pixels"), "{e}");
        assert_eq!(
            features_manifest().input.describe(),
            "feature vectors of dimension 3"
        );
    }

    #[test]
    fn verify_catches_corruption_and_unlisted_files() {
        let mut m = manifest();
        m.files.insert("a.bin".into(), FileEntry::of(b"hello"));
        m.verify("a.bin", b"hello").unwrap();
        assert!(matches!(
            m.verify("a.bin", b"hellp").unwrap_err(),
            ModelError::Checksum { .. }
        ));
        assert!(matches!(
            m.verify("b.bin", b"x").unwrap_err(),
            ModelError::UnlistedFile { .. }
        ));
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn streamed_digests_equal_in_memory_ones() {
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        assert_eq!(
            FileEntry::of_reader(&data[..]).unwrap(),
            FileEntry::of(&data)
        );
        assert_eq!(FileEntry::of_reader(&b""[..]).unwrap(), FileEntry::of(b""));
    }

    #[test]
    fn digest_follows_the_files_not_the_provenance() {
        let mut m = manifest();
        m.files.insert("a.bin".into(), FileEntry::of(b"hello"));
        let d = m.digest();
        assert_eq!(d.len(), 64);
        m.source.insert("run".into(), "elsewhere".into());
        assert_eq!(m.digest(), d);
        m.files.insert("a.bin".into(), FileEntry::of(b"hellp"));
        assert_ne!(m.digest(), d);
    }

    #[test]
    fn seen_users_checks_dimensions_and_ids() {
        let u = |id: &str, n| SeenUser {
            id: id.into(),
            mean: vec![0.0; n],
            var: vec![1.0; n],
        };
        let ok = SeenUsers {
            users: vec![u("a", 4), u("b", 4)],
        };
        assert_eq!(
            SeenUsers::from_json(ok.to_json().as_bytes(), 4, "s").unwrap(),
            ok
        );
        let dup = SeenUsers {
            users: vec![u("a", 4), u("a", 4)],
        };
        assert!(SeenUsers::from_json(dup.to_json().as_bytes(), 4, "s")
            .unwrap_err()
            .to_string()
            .contains("duplicate"));
        let short = SeenUsers {
            users: vec![u("a", 3)],
        };
        assert!(SeenUsers::from_json(short.to_json().as_bytes(), 4, "s")
            .unwrap_err()
            .to_string()
            .contains("users[0]"));
    }
}
