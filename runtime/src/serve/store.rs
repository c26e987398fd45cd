//! The user store contract: what `vrf serve` keeps per user, behind a small trait so that a
//! shared database can back several replicas (the README's deployment section).

use std::path::PathBuf;

use vrf_format::manifest::Pooling;
use vrf_format::ModelError;
use vrf_format::UserState;

/// One stored user: their running evidence and when it was first and last written.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredUser {
    /// Natural parameters and observation count.
    pub state: UserState,
    /// Unix time of the first observation, milliseconds.
    pub created_at_ms: i64,
    /// Unix time of the last update, milliseconds.
    pub updated_at_ms: i64,
}

/// Why the store failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The database file cannot be opened, or is not a database (or the database cannot be
    /// reached or set up at start).
    #[error("user store {}: {message}", path.display())]
    Open {
        /// The database file, or the database's URL without its password.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// The file is a database, but not a user store of this model.
    #[error("user store {}: {message}", path.display())]
    Foreign {
        /// The database file, or the database's URL without its password.
        path: PathBuf,
        /// What differs.
        message: String,
    },
    /// A stored row cannot be read back (a damaged or hand-edited database).
    #[error("user store: user {id:?}: {message}")]
    Corrupt {
        /// The user.
        id: String,
        /// What is wrong with the row.
        message: String,
    },
    /// The update itself was refused (the state does not fit the model); nothing was written.
    #[error(transparent)]
    Update(#[from] ModelError),
    /// The database stayed locked by another writer past the busy timeout.
    #[error("user store: busy (another writer holds it): {0}")]
    Busy(String),
    /// The request's deadline passed before the update was written; nothing was written.
    #[error("the request's deadline passed before the update was written")]
    Expired,
    /// The database is down, unreachable or did not answer in time; nothing was written
    /// (or, for a commit cut off in flight, nothing was acknowledged). Retry later.
    #[error("user store unavailable: {0}")]
    Unavailable(String),
    /// The database refused an operation.
    #[error("user store: {0}")]
    Backend(String),
}

impl StoreError {
    /// A short machine-readable kind, for metrics (`unavailable`, `busy`, `corrupt`, …).
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Open { .. } => "open",
            Self::Foreign { .. } => "foreign",
            Self::Corrupt { .. } => "corrupt",
            Self::Update(_) => "update",
            Self::Busy(_) => "busy",
            Self::Expired => "expired",
            Self::Unavailable(_) => "unavailable",
            Self::Backend(_) => "backend",
        }
    }
}

/// A function from a user's stored evidence (`None`: a new user) to the evidence to store; an
/// error writes nothing.
pub type Update<'a> = &'a mut dyn FnMut(Option<&StoredUser>) -> Result<UserState, StoreError>;

/// A function called with each stored user in turn (export); an error stops the walk.
pub type Visit<'a> = &'a mut dyn FnMut(&str, &StoredUser) -> Result<(), StoreError>;

/// Where `vrf serve` keeps users. Implementations make [`UserStore::update`] atomic per user
/// (no lost update between two concurrent observes of one user, also across processes sharing
/// the store) and durable once it returns.
pub trait UserStore: Send + Sync {
    /// A user's stored evidence, if any.
    fn get(&self, id: &str) -> Result<Option<StoredUser>, StoreError>;
    /// Reads the user, applies `update` and writes the result, as one transaction; nothing is
    /// written when `update` fails.
    fn update(&self, id: &str, update: Update<'_>) -> Result<StoredUser, StoreError>;
    /// Forgets a user entirely; `false` when there was nothing to forget.
    fn delete(&self, id: &str) -> Result<bool, StoreError>;
    /// Number of stored users.
    fn len(&self) -> Result<u64, StoreError>;
    /// Whether no user is stored.
    fn is_empty(&self) -> Result<bool, StoreError> {
        Ok(self.len()? == 0)
    }
    /// Whether the store answers now (`/health`); cheap.
    fn ping(&self) -> Result<(), StoreError>;
    /// Every stored user, in byte order of their ids, passed to `each` (export).
    fn for_each(&self, each: Visit<'_>) -> Result<(), StoreError>;
    /// Stores `user` exactly as given, times included, replacing any stored user `id` (import).
    fn put(&self, id: &str, user: &StoredUser) -> Result<(), StoreError>;
}

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Natural parameters as a database stores them: little-endian f32 bytes.
pub(crate) fn to_blob(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// The f32 values of a blob written by [`to_blob`]; `None` if it is not whole values.
pub(crate) fn from_blob(bytes: &[u8]) -> Option<Vec<f32>> {
    bytes.len().is_multiple_of(4).then(|| {
        bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect()
    })
}

/// A stored row's columns, before they are checked.
pub(crate) struct RawUser<'a> {
    /// Pooling name.
    pub pooling: &'a str,
    /// Observation count.
    pub count: i64,
    /// Natural parameter blob `a`.
    pub a: &'a [u8],
    /// Natural parameter blob `b`.
    pub b: &'a [u8],
    /// First observation, ms.
    pub created_at_ms: i64,
    /// Last update, ms.
    pub updated_at_ms: i64,
}

impl RawUser<'_> {
    /// The user of user `id`'s row, checked against the model's pooling and latent dimension
    /// `d` (every backend decodes its rows the same way).
    pub(crate) fn check(
        self,
        id: &str,
        pooling: Pooling,
        d: usize,
    ) -> Result<StoredUser, StoreError> {
        let corrupt = |message: String| StoreError::Corrupt {
            id: id.to_string(),
            message,
        };
        let stored = Pooling::from_name(self.pooling)
            .ok_or_else(|| corrupt(format!("unknown pooling {:?}", self.pooling)))?;
        let count = self.count;
        let count = usize::try_from(count).map_err(|_| corrupt(format!("count {count}")))?;
        let (Some(a), Some(b)) = (from_blob(self.a), from_blob(self.b)) else {
            return Err(corrupt("a parameter blob is not whole f32 values".into()));
        };
        let state = UserState {
            pooling: stored,
            count,
            a,
            b,
        };
        state
            .validate(pooling, d)
            .map_err(|e| corrupt(e.to_string()))?;
        Ok(StoredUser {
            state,
            created_at_ms: self.created_at_ms,
            updated_at_ms: self.updated_at_ms,
        })
    }
}
