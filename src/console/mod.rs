//! The admin console at `/admin`: one HTML page, its ES modules and
//! stylesheet, and the vendored uPlot, all embedded in the binary (nothing
//! to build, nothing fetched from elsewhere). The page signs in through
//! `POST /api/sessions` and draws everything from the JSON API with the
//! session cookie; it holds no data of its own, so serving it needs no
//! state.
//!
//! Every console response carries a strict CSP (scripts, styles and fetches
//! from this origin only, no inline code, no framing) and an ETag; browsers
//! revalidate (`no-cache`) so a new binary's files are picked up at once.

use std::sync::OnceLock;

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use sha2::{Digest, Sha256};

use crate::error::AppError;

/// The console's Content-Security-Policy: everything from this origin, no
/// inline scripts or styles, no plugins, no framing, forms post here only.
pub const CSP: &str = "default-src 'self'; object-src 'none'; base-uri 'none'; \
                       form-action 'self'; frame-ancestors 'none'";

struct Asset {
    /// Path under `/admin/assets/` (`index.html` is served at `/admin`).
    path: &'static str,
    bytes: &'static [u8],
    content_type: &'static str,
}

const HTML: &str = "text/html; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";
const SVG: &str = "image/svg+xml";
const TEXT: &str = "text/plain; charset=utf-8";

macro_rules! asset {
    ($path:literal, $type:expr) => {
        Asset {
            path: $path,
            bytes: include_bytes!(concat!("assets/", $path)),
            content_type: $type,
        }
    };
}

/// Every file under `assets/` (a test checks none is missing).
const ASSETS: &[Asset] = &[
    asset!("index.html", HTML),
    asset!("console.css", CSS),
    asset!("favicon.svg", SVG),
    asset!("js/api.js", JS),
    asset!("js/app.js", JS),
    asset!("js/charts.js", JS),
    asset!("js/dom.js", JS),
    asset!("js/series.js", JS),
    asset!("js/views/alerts.js", JS),
    asset!("js/views/errors.js", JS),
    asset!("js/views/jobs.js", JS),
    asset!("js/views/loadtests.js", JS),
    asset!("js/views/overview.js", JS),
    asset!("js/views/performance.js", JS),
    asset!("js/views/system.js", JS),
    asset!("js/views/users.js", JS),
    asset!("vendor/uplot/uPlot.iife.min.js", JS),
    asset!("vendor/uplot/uPlot.min.css", CSS),
    asset!("vendor/uplot/LICENSE", TEXT),
    asset!("vendor/uplot/README.md", TEXT),
];

/// The console's routes. They need no state, so they merge into any router.
pub fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/admin", get(page))
        .route("/admin/", get(page))
        .route("/admin/assets/{*path}", get(file))
}

async fn page(headers: HeaderMap) -> Response {
    serve(0, &headers)
}

async fn file(Path(path): Path<String>, headers: HeaderMap) -> Response {
    match ASSETS.iter().position(|a| a.path == path) {
        Some(i) => serve(i, &headers),
        None => AppError::Problem {
            status: StatusCode::NOT_FOUND,
            code: "not_found",
            message: "no console file has this name".into(),
        }
        .into_response(),
    }
}

/// The strong ETag of each asset (a digest of its bytes), computed once.
fn etags() -> &'static [HeaderValue] {
    static ETAGS: OnceLock<Vec<HeaderValue>> = OnceLock::new();
    ETAGS.get_or_init(|| {
        ASSETS
            .iter()
            .map(|a| {
                let digest = Sha256::digest(a.bytes);
                HeaderValue::from_str(&format!("\"{}\"", hex::encode(&digest[..12])))
                    .expect("a hex ETag is a valid header value")
            })
            .collect()
    })
}

fn serve(i: usize, req: &HeaderMap) -> Response {
    let asset = &ASSETS[i];
    let etag = &etags()[i];
    let fresh = req
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    let mut res = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        ([(header::CONTENT_TYPE, asset.content_type)], asset.bytes).into_response()
    };
    let h = res.headers_mut();
    h.insert(header::ETAG, etag.clone());
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        "cross-origin-resource-policy",
        HeaderValue::from_static("same-origin"),
    );
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files_under(dir: &std::path::Path, base: &std::path::Path, out: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                files_under(&path, base, out);
            } else {
                let rel = path.strip_prefix(base).unwrap();
                out.push(rel.to_string_lossy().replace('\\', "/"));
            }
        }
    }

    #[test]
    fn every_file_under_assets_is_embedded_once() {
        let base = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/console/assets");
        let mut on_disk = Vec::new();
        files_under(&base, &base, &mut on_disk);
        on_disk.sort();
        let mut embedded: Vec<String> = ASSETS.iter().map(|a| a.path.to_string()).collect();
        embedded.sort();
        assert_eq!(embedded, on_disk);
        assert_eq!(ASSETS[0].path, "index.html");
    }

    #[test]
    fn the_page_loads_no_inline_script_or_style_and_nothing_from_elsewhere() {
        let html = std::str::from_utf8(ASSETS[0].bytes).unwrap();
        assert!(!html.contains("style="), "inline style attribute");
        assert!(!html.contains("<style"), "inline style element");
        for (i, part) in html.split("<script").enumerate().skip(1) {
            let tag = &part[..part.find('>').unwrap()];
            assert!(
                tag.contains("src=\"/admin/assets/"),
                "script {i} is inline or external"
            );
        }
        for a in ASSETS {
            let text = String::from_utf8_lossy(a.bytes);
            if a.path.starts_with("vendor/") || ![HTML, JS, CSS].contains(&a.content_type) {
                continue;
            }
            assert!(
                !text.contains("http://") && !text.contains("https://"),
                "{} names another origin",
                a.path
            );
            assert!(
                !text.contains("innerHTML"),
                "{} writes markup from strings",
                a.path
            );
        }
    }

    #[test]
    fn if_none_match_with_the_etag_answers_304() {
        let mut headers = HeaderMap::new();
        headers.insert(header::IF_NONE_MATCH, etags()[1].clone());
        assert_eq!(serve(1, &headers).status(), StatusCode::NOT_MODIFIED);
        assert_eq!(serve(1, &HeaderMap::new()).status(), StatusCode::OK);
    }
}
