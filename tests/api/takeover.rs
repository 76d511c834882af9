//! One account cannot take over the service (issue 12), tried as an
//! attacker would: an account registered under the operator's address
//! before the admin is created, login guesses spread over many tokens, a
//! client address forged behind Render's proxies.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{
    TestApp, spawn_app, spawn_app_sharing, spawn_app_with, unique_email, wait_until,
};

/// Runs the real `hs-platform create-admin` against the app's data directory
/// (while the app runs, as an operator would in the Render shell).
async fn create_admin(app: &TestApp, email: &str, password: &str, promote: bool) -> (i32, String) {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_hs-platform"));
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("DATA_DIR", app.data_dir())
        .env("ADMIN_PASSWORD", password)
        .env("RUST_LOG", "warn")
        .args(["create-admin", "--email", email]);
    if promote {
        cmd.arg("--promote-existing");
    }
    let out = cmd.output().await.expect("the hs-platform binary runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

async fn role_seen_with(app: &TestApp, user_id: &str, token: &str) -> (StatusCode, Value) {
    let res = app.get_user(user_id, token).await;
    let status = res.status();
    (status, res.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn create_admin_refuses_an_account_someone_registered_first_and_promotion_ends_its_sessions()
{
    let app = spawn_app().await;
    // The attacker registered the operator's address first and holds a token.
    let squatter = app.new_user().await;

    let (code, text) = create_admin(&app, &squatter.email, "operator password 1", false).await;
    assert_eq!(code, 1, "{text}");
    assert!(
        text.contains("already exists") && text.contains("--promote-existing"),
        "{text}"
    );
    let (status, user) = role_seen_with(&app, &squatter.id, &squatter.token).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(user["role"], "user", "{user}");

    // The operator checked the account and promotes it explicitly: the old
    // token dies in the running service (another process's cache) ...
    let (code, text) = create_admin(&app, &squatter.email, "operator password 1", true).await;
    assert_eq!(code, 0, "{text}");
    wait_until(
        Duration::from_secs(10),
        Duration::from_millis(100),
        async || {
            app.get_user(&squatter.id, &squatter.token).await.status() == StatusCode::UNAUTHORIZED
        },
    )
    .await
    .expect("the promoted account's old token stops working in the running service");
    // ... only the operator's password logs in, as admin ...
    assert_eq!(
        app.login(&squatter.email, &squatter.password)
            .await
            .status(),
        StatusCode::UNAUTHORIZED
    );
    let operator = app
        .login_as(&squatter.id, &squatter.email, "operator password 1")
        .await;
    let (status, user) = role_seen_with(&app, &squatter.id, &operator.token).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(user["role"], "admin");

    // ... and a restart does not bring the old token back.
    let app = app.restart().await;
    assert_eq!(
        app.get_user(&squatter.id, &squatter.token).await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        app.get_user(&squatter.id, &operator.token).await.status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn the_admin_email_bootstrap_never_promotes_an_existing_account() {
    let mut app = spawn_app().await;
    let squatter = app.new_user().await;
    app.env
        .insert("ADMIN_EMAIL".into(), squatter.email.to_uppercase());
    app.env
        .insert("ADMIN_PASSWORD".into(), "operator password 1".into());
    let app = app.restart().await;

    let (status, user) = role_seen_with(&app, &squatter.id, &squatter.token).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(user["role"], "user", "{user}");
    assert_eq!(
        app.login(&squatter.email, "operator password 1")
            .await
            .status(),
        StatusCode::UNAUTHORIZED
    );
    // The account is untouched: its owner still logs in with their password.
    let again = app
        .login_as(&squatter.id, &squatter.email, &squatter.password)
        .await;
    let (_, user) = role_seen_with(&app, &squatter.id, &again.token).await;
    assert_eq!(user["role"], "user");
    // A fresh address still becomes admin by the CLI.
    let (code, text) = create_admin(&app, &unique_email("op"), "operator password 1", false).await;
    assert_eq!(code, 0, "{text}");
}

#[tokio::test]
async fn an_admin_promoting_a_user_ends_its_sessions_in_every_process() {
    let app = spawn_app().await;
    let admin = app.new_admin().await;
    let other = spawn_app_sharing(&app, &[], |_| {}).await;
    let user = app.new_user().await;
    // The second process has the session cached.
    assert_eq!(
        other.get_user(&user.id, &user.token).await.status(),
        StatusCode::OK
    );

    let res = app
        .update_user(&user.id, &admin.token, json!({"role": "admin"}))
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(
        app.get_user(&user.id, &user.token).await.status(),
        StatusCode::UNAUTHORIZED
    );
    wait_until(
        Duration::from_secs(10),
        Duration::from_millis(100),
        async || other.get_user(&user.id, &user.token).await.status() == StatusCode::UNAUTHORIZED,
    )
    .await
    .expect("the other process forgets the promoted account's session");
    // Logging in again gives an admin session there too (it may see
    // another user's profile).
    let again = app.login_as(&user.id, &user.email, &user.password).await;
    assert_eq!(
        other.get_user(&admin.id, &again.token).await.status(),
        StatusCode::OK
    );
}

/// A POST /api/sessions through Cloudflare and Render's proxy: the client
/// may prepend its own entries; Cloudflare appends the client's address,
/// Render's proxy the edge's, and the peer is Render's private proxy.
async fn login_via_render(app: &TestApp, forwarded_for: &str) -> StatusCode {
    app.client
        .post(app.url("/api/sessions"))
        .header("x-forwarded-for", forwarded_for)
        .json(&json!({}))
        .send()
        .await
        .unwrap()
        .status()
}

#[tokio::test]
async fn behind_cloudflare_and_render_each_client_has_its_own_limit_and_spoofed_entries_change_nothing()
 {
    let app = spawn_app_with(&[("RATE_LIMIT_PER_MINUTE", "2"), ("TRUST_PROXY_HOPS", "2")]).await;
    let edge = "104.16.0.1";
    let (alice, bob) = ("198.51.100.7", "198.51.100.8");
    for spoof in ["6.6.6.1", "6.6.6.2"] {
        assert_eq!(
            login_via_render(&app, &format!("{spoof}, {alice}, {edge}")).await,
            StatusCode::UNPROCESSABLE_ENTITY
        );
    }
    // Alice is out of allowance, whatever she writes to the left ...
    for chain in [
        format!("6.6.6.3, {alice}, {edge}"),
        format!("{bob}, {alice}, {edge}"),
        format!("{alice}, {edge}"),
    ] {
        assert_eq!(
            login_via_render(&app, &chain).await,
            StatusCode::TOO_MANY_REQUESTS,
            "{chain}"
        );
    }
    // ... while Bob, behind the same edge, has his own.
    assert_eq!(
        login_via_render(&app, &format!("{bob}, {edge}")).await,
        StatusCode::UNPROCESSABLE_ENTITY
    );
}
