//! The egress proxy: the only way out to the network for the screenshot
//! browser. Chromium is pointed at a loopback listener the service owns
//! (`--proxy-server`, loopback bypass removed), so every request of every
//! browsing context (pages, popups, workers, service workers, WebSockets)
//! arrives here as `CONNECT host:port` (https, wss) or as an absolute-form
//! plain HTTP request (http, ws upgrades).
//!
//! For each request the host is resolved exactly once by the service's
//! [`Resolver`] (bounded, with a timeout); every address must be public
//! ([`ssrf::is_forbidden`]) unless the host is in `SCREENSHOT_ALLOWED_HOSTS`;
//! and the connection goes to exactly the addresses that were checked, so a
//! name that answers differently the second time (DNS rebinding) gains
//! nothing. Refusals answer 403 with a reason that never names an address.

use std::convert::Infallible;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, combinators::BoxBody};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::resolver::Resolver;
use super::ssrf;

/// How the proxy resolves and connects.
#[derive(Debug, Clone)]
pub struct EgressConfig {
    /// Hosts exempt from the address check (`SCREENSHOT_ALLOWED_HOSTS`).
    pub allowed_hosts: Vec<String>,
    pub connect_timeout: Duration,
    /// Client connections open at once, across every listener.
    pub max_connections: usize,
}

impl EgressConfig {
    pub fn new(allowed_hosts: Vec<String>) -> Self {
        Self {
            allowed_hosts,
            connect_timeout: Duration::from_secs(10),
            max_connections: 256,
        }
    }
}

/// Why a request was not let through. The text is safe to show: it never
/// says what a name resolved to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("only http, https, ws and wss are allowed")]
    Scheme,
    #[error("the host is not a valid host name")]
    BadHost,
    #[error("the host is not a public address")]
    NotPublic,
    #[error("the host does not resolve")]
    Unresolved,
}

#[derive(Default)]
struct Stats {
    lookups: AtomicU64,
    refused: AtomicU64,
    tunnels: AtomicU64,
    forwarded: AtomicU64,
    /// Checked but the host did not answer.
    unreachable: AtomicU64,
    /// Listeners (loopback ports) open now.
    listeners: AtomicI64,
}

struct Shared {
    allowed: Vec<String>,
    connect_timeout: Duration,
    connections: Arc<Semaphore>,
    resolver: Resolver,
    stats: Stats,
    tracker: TaskTracker,
    cancel: CancellationToken,
}

/// The proxy's shared part (resolver, limits, counters); clone freely.
/// Each [`Listener`] it opens is one loopback port.
#[derive(Clone)]
pub struct Egress {
    inner: Arc<Shared>,
}

/// Lower-cased, without IPv6 brackets or a trailing dot.
fn normalize_host(host: &str) -> String {
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .trim_end_matches('.')
        .to_ascii_lowercase()
}

impl Egress {
    /// Names are looked up by `resolver`; tasks run under `tracker` and
    /// stop on `cancel`.
    pub fn new(
        config: EgressConfig,
        resolver: Resolver,
        tracker: TaskTracker,
        cancel: CancellationToken,
    ) -> Self {
        Self {
            inner: Arc::new(Shared {
                allowed: config
                    .allowed_hosts
                    .iter()
                    .map(|h| normalize_host(h))
                    .collect(),
                connect_timeout: config.connect_timeout,
                connections: Arc::new(Semaphore::new(config.max_connections.max(1))),
                resolver,
                stats: Stats::default(),
                tracker,
                cancel,
            }),
        }
    }

    /// For monitoring.
    pub fn health(&self) -> serde_json::Value {
        let s = &self.inner.stats;
        serde_json::json!({
            "lookups": s.lookups.load(Ordering::Relaxed),
            "refused": s.refused.load(Ordering::Relaxed),
            "tunnels": s.tunnels.load(Ordering::Relaxed),
            "forwarded": s.forwarded.load(Ordering::Relaxed),
            "unreachable": s.unreachable.load(Ordering::Relaxed),
            "listeners": s.listeners.load(Ordering::Relaxed),
        })
    }

    /// Resolves `host` once and returns the addresses to connect to, all of
    /// them checked (or the host is allow-listed).
    pub async fn resolve(&self, host: &str, port: u16) -> Result<Vec<SocketAddr>, Refusal> {
        let host = normalize_host(host);
        if host.is_empty() {
            return Err(Refusal::BadHost);
        }
        let allowed = self.inner.allowed.contains(&host);
        let ips = match host.parse::<IpAddr>() {
            Ok(ip) => vec![ip],
            Err(_) if !allowed && (host == "localhost" || host.ends_with(".localhost")) => {
                return Err(Refusal::NotPublic);
            }
            Err(_) => self.lookup(&host, port).await?,
        };
        if ips.is_empty() {
            return Err(Refusal::Unresolved);
        }
        if !allowed && ips.iter().any(|ip| ssrf::is_forbidden(*ip)) {
            return Err(Refusal::NotPublic);
        }
        Ok(ips
            .into_iter()
            .map(|ip| SocketAddr::new(ip, port))
            .collect())
    }

    /// One lookup by the shared resolver, counted as the proxy's.
    async fn lookup(&self, host: &str, port: u16) -> Result<Vec<IpAddr>, Refusal> {
        self.inner.stats.lookups.fetch_add(1, Ordering::Relaxed);
        self.inner
            .resolver
            .lookup(host, port)
            .await
            .map_err(|_| Refusal::Unresolved)
    }

    /// Opens a listener on `127.0.0.1:0`. It serves until it is dropped or
    /// the service stops; dropping it also cuts every connection and tunnel
    /// it carried.
    pub async fn listen(&self) -> io::Result<Listener> {
        let socket = TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, 0)).await?;
        let addr = socket.local_addr()?;
        let cancel = self.inner.cancel.child_token();
        let refused = Arc::new(std::sync::Mutex::new(Vec::new()));
        self.inner.stats.listeners.fetch_add(1, Ordering::Relaxed);
        let conn = Conn {
            egress: self.clone(),
            cancel: cancel.clone(),
            refused: refused.clone(),
        };
        self.inner.tracker.spawn(conn.accept_loop(socket));
        Ok(Listener {
            addr,
            cancel,
            refused,
        })
    }
}

/// One loopback port of the proxy.
pub struct Listener {
    addr: SocketAddr,
    cancel: CancellationToken,
    refused: Arc<std::sync::Mutex<Vec<String>>>,
}

/// At most this many refused targets are remembered per listener.
const REFUSED_KEPT: usize = 64;

impl Listener {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The value for Chromium's `--proxy-server`.
    pub fn proxy_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The targets refused so far (the first 64) as lower-case `host:port`
    /// (IPv6 without brackets), so that a job can tell whether its own URL
    /// was refused.
    pub fn refused(&self) -> Vec<String> {
        self.refused.lock().map(|r| r.clone()).unwrap_or_default()
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

type Body = BoxBody<Bytes, hyper::Error>;

fn text(status: StatusCode, msg: &str) -> Response<Body> {
    let mut res = Response::new(
        Full::new(Bytes::from(format!("{msg}\n")))
            .map_err(|never| match never {})
            .boxed(),
    );
    *res.status_mut() = status;
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    res.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    res
}

/// The serving side of one listener.
#[derive(Clone)]
struct Conn {
    egress: Egress,
    cancel: CancellationToken,
    refused: Arc<std::sync::Mutex<Vec<String>>>,
}

/// Connects to the first of `addrs` that answers, within `timeout` overall.
async fn connect_any(addrs: &[SocketAddr], timeout: Duration) -> io::Result<TcpStream> {
    let deadline = Instant::now() + timeout;
    let mut last = io::Error::new(io::ErrorKind::NotFound, "no address");
    for addr in addrs {
        match tokio::time::timeout_at(deadline, TcpStream::connect(addr)).await {
            Ok(Ok(stream)) => {
                let _ = stream.set_nodelay(true);
                return Ok(stream);
            }
            Ok(Err(e)) => last = e,
            Err(_) => return Err(io::ErrorKind::TimedOut.into()),
        }
    }
    Err(last)
}

/// Headers that belong to one hop (RFC 9110 7.6.1), plus the proxy's own.
fn strip_hop_headers(headers: &mut HeaderMap, keep_upgrade: bool) {
    let listed: Vec<String> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().to_ascii_lowercase())
        .filter(|t| !t.is_empty())
        .collect();
    for name in listed {
        if !(keep_upgrade && name == "upgrade") {
            headers.remove(name.as_str());
        }
    }
    for name in [
        "proxy-connection",
        "proxy-authorization",
        "proxy-authenticate",
        "keep-alive",
        "te",
        "trailer",
        "transfer-encoding",
    ] {
        headers.remove(name);
    }
    if keep_upgrade {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    } else {
        headers.remove(header::CONNECTION);
        headers.remove(header::UPGRADE);
    }
}

fn is_upgrade(headers: &HeaderMap) -> bool {
    headers.contains_key(header::UPGRADE)
        && headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(|v| {
                v.split(',')
                    .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
            })
}

impl Conn {
    async fn accept_loop(self, socket: TcpListener) {
        self.accept(socket).await;
        // The socket is closed now.
        let stats = &self.egress.inner.stats;
        stats.listeners.fetch_sub(1, Ordering::Relaxed);
    }

    async fn accept(&self, socket: TcpListener) {
        loop {
            let permit = tokio::select! {
                p = self.egress.inner.connections.clone().acquire_owned() => match p {
                    Ok(p) => p,
                    Err(_) => return,
                },
                () = self.cancel.cancelled() => return,
            };
            let stream = tokio::select! {
                r = socket.accept() => match r {
                    Ok((stream, _)) => stream,
                    Err(e) => {
                        tracing::warn!(error = %e, "egress proxy accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
                () = self.cancel.cancelled() => return,
            };
            let _ = stream.set_nodelay(true);
            let conn = self.clone();
            self.egress.inner.tracker.spawn(async move {
                let _permit = permit;
                conn.serve(stream).await;
            });
        }
    }

    async fn serve(self, stream: TcpStream) {
        let cancel = self.cancel.clone();
        let service = hyper::service::service_fn(move |req| {
            let conn = self.clone();
            async move { Ok::<_, Infallible>(conn.handle(req).await) }
        });
        let served = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(Duration::from_secs(30))
            .preserve_header_case(true)
            .serve_connection(TokioIo::new(stream), service)
            .with_upgrades();
        tokio::select! {
            _ = served => {}
            () = cancel.cancelled() => {}
        }
    }

    /// Answers 403 and remembers `host:port` for [`Listener::refused`].
    fn refuse(&self, host: &str, port: u16, why: Refusal) -> Response<Body> {
        let target = format!("{}:{port}", normalize_host(host));
        self.egress
            .inner
            .stats
            .refused
            .fetch_add(1, Ordering::Relaxed);
        tracing::info!(%target, reason = %why, "egress refused");
        if let Ok(mut r) = self.refused.lock()
            && r.len() < REFUSED_KEPT
        {
            r.push(target);
        }
        text(StatusCode::FORBIDDEN, &format!("egress refused: {why}"))
    }

    /// Answers 502: the checked addresses did not answer.
    fn unreachable(&self) -> Response<Body> {
        let stats = &self.egress.inner.stats;
        stats.unreachable.fetch_add(1, Ordering::Relaxed);
        text(StatusCode::BAD_GATEWAY, "egress: the host did not answer")
    }

    async fn handle(&self, req: Request<Incoming>) -> Response<Body> {
        if req.method() == Method::CONNECT {
            self.tunnel(req).await
        } else {
            self.forward(req).await
        }
    }

    /// Runs `work` under the tracker until it ends or the listener stops.
    fn spawn(&self, work: impl Future<Output = ()> + Send + 'static) {
        let cancel = self.cancel.clone();
        self.egress.inner.tracker.spawn(async move {
            tokio::select! {
                () = work => {}
                () = cancel.cancelled() => {}
            }
        });
    }

    /// `CONNECT host:port`: check, connect, answer 200, then relay bytes.
    async fn tunnel(&self, mut req: Request<Incoming>) -> Response<Body> {
        let Some(authority) = req.uri().authority().cloned() else {
            return text(StatusCode::BAD_REQUEST, "CONNECT needs host:port");
        };
        let Some(port) = authority.port_u16() else {
            return text(StatusCode::BAD_REQUEST, "CONNECT needs host:port");
        };
        let addrs = match self.egress.resolve(authority.host(), port).await {
            Ok(a) => a,
            Err(why) => return self.refuse(authority.host(), port, why),
        };
        let mut upstream = match connect_any(&addrs, self.egress.inner.connect_timeout).await {
            Ok(s) => s,
            Err(_) => return self.unreachable(),
        };
        self.egress
            .inner
            .stats
            .tunnels
            .fetch_add(1, Ordering::Relaxed);
        let upgrade = hyper::upgrade::on(&mut req);
        self.spawn(async move {
            if let Ok(client) = upgrade.await {
                let mut client = TokioIo::new(client);
                let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
            }
        });
        Response::new(
            http_body_util::Empty::new()
                .map_err(|never| match never {})
                .boxed(),
        )
    }

    /// An absolute-form request (`GET http://host/path`), a WebSocket
    /// upgrade included: check, connect, send it on in origin form.
    async fn forward(&self, mut req: Request<Incoming>) -> Response<Body> {
        let uri = req.uri().clone();
        match uri.scheme_str() {
            Some(s) if s.eq_ignore_ascii_case("http") || s.eq_ignore_ascii_case("ws") => {}
            Some(_) => {
                let host = uri.host().unwrap_or("");
                return self.refuse(host, uri.port_u16().unwrap_or(0), Refusal::Scheme);
            }
            None => {
                return text(
                    StatusCode::BAD_REQUEST,
                    "this is a proxy: send absolute-form requests or CONNECT",
                );
            }
        }
        let Some(authority) = uri.authority().cloned() else {
            return text(StatusCode::BAD_REQUEST, "the URL has no host");
        };
        let port = authority.port_u16().unwrap_or(80);
        let addrs = match self.egress.resolve(authority.host(), port).await {
            Ok(a) => a,
            Err(why) => return self.refuse(authority.host(), port, why),
        };
        let upstream = match connect_any(&addrs, self.egress.inner.connect_timeout).await {
            Ok(s) => s,
            Err(_) => return self.unreachable(),
        };

        let upgrading = is_upgrade(req.headers());
        let origin_form = uri
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/")
            .parse()
            .unwrap_or_else(|_| http::Uri::from_static("/"));
        *req.uri_mut() = origin_form;
        strip_hop_headers(req.headers_mut(), upgrading);
        if !req.headers().contains_key(header::HOST)
            && let Ok(host) = HeaderValue::from_str(authority.as_str())
        {
            req.headers_mut().insert(header::HOST, host);
        }
        let client_upgrade = upgrading.then(|| hyper::upgrade::on(&mut req));

        let (mut sender, connection) = match hyper::client::conn::http1::Builder::new()
            .preserve_header_case(true)
            .handshake(TokioIo::new(upstream))
            .await
        {
            Ok(pair) => pair,
            Err(_) => return text(StatusCode::BAD_GATEWAY, "egress: the host did not answer"),
        };
        self.spawn(async move {
            let _ = connection.with_upgrades().await;
        });
        let mut res = match sender.send_request(req).await {
            Ok(res) => res,
            Err(_) => return text(StatusCode::BAD_GATEWAY, "egress: the host did not answer"),
        };
        self.egress
            .inner
            .stats
            .forwarded
            .fetch_add(1, Ordering::Relaxed);
        if res.status() == StatusCode::SWITCHING_PROTOCOLS
            && let Some(client_upgrade) = client_upgrade
        {
            let server_upgrade = hyper::upgrade::on(&mut res);
            self.spawn(async move {
                if let (Ok(client), Ok(server)) = (client_upgrade.await, server_upgrade.await) {
                    let _ = tokio::io::copy_bidirectional(
                        &mut TokioIo::new(client),
                        &mut TokioIo::new(server),
                    )
                    .await;
                }
            });
        } else {
            strip_hop_headers(res.headers_mut(), false);
        }
        res.map(BodyExt::boxed)
    }
}

#[cfg(test)]
mod tests;
