//! Accounts: sign-up, profiles, updates, authorization.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{assert_problem, error_fields, spawn_app, unique_email};

#[tokio::test]
async fn sign_up_login_profile_update_logout_round_trip() {
    let app = spawn_app().await;
    let email = unique_email("Round.Trip");
    let res = app
        .sign_up(json!({"email": format!("  {}  ", email.to_uppercase()), "password": "s3cret password",
                         "name": "Ann", "preferences": {"theme": "dark"}, "metadata": {"plan": "free"}}))
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let user: Value = res.json().await.unwrap();
    assert_eq!(user["email"], email.to_lowercase());
    assert_eq!(user["role"], "user");
    assert_eq!(user["preferences"]["theme"], "dark");
    assert!(user.get("passwordHash").is_none() && user.get("password").is_none());
    let id = user["id"].as_str().unwrap();

    let login = app.login(&email, "s3cret password").await;
    assert_eq!(login.status(), StatusCode::CREATED);
    let cookie = login.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite"));
    let body: Value = login.json().await.unwrap();
    let token = body["token"].as_str().unwrap();
    assert!(token.len() >= 43, "token has at least 256 bits");
    let session_id = body["session"]["id"].as_str().unwrap();

    let res = app.get_user(id, token).await;
    assert_eq!(res.status(), StatusCode::OK);
    let profile: Value = res.json().await.unwrap();
    assert_eq!(profile["name"], "Ann");
    assert_eq!(profile["stats"]["sessions"], 1);
    assert_eq!(profile["stats"]["activeSessions"], 1);

    let res = app
        .update_user(
            id,
            token,
            json!({"name": "Ann B", "preferences": {"theme": "light"}}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let res = app.get_user(id, token).await;
    let profile: Value = res.json().await.unwrap();
    assert_eq!(profile["name"], "Ann B", "the update is visible at once");
    assert_eq!(profile["preferences"]["theme"], "light");

    // The cookie authenticates too.
    let cookie_pair = cookie.split(';').next().unwrap();
    let res = app
        .client
        .get(app.url(&format!("/api/users/{id}")))
        .header("cookie", cookie_pair)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);

    let res = app.logout(session_id, token).await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    assert_problem(
        app.get_user(id, token).await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    )
    .await;
}

#[tokio::test]
async fn duplicate_email_is_a_409() {
    let app = spawn_app().await;
    let email = unique_email("dup");
    let res = app
        .sign_up(json!({"email": email, "password": "password one"}))
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let res = app
        .sign_up(json!({"email": email.to_uppercase(), "password": "password two"}))
        .await;
    assert_problem(res, StatusCode::CONFLICT, "conflict").await;
}

#[tokio::test]
async fn invalid_fields_are_a_422_with_field_errors() {
    let app = spawn_app().await;
    let res = app
        .sign_up(json!({"email": "not-an-email", "password": "short", "metadata": [1, 2]}))
        .await;
    let body = assert_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    let fields = error_fields(&body);
    assert_eq!(fields, ["email", "password", "metadata"]);
}

#[tokio::test]
async fn mass_assignment_of_role_is_rejected() {
    let app = spawn_app().await;
    let email = unique_email("mass");
    let res = app
        .sign_up(json!({"email": email, "password": "password one", "role": "admin"}))
        .await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let res = app
        .sign_up(json!({"email": email, "password": "password one", "id": "mine"}))
        .await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    // And a user cannot make themselves admin with an update.
    let user = app.new_user().await;
    let res = app
        .update_user(&user.id, &user.token, json!({"role": "admin"}))
        .await;
    assert_problem(res, StatusCode::FORBIDDEN, "forbidden").await;
    let profile: Value = app
        .get_user(&user.id, &user.token)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(profile["role"], "user");
}

#[tokio::test]
async fn another_users_profile_is_a_404() {
    let app = spawn_app().await;
    let ann = app.new_user().await;
    let bob = app.new_user().await;
    assert_problem(
        app.get_user(&ann.id, &bob.token).await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    let res = app
        .update_user(&ann.id, &bob.token, json!({"name": "pwned"}))
        .await;
    assert_problem(res, StatusCode::NOT_FOUND, "not_found").await;
    let res = app
        .get(&format!("/api/users/{}/sessions", ann.id), Some(&bob.token))
        .await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn an_admin_sees_and_changes_any_user() {
    let app = spawn_app().await;
    let ann = app.new_user().await;
    let admin = app.new_admin().await;
    assert_eq!(
        app.get_user(&ann.id, &admin.token).await.status(),
        StatusCode::OK
    );
    let res = app
        .update_user(&ann.id, &admin.token, json!({"role": "admin"}))
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    // Becoming admin ends Ann's sessions (a token issued before never acts
    // as admin, issue 12); her next login is an admin's.
    assert_eq!(
        app.get_user(&ann.id, &ann.token).await.status(),
        StatusCode::UNAUTHORIZED
    );
    let again = app.login_as(&ann.id, &ann.email, &ann.password).await;
    let profile: Value = app
        .get_user(&ann.id, &again.token)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(profile["role"], "admin");
}

#[tokio::test]
async fn password_change_needs_the_current_one_and_revokes_sessions() {
    let app = spawn_app().await;
    let ann = app.new_user().await;
    let res = app
        .update_user(
            &ann.id,
            &ann.token,
            json!({"password": "brand new password"}),
        )
        .await;
    assert_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    let res = app
        .update_user(
            &ann.id,
            &ann.token,
            json!({"password": "brand new password", "currentPassword": "wrong one!"}),
        )
        .await;
    assert_problem(res, StatusCode::FORBIDDEN, "wrong_password").await;
    let res = app
        .update_user(
            &ann.id,
            &ann.token,
            json!({"password": "brand new password", "currentPassword": ann.password}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_problem(
        app.get_user(&ann.id, &ann.token).await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    )
    .await;
    assert_eq!(
        app.login(&ann.email, &ann.password).await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        app.login(&ann.email, "brand new password").await.status(),
        StatusCode::CREATED
    );
}

#[tokio::test]
async fn anonymous_requests_are_401() {
    let app = spawn_app().await;
    let ann = app.new_user().await;
    let res = app.get(&format!("/api/users/{}", ann.id), None).await;
    assert_problem(res, StatusCode::UNAUTHORIZED, "unauthorized").await;
    let res = app
        .get(&format!("/api/users/{}", ann.id), Some("made-up-token"))
        .await;
    assert_problem(res, StatusCode::UNAUTHORIZED, "unauthorized").await;
}

#[tokio::test]
async fn admins_list_and_search_accounts_by_email_or_name_in_pages() {
    let app = spawn_app().await;
    let admin = app.new_admin().await;
    let user = app.new_user().await;
    app.assert_admin_only(reqwest::Method::GET, "/api/users", &user.token, None)
        .await;
    let tag = unique_email("zq").replace(['@', '.'], "_");
    let mut ids = Vec::new();
    for (i, name) in ["Ada 100% Lovelace", "Grace_Hopper", "Plain"]
        .iter()
        .enumerate()
    {
        let res = app
            .sign_up(json!({"email": format!("{tag}{i}@example.com"), "password": "correct horse battery", "name": name}))
            .await;
        assert_eq!(res.status(), StatusCode::CREATED);
        let u: Value = res.json().await.unwrap();
        ids.push(u["id"].as_str().unwrap().to_string());
    }
    let page = app
        .get_json(
            &format!("/api/users?q={}", tag.to_uppercase()),
            &admin.token,
        )
        .await;
    let found: Vec<&str> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["id"].as_str().unwrap())
        .collect();
    // Newest first.
    assert_eq!(found, [&ids[2], &ids[1], &ids[0]]);
    assert!(page["items"][0].get("passwordHash").is_none());
    // `%` and `_` are literal characters, not wildcards.
    let page = app.get_json("/api/users?q=100%25", &admin.token).await;
    assert_eq!(page["items"].as_array().unwrap().len(), 1);
    assert_eq!(page["items"][0]["id"], ids[0].as_str());
    let page = app.get_json("/api/users?q=e_h", &admin.token).await;
    assert_eq!(page["items"].as_array().unwrap().len(), 1, "{page}");
    assert_eq!(page["items"][0]["id"], ids[1].as_str());
    // Pages follow the cursor without overlap.
    let first = app
        .get_json(&format!("/api/users?q={tag}&limit=2"), &admin.token)
        .await;
    assert_eq!(first["items"].as_array().unwrap().len(), 2);
    let cursor = first["nextCursor"].as_str().unwrap();
    let second = app
        .get_json(
            &format!("/api/users?q={tag}&limit=2&cursor={cursor}"),
            &admin.token,
        )
        .await;
    assert_eq!(second["items"][0]["id"], ids[0].as_str());
    assert!(second["nextCursor"].is_null());
    let admins = app.get_json("/api/users?role=admin", &admin.token).await;
    assert!(
        admins["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|u| u["role"] == "admin")
    );
    let res = app.get("/api/users?limit=0", Some(&admin.token)).await;
    assert_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    let res = app.get("/api/users?role=owner", Some(&admin.token)).await;
    assert!(res.status().is_client_error(), "{}", res.status());
}
