//! Cost of the egress proxy per request (not a test): the same small HTTP
//! GET to a loopback origin, direct and through the proxy, as Chromium would
//! send it (absolute-form GET on a kept-alive proxy connection; CONNECT
//! with a fresh tunnel), timed over many sequential runs.
//!
//! Run: `cargo run --release --example egress_bench`

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use hs_platform::files::egress::{Egress, EgressConfig};
use hs_platform::files::resolver::Resolver;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

const RUNS: usize = 2000;
const BODY: &str = "<html><body><h1>hello</h1></body></html>";

/// Reads one response or request head plus a `Content-Length` body.
async fn read_message(s: &mut TcpStream, buf: &mut Vec<u8>) -> bool {
    buf.clear();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            if buf.len() >= end + 4 + len {
                return true;
            }
        }
        match s.read(&mut chunk).await {
            Ok(0) | Err(_) => return false,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// A keep-alive origin answering every request with a small page.
async fn origin() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let _ = s.set_nodelay(true);
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let reply = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: {}\r\n\r\n{BODY}",
                    BODY.len()
                );
                while read_message(&mut s, &mut buf).await {
                    if s.write_all(reply.as_bytes()).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    addr
}

async fn get(s: &mut TcpStream, target: &str, host: &str, buf: &mut Vec<u8>) {
    let req = format!("GET {target} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: bench\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    assert!(read_message(s, buf).await, "no response");
    assert!(
        buf.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(buf)
    );
}

fn report(name: &str, runs: &mut [Duration]) -> f64 {
    runs.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let median = ms(runs[runs.len() / 2]);
    println!(
        "{name:<44} median {median:>7.3} ms  p99 {:>7.3} ms  ({} runs)",
        ms(runs[runs.len() * 99 / 100]),
        runs.len()
    );
    median
}

#[tokio::main]
async fn main() {
    let origin = origin().await;
    let egress = Egress::new(
        EgressConfig::new(vec!["127.0.0.1".into(), "localhost".into()]),
        Resolver::system(),
        TaskTracker::new(),
        CancellationToken::new(),
    );
    let proxy = egress.listen().await.unwrap();
    let mut buf = Vec::new();

    // Direct: a new connection per request (a page's first request).
    let mut direct = Vec::new();
    for _ in 0..RUNS {
        let t = Instant::now();
        let mut s = TcpStream::connect(origin).await.unwrap();
        s.set_nodelay(true).unwrap();
        get(&mut s, "/", &origin.to_string(), &mut buf).await;
        direct.push(t.elapsed());
    }
    let base = report("direct, new connection", &mut direct);

    // Plain HTTP through the proxy on one kept-alive proxy connection (as
    // Chromium keeps its proxy connections); the proxy connects upstream
    // for every request.
    for (label, host) in [
        ("proxy, absolute-form GET, IP literal", origin.to_string()),
        (
            "proxy, absolute-form GET, name lookup",
            format!("localhost:{}", origin.port()),
        ),
    ] {
        let mut s = TcpStream::connect(proxy.addr()).await.unwrap();
        s.set_nodelay(true).unwrap();
        let mut runs = Vec::new();
        for _ in 0..RUNS {
            let t = Instant::now();
            get(&mut s, &format!("http://{host}/"), &host, &mut buf).await;
            runs.push(t.elapsed());
        }
        let m = report(label, &mut runs);
        println!("{:<44} {:+.3} ms per request", "  added", m - base);
    }

    // CONNECT: a new proxy connection and tunnel per request (https, wss).
    let mut runs = Vec::new();
    for _ in 0..RUNS {
        let t = Instant::now();
        let mut s = TcpStream::connect(proxy.addr()).await.unwrap();
        s.set_nodelay(true).unwrap();
        s.write_all(format!("CONNECT {origin} HTTP/1.1\r\nHost: {origin}\r\n\r\n").as_bytes())
            .await
            .unwrap();
        assert!(read_message(&mut s, &mut buf).await);
        assert!(buf.starts_with(b"HTTP/1.1 200"));
        get(&mut s, "/", &origin.to_string(), &mut buf).await;
        runs.push(t.elapsed());
    }
    let m = report("proxy, CONNECT tunnel + GET", &mut runs);
    println!("{:<44} {:+.3} ms per request", "  added", m - base);
    println!("egress counters: {}", egress.health());
}
