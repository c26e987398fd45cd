//! `vrf serve`: personalised scoring over HTTP/JSON (docs/openapi.yaml), on the same
//! [`VrfModel`] API an embedding application uses.
//!
//! - [`routes`]: the endpoints and the middleware (auth, timeout, metrics);
//! - [`conn`]: the accept loop (header-read timeout, connection cap, bounded drain);
//! - [`batcher`]: dynamic batching of concurrent requests' texts into backbone calls;
//! - [`store`]: the user store contract, [`sqlite`] its default (durable, one file),
//!   `postgres` the shared one for several replicas (feature `postgres`), [`transfer`] moving
//!   users between stores (JSONL);
//! - [`api`]: request and response bodies and their limits; [`extract`]: reading them (JSON body,
//!   path) into [`error`]s with the right status; [`error`]: what a request or the start can
//!   fail with; [`auth`]: the bearer token; [`metrics`]: Prometheus text.
//!
//! ```no_run
//! use std::sync::Arc;
//! use vrf_runtime::serve::{Server, ServeOptions, SqliteStore};
//! use vrf_runtime::{RuntimeOptions, VrfModel};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let model = Arc::new(VrfModel::load("models/demo", &RuntimeOptions::new().with_threads(2))?);
//! let store = SqliteStore::for_model("users.sqlite", model.manifest())?;
//! let server = Server::start(model, Arc::new(store), ServeOptions::default())?;
//! println!("listening on {}", server.local_addr());
//! server.wait()?;
//! # Ok(()) }
//! ```

mod api;
mod auth;
mod batcher;
mod conn;
mod error;
mod extract;
mod metrics;
#[cfg(feature = "postgres")]
mod postgres;
mod routes;
mod sqlite;
mod store;
mod transfer;

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::sync::oneshot;

pub use api::Limits;
pub use auth::Token;
pub use batcher::BatchOptions;
pub use conn::ConnOptions;
pub use error::{ApiError, ServeError};
#[cfg(feature = "postgres")]
pub use postgres::{is_postgres_url, PgOptions, PgStore};
pub use sqlite::SqliteStore;
pub use store::{StoreError, StoredUser, Update, UserStore, Visit};
pub use transfer::{export_users, import_users, TransferError};

use crate::session::VrfModel;

/// How the service runs: build from [`ServeOptions::default`] and set the fields.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ServeOptions {
    /// Listening address (default `127.0.0.1:8080`; port 0 picks a free one).
    pub bind: SocketAddr,
    /// Bearer token; required unless `bind` is a loopback address.
    pub token: Option<Token>,
    /// Request bounds.
    pub limits: Limits,
    /// Connection bounds.
    pub conn: ConnOptions,
    /// Dynamic batching.
    pub batch: BatchOptions,
    /// Longest a request may take before a 504.
    pub request_timeout: Duration,
    /// Forgetting half-life in observations: before each new observation the evidence so far
    /// is scaled by `0.5^(1/h)` (PoG models; `None`: no forgetting).
    pub half_life: Option<f32>,
    /// HTTP worker threads (the backbone has its own).
    pub http_threads: usize,
    /// Also stop on SIGINT / SIGTERM (the CLI), draining in-flight requests.
    pub stop_on_signals: bool,
}

impl Default for ServeOptions {
    fn default() -> Self {
        Self {
            bind: SocketAddr::from((Ipv4Addr::LOCALHOST, 8080)),
            token: None,
            limits: Limits::default(),
            conn: ConnOptions::default(),
            batch: BatchOptions::default(),
            request_timeout: Duration::from_secs(30),
            half_life: None,
            http_threads: 2,
            stop_on_signals: false,
        }
    }
}

/// A running service; dropping it shuts it down gracefully.
#[derive(Debug)]
pub struct Server {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<std::io::Result<()>>>,
}

impl Server {
    /// Binds and starts serving `model` with `store` on its own threads; returns once the
    /// address is bound.
    pub fn start(
        model: Arc<VrfModel>,
        store: Arc<dyn UserStore>,
        opts: ServeOptions,
    ) -> Result<Self, ServeError> {
        if !opts.bind.ip().is_loopback() && opts.token.is_none() {
            return Err(ServeError::TokenRequired(opts.bind));
        }
        let l = &opts.limits;
        let positive = [
            ("request timeout", opts.request_timeout.as_millis() as usize),
            ("body limit", l.max_body_bytes),
            ("candidate limit", l.max_candidates),
            ("reference limit", l.max_references),
            ("question limit", l.max_questions),
            ("text limit", l.max_text_chars),
            ("batch texts", opts.batch.max_texts),
            ("queue", opts.batch.queue),
            ("connection limit", opts.conn.max_connections),
            (
                "header timeout",
                opts.conn.header_timeout.as_millis() as usize,
            ),
        ];
        if let Some((name, _)) = positive.iter().find(|(_, v)| *v == 0) {
            return Err(ServeError::Config(format!("{name} must be at least 1")));
        }
        let decay = match opts.half_life {
            None => None,
            Some(h) if h.is_finite() && h > 0.0 => Some(0.5f32.powf(1.0 / h)),
            Some(h) => {
                return Err(ServeError::Config(format!(
                    "half-life {h}: give a positive number of observations"
                )))
            }
        };
        let listener =
            std::net::TcpListener::bind(opts.bind).map_err(|cause| ServeError::Bind {
                addr: opts.bind,
                cause,
            })?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let metrics = Arc::new(metrics::Metrics::default());
        let batcher =
            batcher::Batcher::start(Arc::clone(&model), opts.batch, Arc::clone(&metrics))?;
        let digest = model.manifest().digest();
        let state = Arc::new(routes::AppState {
            model,
            store,
            batcher,
            metrics,
            limits: opts.limits,
            token: opts.token,
            decay,
            timeout: opts.request_timeout,
            digest,
        });
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(opts.http_threads.max(1))
            .thread_name("vrf-http")
            .enable_all()
            .build()?;
        let (stop, stopped) = oneshot::channel();
        let signals = opts.stop_on_signals;
        let conn_opts = opts.conn;
        let thread = std::thread::Builder::new()
            .name("vrf-serve".into())
            .spawn(move || {
                rt.block_on(async move {
                    let listener = tokio::net::TcpListener::from_std(listener)?;
                    conn::serve(
                        listener,
                        routes::router(state),
                        conn_opts,
                        shutdown(stopped, signals),
                    )
                    .await
                })
            })?;
        Ok(Self {
            addr,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting connections, lets in-flight requests finish, and returns.
    pub fn shutdown(mut self) -> Result<(), ServeError> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.join()
    }

    /// Serves until stopped (a signal, with [`ServeOptions::stop_on_signals`]).
    pub fn wait(mut self) -> Result<(), ServeError> {
        self.join()
    }

    fn join(&mut self) -> Result<(), ServeError> {
        match self.thread.take().map(JoinHandle::join) {
            None => Ok(()),
            Some(Ok(r)) => Ok(r?),
            Some(Err(_)) => Err(ServeError::Io(std::io::Error::other(
                "the server thread panicked",
            ))),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = self.join();
    }
}

/// Resolves when the handle asks to stop, or on SIGINT / SIGTERM when `signals`.
async fn shutdown(stopped: oneshot::Receiver<()>, signals: bool) {
    if !signals {
        let _ = stopped.await;
        return;
    }
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = stopped => {}
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
}
