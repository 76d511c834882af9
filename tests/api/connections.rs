//! Connections cannot exhaust the service (issue 12): idle HTTP/2 connections
//! are closed, and open connections are capped.

use std::time::Duration;

use reqwest::StatusCode;

use crate::helpers::{spawn_app_with, wait_until};

#[tokio::test]
async fn an_idle_http2_connection_is_closed_after_the_idle_timeout() {
    use http_body_util::BodyExt;
    let app = spawn_app_with(&[("HEADER_READ_TIMEOUT_SECONDS", "1")]).await;
    let stream = tokio::net::TcpStream::connect(app.addr.trim_start_matches("http://"))
        .await
        .unwrap();
    let (mut send, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .expect("h2c with prior knowledge");
    let open = tokio::spawn(conn);
    let req = hyper::Request::get(app.url("/health"))
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .unwrap();
    let res = send.send_request(req).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.version(), reqwest::Version::HTTP_2);
    res.into_body().collect().await.unwrap();
    let idle_from = std::time::Instant::now();
    let ended = tokio::time::timeout(Duration::from_secs(15), open)
        .await
        .expect("the server closes the idle HTTP/2 connection");
    assert!(ended.is_ok(), "the client's connection task ended normally");
    assert!(idle_from.elapsed() >= Duration::from_millis(900));
}

#[tokio::test]
async fn connections_beyond_max_connections_are_refused_until_one_closes() {
    use tokio::io::AsyncReadExt;
    let app = spawn_app_with(&[("MAX_CONNECTIONS", "2")]).await;
    let addr = app.addr.trim_start_matches("http://").to_string();
    // Two idle sockets hold every slot ...
    let first = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let _second = tokio::net::TcpStream::connect(&addr).await.unwrap();
    // ... so a third is answered 503 and closed at once.
    let mut third = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let mut answer = String::new();
    tokio::time::timeout(Duration::from_secs(10), third.read_to_string(&mut answer))
        .await
        .expect("refused at once, not held")
        .unwrap();
    assert!(answer.starts_with("HTTP/1.1 503 "), "{answer}");
    assert!(answer.contains("retry-after: 1"), "{answer}");
    // A slot frees when a connection closes.
    drop(first);
    wait_until("a new connection is served once one closed", async || {
        let fresh = reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .build()
            .unwrap();
        match fresh.get(app.url("/health")).send().await {
            Ok(r) if r.status() == StatusCode::OK => Ok(()),
            Ok(r) => Err(r.status().to_string()),
            Err(e) => Err(e.to_string()),
        }
    })
    .await;
}
