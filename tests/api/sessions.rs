//! Sessions: login failures, expiry, token storage, ownership.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{assert_problem, spawn_app, spawn_app_with, wait_until};

#[tokio::test]
async fn wrong_password_and_unknown_email_are_the_same_401() {
    let app = spawn_app().await;
    let ann = app.new_user().await;
    let a = assert_problem(
        app.login(&ann.email, "wrong password").await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    )
    .await;
    let b = assert_problem(
        app.login("nobody@example.com", "wrong password").await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    )
    .await;
    assert_eq!(a["detail"], b["detail"]);
}

#[tokio::test]
async fn an_expired_session_is_401() {
    let app = spawn_app_with(&[("SESSION_TTL_SECONDS", "1")]).await;
    let ann = app.new_user().await;
    assert_eq!(
        app.get_user(&ann.id, &ann.token).await.status(),
        StatusCode::OK
    );
    // The session expires a second after the login (polling does not extend it).
    let res = wait_until("the session to expire", async || {
        let res = app.get_user(&ann.id, &ann.token).await;
        match res.status() {
            StatusCode::OK => Err(res.status()),
            _ => Ok(res),
        }
    })
    .await;
    assert_problem(res, StatusCode::UNAUTHORIZED, "unauthorized").await;
}

#[tokio::test]
async fn the_token_is_not_stored_in_clear() {
    let mut app = spawn_app().await;
    let ann = app.new_user().await;
    app.stop().await;
    let mut bytes = std::fs::read(app.db_path()).unwrap();
    if let Ok(wal) = std::fs::read(app.db_path().with_extension("db-wal")) {
        bytes.extend(wal);
    }
    let needle = ann.token.as_bytes();
    assert!(
        !bytes.windows(needle.len()).any(|w| w == needle),
        "token found in the database file"
    );
    let password = ann.password.as_bytes();
    assert!(
        !bytes.windows(password.len()).any(|w| w == password),
        "password found in the database file"
    );
}

#[tokio::test]
async fn session_read_update_and_ownership() {
    let app = spawn_app().await;
    let ann = app.new_user().await;
    let bob = app.new_user().await;
    let path = format!("/api/sessions/{}", ann.session_id);

    let res = app.get(&path, Some(&ann.token)).await;
    assert_eq!(res.status(), StatusCode::OK);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["user"]["id"], ann.id.as_str());
    assert_eq!(body["session"]["active"], true);

    let res = app
        .put(&path, Some(&ann.token), json!({"data": {"cart": [1, 2]}}))
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["data"]["cart"], json!([1, 2]));

    assert_eq!(
        app.get(&path, Some(&bob.token)).await.status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.put(&path, Some(&bob.token), json!({"data": {}}))
            .await
            .status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.delete(&path, Some(&bob.token)).await.status(),
        StatusCode::NOT_FOUND
    );
    // Bob's attempts changed nothing.
    assert_eq!(
        app.get_user(&ann.id, &ann.token).await.status(),
        StatusCode::OK
    );

    let list: Value = app
        .get_json(&format!("/api/users/{}/sessions", ann.id), &ann.token)
        .await;
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
    assert!(list["nextCursor"].is_null());
}

#[tokio::test]
async fn session_lists_paginate_with_cursors() {
    let app = spawn_app().await;
    let ann = app.new_user().await;
    for _ in 0..4 {
        let res = app.login(&ann.email, &ann.password).await;
        assert_eq!(res.status(), StatusCode::CREATED);
    }
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut path = format!("/api/users/{}/sessions?limit=2", ann.id);
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={c}"));
        }
        let page: Value = app.get_json(&path, &ann.token).await;
        for s in page["items"].as_array().unwrap() {
            seen.push(s["id"].as_str().unwrap().to_string());
        }
        match page["nextCursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    assert_eq!(seen.len(), 5);
    let mut dedup = seen.clone();
    dedup.dedup();
    assert_eq!(dedup.len(), 5);
    let res = app
        .get(
            &format!("/api/users/{}/sessions?limit=500", ann.id),
            Some(&ann.token),
        )
        .await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
}

#[tokio::test]
async fn an_admin_can_log_a_user_out() {
    let app = spawn_app().await;
    let ann = app.new_user().await;
    let admin = app.new_admin().await;
    let res = app.logout(&ann.session_id, &admin.token).await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        app.get_user(&ann.id, &ann.token).await.status(),
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn the_current_session_is_found_from_the_cookie_or_the_token() {
    let app = spawn_app().await;
    let user = app.new_user().await;
    let res = app.get("/api/sessions/current", None).await;
    assert_problem(res, StatusCode::UNAUTHORIZED, "unauthorized").await;
    let me = app.get_json("/api/sessions/current", &user.token).await;
    assert_eq!(me["session"]["id"], user.session_id.as_str());
    assert_eq!(me["user"]["id"], user.id.as_str());
    assert_eq!(me["user"]["email"], user.email.as_str());
    let res = app
        .client
        .get(app.url("/api/sessions/current"))
        .header("cookie", format!("hs_session={}", user.token))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let me: Value = res.json().await.unwrap();
    assert_eq!(me["session"]["id"], user.session_id.as_str());
    app.logout(&user.session_id, &user.token).await;
    let res = app.get("/api/sessions/current", Some(&user.token)).await;
    assert_problem(res, StatusCode::UNAUTHORIZED, "unauthorized").await;
}
