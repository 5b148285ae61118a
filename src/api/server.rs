//! The HTTP server under the router: one hyper HTTP/1.1 connection per accepted socket, with
//! the limits `axum::serve` does not set. A client must send its headers within
//! `header_timeout` (hyper's `header_read_timeout`; without a timer hyper never enforces it,
//! and a slow-loris client holds its connection forever), a whole request must be answered
//! within `request_timeout` (a 503 `request_timeout` envelope otherwise, from the router's
//! operation layer), and at most `max_connections` are served at once: past the cap a
//! connection gets a 503 `too_many_connections` envelope and is closed. At shutdown no
//! connection is accepted any more and those open finish what they are answering.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;

use super::{ApiError, Op};

/// The server's timeouts and connection cap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpLimits {
    /// How long one request may take, from its headers to its answer (body read included).
    pub request_timeout: Duration,
    /// How long a client may take to send a request's headers (also an idle keep-alive
    /// connection's wait for its next request).
    pub header_timeout: Duration,
    /// Most connections served at once.
    pub max_connections: usize,
}

impl Default for HttpLimits {
    fn default() -> HttpLimits {
        HttpLimits {
            // Longer than a send's default wait for WhatsApp's ack (15 s) and connect's (20 s).
            request_timeout: Duration::from_secs(30),
            header_timeout: Duration::from_secs(10),
            max_connections: 1024,
        }
    }
}

/// Serves `app` on `listener` under `limits` until `shutdown` resolves, then lets the open
/// connections finish.
pub(super) async fn run(
    listener: TcpListener,
    app: axum::Router,
    limits: HttpLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let served = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    // Connections being told "too many": as many again at most, each held no longer than its
    // header timeout; beyond, a socket is closed unanswered.
    let refusing = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let (closing, closed) = watch::channel(false);
    let mut connections = JoinSet::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        while connections.try_join_next().is_some() {}
        let (stream, _) = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: the next accept may work once some
                    // connection ends (as axum::serve does, after a pause).
                    tracing::warn!(error = %e, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        match served.clone().try_acquire_owned() {
            Ok(permit) => {
                let (app, limits, closed) = (app.clone(), limits.clone(), closed.clone());
                connections.spawn(async move {
                    serve_connection(stream, app, &limits, closed).await;
                    drop(permit);
                });
            }
            Err(_) => {
                if let Ok(permit) = refusing.clone().try_acquire_owned() {
                    let limits = limits.clone();
                    tokio::spawn(async move {
                        refuse(stream, &limits).await;
                        drop(permit);
                    });
                }
            }
        }
    }
    drop(listener);
    let _ = closing.send(true);
    while connections.join_next().await.is_some() {}
    Ok(())
}

fn builder(limits: &HttpLimits) -> hyper::server::conn::http1::Builder {
    let mut b = hyper::server::conn::http1::Builder::new();
    b.timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    b
}

/// Serves one connection until it ends, or, once `closed` says so, until its request in
/// flight is answered.
async fn serve_connection(
    stream: TcpStream,
    app: axum::Router,
    limits: &HttpLimits,
    mut closed: watch::Receiver<bool>,
) {
    let conn =
        builder(limits).serve_connection(TokioIo::new(stream), TowerToHyperService::new(app));
    let mut conn = std::pin::pin!(conn);
    tokio::select! {
        r = conn.as_mut() => {
            if let Err(e) = r {
                tracing::debug!(error = %e, "connection ended");
            }
            return;
        }
        _ = closed.wait_for(|c| *c) => {}
    }
    conn.as_mut().graceful_shutdown();
    let _ = conn.await;
}

/// Answers a connection past the cap with 503 `too_many_connections` and closes it.
async fn refuse(stream: TcpStream, limits: &HttpLimits) {
    let service = hyper::service::service_fn(|_req| async {
        let e = ApiError {
            retry_after: Some(1),
            remedy: None,
            ..ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "too_many_connections",
                "the server has as many connections as it serves; retry shortly",
            )
        };
        Ok::<_, Infallible>(Op::new().fail(&e))
    });
    let mut b = builder(limits);
    b.keep_alive(false);
    let _ = b.serve_connection(TokioIo::new(stream), service).await;
}
