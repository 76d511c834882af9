//! The contract as a client meets it: `/openapi.json` is valid OpenAPI 3.1,
//! schemathesis finds no failure against the real server (the AI routes on
//! the stand-in Claude, so that a configured service is what is tested), and
//! a client generated from the document signs up, logs in, makes a PDF and
//! downloads it.
//!
//! The Python tools are pinned in `tests/contract/requirements.txt` and
//! installed by `scripts/test.sh` into `target/contract-tools` (another
//! virtualenv: `CONTRACT_TOOLS`).

use std::path::{Path, PathBuf};
use std::process::Output;

use reqwest::StatusCode;

use crate::fake_claude::FakeClaude;
use crate::helpers::{TestApp, spawn_app_with};

/// Examples per operation and phase; bounded so that the run stays within
/// a few minutes on a 2-core machine.
const MAX_EXAMPLES: &str = "12";
/// A fixed seed, so that a failure in CI reproduces locally
/// (`CONTRACT_SEED` picks another).
const DEFAULT_SEED: &str = "20261130";

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// An executable of the contract tools' virtualenv.
fn tool(name: &str) -> PathBuf {
    let dir = std::env::var_os("CONTRACT_TOOLS")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("target/contract-tools"));
    let path = dir.join("bin").join(name);
    assert!(
        path.exists(),
        "{} is missing: scripts/test.sh installs tests/contract/requirements.txt there",
        path.display()
    );
    path
}

/// Runs a tool to completion (without blocking the server under test) and
/// returns its output; `what` names it in a failure.
async fn run(what: &str, cmd: &mut tokio::process::Command) -> Output {
    // The tools' own helpers (ruff, used by openapi-python-client) are on
    // the virtualenv's PATH.
    let bin = tool("python").parent().unwrap().to_path_buf();
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut paths = vec![bin];
    paths.extend(std::env::split_paths(&path));
    cmd.env("NO_COLOR", "1")
        .env("PATH", std::env::join_paths(paths).unwrap())
        .output()
        .await
        .unwrap_or_else(|e| panic!("{what} could not start: {e}"))
}

fn assert_success(what: &str, out: &Output) {
    assert!(
        out.status.success(),
        "{what} failed ({}):\n--- stdout\n{}\n--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The service with the stand-in Claude, and the fake (kept alive with it).
async fn spawn_configured_app() -> (TestApp, FakeClaude) {
    let fake = FakeClaude::start().await;
    let mut settings: Vec<(&str, String)> = fake.env();
    settings.push(("SCREENSHOT_CONCURRENCY", "1".into()));
    let settings: Vec<(&str, &str)> = settings.iter().map(|(k, v)| (*k, v.as_str())).collect();
    (spawn_app_with(&settings).await, fake)
}

/// The served document, written to a file in the app's data directory.
async fn openapi_file(app: &TestApp) -> PathBuf {
    let res = app.get("/openapi.json", None).await;
    assert_eq!(res.status(), StatusCode::OK);
    let path = app.data_dir().join("openapi.json");
    std::fs::write(&path, res.bytes().await.unwrap()).unwrap();
    path
}

#[tokio::test]
async fn the_openapi_document_is_valid_openapi_3_1() {
    let app = crate::helpers::spawn_app().await;
    let doc = openapi_file(&app).await;
    let out = run(
        "openapi-spec-validator",
        tokio::process::Command::new(tool("openapi-spec-validator"))
            .args(["--schema", "3.1", "--validation-errors", "all"])
            .arg(&doc),
    )
    .await;
    assert_success("openapi-spec-validator", &out);
}

#[tokio::test]
async fn every_json_request_body_has_an_example() {
    let app = crate::helpers::spawn_app().await;
    let doc: serde_json::Value = app.get("/openapi.json", None).await.json().await.unwrap();
    let mut bodies = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let Some(json) = op.pointer("/requestBody/content/application~1json") else {
                continue;
            };
            bodies += 1;
            assert!(
                json.get("example").is_some() || json.get("examples").is_some(),
                "{method} {path}: request body without an example"
            );
        }
    }
    assert!(bodies >= 10, "only {bodies} JSON request bodies found");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_no_failure_with_every_check() {
    let (app, _fake) = spawn_configured_app().await;
    let admin = app.new_admin().await;
    let seed = std::env::var("CONTRACT_SEED").unwrap_or_else(|_| DEFAULT_SEED.into());
    // The PDF and DOCX routes run on their own: in one run with every other
    // operation, schemathesis 4.32 sometimes fails to generate their
    // document bodies ("Cannot generate test data", then sends `0`).
    for (what, selection) in [
        ("--exclude-path-regex", DOCUMENT_ROUTES),
        ("--include-path-regex", DOCUMENT_ROUTES),
    ] {
        let out = run(
            "schemathesis",
            tokio::process::Command::new(tool("schemathesis"))
                .arg("--config-file")
                .arg(repo().join("tests/contract/schemathesis.toml"))
                .arg("run")
                .arg(app.url("/openapi.json"))
                .args(["--checks", "all", "--max-examples", MAX_EXAMPLES])
                // One worker: with two threads, CPython 3.11's `ast` module (which
                // hypothesis uses to describe its strategies) can fail with
                // "AST constructor recursion depth mismatch" (a thread-safety
                // bug of CPython, not of the service).
                .args(["--seed", seed.as_str(), "--workers", "1"])
                .args(["--request-timeout", "30"])
                // Load tests and backups are heavy by design; they have
                // their own tests.
                .args(["--exclude-path", "/api/load-test/start"])
                .args(["--exclude-path-regex", "^/api/maintenance/backups"])
                .args([what, selection])
                .arg("-H")
                .arg(format!("Authorization: Bearer {}", admin.token)),
        )
        .await;
        assert_success(&format!("schemathesis {what} (seed {seed})"), &out);
        eprintln!("{}", summary(&out));
    }
}

const DOCUMENT_ROUTES: &str = "^/api/files/generate/(pdf|docx)$";

/// The summary lines schemathesis prints (test cases, failures, time).
fn summary(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains("generated") || l.contains(" in ") && l.contains("=="))
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_generated_python_client_signs_up_makes_a_pdf_and_downloads_it() {
    let (app, _fake) = spawn_configured_app().await;
    let doc = openapi_file(&app).await;
    let out_dir = app.data_dir().join("client");
    let package = out_dir.join("hs_platform_client");
    let out = run(
        "openapi-python-client",
        tokio::process::Command::new(tool("openapi-python-client"))
            .args(["generate", "--meta", "none", "--fail-on-warning"])
            .arg("--path")
            .arg(&doc)
            .arg("--output-path")
            .arg(&package),
    )
    .await;
    assert_success("openapi-python-client generate", &out);

    let out = run(
        "the client flow",
        tokio::process::Command::new(tool("python"))
            .arg(repo().join("tests/contract/client_flow.py"))
            .arg(&app.addr)
            .env("PYTHONPATH", &out_dir),
    )
    .await;
    assert_success("tests/contract/client_flow.py", &out);
}

#[tokio::test]
async fn a_body_of_the_wrong_shape_answers_422_naming_the_field_path() {
    let app = crate::helpers::spawn_app().await;
    let user = app.new_user().await;
    let res = app
        .post(
            "/api/files/generate/pdf",
            Some(&user.token),
            serde_json::json!({
                "title": "t",
                "metadata": {"keywords": ["a", 5]},
                "sections": [{"type": "paragraph", "text": "a"}],
            }),
        )
        .await;
    let body =
        crate::helpers::assert_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed")
            .await;
    assert_eq!(body["errors"][0]["field"], "metadata.keywords[1]", "{body}");

    let res = app
        .post(
            "/api/users",
            None,
            serde_json::json!({"email": "a@example.com", "password": "long enough", "role": "admin"}),
        )
        .await;
    let body =
        crate::helpers::assert_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed")
            .await;
    assert_eq!(body["errors"][0]["field"], "role", "{body}");

    // serde would read a struct from an array of its fields: refused, and
    // the session's data is left as it was.
    let res = app
        .put(
            &format!("/api/sessions/{}", user.session_id),
            Some(&user.token),
            serde_json::json!([{"k": 1}, null]),
        )
        .await;
    let body =
        crate::helpers::assert_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed")
            .await;
    assert_eq!(body["errors"][0]["field"], "body", "{body}");
}

#[tokio::test]
async fn a_body_that_is_not_json_answers_400_and_a_bad_query_422() {
    let app = crate::helpers::spawn_app().await;
    let user = app.new_user().await;
    let res = reqwest::Client::new()
        .post(app.url("/api/files/generate/pdf"))
        .bearer_auth(&user.token)
        .header("content-type", "application/json")
        .body("{\"title\": ")
        .send()
        .await
        .unwrap();
    crate::helpers::assert_problem(res, StatusCode::BAD_REQUEST, "invalid_request").await;

    let res = app.get("/api/jobs?limit=-1", Some(&user.token)).await;
    let body =
        crate::helpers::assert_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed")
            .await;
    assert_eq!(body["errors"][0]["field"], "limit", "{body}");
}
