//! The accept loop: hyper with HTTP/1.1 and HTTP/2 (h2c), the peer address
//! handed to handlers, and graceful shutdown that lets in-flight requests
//! finish. Open connections are bounded, so idle sockets cannot exhaust the
//! file descriptors:
//! - at most `MAX_CONNECTIONS` are open; beyond it a new connection is
//!   answered 503 and closed at once (it never waits holding a descriptor);
//! - a client must send its request headers within
//!   `HEADER_READ_TIMEOUT_SECONDS`, and a connection with no request in
//!   flight for that long is closed: HTTP/1 by hyper's header-read timeout
//!   (which also runs while a keep-alive connection waits for its next
//!   request), HTTP/2 by the idle watch below (hyper has none for it: a
//!   GOAWAY, then the close);
//! - HTTP/2 connections are pinged, so a peer that vanished does not keep one
//!   open while a long request (a stream, a `Prefer: wait`) is in flight.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use bytes::Bytes;
use hyper::body::{Frame, Incoming, SizeHint};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

/// HTTP/2 keep-alive: a ping after this long without frames ...
pub const H2_PING_INTERVAL: Duration = Duration::from_secs(20);
/// ... and the connection is closed when its answer takes longer than this.
pub const H2_PING_TIMEOUT: Duration = Duration::from_secs(20);

/// How connections are bounded.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// Request headers must arrive within this; a connection with no request
    /// in flight for this long is closed.
    pub idle_timeout: Duration,
    pub max_connections: usize,
}

/// Serves `app` on `listener` until `shutdown` is cancelled, then waits up to
/// `grace` for open connections to finish their requests.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ConnectionLimits,
    shutdown: CancellationToken,
    grace: Duration,
) {
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.idle_timeout)
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(H2_PING_INTERVAL))
        .keep_alive_timeout(H2_PING_TIMEOUT);
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let connections = TaskTracker::new();

    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(err) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(error = %err, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = shutdown.cancelled() => break,
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            refuse(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let activity = Arc::new(Activity::new());
        let service = {
            let app = app.clone();
            let activity = activity.clone();
            hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
                req.extensions_mut().insert(ConnectInfo::<SocketAddr>(peer));
                let in_flight = Activity::begin(&activity);
                let res = app.clone().oneshot(req);
                async move {
                    let res = res.await?;
                    Ok::<_, Infallible>(res.map(|body| Tracked {
                        body,
                        _in_flight: in_flight,
                    }))
                }
            })
        };
        let conn = builder
            .serve_connection_with_upgrades(TokioIo::new(stream), service)
            .into_owned();
        let shutdown = shutdown.clone();
        connections.spawn(async move {
            let _permit = permit;
            let mut conn = std::pin::pin!(conn);
            let mut closing = false;
            loop {
                tokio::select! {
                    ended = conn.as_mut() => {
                        if let Err(err) = ended {
                            tracing::debug!(error = %err, "connection ended with an error");
                        }
                        break;
                    }
                    () = shutdown.cancelled(), if !closing => {
                        closing = true;
                        conn.as_mut().graceful_shutdown();
                    }
                    () = activity.idle_for(limits.idle_timeout), if !closing => {
                        closing = true;
                        conn.as_mut().graceful_shutdown();
                    }
                }
            }
        });
    }
    drop(listener);
    tracing::info!("stopped accepting connections; finishing in-flight requests");
    connections.close();
    if tokio::time::timeout(grace, connections.wait())
        .await
        .is_err()
    {
        tracing::warn!(?grace, "connections still open after the grace period");
    }
}

/// Over `MAX_CONNECTIONS`: a 503 written if the socket takes it at once,
/// then the close. Nothing waits, so refused connections hold no descriptor.
fn refuse(stream: TcpStream) {
    metrics::counter!("hs_connections_refused_total").increment(1);
    tracing::debug!("connection refused: MAX_CONNECTIONS reached");
    let body = r#"{"type":"about:blank","title":"Service Unavailable","status":503,"code":"too_many_connections","detail":"the service has too many open connections; retry shortly"}"#;
    let answer = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/problem+json\r\n\
         retry-after: 1\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.try_write(answer.as_bytes());
}

/// Requests in flight on one connection, and since when it has had none.
struct Activity {
    opened: Instant,
    in_flight: AtomicUsize,
    /// Milliseconds after `opened` when the last request finished.
    idle_since_ms: AtomicU64,
}

impl Activity {
    fn new() -> Self {
        Self {
            opened: Instant::now(),
            in_flight: AtomicUsize::new(0),
            idle_since_ms: AtomicU64::new(0),
        }
    }

    fn begin(this: &Arc<Self>) -> InFlight {
        this.in_flight.fetch_add(1, Ordering::AcqRel);
        InFlight(this.clone())
    }

    /// Resolves once no request has been in flight for `timeout`.
    async fn idle_for(&self, timeout: Duration) {
        loop {
            if self.in_flight.load(Ordering::Acquire) > 0 {
                tokio::time::sleep(timeout).await;
                continue;
            }
            let since =
                self.opened + Duration::from_millis(self.idle_since_ms.load(Ordering::Acquire));
            let deadline = since + timeout;
            if Instant::now() >= deadline && self.in_flight.load(Ordering::Acquire) == 0 {
                return;
            }
            tokio::time::sleep_until(deadline).await;
        }
    }
}

/// One request in flight, until its response body is sent or dropped.
struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let ms = self.0.opened.elapsed().as_millis() as u64;
        self.0.idle_since_ms.store(ms, Ordering::Release);
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A response body that keeps its request counted as in flight.
struct Tracked {
    body: Body,
    _in_flight: InFlight,
}

impl hyper::body::Body for Tracked {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// The default `MAX_CONNECTIONS`: 1024, or fewer when the open-file limit
/// would not leave 128 descriptors for the database, files and the browser.
pub fn default_max_connections() -> usize {
    let soft = std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|limits| open_files_limit(&limits));
    match soft {
        Some(n) => n.saturating_sub(128).clamp(64, 1024),
        None => 1024,
    }
}

/// The soft "Max open files" of a `/proc/<pid>/limits` text.
fn open_files_limit(limits: &str) -> Option<usize> {
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    let soft = line
        .trim_start_matches("Max open files")
        .split_whitespace()
        .next()?;
    if soft == "unlimited" {
        return Some(usize::MAX);
    }
    soft.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_cap_leaves_room_below_the_open_file_limit() {
        let limits = "Limit                     Soft Limit           Hard Limit           Units\n\
                      Max cpu time              unlimited            unlimited            seconds\n\
                      Max open files            1024                 1048576              files\n";
        assert_eq!(open_files_limit(limits), Some(1024));
        assert_eq!(
            open_files_limit("Max open files  unlimited  unlimited  files"),
            Some(usize::MAX)
        );
        assert_eq!(open_files_limit("nothing here"), None);
        assert!((64..=1024).contains(&default_max_connections()));
    }
}
