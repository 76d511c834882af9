//! Tests of maintenance, backups, restore and deployment settings.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hs_platform::app::Application;
use hs_platform::config::Config;
use hs_platform::maintenance::backup;
use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::ConnectOptions;
use sqlx::sqlite::SqliteConnectOptions;

use crate::helpers::{TestApp, spawn_app, spawn_app_with, unique_email, wait_until};

impl TestApp {
    pub async fn optimize(&self, token: &str, apply: bool) -> Value {
        let res = if apply {
            self.post("/api/performance/optimize", Some(token), json!({}))
                .await
        } else {
            self.get("/api/performance/optimize", Some(token)).await
        };
        assert_eq!(res.status(), StatusCode::OK);
        res.json().await.unwrap()
    }

    /// Requests a backup and waits for its job; returns the finished job.
    pub async fn backup_now(&self, token: &str) -> Value {
        let res = self
            .client
            .post(self.url("/api/maintenance/backups"))
            .bearer_auth(token)
            .header("prefer", "wait=30")
            .send()
            .await
            .unwrap();
        assert_eq!(
            res.status(),
            StatusCode::OK,
            "backup did not finish in time"
        );
        res.json().await.unwrap()
    }

    pub fn config(&self) -> Config {
        Config::from_map(&self.env).unwrap()
    }

    /// A direct connection to the service's database file.
    pub async fn sql(&self) -> sqlx::SqliteConnection {
        SqliteConnectOptions::new()
            .filename(self.db_path())
            .busy_timeout(Duration::from_secs(5))
            .connect()
            .await
            .unwrap()
    }
}

fn action<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["actions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == name)
        .unwrap_or_else(|| panic!("no action {name} in {report}"))
}

async fn count_sessions(app: &TestApp, id: &str) -> i64 {
    let mut conn = app.sql().await;
    sqlx::query_scalar("SELECT count(*) FROM sessions WHERE id = ?")
        .bind(id)
        .fetch_one(&mut conn)
        .await
        .unwrap()
}

#[tokio::test]
async fn maintenance_routes_need_an_admin() {
    let app = spawn_app().await;
    let user = app.new_user().await;
    for (method, path) in [
        (reqwest::Method::GET, "/api/performance/optimize"),
        (reqwest::Method::POST, "/api/performance/optimize"),
        (reqwest::Method::GET, "/api/maintenance/backups"),
        (reqwest::Method::POST, "/api/maintenance/backups"),
    ] {
        app.assert_admin_only(method, path, &user.token, None).await;
    }
}

#[tokio::test]
async fn optimize_dry_run_changes_nothing_and_the_real_run_removes_what_it_reported() {
    let app = spawn_app().await;
    let admin = app.new_admin().await;
    let user = app.new_user().await;
    // A session that ended long ago, and a cached answer for a bad token.
    {
        let mut conn = app.sql().await;
        sqlx::query("UPDATE sessions SET expires_at = '2000-01-01T00:00:00.000Z' WHERE id = ?")
            .bind(&user.session_id)
            .execute(&mut conn)
            .await
            .unwrap();
    }
    let res = app.get("/api/users/me", Some("not-a-token")).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);

    let preview = app.optimize(&admin.token, false).await;
    assert_eq!(preview["applied"], false);
    assert_eq!(action(&preview, "sessions.prune")["count"], 1);
    assert!(
        action(&preview, "cache.auth.purge")["count"]
            .as_u64()
            .unwrap()
            >= 1
    );
    for name in [
        "database.wal_checkpoint",
        "database.optimize",
        "database.incremental_vacuum",
        "jobs.prune",
    ] {
        action(&preview, name);
    }
    assert!(
        preview["failures"].as_array().unwrap().is_empty(),
        "{preview}"
    );
    assert_eq!(
        count_sessions(&app, &user.session_id).await,
        1,
        "a dry run deleted"
    );
    let again = app.optimize(&admin.token, false).await;
    assert_eq!(action(&again, "sessions.prune")["count"], 1);

    let done = app.optimize(&admin.token, true).await;
    assert_eq!(done["applied"], true);
    assert_eq!(action(&done, "sessions.prune")["count"], 1);
    assert!(done["failures"].as_array().unwrap().is_empty(), "{done}");
    assert_eq!(count_sessions(&app, &user.session_id).await, 0);
    let db = &done["database"];
    assert!(db["walBytesAfter"].as_u64().unwrap() <= db["walBytesBefore"].as_u64().unwrap());

    let after = app.optimize(&admin.token, false).await;
    assert_eq!(action(&after, "sessions.prune")["count"], 0);
    assert_eq!(action(&after, "cache.auth.purge")["count"], 0);
    // The admin still works: live sessions are not purged.
    assert_eq!(
        app.get_user(&admin.id, &admin.token).await.status(),
        StatusCode::OK
    );
}

/// Signs up users until told to stop, recording the emails acknowledged
/// (every sign-up must be: 201).
fn spawn_writer(
    app: &TestApp,
    acked: Arc<Mutex<Vec<String>>>,
    stop: tokio_util::sync::CancellationToken,
) -> tokio::task::JoinHandle<()> {
    let client = app.client.clone();
    let url = app.url("/api/users");
    tokio::spawn(async move {
        while !stop.is_cancelled() {
            let email = unique_email("writer");
            let res = client
                .post(&url)
                .json(&json!({"email": email, "password": "correct horse battery"}))
                .send()
                .await
                .unwrap();
            assert_eq!(res.status(), StatusCode::CREATED, "sign-up under backups");
            acked.lock().unwrap().push(email);
        }
    })
}

/// Waits until the writers have `n` acknowledged sign-ups.
async fn wait_for_acks(acked: &Mutex<Vec<String>>, n: usize) {
    wait_until(
        &format!("{n} acknowledged sign-ups"),
        async || match acked.lock().unwrap().len() {
            len if len >= n => Ok(()),
            len => Err(len),
        },
    )
    .await
}

async fn emails_in(path: &std::path::Path) -> HashSet<String> {
    let mut conn = SqliteConnectOptions::new()
        .filename(path)
        .read_only(true)
        .connect()
        .await
        .unwrap();
    let problems: Vec<String> = sqlx::query_scalar("PRAGMA integrity_check")
        .fetch_all(&mut conn)
        .await
        .unwrap();
    assert_eq!(problems, vec!["ok".to_string()]);
    sqlx::query_scalar("SELECT email FROM users")
        .fetch_all(&mut conn)
        .await
        .unwrap()
        .into_iter()
        .collect()
}

#[tokio::test]
async fn a_backup_made_under_concurrent_writes_restores_with_every_acknowledged_write() {
    let mut app = spawn_app_with(&[("BACKUP_KEEP", "1")]).await;
    let admin = app.new_admin().await;
    let acked = Arc::new(Mutex::new(Vec::new()));
    let stop = tokio_util::sync::CancellationToken::new();
    let writers: Vec<_> = (0..2)
        .map(|_| spawn_writer(&app, acked.clone(), stop.clone()))
        .collect();
    wait_for_acks(&acked, 5).await;

    // Through the admin endpoint (a job).
    let before_api: Vec<String> = acked.lock().unwrap().clone();
    let job = app.backup_now(&admin.token).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    let backup = &job["result"]["backup"];
    assert_eq!(backup["integrity"], "ok");
    let api_file = app
        .data_dir()
        .join("backups")
        .join(backup["fileName"].as_str().unwrap());
    assert!(api_file.is_file());

    // Through the `backup` subcommand's code path, still under writes.
    wait_for_acks(&acked, before_api.len() + 3).await;
    let before_cli: Vec<String> = acked.lock().unwrap().clone();
    let cli_file = app.data_dir().join("cli-backup.db");
    let written = backup::write_backup(&app.config(), &cli_file)
        .await
        .unwrap();
    assert!(written.size_bytes > 0);
    assert!(
        backup::write_backup(&app.config(), &cli_file)
            .await
            .is_err(),
        "overwrote a file"
    );

    stop.cancel();
    for w in writers {
        w.await.unwrap();
    }
    let in_api = emails_in(&api_file).await;
    for e in &before_api {
        assert!(
            in_api.contains(e),
            "{e} acknowledged before the backup but missing"
        );
    }
    let in_cli = emails_in(&cli_file).await;
    for e in &before_cli {
        assert!(
            in_cli.contains(e),
            "{e} acknowledged before the backup but missing"
        );
    }

    // Listed, and rotation keeps BACKUP_KEEP=1.
    let second = app.backup_now(&admin.token).await;
    assert_eq!(second["status"], "succeeded");
    let list: Value = app.get_json("/api/maintenance/backups", &admin.token).await;
    let items = list["items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    assert_eq!(items[0]["status"], "succeeded");
    assert_eq!(items[1]["status"], "deleted");
    assert!(!api_file.exists(), "the rotated backup is still on disk");

    // Restore refuses while the service runs...
    let err = backup::restore(&app.config(), &cli_file).await.unwrap_err();
    assert!(format!("{err:#}").contains("running"), "{err:#}");
    // ...and works once it stopped.
    app.stop().await;
    let restored = backup::restore(&app.config(), &cli_file).await.unwrap();
    assert!(restored.previous.as_ref().is_some_and(|p| p.exists()));
    let wal = app.data_dir().join("hs-platform.db-wal");
    assert!(!wal.exists() || std::fs::metadata(&wal).unwrap().len() == 0);
    let now_in_db = emails_in(&app.db_path()).await;
    assert_eq!(now_in_db, in_cli);

    // The service starts on the restored database (integrity checked) and a
    // user from the backup can log in.
    let app = app.restart().await;
    let res = app.login(&before_cli[0], "correct horse battery").await;
    assert_eq!(res.status(), StatusCode::CREATED);
}

#[tokio::test]
async fn restore_refuses_a_corrupt_or_foreign_file() {
    let mut app = spawn_app().await;
    let config = app.config();
    let dir = tempfile::tempdir().unwrap();
    let garbage = dir.path().join("garbage.db");
    std::fs::write(&garbage, vec![0x5a; 8192]).unwrap();
    let foreign = dir.path().join("foreign.db");
    {
        let mut conn = SqliteConnectOptions::new()
            .filename(&foreign)
            .create_if_missing(true)
            .connect()
            .await
            .unwrap();
        sqlx::query("CREATE TABLE t (x)")
            .execute(&mut conn)
            .await
            .unwrap();
    }
    app.stop().await;
    let err = backup::restore(&config, &garbage).await.unwrap_err();
    let last = format!("{err:#}");
    assert!(last.contains("garbage.db"), "{last}");
    let err = backup::restore(&config, &foreign).await.unwrap_err();
    assert!(
        format!("{err:#}").contains("not an hs-platform database"),
        "{err:#}"
    );
    let err = backup::restore(&config, &dir.path().join("missing.db"))
        .await
        .unwrap_err();
    assert!(format!("{err:#}").contains("missing.db"), "{err:#}");
    // Nothing was replaced: the service's own database still opens.
    let app = app.restart().await;
    assert_eq!(app.get("/health", None).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_restore_staged_for_the_next_start_is_applied_before_the_database_opens() {
    let app = spawn_app().await;
    let before = app.new_user().await;
    let file = app.data_dir().join("backups").join("staged.db");
    backup::write_backup(&app.config(), &file).await.unwrap();
    let after = app.new_user().await;

    let garbage = app.data_dir().join("garbage.db");
    std::fs::write(&garbage, vec![0u8; 4096]).unwrap();
    assert!(
        backup::stage_restore(&app.config(), &garbage)
            .await
            .is_err()
    );
    backup::stage_restore(&app.config(), &file).await.unwrap();
    let marker = backup::pending_restore_path(&app.config());
    assert!(marker.exists());

    let app = app.restart().await;
    assert!(!marker.exists(), "the marker was not removed");
    let res = app.login(&before.email, &before.password).await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let res = app.login(&after.email, &after.password).await;
    assert_eq!(
        res.status(),
        StatusCode::UNAUTHORIZED,
        "the restore was not applied"
    );
}

fn config_for(dir: &std::path::Path) -> Config {
    let map = [
        ("DATA_DIR", dir.display().to_string()),
        ("PORT", "0".to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    Config::from_map(&map).unwrap()
}

#[tokio::test]
async fn start_up_fails_clearly_when_the_data_dir_is_missing_or_read_only() {
    let base = tempfile::tempdir().unwrap();
    let missing = base.path().join("not-mounted");
    let err = Application::build(config_for(&missing))
        .await
        .err()
        .unwrap();
    let msg = format!("{err:#}");
    assert!(
        msg.starts_with("DATA_DIR:") && msg.contains("does not exist"),
        "{msg}"
    );
    assert!(!missing.exists(), "the missing data dir was created");

    // A read-only directory: chmod 555, or (when running as root, which
    // ignores modes) a directory of the read-only /proc file system.
    let ro = base.path().join("read-only");
    std::fs::create_dir(&ro).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o555)).unwrap();
    let ro = if std::fs::write(ro.join("probe"), b"x").is_ok() {
        std::path::PathBuf::from("/proc/self/fdinfo")
    } else {
        ro
    };
    let err = Application::build(config_for(&ro)).await.err().unwrap();
    let msg = format!("{err:#}");
    assert!(
        msg.starts_with("DATA_DIR:") && msg.contains("not writable"),
        "{msg}"
    );
}

#[test]
fn render_yaml_names_the_health_path_the_disk_and_only_variables_the_service_reads() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let blueprint: serde_norway::Value =
        serde_norway::from_str(&std::fs::read_to_string(root.join("render.yaml")).unwrap())
            .expect("render.yaml parses");
    let services = blueprint["services"].as_sequence().unwrap();
    assert_eq!(services.len(), 1);
    let web = &services[0];
    assert_eq!(web["type"].as_str(), Some("web"));
    assert_eq!(web["runtime"].as_str(), Some("docker"));
    assert_eq!(web["healthCheckPath"].as_str(), Some("/health"));
    assert_eq!(web["numInstances"].as_u64(), Some(1));
    assert_eq!(web["disk"]["sizeGB"].as_u64(), Some(2));
    let dockerfile = web["dockerfilePath"].as_str().unwrap();
    assert!(root.join(dockerfile).is_file());

    let config_src = std::fs::read_to_string(root.join("src/config.rs")).unwrap();
    let mut vars = std::collections::HashMap::new();
    for v in web["envVars"].as_sequence().unwrap() {
        let key = v["key"].as_str().unwrap();
        assert!(
            config_src.contains(&format!("\"{key}\"")),
            "render.yaml sets {key}, which src/config.rs does not read"
        );
        vars.insert(key.to_string(), v.clone());
    }
    assert_eq!(
        web["disk"]["mountPath"].as_str(),
        vars["DATA_DIR"]["value"].as_str(),
        "the disk is not mounted where DATA_DIR points"
    );
    assert_eq!(vars["HOST"]["value"].as_str(), Some("0.0.0.0"));
    assert_eq!(vars["TRUST_PROXY_HOPS"]["value"].as_str(), Some("2"));
    for secret in [
        "ANTHROPIC_API_KEY",
        "ADMIN_EMAIL",
        "ADMIN_PASSWORD",
        "METRICS_TOKEN",
        "ALERT_WEBHOOK_URL",
    ] {
        assert_eq!(
            vars[secret]["sync"].as_bool(),
            Some(false),
            "{secret} must be sync: false"
        );
        assert!(
            vars[secret].get("value").is_none(),
            "{secret} has a value in git"
        );
    }
    // The same whole config is valid.
    let map = vars
        .iter()
        .filter_map(|(k, v)| Some((k.clone(), v["value"].as_str()?.to_string())))
        .collect();
    Config::from_map(&map).expect("render.yaml's values are a valid configuration");
}
