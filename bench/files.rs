//! Render benchmark of the files domain (not a test): a 50-page PDF, a
//! 50-page DOCX, a 100,000-row CSV and a warm-browser screenshot, each timed
//! over several runs, with the process's peak RSS.
//!
//! Run: `cargo run --release --example files_bench`
//! (needs chromium on PATH or CHROMIUM_PATH for the screenshot part).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use hs_platform::config::Config;
use hs_platform::files::model::{CsvRequest, Document, ScreenshotRequest};
use hs_platform::files::{csv, docx, pdf, screenshot::BrowserPool};
use serde_json::json;

fn rss_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

fn report(name: &str, runs: &mut [Duration], extra: &str) {
    runs.sort();
    let median = runs[runs.len() / 2];
    let max = runs[runs.len() - 1];
    println!(
        "{name:<28} median {:>8.1} ms  max {:>8.1} ms  ({} runs) {extra}  peak RSS {} MiB",
        median.as_secs_f64() * 1000.0,
        max.as_secs_f64() * 1000.0,
        runs.len(),
        rss_kib("VmHWM:") / 1024
    );
}

/// About 50 A4 pages: headings, paragraphs, lists and a table per chapter.
fn fifty_page_document() -> Document {
    let para = "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor incididunt ut labore et dolore magna aliqua. Ελληνικά και άλλα: naïve café, Übergrößenträger. ".repeat(3);
    let mut sections = Vec::new();
    for chapter in 1..=44 {
        sections.push(json!({"type": "heading", "text": format!("Chapter {chapter}"), "level": 1}));
        for _ in 0..4 {
            sections.push(json!({"type": "paragraph", "text": para}));
        }
        sections.push(json!({"type": "list", "items": ["first point", "second point", "third point"], "ordered": chapter % 2 == 0}));
        let mut rows = vec![json!(["Item", "Quantity", "Price", "Note"])];
        for r in 0..12 {
            rows.push(json!([
                format!("Item {r}"),
                r * 3,
                format!("{}.{:02}", r * 7, r),
                "ok"
            ]));
        }
        sections.push(json!({"type": "table", "rows": rows, "header": true}));
    }
    serde_json::from_value(json!({
        "title": "Benchmark document",
        "metadata": {"author": "bench", "subject": "speed", "keywords": ["bench"]},
        "sections": sections
    }))
    .expect("valid document")
}

fn csv_request(rows: usize) -> CsvRequest {
    let rows: Vec<_> = (0..rows)
        .map(|i| json!({"id": i, "name": format!("name {i}"), "email": format!("user{i}@example.com"), "amount": i as f64 * 1.5, "note": if i % 10 == 0 { "=HYPERLINK(\"x\")" } else { "plain" }}))
        .collect();
    serde_json::from_value(json!({
        "columns": [{"key": "id"}, {"key": "name"}, {"key": "email"}, {"key": "amount"}, {"key": "note"}],
        "rows": rows
    }))
    .expect("valid csv request")
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    println!("start: RSS {} MiB", rss_kib("VmRSS:") / 1024);
    let doc = fifty_page_document();
    let fonts = pdf::Fonts::load(None)?;

    let mut runs = Vec::new();
    let mut size = 0;
    for _ in 0..7 {
        let t = Instant::now();
        let bytes = pdf::render(&doc, &fonts)?;
        runs.push(t.elapsed());
        size = bytes.len();
        std::fs::write(std::env::temp_dir().join("files-bench.pdf"), &bytes)?;
    }
    report(
        "PDF (~50 pages)",
        &mut runs,
        &format!("{size} bytes (pdfinfo $TMPDIR/files-bench.pdf)"),
    );

    let mut runs = Vec::new();
    for _ in 0..7 {
        let t = Instant::now();
        let bytes = docx::render(&doc)?;
        runs.push(t.elapsed());
        size = bytes.len();
    }
    report("DOCX (same document)", &mut runs, &format!("{size} bytes"));

    let req = csv_request(100_000);
    println!(
        "CSV request of 100,000 rows built in memory: RSS {} MiB",
        rss_kib("VmRSS:") / 1024
    );
    let mut runs = Vec::new();
    for _ in 0..7 {
        let t = Instant::now();
        let bytes = csv::render(&req)?;
        runs.push(t.elapsed());
        size = bytes.len();
    }
    drop(req);
    report("CSV (100,000 rows)", &mut runs, &format!("{size} bytes"));

    // Screenshot of a page served on loopback by this process.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        let app = axum::Router::new().route(
            "/",
            axum::routing::get(|| async {
                axum::response::Html(
                    "<html><body style='margin:0;background:#3366cc'><h1>bench</h1></body></html>",
                )
            }),
        );
        let _ = axum::serve(listener, app).await;
    });
    let env: HashMap<String, String> = [
        (
            "SCREENSHOT_ALLOWED_HOSTS".to_string(),
            "127.0.0.1".to_string(),
        ),
        (
            "DATA_DIR".to_string(),
            std::env::temp_dir().display().to_string(),
        ),
    ]
    .into_iter()
    .chain(
        std::env::var("CHROMIUM_PATH")
            .ok()
            .map(|p| ("CHROMIUM_PATH".to_string(), p)),
    )
    .collect();
    let config = Config::from_map(&env)?;
    let pool = BrowserPool::new(&config, hs_platform::files::resolver::Resolver::system());
    let shot: ScreenshotRequest = serde_json::from_value(json!({
        "url": format!("http://{addr}/"),
        "viewport": {"width": 1280, "height": 800}
    }))?;
    let t = Instant::now();
    match pool.capture(&shot).await {
        Ok(_) => println!(
            "screenshot (cold, incl. launch) {:>8.1} ms",
            t.elapsed().as_secs_f64() * 1000.0
        ),
        Err(e) => {
            println!("screenshot skipped: {e}");
            return Ok(());
        }
    }
    let mut runs = Vec::new();
    for _ in 0..7 {
        let t = Instant::now();
        let bytes = pool.capture(&shot).await?;
        runs.push(t.elapsed());
        size = bytes.len();
    }
    report(
        "screenshot (warm, 1280x800)",
        &mut runs,
        &format!("{size} bytes"),
    );
    pool.shutdown().await;
    Ok(())
}
