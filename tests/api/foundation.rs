//! The HTTP foundations: health, problem+json for every failure, request ids,
//! limits, the OpenAPI document, persistence across restarts.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{assert_problem, spawn_app, spawn_app_with};

#[tokio::test]
async fn health_answers_ok_with_the_database_state() {
    let app = spawn_app().await;
    let res = app.get("/health", None).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert!(res.headers().contains_key("x-request-id"));
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["status"], "ok");
    assert_eq!(body["database"], "ok");
}

#[tokio::test]
async fn unknown_route_is_a_404_problem() {
    let app = spawn_app().await;
    assert_problem(
        app.get("/api/nothing-here", None).await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
}

#[tokio::test]
async fn wrong_method_is_a_405_problem() {
    let app = spawn_app().await;
    let res = app.delete("/health", None).await;
    assert_problem(res, StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed").await;
}

#[tokio::test]
async fn malformed_json_is_a_400_problem() {
    let app = spawn_app().await;
    let res = app
        .client
        .post(app.url("/api/users"))
        .header("content-type", "application/json")
        .body("{\"email\": ")
        .send()
        .await
        .unwrap();
    assert_problem(res, StatusCode::BAD_REQUEST, "invalid_request").await;
}

#[tokio::test]
async fn wrong_content_type_is_a_415_problem() {
    let app = spawn_app().await;
    let res = app
        .client
        .post(app.url("/api/users"))
        .header("content-type", "text/plain")
        .body("email=a@b.c")
        .send()
        .await
        .unwrap();
    assert_problem(
        res,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
    )
    .await;
}

#[tokio::test]
async fn oversized_body_is_a_413_problem() {
    let app = spawn_app_with(&[("MAX_BODY_BYTES", "2048")]).await;
    let big = json!({"email": "a@example.com", "password": "x".repeat(10_000)});
    let res = app.post("/api/users", None, big).await;
    assert_problem(res, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large").await;
}

#[tokio::test]
async fn a_sane_request_id_is_echoed_and_an_unsafe_one_replaced() {
    let app = spawn_app().await;
    let res = app
        .client
        .get(app.url("/health"))
        .header("x-request-id", "client-id-123")
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["x-request-id"], "client-id-123");
    let res = app
        .client
        .get(app.url("/api/missing"))
        .header("x-request-id", "bad id <script>")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    // Refused and replaced by a generated id (a UUID's 32 hex digits).
    let id = res.headers()["x-request-id"].to_str().unwrap().to_string();
    let generated = uuid::Uuid::try_parse(&id)
        .ok()
        .map(|u| u.simple().to_string());
    assert_eq!(generated, Some(id.clone()));
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["requestId"], id.as_str());
}

#[tokio::test]
async fn responses_carry_security_headers() {
    let app = spawn_app().await;
    let res = app.get("/health", None).await;
    assert_eq!(res.headers()["x-content-type-options"], "nosniff");
    assert_eq!(res.headers()["x-frame-options"], "DENY");
    assert!(res.headers().contains_key("content-security-policy"));
}

#[tokio::test]
async fn error_responses_carry_security_headers_and_the_request_id_too() {
    let app = spawn_app().await;
    let res = app.get("/api/no-such-route", None).await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    assert_eq!(res.headers()["x-content-type-options"], "nosniff");
    assert_eq!(res.headers()["cache-control"], "no-store");
    let id = res.headers()["x-request-id"].to_str().unwrap().to_string();
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["requestId"], id.as_str());
}

#[tokio::test]
async fn cross_origin_requests_are_allowed_only_from_configured_origins() {
    let preflight = |app: &crate::helpers::TestApp, origin: &'static str| {
        app.client
            .request(
                reqwest::Method::OPTIONS,
                format!("{}/api/users/me", app.addr),
            )
            .header("origin", origin)
            .header("access-control-request-method", "GET")
            .header("access-control-request-headers", "authorization")
            .send()
    };
    let from_the_app = |app: &crate::helpers::TestApp| {
        app.client
            .get(format!("{}/health", app.addr))
            .header("origin", "https://app.example.com")
            .send()
    };
    // Nothing configured: same-origin only, no CORS header on any answer.
    let app = spawn_app().await;
    let res = preflight(&app, "https://app.example.com").await.unwrap();
    assert!(!res.headers().contains_key("access-control-allow-origin"));
    let res = from_the_app(&app).await.unwrap();
    assert!(!res.headers().contains_key("access-control-allow-origin"));

    let app = spawn_app_with(&[("CORS_ORIGINS", "https://app.example.com")]).await;
    let res = preflight(&app, "https://app.example.com").await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(
        res.headers()["access-control-allow-origin"],
        "https://app.example.com"
    );
    assert_eq!(res.headers()["access-control-allow-credentials"], "true");
    let methods = res.headers()["access-control-allow-methods"]
        .to_str()
        .unwrap();
    assert!(
        methods.contains("GET") && methods.contains("POST"),
        "{methods}"
    );
    let res = preflight(&app, "https://evil.example.net").await.unwrap();
    assert!(!res.headers().contains_key("access-control-allow-origin"));
    let res = from_the_app(&app).await.unwrap();
    assert_eq!(
        res.headers()["access-control-allow-origin"],
        "https://app.example.com"
    );
    let exposed = res.headers()["access-control-expose-headers"]
        .to_str()
        .unwrap();
    assert!(exposed.contains("x-request-id"), "{exposed}");
}

#[tokio::test]
async fn openapi_lists_every_route_the_router_serves() {
    let app = spawn_app().await;
    let res = app.get("/openapi.json", None).await;
    assert_eq!(res.status(), StatusCode::OK);
    let doc: Value = res.json().await.unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
    let paths = doc["paths"].as_object().unwrap();
    // Every documented operation is served and answers a documented
    // status: called anonymously, exactly 401 where a bearer is required.
    for (path, ops) in paths {
        for (method, op) in ops.as_object().unwrap() {
            let concrete = path
                .replace("{userId}", "x")
                .replace("{sessionId}", "x")
                .replace("{jobId}", "x")
                .replace("{fileId}", "x")
                .replace("{testId}", "x");
            let m = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let res = app.request(m, &concrete, None, None).await;
            let status = res.status();
            let documented = op["responses"].as_object().unwrap();
            assert!(
                documented.contains_key(status.as_str()),
                "{method} {path} answered {status}, documented: {:?}",
                documented.keys().collect::<Vec<_>>()
            );
            let secured = op["security"].as_array().is_some_and(|s| {
                s.iter()
                    .any(|r| r.as_object().is_some_and(|r| !r.is_empty()))
            }) && !op["security"]
                .as_array()
                .unwrap()
                .iter()
                .any(|r| r.as_object().is_some_and(|r| r.is_empty()));
            if secured {
                assert_eq!(status, StatusCode::UNAUTHORIZED, "{method} {path}");
            }
            if status == StatusCode::NOT_FOUND {
                let body: Value = res.json().await.unwrap();
                assert_ne!(
                    body["detail"], "no route matches this path",
                    "{method} {path} not served"
                );
            }
        }
    }
    // And the contract's routes are documented.
    for p in [
        "/health",
        "/api/users",
        "/api/users/{userId}",
        "/api/users/{userId}/sessions",
        "/api/sessions",
        "/api/sessions/{sessionId}",
    ] {
        assert!(
            paths.contains_key(p),
            "{p} missing from the OpenAPI document"
        );
    }
    let docs = app.get("/docs", None).await;
    assert_eq!(docs.status(), StatusCode::OK);
    assert!(docs.text().await.unwrap().contains("openapi"));
}

#[tokio::test]
async fn data_survives_a_restart() {
    let app = spawn_app().await;
    let user = app.new_user().await;
    let app = app.restart().await;
    // The token is still valid, and the account can log in again.
    let res = app.get_user(&user.id, &user.token).await;
    assert_eq!(res.status(), StatusCode::OK);
    let res = app.login(&user.email, &user.password).await;
    assert_eq!(res.status(), StatusCode::CREATED);
}
