//! The shared [`UserStore`]: users in one PostgreSQL database, so any number of `vrf serve`
//! replicas behind a load balancer serve the same users. An update is one transaction that
//! locks the user's row (`SELECT … FOR UPDATE`), so concurrent observes of one user on
//! different replicas are serialised; it is acknowledged only after `COMMIT` returns (durable
//! as the server's `fsync`/`synchronous_commit` make it). The schema is versioned and migrated
//! at start under an advisory lock (replicas may start together); the model's digest is
//! recorded and checked as in SQLite.
//!
//! Every call is bounded: the connection, the wait for a pooled connection and each statement
//! have timeouts, and the whole operation has one; a database that is down or unreachable is a
//! [`StoreError::Unavailable`] (the service answers 503 with `Retry-After`), and the pool
//! reconnects by itself once it is back. The password is never part of an error, a log line
//! or [`PgStore::redacted_url`].
//!
//! The trait is synchronous (the service calls it on the blocking pool): the store runs its
//! connections on a small runtime of its own and blocks on it; do not call it from async code.

use std::future::Future;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, PoolError, RecyclingMethod, Runtime};
use tokio_postgres::config::{Host, SslMode};
use tokio_postgres::error::SqlState;
use tokio_postgres::{NoTls, Row};

use super::store::{now_ms, to_blob, RawUser, StoreError, StoredUser, Update, UserStore};
use vrf_format::manifest::{Manifest, Pooling};

/// What the `vrf_meta` table's `schema` row says of a user store.
const SCHEMA: &str = "vrf-user-store";
/// Advisory-lock key that serialises migrations of replicas starting together.
const MIGRATION_LOCK: i64 = 0x7672_665f_7573_6572; // "vrf_user"

/// The schema, one step per version; a step is applied once, in order, in one transaction.
const MIGRATIONS: &[(i32, &str, &str)] = &[(
    1,
    "users and meta",
    "CREATE TABLE vrf_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
     CREATE TABLE vrf_users (
         id TEXT COLLATE \"C\" PRIMARY KEY,
         pooling TEXT NOT NULL,
         count BIGINT NOT NULL CHECK (count >= 0),
         a BYTEA NOT NULL,
         b BYTEA NOT NULL,
         created_at_ms BIGINT NOT NULL,
         updated_at_ms BIGINT NOT NULL
     );",
)];

/// Users per page when [`UserStore::for_each`] walks the table (bounded memory).
const PAGE: i64 = 1000;
/// Attempts of one update when a concurrent first insert or a deadlock forces a retry.
const ATTEMPTS: usize = 8;

/// Connection bounds of a [`PgStore`]: build from [`PgOptions::default`] and set the fields.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct PgOptions {
    /// Most open connections per replica.
    pub max_connections: usize,
    /// Longest to open a connection.
    pub connect_timeout: Duration,
    /// Longest one operation (waiting for a connection included) may take; also the
    /// server-side `statement_timeout`. Keep it below the service's request timeout, so a
    /// store that does not answer is a 503 before the client's deadline (the CLI caps it so).
    pub op_timeout: Duration,
}

impl Default for PgOptions {
    fn default() -> Self {
        Self {
            max_connections: 16,
            connect_timeout: Duration::from_secs(2),
            op_timeout: Duration::from_secs(5),
        }
    }
}

/// A user store in a PostgreSQL database, shared by every replica that opens it.
pub struct PgStore {
    // `Option` only so that `Drop` can shut it down without blocking (it may run in async code).
    rt: Option<tokio::runtime::Runtime>,
    pool: Pool,
    redacted: String,
    password: Option<String>,
    op_timeout: Duration,
    pooling: Pooling,
    d: usize,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore")
            .field("url", &self.redacted)
            .finish_non_exhaustive()
    }
}

/// Whether `spec` (a `--store` value) names a PostgreSQL database rather than an SQLite file.
pub fn is_postgres_url(spec: &str) -> bool {
    spec.starts_with("postgres://") || spec.starts_with("postgresql://")
}

/// `postgres://user@host:port/db` of a parsed configuration: never the password.
fn redact(config: &tokio_postgres::Config) -> String {
    let user = config.get_user().unwrap_or("");
    let at = if user.is_empty() { "" } else { "@" };
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .enumerate()
        .map(|(i, h)| {
            let host = match h {
                Host::Tcp(name) => name.clone(),
                #[cfg(unix)]
                Host::Unix(path) => path.display().to_string(),
            };
            match config.get_ports().get(i).or(config.get_ports().first()) {
                Some(p) => format!("{host}:{p}"),
                None => host,
            }
        })
        .collect();
    format!(
        "postgres://{user}{at}{}/{}",
        hosts.join(","),
        config.get_dbname().unwrap_or("")
    )
}

/// Whether a PostgreSQL error means the database is down, unreachable or restarting (retry
/// later) rather than that it refused the operation.
fn is_unavailable(e: &tokio_postgres::Error) -> bool {
    if e.is_closed() {
        return true;
    }
    match e.code() {
        // No SQLSTATE: the socket, the connection or TLS failed, or the driver refused a value
        // (a bug, not an outage); the driver's error kinds are private, its messages are not.
        None => {
            let text = e.to_string();
            std::error::Error::source(e).is_some_and(|s| s.is::<std::io::Error>())
                || [
                    "error connecting",
                    "error communicating",
                    "error performing TLS",
                    "timeout",
                    "connection closed",
                ]
                .iter()
                .any(|p| text.starts_with(p))
        }
        Some(code) => {
            let c = code.code();
            c.starts_with("08") // connection exception
                || c.starts_with("57P") // admin / crash shutdown, cannot connect now
                || *code == SqlState::TOO_MANY_CONNECTIONS
                || *code == SqlState::QUERY_CANCELED // statement_timeout
        }
    }
}

/// Whether the transaction should simply be tried again.
fn is_retryable(e: &tokio_postgres::Error) -> bool {
    matches!(
        e.code(),
        Some(c) if *c == SqlState::T_R_SERIALIZATION_FAILURE || *c == SqlState::T_R_DEADLOCK_DETECTED
    )
}

impl PgStore {
    /// Connects to the database at `url` (`postgres://user:password@host:port/db`; a URL
    /// without a password takes `$PGPASSWORD`) for the model with `digest`, pooling and latent
    /// dimension `d`: applies the schema migrations this build knows, records the model in a
    /// new store, and refuses a store of another model or of a newer layout.
    pub fn connect(
        url: &str,
        digest: &str,
        pooling: Pooling,
        d: usize,
        opts: &PgOptions,
    ) -> Result<Self, StoreError> {
        let open = |message: String| StoreError::Open {
            path: PathBuf::from("postgres://"),
            message,
        };
        // The parser's messages never quote the URL, but say so rather than show it.
        let mut config = tokio_postgres::Config::from_str(url).map_err(|e| {
            open(format!(
                "not a PostgreSQL URL (not shown: it may hold a password): {e}"
            ))
        })?;
        if config.get_password().is_none() {
            if let Ok(p) = std::env::var("PGPASSWORD") {
                config.password(p);
            }
        }
        let password = config
            .get_password()
            .map(|p| String::from_utf8_lossy(p).into_owned())
            .filter(|p| !p.is_empty());
        let redacted = redact(&config);
        let at = PathBuf::from(&redacted);
        let open = |message: String| StoreError::Open {
            path: at.clone(),
            message,
        };
        #[cfg(not(feature = "postgres-tls"))]
        if config.get_ssl_mode() != SslMode::Disable && config.get_ssl_mode() != SslMode::Prefer {
            return Err(open(
                "sslmode=require needs TLS, which this build of vrf does not include (build with \
                 the `postgres-tls` feature), or connect on a private network or through a \
                 TLS-terminating proxy with sslmode=disable"
                    .into(),
            ));
        }
        if opts.max_connections == 0 {
            return Err(open(
                "the connection pool needs at least 1 connection".into(),
            ));
        }
        let ms = opts.op_timeout.as_millis().max(1);
        let mut options = config.get_options().unwrap_or("").to_string();
        // Server-side bounds: no statement, and no wait for a row lock, outlives the operation.
        options.push_str(&format!(
            " -c statement_timeout={ms} -c lock_timeout={ms} -c idle_in_transaction_session_timeout={}",
            ms * 2
        ));
        config
            .options(options.trim())
            .connect_timeout(opts.connect_timeout)
            .keepalives(true)
            .keepalives_idle(Duration::from_secs(10));
        #[cfg(target_os = "linux")]
        config.tcp_user_timeout(opts.op_timeout);
        if config.get_application_name().is_none() {
            config.application_name("vrf-serve");
        }
        let manager_config = ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        };
        #[cfg(feature = "postgres-tls")]
        let manager = if config.get_ssl_mode() == SslMode::Disable {
            Manager::from_config(config, NoTls, manager_config)
        } else {
            Manager::from_config(config, tls::connector().map_err(open)?, manager_config)
        };
        #[cfg(not(feature = "postgres-tls"))]
        let manager = Manager::from_config(config, NoTls, manager_config);
        let pool = Pool::builder(manager)
            .max_size(opts.max_connections)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(opts.op_timeout))
            .create_timeout(Some(opts.connect_timeout))
            .recycle_timeout(Some(opts.connect_timeout))
            .build()
            .map_err(|e| open(e.to_string()))?;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("vrf-pg")
            .enable_all()
            .build()
            .map_err(|e| open(format!("cannot start the connection runtime: {e}")))?;
        let store = Self {
            rt: Some(rt),
            pool,
            redacted,
            password,
            op_timeout: opts.op_timeout,
            pooling,
            d,
        };
        store.migrate(digest).map_err(|e| match e {
            StoreError::Foreign { .. } => e,
            other => open(other.to_string()),
        })?;
        Ok(store)
    }

    /// [`PgStore::connect`] for the model `manifest` describes (its digest, pooling and `d`).
    pub fn for_model(url: &str, manifest: &Manifest, opts: &PgOptions) -> Result<Self, StoreError> {
        Self::connect(
            url,
            &manifest.digest(),
            manifest.encoder.pooling,
            manifest.d,
            opts,
        )
    }

    /// The database's URL without the password, for logs.
    pub fn redacted_url(&self) -> &str {
        &self.redacted
    }

    /// `message` with the password, should a driver message ever quote it, blanked out.
    fn scrub(&self, message: String) -> String {
        match &self.password {
            Some(p) if message.contains(p.as_str()) => message.replace(p.as_str(), "***"),
            _ => message,
        }
    }

    /// The store's error for a driver error.
    fn backend(&self, e: &tokio_postgres::Error) -> StoreError {
        // `{e:#}`-style detail: the database's own message, not just "db error".
        let mut message = e.to_string();
        if let Some(db) = e.as_db_error() {
            message = format!("{}: {}", db.code().code(), db.message());
        } else if let Some(src) = std::error::Error::source(e) {
            message = format!("{e}: {src}");
        }
        let message = self.scrub(message);
        if is_unavailable(e) {
            StoreError::Unavailable(message)
        } else if e.code() == Some(&SqlState::LOCK_NOT_AVAILABLE) || is_retryable(e) {
            StoreError::Busy(message)
        } else {
            StoreError::Backend(message)
        }
    }

    fn pool_error(&self, e: PoolError) -> StoreError {
        match e {
            PoolError::Backend(e) => self.backend(&e),
            PoolError::Timeout(_) => StoreError::Unavailable(format!(
                "no connection to {} within {} ms",
                self.redacted,
                self.op_timeout.as_millis()
            )),
            other => StoreError::Unavailable(self.scrub(other.to_string())),
        }
    }

    /// Runs `f` on the store's runtime, bounded by the operation timeout.
    fn run<T>(&self, f: impl Future<Output = Result<T, StoreError>>) -> Result<T, StoreError> {
        let Some(rt) = &self.rt else {
            return Err(StoreError::Unavailable("the store is shut down".into()));
        };
        let limit = self.op_timeout;
        rt.block_on(async {
            match tokio::time::timeout(limit, f).await {
                Ok(r) => r,
                Err(_) => Err(StoreError::Unavailable(format!(
                    "no answer from {} within {} ms",
                    self.redacted,
                    limit.as_millis()
                ))),
            }
        })
    }

    async fn client(&self) -> Result<deadpool_postgres::Object, StoreError> {
        self.pool.get().await.map_err(|e| self.pool_error(e))
    }

    /// Applies the missing migrations and records or checks the model, under an advisory lock.
    fn migrate(&self, digest: &str) -> Result<(), StoreError> {
        self.run(async {
            let mut client = self.client().await?;
            let pg = |e: tokio_postgres::Error| self.backend(&e);
            let tx = client.transaction().await.map_err(pg)?;
            tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
                .await
                .map_err(pg)?;
            tx.batch_execute(
                "CREATE TABLE IF NOT EXISTS vrf_schema_migrations (
                     version INTEGER PRIMARY KEY,
                     name TEXT NOT NULL,
                     applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
                 )",
            )
            .await
            .map_err(pg)?;
            let current: i32 = tx
                .query_one(
                    "SELECT COALESCE(MAX(version), 0) FROM vrf_schema_migrations",
                    &[],
                )
                .await
                .map_err(pg)?
                .get(0);
            let latest = MIGRATIONS.last().map_or(0, |m| m.0);
            let foreign = |message: String| StoreError::Foreign {
                path: PathBuf::from(&self.redacted),
                message,
            };
            if current > latest {
                return Err(foreign(format!(
                    "store layout version {current}; this build knows versions up to {latest}: \
                     upgrade vrf"
                )));
            }
            for (version, name, sql) in MIGRATIONS.iter().filter(|m| m.0 > current) {
                tx.batch_execute(sql).await.map_err(pg)?;
                tx.execute(
                    "INSERT INTO vrf_schema_migrations (version, name) VALUES ($1, $2)",
                    &[version, name],
                )
                .await
                .map_err(pg)?;
            }
            let meta = tx
                .query("SELECT key, value FROM vrf_meta", &[])
                .await
                .map_err(pg)?;
            let get = |key: &str| -> Option<String> {
                meta.iter()
                    .find(|r| r.get::<_, &str>(0) == key)
                    .map(|r| r.get::<_, String>(1))
            };
            if meta.is_empty() {
                let rows = [
                    ("schema", SCHEMA.to_string()),
                    ("model_digest", digest.to_string()),
                    ("pooling", self.pooling.as_str().to_string()),
                    ("d", self.d.to_string()),
                ];
                for (k, v) in &rows {
                    tx.execute("INSERT INTO vrf_meta (key, value) VALUES ($1, $2)", &[k, v])
                        .await
                        .map_err(pg)?;
                }
            } else {
                if get("schema").as_deref() != Some(SCHEMA) {
                    return Err(foreign("not a vrf user store (no schema row)".into()));
                }
                let recorded = get("model_digest").unwrap_or_default();
                if recorded != digest {
                    return Err(foreign(format!(
                        "holds users of the model with digest {recorded}, not of this model \
                         ({digest}); serve that model with it, or give --store another database"
                    )));
                }
            }
            tx.commit().await.map_err(pg)
        })
    }

    /// The user of a row (`pooling, count, a, b, created_at_ms, updated_at_ms`), checked
    /// against the model.
    fn decode(&self, id: &str, row: &Row) -> Result<StoredUser, StoreError> {
        let get_err = |e: tokio_postgres::Error| StoreError::Corrupt {
            id: id.to_string(),
            message: e.to_string(),
        };
        RawUser {
            pooling: row.try_get(0).map_err(get_err)?,
            count: row.try_get(1).map_err(get_err)?,
            a: row.try_get(2).map_err(get_err)?,
            b: row.try_get(3).map_err(get_err)?,
            created_at_ms: row.try_get(4).map_err(get_err)?,
            updated_at_ms: row.try_get(5).map_err(get_err)?,
        }
        .check(id, self.pooling, self.d)
    }

    /// One attempt of [`UserStore::update`]; `Ok(None)`: try again (a concurrent first insert
    /// of the same user won, or the database chose this transaction to abort).
    async fn try_update(
        &self,
        id: &str,
        update: Update<'_>,
    ) -> Result<Option<StoredUser>, StoreError> {
        let mut client = self.client().await?;
        let pg = |e: tokio_postgres::Error| self.backend(&e);
        let tx = client.transaction().await.map_err(pg)?;
        let select = tx
            .prepare_cached(
                "SELECT pooling, count, a, b, created_at_ms, updated_at_ms FROM vrf_users \
                 WHERE id = $1 FOR UPDATE",
            )
            .await
            .map_err(pg)?;
        let old = match tx.query_opt(&select, &[&id]).await {
            Ok(row) => row.map(|r| self.decode(id, &r)).transpose()?,
            Err(e) if is_retryable(&e) => return Ok(None),
            Err(e) => return Err(pg(e)),
        };
        // An error here drops `tx`, which rolls back: nothing is written.
        let state = update(old.as_ref())?;
        state.validate(self.pooling, self.d)?;
        let now = now_ms();
        let created_at_ms = old.as_ref().map_or(now, |o| o.created_at_ms);
        let count = i64::try_from(state.count).unwrap_or(i64::MAX);
        let (a, b) = (to_blob(&state.a), to_blob(&state.b));
        let stmt;
        let result = if old.is_some() {
            stmt = tx
                .prepare_cached(
                    "UPDATE vrf_users SET pooling = $2, count = $3, a = $4, b = $5, \
                     updated_at_ms = $6 WHERE id = $1",
                )
                .await
                .map_err(pg)?;
            let pooling = state.pooling.as_str();
            tx.execute(&stmt, &[&id, &pooling, &count, &a, &b, &now])
                .await
        } else {
            // Two replicas may both see no row: the second insert does nothing and retries
            // (then the row exists, and FOR UPDATE serialises them).
            stmt = tx
                .prepare_cached(
                    "INSERT INTO vrf_users (id, pooling, count, a, b, created_at_ms, \
                     updated_at_ms) VALUES ($1, $2, $3, $4, $5, $6, $7) \
                     ON CONFLICT (id) DO NOTHING",
                )
                .await
                .map_err(pg)?;
            let pooling = state.pooling.as_str();
            tx.execute(
                &stmt,
                &[&id, &pooling, &count, &a, &b, &created_at_ms, &now],
            )
            .await
        };
        let written = match result {
            Ok(n) => n,
            Err(e) if is_retryable(&e) => return Ok(None),
            Err(e) => return Err(pg(e)),
        };
        if written == 0 {
            return Ok(None);
        }
        match tx.commit().await {
            Ok(()) => Ok(Some(StoredUser {
                state,
                created_at_ms,
                updated_at_ms: now,
            })),
            Err(e) if is_retryable(&e) => Ok(None),
            Err(e) => Err(pg(e)),
        }
    }
}

impl Drop for PgStore {
    fn drop(&mut self) {
        self.pool.close();
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

impl UserStore for PgStore {
    fn get(&self, id: &str) -> Result<Option<StoredUser>, StoreError> {
        self.run(async {
            let client = self.client().await?;
            let pg = |e: tokio_postgres::Error| self.backend(&e);
            let stmt = client
                .prepare_cached(
                    "SELECT pooling, count, a, b, created_at_ms, updated_at_ms FROM vrf_users \
                     WHERE id = $1",
                )
                .await
                .map_err(pg)?;
            let row = client.query_opt(&stmt, &[&id]).await.map_err(pg)?;
            row.map(|r| self.decode(id, &r)).transpose()
        })
    }

    fn update(&self, id: &str, update: Update<'_>) -> Result<StoredUser, StoreError> {
        self.run(async {
            for _ in 0..ATTEMPTS {
                if let Some(user) = self.try_update(id, &mut *update).await? {
                    return Ok(user);
                }
            }
            Err(StoreError::Busy(format!(
                "user {id:?}: {ATTEMPTS} attempts lost to concurrent writers"
            )))
        })
    }

    fn delete(&self, id: &str) -> Result<bool, StoreError> {
        self.run(async {
            let client = self.client().await?;
            let n = client
                .execute("DELETE FROM vrf_users WHERE id = $1", &[&id])
                .await
                .map_err(|e| self.backend(&e))?;
            Ok(n > 0)
        })
    }

    fn len(&self) -> Result<u64, StoreError> {
        self.run(async {
            let client = self.client().await?;
            let n: i64 = client
                .query_one("SELECT COUNT(*) FROM vrf_users", &[])
                .await
                .map_err(|e| self.backend(&e))?
                .get(0);
            Ok(u64::try_from(n).unwrap_or(0))
        })
    }

    fn ping(&self) -> Result<(), StoreError> {
        self.run(async {
            let client = self.client().await?;
            client
                .simple_query("SELECT 1")
                .await
                .map_err(|e| self.backend(&e))?;
            Ok(())
        })
    }

    fn for_each(&self, each: super::store::Visit<'_>) -> Result<(), StoreError> {
        let mut after = String::new();
        let mut first = true;
        loop {
            // One bounded page per operation: a large store does not outlive the timeout.
            let rows: Vec<(String, StoredUser)> = self.run(async {
                let client = self.client().await?;
                const COLUMNS: &str =
                    "SELECT pooling, count, a, b, created_at_ms, updated_at_ms, id FROM vrf_users";
                let rows = if first {
                    let sql = format!("{COLUMNS} ORDER BY id LIMIT $1");
                    client.query(&sql, &[&PAGE]).await
                } else {
                    let sql = format!("{COLUMNS} WHERE id > $1 ORDER BY id LIMIT $2");
                    client.query(&sql, &[&after, &PAGE]).await
                }
                .map_err(|e| self.backend(&e))?;
                rows.iter()
                    .map(|r| {
                        let id: String = r.get(6);
                        let u = self.decode(&id, r)?;
                        Ok((id, u))
                    })
                    .collect()
            })?;
            first = false;
            let Some((last, _)) = rows.last() else {
                return Ok(());
            };
            after = last.clone();
            let full = rows.len() as i64 == PAGE;
            for (id, u) in &rows {
                each(id, u)?;
            }
            if !full {
                return Ok(());
            }
        }
    }

    fn put(&self, id: &str, user: &StoredUser) -> Result<(), StoreError> {
        user.state.validate(self.pooling, self.d)?;
        self.run(async {
            let client = self.client().await?;
            let count = i64::try_from(user.state.count).unwrap_or(i64::MAX);
            client
                .execute(
                    "INSERT INTO vrf_users (id, pooling, count, a, b, created_at_ms, updated_at_ms) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (id) DO UPDATE SET \
                     pooling = $2, count = $3, a = $4, b = $5, created_at_ms = $6, \
                     updated_at_ms = $7",
                    &[
                        &id,
                        &user.state.pooling.as_str(),
                        &count,
                        &to_blob(&user.state.a),
                        &to_blob(&user.state.b),
                        &user.created_at_ms,
                        &user.updated_at_ms,
                    ],
                )
                .await
                .map_err(|e| self.backend(&e))?;
            Ok(())
        })
    }
}

/// TLS to the database (feature `postgres-tls`): rustls on ring, verifying the server against
/// the system's CA roots and, if set, the PEM file `$PGSSLROOTCERT` (as libpq names it).
#[cfg(feature = "postgres-tls")]
mod tls {
    use std::sync::Arc;

    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;
    use tokio_postgres_rustls::MakeRustlsConnect;

    /// The connector, or why there is none.
    pub(super) fn connector() -> Result<MakeRustlsConnect, String> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
        if let Some(path) = std::env::var_os("PGSSLROOTCERT") {
            let shown = std::path::Path::new(&path).display().to_string();
            let certs = CertificateDer::pem_file_iter(&path)
                .map_err(|e| format!("PGSSLROOTCERT {shown}: {e}"))?;
            for cert in certs {
                let cert = cert.map_err(|e| format!("PGSSLROOTCERT {shown}: {e}"))?;
                roots
                    .add(cert)
                    .map_err(|e| format!("PGSSLROOTCERT {shown}: {e}"))?;
            }
        }
        if roots.is_empty() {
            return Err("TLS: no CA certificates (install the system's, e.g. the \
                        ca-certificates package, or set PGSSLROOTCERT to a PEM file)"
                .into());
        }
        // ring has no post-quantum key exchange (hence the deprecation); aws-lc-rs has, but
        // needs cmake and a long C build on every machine that builds vrf.
        #[allow(deprecated)]
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS: {e}"))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(MakeRustlsConnect::new(config))
    }
}
