//! Error groups and their occurrences.

use sqlx::SqliteConnection;

use crate::monitoring::model::{ErrorEvent, ErrorGroup, ErrorRecord};
use crate::time::Timestamp;

/// Records one occurrence of an error in its group.
pub async fn add_error(conn: &mut SqliteConnection, e: &ErrorRecord) -> sqlx::Result<()> {
    sqlx::query!(
        r#"INSERT INTO error_groups (fingerprint, kind, location, message, count, first_seen,
                                     last_seen, last_request_id, last_context)
           VALUES (?1, ?2, ?3, ?4, 1, ?5, ?5, ?6, ?7)
           ON CONFLICT (fingerprint) DO UPDATE SET
               message = excluded.message, count = count + 1, last_seen = excluded.last_seen,
               last_request_id = excluded.last_request_id, last_context = excluded.last_context"#,
        e.fingerprint,
        e.kind,
        e.location,
        e.message,
        e.at,
        e.request_id,
        e.context
    )
    .execute(&mut *conn)
    .await?;
    sqlx::query!(
        "INSERT INTO error_events (fingerprint, at, message, context, request_id)
         VALUES (?, ?, ?, ?, ?)",
        e.fingerprint,
        e.at,
        e.message,
        e.context,
        e.request_id
    )
    .execute(&mut *conn)
    .await?;
    Ok(())
}

struct GroupRow {
    fingerprint: String,
    kind: String,
    location: String,
    message: String,
    count: i64,
    first_seen: Timestamp,
    last_seen: Timestamp,
    last_request_id: Option<String>,
    last_context: String,
}

impl From<GroupRow> for ErrorGroup {
    fn from(r: GroupRow) -> Self {
        ErrorGroup {
            fingerprint: r.fingerprint,
            kind: r.kind,
            location: r.location,
            message: r.message,
            count: r.count,
            first_seen: r.first_seen,
            last_seen: r.last_seen,
            last_request_id: r.last_request_id,
            last_context: serde_json::from_str(&r.last_context).unwrap_or_default(),
            events: None,
        }
    }
}

/// Error groups, most recently seen first. The cursor is
/// (last_seen, fingerprint) of the previous page's last item.
#[allow(clippy::too_many_arguments)]
pub async fn list_error_groups(
    conn: &mut SqliteConnection,
    kind: Option<&str>,
    since: Option<Timestamp>,
    fingerprint: Option<&str>,
    cursor: Option<(Timestamp, &str)>,
    limit: i64,
) -> sqlx::Result<Vec<ErrorGroup>> {
    let (c_seen, c_fp) = match cursor {
        Some((s, f)) => (Some(s), Some(f)),
        None => (None, None),
    };
    let limit = limit + 1;
    let rows = sqlx::query_as!(
        GroupRow,
        r#"SELECT fingerprint AS "fingerprint!", kind, location, message, count,
                  first_seen AS "first_seen: Timestamp", last_seen AS "last_seen: Timestamp",
                  last_request_id, last_context
           FROM error_groups
           WHERE (?1 IS NULL OR kind = ?1)
             AND (?2 IS NULL OR last_seen >= ?2)
             AND (?3 IS NULL OR fingerprint = ?3)
             AND (?4 IS NULL OR last_seen < ?4 OR (last_seen = ?4 AND fingerprint > ?5))
           ORDER BY last_seen DESC, fingerprint
           LIMIT CAST(?6 AS INTEGER)"#,
        kind,
        since,
        fingerprint,
        c_seen,
        c_fp,
        limit
    )
    .fetch_all(conn)
    .await?;
    Ok(rows.into_iter().map(Into::into).collect())
}

pub async fn recent_error_events(
    conn: &mut SqliteConnection,
    fingerprint: &str,
    limit: i64,
) -> sqlx::Result<Vec<ErrorEvent>> {
    let rows = sqlx::query!(
        r#"SELECT at AS "at: Timestamp", message, context, request_id FROM error_events
           WHERE fingerprint = ? ORDER BY id DESC LIMIT CAST(? AS INTEGER)"#,
        fingerprint,
        limit
    )
    .fetch_all(conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| ErrorEvent {
            at: r.at,
            message: r.message,
            context: serde_json::from_str(&r.context).unwrap_or_default(),
            request_id: r.request_id,
        })
        .collect())
}
