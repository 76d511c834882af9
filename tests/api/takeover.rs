//! One account cannot take over the service (issue 12), tried as an
//! attacker would: an account registered under the operator's address
//! before the admin is created, login guesses spread over many tokens, a
//! client address forged behind Render's proxies.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{
    TestApp, assert_problem, spawn_app, spawn_app_sharing, spawn_app_with, unique_email, wait_until,
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
        "the promoted account's old token stops working in the running service",
        async || match app.get_user(&squatter.id, &squatter.token).await.status() {
            StatusCode::UNAUTHORIZED => Ok(()),
            other => Err(other),
        },
    )
    .await;
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
        "the other process forgets the promoted account's session",
        async || match other.get_user(&user.id, &user.token).await.status() {
            StatusCode::UNAUTHORIZED => Ok(()),
            status => Err(status),
        },
    )
    .await;
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

/// An account signed up and logged in from `ip` (behind one trusted proxy).
async fn account_from(app: &TestApp, ip: &str) -> (String, String, String) {
    let email = unique_email("acct");
    let password = "correct horse battery";
    let res = app
        .client
        .post(app.url("/api/users"))
        .header("x-forwarded-for", ip)
        .json(&json!({"email": email, "password": password}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::CREATED);
    let token = guess(app, ip, None, &email, password).await;
    assert_eq!(token.status(), StatusCode::CREATED);
    let body: Value = token.json().await.unwrap();
    (
        email,
        password.to_string(),
        body["token"].as_str().unwrap().to_string(),
    )
}

/// A login attempt from `ip`, carrying someone's valid token.
async fn guess(
    app: &TestApp,
    ip: &str,
    token: Option<&str>,
    email: &str,
    password: &str,
) -> reqwest::Response {
    let mut req = app
        .client
        .post(app.url("/api/sessions"))
        .header("x-forwarded-for", ip)
        .json(&json!({"email": email, "password": password}));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    req.send().await.unwrap()
}

#[tokio::test]
async fn login_guesses_carrying_different_valid_tokens_share_one_limit_per_address() {
    let app = spawn_app_with(&[("RATE_LIMIT_PER_MINUTE", "3"), ("TRUST_PROXY_HOPS", "1")]).await;
    let mut tokens = Vec::new();
    for i in 1..=3 {
        tokens.push(account_from(&app, &format!("198.51.100.{i}")).await.2);
    }
    // Password spraying (a different account each time, so no account's
    // backoff is involved), each guess under another throwaway token.
    let attacker = "203.0.113.66";
    for (i, token) in tokens.iter().enumerate() {
        let res = guess(&app, attacker, Some(token), &unique_email("v"), "guess").await;
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "guess {i}");
    }
    let res = guess(
        &app,
        attacker,
        Some(&tokens[0]),
        &unique_email("v"),
        "guess",
    )
    .await;
    assert!(res.headers().contains_key("retry-after"));
    assert_problem(res, StatusCode::TOO_MANY_REQUESTS, "rate_limited").await;
    // Sign-ups from that address are limited the same way.
    let res = app
        .client
        .post(app.url("/api/users"))
        .header("x-forwarded-for", attacker)
        .bearer_auth(&tokens[1])
        .json(&json!({"email": unique_email("new"), "password": "correct horse battery"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test]
async fn guessing_at_one_account_backs_off_but_its_owner_still_logs_in_from_a_known_address() {
    let app = spawn_app_with(&[("TRUST_PROXY_HOPS", "1")]).await;
    let owner_ip = "198.51.100.20";
    let (email, password, _) = account_from(&app, owner_ip).await;
    let mut tokens = Vec::new();
    for i in 1..=3 {
        tokens.push(
            account_from(&app, &format!("198.51.100.{}", 30 + i))
                .await
                .2,
        );
    }
    let attacker = "203.0.113.66";
    for i in 0..5 {
        let res = guess(
            &app,
            attacker,
            Some(&tokens[i % 3]),
            &email,
            &format!("wrong {i}"),
        )
        .await;
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "guess {i}");
    }
    // Backed off: not even the right password is checked, from any new
    // address or token.
    for (ip, token) in [(attacker, &tokens[0]), ("203.0.113.99", &tokens[1])] {
        let res = guess(&app, ip, Some(token), &email, &password).await;
        let wait: u64 = res.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((1..=2).contains(&wait), "retry-after {wait}");
        assert_problem(res, StatusCode::TOO_MANY_REQUESTS, "rate_limited").await;
    }
    // The owner, from the address it logged in from before, is not held.
    let res = guess(&app, owner_ip, None, &email, &password).await;
    assert_eq!(res.status(), StatusCode::CREATED);
}
