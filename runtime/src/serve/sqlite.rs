//! The default [`UserStore`]: one embedded SQLite file in WAL mode with `synchronous=FULL`, so
//! an acknowledged update is on disk before the response leaves (it survives `kill -9` and a
//! power cut), and `BEGIN IMMEDIATE` serialises updates, also between processes.

use std::path::Path;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

use super::store::{now_ms, to_blob, RawUser, StoreError, StoredUser, Update, UserStore, Visit};
use vrf_format::manifest::{Manifest, Pooling};

/// What the `meta` table's `schema` row says of a user store.
const SCHEMA: &str = "vrf-user-store";
/// Layout version of the tables below.
const SCHEMA_VERSION: &str = "1";

const CREATE: &str = "
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE users (
    id TEXT PRIMARY KEY,
    pooling TEXT NOT NULL,
    count INTEGER NOT NULL,
    a BLOB NOT NULL,
    b BLOB NOT NULL,
    created_at_ms INTEGER NOT NULL,
    updated_at_ms INTEGER NOT NULL
);";

/// A user store in one SQLite file, recording the model it belongs to.
#[derive(Debug)]
pub struct SqliteStore {
    // rusqlite connections are `Send`, not `Sync`; one writer is what SQLite allows anyway.
    conn: Mutex<Connection>,
    pooling: Pooling,
    d: usize,
}

/// The store's error for an SQLite failure while opening `path`.
fn open_error(path: &Path, e: impl std::fmt::Display) -> StoreError {
    StoreError::Open {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}

fn backend(e: rusqlite::Error) -> StoreError {
    use rusqlite::ErrorCode::{DatabaseBusy, DatabaseLocked};
    match e.sqlite_error_code() {
        Some(DatabaseBusy | DatabaseLocked) => StoreError::Busy(e.to_string()),
        _ => StoreError::Backend(e.to_string()),
    }
}

impl SqliteStore {
    /// Opens (or creates) the store at `path` for the model with `digest`
    /// ([`crate::Manifest::digest`]), pooling and latent dimension `d`; a file that is not an
    /// SQLite database, is damaged, or belongs to another model is refused.
    pub fn open(
        path: impl AsRef<Path>,
        digest: &str,
        pooling: Pooling,
        d: usize,
    ) -> Result<Self, StoreError> {
        let path = path.as_ref();
        let conn = Connection::open(path).map_err(|e| open_error(path, e))?;
        conn.busy_timeout(Duration::from_secs(5))
            .map_err(|e| open_error(path, e))?;
        // The first statement reads the header: a file that is not a database fails here.
        let mode: String = conn
            .query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))
            .map_err(|e| open_error(path, e))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(open_error(
                path,
                format!("cannot use write-ahead logging (journal mode stays {mode:?})"),
            ));
        }
        conn.execute_batch("PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON;")
            .map_err(|e| open_error(path, e))?;
        let check: String = conn
            .query_row("PRAGMA quick_check", [], |r| r.get(0))
            .map_err(|e| open_error(path, e))?;
        if check != "ok" {
            return Err(open_error(path, format!("damaged database: {check}")));
        }
        let store = Self {
            conn: Mutex::new(conn),
            pooling,
            d,
        };
        store.check_or_init(path, digest)?;
        Ok(store)
    }

    /// [`SqliteStore::open`] for the model `manifest` describes (its digest, pooling and `d`).
    pub fn for_model(path: impl AsRef<Path>, manifest: &Manifest) -> Result<Self, StoreError> {
        Self::open(
            path,
            &manifest.digest(),
            manifest.encoder.pooling,
            manifest.d,
        )
    }

    fn lock(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock rolled its transaction back (rusqlite's drop).
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Creates the tables of a new store, or checks an existing one is this model's.
    fn check_or_init(&self, path: &Path, digest: &str) -> Result<(), StoreError> {
        let foreign = |message: String| StoreError::Foreign {
            path: path.to_path_buf(),
            message,
        };
        let mut conn = self.lock();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| open_error(path, e))?;
        let tables: Vec<String> = {
            let mut stmt = tx
                .prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
                .map_err(|e| open_error(path, e))?;
            let rows = stmt
                .query_map([], |r| r.get(0))
                .map_err(|e| open_error(path, e))?;
            rows.collect::<Result<_, _>>()
                .map_err(|e| open_error(path, e))?
        };
        if tables.is_empty() {
            tx.execute_batch(CREATE).map_err(|e| open_error(path, e))?;
            let meta = [
                ("schema", SCHEMA.to_string()),
                ("schema_version", SCHEMA_VERSION.to_string()),
                ("model_digest", digest.to_string()),
                ("pooling", self.pooling.as_str().to_string()),
                ("d", self.d.to_string()),
            ];
            for (k, v) in meta {
                tx.execute(
                    "INSERT INTO meta (key, value) VALUES (?1, ?2)",
                    params![k, v],
                )
                .map_err(|e| open_error(path, e))?;
            }
            return tx.commit().map_err(|e| open_error(path, e));
        }
        if tables != ["meta", "users"] {
            return Err(foreign(format!(
                "not a vrf user store (its tables are {tables:?})"
            )));
        }
        let meta = |key: &str| -> Result<Option<String>, StoreError> {
            tx.query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
                .optional()
                .map_err(|e| open_error(path, e))
        };
        if meta("schema")?.as_deref() != Some(SCHEMA) {
            return Err(foreign("not a vrf user store (no schema row)".into()));
        }
        let version = meta("schema_version")?;
        if version.as_deref() != Some(SCHEMA_VERSION) {
            return Err(foreign(format!(
                "store layout version {version:?}; this build reads version {SCHEMA_VERSION}"
            )));
        }
        let recorded = meta("model_digest")?.unwrap_or_default();
        if recorded != digest {
            return Err(foreign(format!(
                "holds users of the model with digest {recorded}, not of this model ({digest}); \
                 serve that model with it, or give --store a new file"
            )));
        }
        Ok(())
    }

    /// The stored row of `id`, checked against the model.
    fn read(&self, conn: &Connection, id: &str) -> Result<Option<StoredUser>, StoreError> {
        type Row = (String, i64, Vec<u8>, Vec<u8>, i64, i64);
        let row: Option<Row> = conn
            .query_row(
                "SELECT pooling, count, a, b, created_at_ms, updated_at_ms FROM users WHERE id = ?1",
                [id],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?)),
            )
            .optional()
            .map_err(backend)?;
        let Some((pooling, count, a, b, created_at_ms, updated_at_ms)) = row else {
            return Ok(None);
        };
        RawUser {
            pooling: &pooling,
            count,
            a: &a,
            b: &b,
            created_at_ms,
            updated_at_ms,
        }
        .check(id, self.pooling, self.d)
        .map(Some)
    }
}

impl UserStore for SqliteStore {
    fn get(&self, id: &str) -> Result<Option<StoredUser>, StoreError> {
        self.read(&self.lock(), id)
    }

    fn update(&self, id: &str, update: Update<'_>) -> Result<StoredUser, StoreError> {
        let mut conn = self.lock();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(backend)?;
        let old = self.read(&tx, id)?;
        // An error here drops `tx`, which rolls back: nothing is written.
        let state = update(old.as_ref())?;
        state.validate(self.pooling, self.d)?;
        let now = now_ms();
        let created_at_ms = old.map_or(now, |o| o.created_at_ms);
        tx.execute(
            "INSERT INTO users (id, pooling, count, a, b, created_at_ms, updated_at_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
             ON CONFLICT(id) DO UPDATE SET pooling = ?2, count = ?3, a = ?4, b = ?5,
                 updated_at_ms = ?7",
            params![
                id,
                state.pooling.as_str(),
                i64::try_from(state.count).unwrap_or(i64::MAX),
                to_blob(&state.a),
                to_blob(&state.b),
                created_at_ms,
                now
            ],
        )
        .map_err(backend)?;
        tx.commit().map_err(backend)?;
        Ok(StoredUser {
            state,
            created_at_ms,
            updated_at_ms: now,
        })
    }

    fn delete(&self, id: &str) -> Result<bool, StoreError> {
        let n = self
            .lock()
            .execute("DELETE FROM users WHERE id = ?1", [id])
            .map_err(backend)?;
        Ok(n > 0)
    }

    fn len(&self) -> Result<u64, StoreError> {
        let n: i64 = self
            .lock()
            .query_row("SELECT COUNT(*) FROM users", [], |r| r.get(0))
            .map_err(backend)?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    fn ping(&self) -> Result<(), StoreError> {
        self.lock()
            .query_row("SELECT 1", [], |_| Ok(()))
            .map_err(backend)
    }

    fn for_each(&self, each: Visit<'_>) -> Result<(), StoreError> {
        // Pages of ids in byte order (SQLite's BINARY collation), the lock released between
        // them, so an export does not stall the service.
        let mut after: Option<String> = None;
        loop {
            let ids: Vec<String> = {
                let conn = self.lock();
                let mut stmt = conn
                    .prepare(
                        "SELECT id FROM users WHERE ?1 IS NULL OR id > ?1 ORDER BY id LIMIT 1000",
                    )
                    .map_err(backend)?;
                let rows = stmt.query_map([&after], |r| r.get(0)).map_err(backend)?;
                rows.collect::<Result<_, _>>().map_err(backend)?
            };
            let Some(last) = ids.last() else {
                return Ok(());
            };
            after = Some(last.clone());
            for id in &ids {
                // A user deleted since the page was read is simply not exported.
                if let Some(u) = self.get(id)? {
                    each(id, &u)?;
                }
            }
        }
    }

    fn put(&self, id: &str, user: &StoredUser) -> Result<(), StoreError> {
        user.state.validate(self.pooling, self.d)?;
        let s = &user.state;
        self.lock()
            .execute(
                "INSERT INTO users (id, pooling, count, a, b, created_at_ms, updated_at_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                 ON CONFLICT(id) DO UPDATE SET pooling = ?2, count = ?3, a = ?4, b = ?5,
                     created_at_ms = ?6, updated_at_ms = ?7",
                params![
                    id,
                    s.pooling.as_str(),
                    i64::try_from(s.count).unwrap_or(i64::MAX),
                    to_blob(&s.a),
                    to_blob(&s.b),
                    user.created_at_ms,
                    user.updated_at_ms
                ],
            )
            .map_err(backend)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vrf_format::{ModelError, UserState};

    fn state(count: usize, v: f32) -> UserState {
        UserState {
            pooling: Pooling::Pog,
            count,
            a: vec![v; 3],
            b: vec![-v; 3],
        }
    }

    fn add_one(old: Option<&StoredUser>) -> Result<UserState, StoreError> {
        let c = old.map_or(0, |o| o.state.count);
        Ok(state(c + 1, (c + 1) as f32))
    }

    #[test]
    fn updates_persist_across_reopen_and_delete_forgets() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("u.sqlite");
        {
            let s = SqliteStore::open(&path, "abc", Pooling::Pog, 3).unwrap();
            assert!(s.get("u1").unwrap().is_none());
            s.update("u1", &mut add_one).unwrap();
            let u = s.update("u1", &mut add_one).unwrap();
            assert_eq!(u.state, state(2, 2.0));
            assert!(u.updated_at_ms >= u.created_at_ms);
            s.update("u2", &mut add_one).unwrap();
            assert_eq!(s.len().unwrap(), 2);
        }
        let s = SqliteStore::open(&path, "abc", Pooling::Pog, 3).unwrap();
        assert_eq!(s.get("u1").unwrap().unwrap().state, state(2, 2.0));
        assert!(s.delete("u1").unwrap());
        assert!(!s.delete("u1").unwrap());
        assert!(s.get("u1").unwrap().is_none());
        assert_eq!(s.len().unwrap(), 1);
    }

    #[test]
    fn a_failed_update_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteStore::open(dir.path().join("u.sqlite"), "abc", Pooling::Pog, 3).unwrap();
        s.update("u", &mut add_one).unwrap();
        let e = s
            .update("u", &mut |_| {
                Err(ModelError::StateMismatch {
                    message: "no".into(),
                }
                .into())
            })
            .unwrap_err();
        assert!(matches!(e, StoreError::Update(_)), "{e}");
        // A state of the wrong dimension is refused before it is written.
        let e = s
            .update("u", &mut |_| Ok(UserState::empty(Pooling::Pog, 2)))
            .unwrap_err();
        assert!(e.to_string().contains("latent dimension"), "{e}");
        assert_eq!(s.get("u").unwrap().unwrap().state, state(1, 1.0));
    }

    #[test]
    fn foreign_and_damaged_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("u.sqlite");
        SqliteStore::open(&path, "abc", Pooling::Pog, 3).unwrap();
        let e = SqliteStore::open(&path, "def", Pooling::Pog, 3).unwrap_err();
        assert!(matches!(e, StoreError::Foreign { .. }), "{e}");
        assert!(
            e.to_string().contains("abc") && e.to_string().contains("def"),
            "{e}"
        );

        let junk = dir.path().join("junk.sqlite");
        std::fs::write(&junk, vec![b'x'; 8192]).unwrap();
        let e = SqliteStore::open(&junk, "abc", Pooling::Pog, 3).unwrap_err();
        assert!(matches!(e, StoreError::Open { .. }), "{e}");
        assert!(e.to_string().contains("junk.sqlite"), "{e}");

        let other = dir.path().join("other.sqlite");
        Connection::open(&other)
            .unwrap()
            .execute_batch("CREATE TABLE t (x INTEGER);")
            .unwrap();
        let e = SqliteStore::open(&other, "abc", Pooling::Pog, 3).unwrap_err();
        assert!(e.to_string().contains("not a vrf user store"), "{e}");
    }

    #[test]
    fn the_connection_is_durable_wal() {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteStore::open(dir.path().join("u.sqlite"), "abc", Pooling::Pog, 3).unwrap();
        let conn = s.lock();
        let mode: String = conn
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .unwrap();
        let sync: i64 = conn
            .query_row("PRAGMA synchronous", [], |r| r.get(0))
            .unwrap();
        // synchronous = 2 is FULL: every commit is fsynced before it returns.
        assert_eq!((mode.as_str(), sync), ("wal", 2));
    }

    #[test]
    fn two_processes_worth_of_connections_lose_no_update() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("u.sqlite");
        // Two stores on one file stand for two server processes: only SQLite's
        // BEGIN IMMEDIATE serialises them (each store's own mutex does not).
        let stores = [
            SqliteStore::open(&path, "abc", Pooling::Pog, 3).unwrap(),
            SqliteStore::open(&path, "abc", Pooling::Pog, 3).unwrap(),
        ];
        std::thread::scope(|scope| {
            for s in &stores {
                scope.spawn(move || {
                    for _ in 0..25 {
                        s.update("u", &mut add_one).unwrap();
                    }
                });
            }
        });
        assert_eq!(stores[0].get("u").unwrap().unwrap().state.count, 50);
    }

    #[test]
    fn a_hand_edited_row_is_reported_not_served() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("u.sqlite");
        let s = SqliteStore::open(&path, "abc", Pooling::Pog, 3).unwrap();
        s.update("u", &mut add_one).unwrap();
        s.lock()
            .execute("UPDATE users SET a = x'0000' WHERE id = 'u'", [])
            .unwrap();
        let e = s.get("u").unwrap_err();
        assert!(matches!(e, StoreError::Corrupt { .. }), "{e}");
    }
}
