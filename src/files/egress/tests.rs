use std::collections::HashMap;
use std::sync::atomic::AtomicUsize;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;
use crate::files::resolver::Lookup;

fn egress(allowed: &[&str]) -> Egress {
    Egress::new(
        EgressConfig::new(allowed.iter().map(|s| s.to_string()).collect()),
        Resolver::system(),
        TaskTracker::new(),
        CancellationToken::new(),
    )
}

/// Sends `head` to the proxy and reads its answer up to the end of the
/// response head; returns the stream for more.
async fn ask(proxy: SocketAddr, head: &str) -> (String, TcpStream) {
    let mut s = TcpStream::connect(proxy).await.unwrap();
    s.write_all(head.as_bytes()).await.unwrap();
    let head = read_head(&mut s).await;
    (head, s)
}

async fn read_head(s: &mut TcpStream) -> String {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        let n = s.read(&mut byte).await.unwrap();
        assert_eq!(n, 1, "closed early: {}", String::from_utf8_lossy(&buf));
        buf.push(byte[0]);
    }
    String::from_utf8(buf).unwrap()
}

/// An echo server on loopback that counts its connections.
async fn echo() -> (SocketAddr, Arc<AtomicUsize>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let hits = Arc::new(AtomicUsize::new(0));
    let h = hits.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            h.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let (mut r, mut w) = s.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    (addr, hits)
}

#[tokio::test]
async fn connect_to_a_name_resolving_to_loopback_is_refused_without_the_address() {
    let (target, hits) = echo().await;
    let egress = egress(&[]);
    let listener = egress.listen().await.unwrap();
    for host in [
        "localhost",
        "127.0.0.1",
        "[::1]",
        "LOCALHOST.",
        "x.localhost",
    ] {
        let port = target.port();
        let (head, mut s) = ask(
            listener.addr(),
            &format!("CONNECT {host}:{port} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n"),
        )
        .await;
        assert!(head.starts_with("HTTP/1.1 403"), "{host}: {head}");
        let mut body = String::new();
        s.read_to_string(&mut body).await.unwrap();
        assert!(body.contains("not a public address"), "{body}");
        assert!(
            !body.contains("127.0.0.1") && !body.contains("::1"),
            "{body}"
        );
    }
    assert_eq!(hits.load(Ordering::SeqCst), 0);
    let refused = listener.refused();
    assert_eq!(refused.len(), 5);
    assert_eq!(refused[0], format!("localhost:{}", target.port()));
    assert_eq!(refused[2], format!("::1:{}", target.port()));
}

#[tokio::test]
async fn an_allowed_host_tunnels_bytes_both_ways() {
    let (target, hits) = echo().await;
    let egress = egress(&["localhost"]);
    let listener = egress.listen().await.unwrap();
    let port = target.port();
    let (head, mut s) = ask(
        listener.addr(),
        &format!("CONNECT localhost:{port} HTTP/1.1\r\nHost: localhost:{port}\r\n\r\n"),
    )
    .await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    s.write_all(b"ping over the tunnel").await.unwrap();
    let mut back = [0u8; 20];
    s.read_exact(&mut back).await.unwrap();
    assert_eq!(&back, b"ping over the tunnel");
    assert_eq!(hits.load(Ordering::SeqCst), 1);
    assert!(listener.refused().is_empty());
}

#[tokio::test]
async fn dropping_the_listener_cuts_its_tunnels() {
    let (target, _) = echo().await;
    let egress = egress(&["127.0.0.1"]);
    let listener = egress.listen().await.unwrap();
    let port = target.port();
    let (head, mut s) = ask(
        listener.addr(),
        &format!("CONNECT 127.0.0.1:{port} HTTP/1.1\r\n\r\n"),
    )
    .await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    drop(listener);
    let mut rest = Vec::new();
    let n = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut rest))
        .await
        .expect("the tunnel was not closed")
        .unwrap_or(0);
    assert_eq!(n, 0);
}

/// A one-shot HTTP server that records the request head it got.
async fn origin(response: &'static str) -> (SocketAddr, tokio::sync::oneshot::Receiver<String>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let (mut s, _) = l.accept().await.unwrap();
        let head = read_head(&mut s).await;
        let _ = tx.send(head);
        s.write_all(response.as_bytes()).await.unwrap();
        let _ = s.shutdown().await;
    });
    (addr, rx)
}

#[tokio::test]
async fn a_plain_http_request_is_relayed_in_origin_form() {
    let (target, seen) =
        origin("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello").await;
    let egress = egress(&["127.0.0.1"]);
    let listener = egress.listen().await.unwrap();
    let (head, mut s) = ask(
        listener.addr(),
        &format!(
            "GET http://{target}/a/b?c=d HTTP/1.1\r\nHost: {target}\r\nProxy-Connection: keep-alive\r\nX-Kept: yes\r\n\r\n"
        ),
    )
    .await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let mut body = [0u8; 5];
    s.read_exact(&mut body).await.unwrap();
    assert_eq!(&body, b"hello");
    let seen = seen.await.unwrap();
    assert!(seen.starts_with("GET /a/b?c=d HTTP/1.1\r\n"), "{seen}");
    assert!(seen.contains("X-Kept: yes"), "{seen}");
    assert!(
        !seen.to_ascii_lowercase().contains("proxy-connection"),
        "{seen}"
    );
}

#[tokio::test]
async fn a_plain_http_request_to_loopback_is_refused_without_the_address() {
    let (target, hits) = echo().await;
    let egress = egress(&[]);
    let listener = egress.listen().await.unwrap();
    let port = target.port();
    let (head, mut s) = ask(
        listener.addr(),
        &format!("GET http://localhost:{port}/ HTTP/1.1\r\nHost: localhost:{port}\r\n\r\n"),
    )
    .await;
    assert!(head.starts_with("HTTP/1.1 403"), "{head}");
    let mut body = String::new();
    s.read_to_string(&mut body).await.unwrap();
    assert_eq!(body, "egress refused: the host is not a public address\n");
    assert_eq!(hits.load(Ordering::SeqCst), 0);
    assert_eq!(listener.refused(), vec![format!("localhost:{port}")]);
}

#[tokio::test]
async fn a_websocket_upgrade_over_plain_http_is_relayed_both_ways() {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let target = l.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut s, _) = l.accept().await.unwrap();
        let head = read_head(&mut s).await;
        assert!(head.starts_with("GET /ws HTTP/1.1"), "{head}");
        s.write_all(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
            .await
            .unwrap();
        let (mut r, mut w) = s.split();
        let _ = tokio::io::copy(&mut r, &mut w).await;
    });
    let egress = egress(&["127.0.0.1"]);
    let listener = egress.listen().await.unwrap();
    let (head, mut s) = ask(
        listener.addr(),
        &format!(
            "GET ws://{target}/ws HTTP/1.1\r\nHost: {target}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"
        ),
    )
    .await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    s.write_all(b"frame").await.unwrap();
    let mut back = [0u8; 5];
    s.read_exact(&mut back).await.unwrap();
    assert_eq!(&back, b"frame");
}

#[tokio::test]
async fn other_schemes_and_origin_form_requests_are_refused() {
    let egress = egress(&["127.0.0.1"]);
    let listener = egress.listen().await.unwrap();
    let (head, _) = ask(
        listener.addr(),
        "GET ftp://127.0.0.1/x HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
    )
    .await;
    assert!(head.starts_with("HTTP/1.1 403"), "{head}");
    let (head, _) = ask(
        listener.addr(),
        "GET /x HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
    )
    .await;
    assert!(head.starts_with("HTTP/1.1 400"), "{head}");
}

/// A resolver that answers from a table after `delay`, counting calls
/// and the most calls seen running at once.
struct Fake {
    table: HashMap<&'static str, Vec<IpAddr>>,
    delay: Duration,
    calls: AtomicUsize,
    running: AtomicUsize,
    peak: AtomicUsize,
}

impl Fake {
    fn new(table: &[(&'static str, &str)], delay: Duration) -> Arc<Self> {
        let mut t: HashMap<&'static str, Vec<IpAddr>> = HashMap::new();
        for (host, ip) in table {
            t.entry(*host).or_default().push(ip.parse().unwrap());
        }
        Arc::new(Self {
            table: t,
            delay,
            calls: AtomicUsize::new(0),
            running: AtomicUsize::new(0),
            peak: AtomicUsize::new(0),
        })
    }
}

impl Lookup for Fake {
    fn lookup(&self, host: &str, _port: u16) -> io::Result<Vec<IpAddr>> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
        self.peak.fetch_max(now, Ordering::SeqCst);
        std::thread::sleep(self.delay);
        self.running.fetch_sub(1, Ordering::SeqCst);
        self.table
            .get(host)
            .cloned()
            .ok_or_else(|| io::ErrorKind::NotFound.into())
    }
}

fn egress_with(fake: Arc<Fake>, allowed: &[&str], max_lookups: usize, timeout: Duration) -> Egress {
    let config = EgressConfig::new(allowed.iter().map(|s| s.to_string()).collect());
    let resolver = Resolver::new(fake, max_lookups, timeout);
    Egress::new(
        config,
        resolver,
        TaskTracker::new(),
        CancellationToken::new(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lookups_are_bounded_and_time_out() {
    let fake = Fake::new(
        &[("slow.test", "93.184.216.34")],
        Duration::from_millis(150),
    );
    let egress = egress_with(fake.clone(), &[], 2, Duration::from_secs(5));
    let started = Instant::now();
    let all = futures::future::join_all((0..8).map(|_| egress.resolve("slow.test", 443))).await;
    assert!(all.iter().all(Result::is_ok));
    assert_eq!(fake.calls.load(Ordering::SeqCst), 8);
    assert_eq!(fake.peak.load(Ordering::SeqCst), 2);
    assert!(started.elapsed() >= Duration::from_millis(4 * 150));

    // A resolver slower than the timeout: refused in time, and the slot
    // stays taken until the stuck lookup really returns.
    let stuck = Fake::new(
        &[("stuck.test", "93.184.216.34")],
        Duration::from_millis(800),
    );
    let egress = egress_with(stuck.clone(), &[], 1, Duration::from_millis(200));
    let started = Instant::now();
    assert_eq!(
        egress.resolve("stuck.test", 80).await,
        Err(Refusal::Unresolved)
    );
    assert!(started.elapsed() < Duration::from_millis(600));
    assert_eq!(
        egress.resolve("stuck.test", 80).await,
        Err(Refusal::Unresolved)
    );
    assert_eq!(stuck.calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_name_with_any_private_answer_is_refused_and_resolved_once() {
    let fake = Fake::new(
        &[
            ("mixed.test", "93.184.216.34"),
            ("mixed.test", "10.0.0.5"),
            ("metadata.test", "169.254.169.254"),
            ("v6meta.test", "fd00:ec2::254"),
            ("cgnat.test", "100.64.1.1"),
            ("public.test", "93.184.216.34"),
        ],
        Duration::ZERO,
    );
    let egress = egress_with(fake.clone(), &[], 4, Duration::from_secs(5));
    for host in ["mixed.test", "metadata.test", "v6meta.test", "cgnat.test"] {
        assert_eq!(
            egress.resolve(host, 80).await,
            Err(Refusal::NotPublic),
            "{host}"
        );
    }
    assert_eq!(
        egress.resolve("nowhere.test", 80).await,
        Err(Refusal::Unresolved)
    );
    assert_eq!(
        egress.resolve("public.test", 8080).await,
        Ok(vec!["93.184.216.34:8080".parse().unwrap()])
    );
    assert_eq!(fake.calls.load(Ordering::SeqCst), 6);
}

#[tokio::test]
async fn the_proxy_connects_to_the_address_it_checked() {
    // The allow-listed name answers the echo server's address; the
    // proxy asks once and connects there.
    let (target, hits) = echo().await;
    let fake = Fake::new(&[("svc.test", "127.0.0.1")], Duration::ZERO);
    let egress = egress_with(fake.clone(), &["svc.test"], 4, Duration::from_secs(5));
    let listener = egress.listen().await.unwrap();
    let port = target.port();
    let (head, mut s) = ask(
        listener.addr(),
        &format!("CONNECT svc.test:{port} HTTP/1.1\r\n\r\n"),
    )
    .await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    s.write_all(b"x").await.unwrap();
    let mut back = [0u8; 1];
    s.read_exact(&mut back).await.unwrap();
    assert_eq!(fake.calls.load(Ordering::SeqCst), 1);
    assert_eq!(hits.load(Ordering::SeqCst), 1);
}
