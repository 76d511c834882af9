//! What the AI path adds over the upstream's own latency.
//!
//! Starts the stand-in Claude server and the real service pointed at it,
//! then, one request at a time, measures:
//! - the upstream alone (`POST /v1/messages` straight to the stand-in),
//! - a chat through the service as a job answered under `Prefer: wait`,
//! - the upstream alone streaming, and a streamed chat through the service
//!   (time until the final event),
//!
//! and prints p50/p99 of each and the service's overhead at p50/p99.
//!
//! Run: `cargo bench --bench ai_overhead` (release profile). `AI_BENCH_N`
//! sets the number of requests per series (default 500).

#[path = "../tests/api/fake_claude.rs"]
mod fake_claude;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use fake_claude::{FAKE_KEY, FakeClaude};
use hs_platform::app::Application;
use hs_platform::config::Config;
use serde_json::{Value, json};

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

async fn series<F, Fut>(n: usize, mut f: F) -> Vec<Duration>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = ()>,
{
    for _ in 0..n / 10 {
        f().await; // warm-up
    }
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        f().await;
        out.push(t.elapsed());
    }
    out.sort();
    out
}

fn report(name: &str, base: &[Duration], through: &[Duration]) {
    let (b50, b99) = (percentile(base, 0.5), percentile(base, 0.99));
    let (t50, t99) = (percentile(through, 0.5), percentile(through, 0.99));
    println!(
        "{name:<8} upstream alone p50 {:>7.3} ms p99 {:>7.3} ms | through the service p50 {:>7.3} ms p99 {:>7.3} ms | overhead p50 {:>6.3} ms p99 {:>6.3} ms",
        ms(b50),
        ms(b99),
        ms(t50),
        ms(t99),
        ms(t50) - ms(b50),
        ms(t99) - ms(b99),
    );
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let n: usize = std::env::var("AI_BENCH_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(500);
    hs_platform::init_crypto();
    let fake = FakeClaude::start().await;
    let dir = tempfile::tempdir()?;
    let env: HashMap<String, String> = [
        ("DATA_DIR", dir.path().display().to_string()),
        ("PORT", "0".into()),
        ("RATE_LIMIT_PER_MINUTE", "0".into()),
        ("AI_RATE_LIMIT_PER_MINUTE", "0".into()),
        ("REQUEST_LOG", "false".into()),
        ("ANTHROPIC_API_KEY", FAKE_KEY.into()),
        ("ANTHROPIC_BASE_URL", fake.url.clone()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let app = Application::build(Config::from_map(&env)?).await?;
    let base = format!("http://{}", app.addr());
    let shutdown = app.shutdown_token();
    let server = tokio::spawn(app.run());
    let client = reqwest::Client::new();

    let email = format!("bench-{}@example.com", uuid::Uuid::new_v4().simple());
    let password = "bench password 123";
    client
        .post(format!("{base}/api/users"))
        .json(&json!({"email": email, "password": password}))
        .send()
        .await?
        .error_for_status()?;
    let login: Value = client
        .post(format!("{base}/api/sessions"))
        .json(&json!({"email": email, "password": password}))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let token = login["token"].as_str().unwrap_or_default().to_string();

    let upstream = |stream: bool| {
        let client = client.clone();
        let url = format!("{}/v1/messages", fake.url);
        async move {
            let res = client
                .post(url)
                .header("x-api-key", FAKE_KEY)
                .header("anthropic-version", "2023-06-01")
                .json(
                    &json!({"model": "claude-sonnet-4-5", "max_tokens": 100, "stream": stream,
                              "messages": [{"role": "user", "content": "Hello"}]}),
                )
                .send()
                .await
                .expect("upstream answers");
            let body = res.text().await.expect("upstream body");
            let ok = if stream {
                body.contains("message_stop")
            } else {
                body.contains("fake Claude")
            };
            assert!(ok, "{body}");
        }
    };
    let service = |stream: bool| {
        let client = client.clone();
        let url = format!("{base}/api/claude-ai/chat");
        let token = token.clone();
        async move {
            let res = client
                .post(url)
                .bearer_auth(token)
                .header("prefer", "wait=10")
                .json(&json!({"message": "Hello", "maxTokens": 100, "stream": stream}))
                .send()
                .await
                .expect("service answers");
            let body = res.text().await.expect("service body");
            let ok = if stream {
                body.contains("event: done")
            } else {
                body.contains("\"succeeded\"")
            };
            assert!(ok, "{body}");
        }
    };

    println!("{n} sequential requests per series");
    let base_json = series(n, || upstream(false)).await;
    let job = series(n, || service(false)).await;
    report("job", &base_json, &job);
    let base_sse = series(n, || upstream(true)).await;
    let sse = series(n, || service(true)).await;
    report("stream", &base_sse, &sse);

    shutdown.cancel();
    let _ = server.await;
    Ok(())
}
