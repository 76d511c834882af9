//! Fired and resolved alerts.

use sqlx::SqliteConnection;

use crate::monitoring::model::Alert;
use crate::time::Timestamp;

pub async fn insert_alert(conn: &mut SqliteConnection, a: &Alert) -> sqlx::Result<()> {
    sqlx::query!(
        "INSERT INTO alerts (id, rule, status, value, last_value, threshold, message, fired_at)
         VALUES (?, ?, 'firing', ?, ?, ?, ?, ?)",
        a.id,
        a.rule,
        a.value,
        a.last_value,
        a.threshold,
        a.message,
        a.fired_at
    )
    .execute(conn)
    .await
    .map(|_| ())
}

pub async fn resolve_alert(
    conn: &mut SqliteConnection,
    id: &str,
    last_value: f64,
    at: Timestamp,
) -> sqlx::Result<()> {
    sqlx::query!(
        "UPDATE alerts SET status = 'resolved', last_value = ?, resolved_at = ? WHERE id = ?",
        last_value,
        at,
        id
    )
    .execute(conn)
    .await
    .map(|_| ())
}

pub async fn update_alert_value(
    conn: &mut SqliteConnection,
    id: &str,
    last_value: f64,
) -> sqlx::Result<()> {
    sqlx::query!(
        "UPDATE alerts SET last_value = ? WHERE id = ?",
        last_value,
        id
    )
    .execute(conn)
    .await
    .map(|_| ())
}

pub async fn firing_alerts(conn: &mut SqliteConnection) -> sqlx::Result<Vec<Alert>> {
    sqlx::query_as!(
        Alert,
        r#"SELECT id AS "id!", rule, status, value, last_value, threshold, message,
                  fired_at AS "fired_at: Timestamp", resolved_at AS "resolved_at?: Timestamp"
           FROM alerts WHERE status = 'firing' ORDER BY fired_at DESC"#
    )
    .fetch_all(conn)
    .await
}

pub async fn recent_alerts(conn: &mut SqliteConnection, limit: i64) -> sqlx::Result<Vec<Alert>> {
    sqlx::query_as!(
        Alert,
        r#"SELECT id AS "id!", rule, status, value, last_value, threshold, message,
                  fired_at AS "fired_at: Timestamp", resolved_at AS "resolved_at?: Timestamp"
           FROM alerts ORDER BY fired_at DESC, id DESC LIMIT CAST(? AS INTEGER)"#,
        limit
    )
    .fetch_all(conn)
    .await
}
