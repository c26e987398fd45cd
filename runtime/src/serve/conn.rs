//! The accept loop: HTTP/1.1 connections with a header-read timeout (a client that never
//! finishes its request head cannot hold a socket), a cap on open connections (beyond it new
//! ones wait in the kernel's backlog), and a graceful drain bounded in time.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

/// Connection-level bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnOptions {
    /// Most open connections at once.
    pub max_connections: usize,
    /// Longest a client may take to send a request's head (line and headers).
    pub header_timeout: Duration,
    /// Longest the drain at shutdown waits for in-flight requests before closing anyway.
    pub drain_timeout: Duration,
}

impl Default for ConnOptions {
    fn default() -> Self {
        Self {
            max_connections: 1024,
            header_timeout: Duration::from_secs(10),
            drain_timeout: Duration::from_secs(60),
        }
    }
}

/// Serves `app` on `listener` until `stop` resolves, then stops accepting and drains.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    opts: ConnOptions,
    stop: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(opts.header_timeout);
    let graceful = GracefulShutdown::new();
    let slots = Arc::new(Semaphore::new(opts.max_connections.max(1)));
    tokio::pin!(stop);
    loop {
        let permit = tokio::select! {
            () = &mut stop => break,
            p = Arc::clone(&slots).acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let stream = tokio::select! {
            () = &mut stop => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                // Out of file descriptors and the like: back off instead of spinning.
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let conn =
            http.serve_connection(TokioIo::new(stream), TowerToHyperService::new(app.clone()));
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            // A client going away mid-request is its business, not the server's.
            let _ = conn.await;
            drop(permit);
        });
    }
    drop(listener);
    // Idle keep-alive connections close at once; busy ones finish their request first.
    let _ = tokio::time::timeout(opts.drain_timeout, graceful.shutdown()).await;
    Ok(())
}
