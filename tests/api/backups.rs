//! Tests of backup downloads: streamed, admins only, with their checksum,
//! by id only; and the backup job's payload and progress.

use base64::Engine;
use reqwest::StatusCode;
use serde_json::Value;
use sha2::Digest;

use crate::helpers::{TestApp, assert_problem, spawn_app};

impl TestApp {
    pub async fn download_backup(&self, id: &str, token: &str) -> reqwest::Response {
        self.get(&format!("/api/maintenance/backups/{id}"), Some(token))
            .await
    }
}

fn header(res: &reqwest::Response, name: &str) -> String {
    res.headers()
        .get(name)
        .unwrap_or_else(|| panic!("no {name} header"))
        .to_str()
        .unwrap()
        .to_string()
}

#[tokio::test]
async fn an_admin_downloads_a_backup_with_its_checksum() {
    let app = spawn_app().await;
    let admin = app.new_admin().await;
    let job = app.backup_now(&admin.token).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    assert_eq!(job["progress"]["percent"], 100);
    let backup = &job["result"]["backup"];
    let id = backup["id"].as_str().unwrap();
    let listed = app.get_json("/api/maintenance/backups", &admin.token).await;
    let sha = listed["items"][0]["sha256"].as_str().unwrap().to_string();
    assert_eq!(listed["items"][0]["id"], id);
    assert_eq!(sha.len(), 64);

    let res = app.download_backup(id, &admin.token).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(header(&res, "content-type"), "application/octet-stream");
    let file_name = backup["fileName"].as_str().unwrap();
    assert!(
        header(&res, "content-disposition")
            .starts_with(&format!("attachment; filename=\"{file_name}\"")),
        "{}",
        header(&res, "content-disposition")
    );
    assert_eq!(header(&res, "x-checksum-sha256"), sha);
    let repr = header(&res, "repr-digest");
    let length: u64 = header(&res, "content-length").parse().unwrap();
    let body = res.bytes().await.unwrap();
    assert_eq!(body.len() as u64, length);
    assert_eq!(length, backup["sizeBytes"].as_u64().unwrap());
    assert!(body.starts_with(b"SQLite format 3\0"));
    let digest = sha2::Sha256::digest(&body);
    assert_eq!(hex::encode(digest), sha);
    assert_eq!(
        repr,
        format!(
            "sha-256=:{}:",
            base64::engine::general_purpose::STANDARD.encode(digest)
        )
    );
}

#[tokio::test]
async fn backup_download_is_admin_only_and_takes_ids_not_paths() {
    let app = spawn_app().await;
    let admin = app.new_admin().await;
    let user = app.new_user().await;
    let job = app.backup_now(&admin.token).await;
    let id = job["result"]["backup"]["id"].as_str().unwrap();
    app.assert_admin_only(
        reqwest::Method::GET,
        &format!("/api/maintenance/backups/{id}"),
        &user.token,
        None,
    )
    .await;
    for unknown in [
        "0190c0de-0000-7000-8000-000000000000",
        "..%2Fhs-platform.db",
        "%2E%2E%2F%2E%2E%2Fetc%2Fpasswd",
        job["result"]["backup"]["fileName"].as_str().unwrap(),
    ] {
        let res = app.download_backup(unknown, &admin.token).await;
        assert_problem(res, StatusCode::NOT_FOUND, "not_found").await;
    }
}

#[tokio::test]
async fn a_backup_without_a_stored_checksum_gets_one_on_download_and_a_rotated_one_is_unavailable()
{
    let app = spawn_app().await;
    let admin = app.new_admin().await;
    let job = app.backup_now(&admin.token).await;
    let id = job["result"]["backup"]["id"].as_str().unwrap().to_string();
    let mut conn = app.sql().await;
    sqlx::query("UPDATE backups SET sha256 = NULL WHERE id = ?")
        .bind(&id)
        .execute(&mut conn)
        .await
        .unwrap();
    let res = app.download_backup(&id, &admin.token).await;
    assert_eq!(res.status(), StatusCode::OK);
    let sent = header(&res, "x-checksum-sha256");
    let body = res.bytes().await.unwrap();
    assert_eq!(hex::encode(sha2::Sha256::digest(&body)), sent);
    let stored: Option<String> = sqlx::query_scalar("SELECT sha256 FROM backups WHERE id = ?")
        .bind(&id)
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(stored.as_deref(), Some(sent.as_str()));

    sqlx::query("UPDATE backups SET status = 'deleted' WHERE id = ?")
        .bind(&id)
        .execute(&mut conn)
        .await
        .unwrap();
    let res = app.download_backup(&id, &admin.token).await;
    assert_problem(res, StatusCode::CONFLICT, "backup_unavailable").await;
}

#[tokio::test]
async fn a_job_shows_its_payload_to_its_owner_only_and_lists_leave_it_out() {
    let app = spawn_app().await;
    let admin = app.new_admin().await;
    let user = app.new_user().await;
    let job = app.backup_now(&admin.token).await;
    let id = job["id"].as_str().unwrap();
    let res = app.get_job(id, &admin.token).await;
    assert_eq!(res.status(), StatusCode::OK);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["payload"], serde_json::json!({"trigger": "admin"}));
    let res = app.get_job(id, &user.token).await;
    assert_problem(res, StatusCode::NOT_FOUND, "not_found").await;
    let list = app.get_json("/api/jobs", &admin.token).await;
    let listed = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["id"] == id)
        .unwrap();
    assert!(listed.get("payload").is_none(), "{listed}");
}
