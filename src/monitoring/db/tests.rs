use super::requests::CHUNK;
use super::*;
use crate::monitoring::model::{RequestRecord, ShortStr};
use crate::time::Timestamp;
use sqlx::{Connection, SqliteConnection};

async fn migrated() -> (tempfile::TempDir, SqliteConnection) {
    let dir = tempfile::tempdir().unwrap();
    let options = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(dir.path().join("t.db"))
        .create_if_missing(true);
    let mut conn = SqliteConnection::connect_with(&options).await.unwrap();
    crate::db::MIGRATOR.run(&mut conn).await.unwrap();
    (dir, conn)
}

fn record(i: usize) -> RequestRecord {
    RequestRecord {
        at: Timestamp::from_unix_ms(1_795_000_000_000 + i as i64).unwrap(),
        method: if i.is_multiple_of(2) { "GET" } else { "POST" },
        route: format!("/r/{}", i % 3).into(),
        status: 200 + (i % 5) as u16,
        duration_ms: i as f64 / 8.0,
        bytes_in: (i.is_multiple_of(4)).then_some(i as i64),
        bytes_out: Some(1000 + i as i64),
        user_id: (i.is_multiple_of(3)).then(|| ShortStr::new(&format!("user-{i}"))),
        client_ip: Some(format!("203.0.113.{}", i % 7).parse().unwrap()),
        user_agent: (i % 2 == 1).then(|| format!("agent {i}")),
        request_id: Some(ShortStr::new(&format!("req-{i}-{}", "x".repeat(i % 50)))),
        loadtest_id: (i.is_multiple_of(10)).then(|| format!("lt{i}")),
    }
}

#[tokio::test]
async fn inserts_store_every_value_of_full_and_partial_chunks() {
    let (_dir, mut conn) = migrated().await;
    // Two full statements and a remainder.
    let records: Vec<RequestRecord> = (0..2 * CHUNK + 37).map(record).collect();
    let refs: Vec<&RequestRecord> = records.iter().collect();
    insert_requests(&mut conn, &refs).await.unwrap();
    type Row = (
        i64,
        String,
        String,
        i64,
        f64,
        Option<i64>,
        Option<i64>,
        Option<String>,
        Option<String>,
        Option<String>,
        Option<String>,
        String,
        Option<String>,
    );
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT at_ms, method, route, status, duration_ms, bytes_in, bytes_out, user_id, \
         client_ip, user_agent, request_id, source, loadtest_id FROM request_log ORDER BY id",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    assert_eq!(rows.len(), records.len());
    for (row, r) in rows.iter().zip(&records) {
        let (at_ms, method, route, status, duration_ms, bytes_in, bytes_out) =
            (&row.0, &row.1, &row.2, &row.3, &row.4, &row.5, &row.6);
        assert_eq!(
            (at_ms, method.as_str(), route.as_str(), status),
            (&r.at.unix_ms(), r.method, &*r.route, &i64::from(r.status))
        );
        assert_eq!(
            (duration_ms, bytes_in, bytes_out),
            (&r.duration_ms, &r.bytes_in, &r.bytes_out)
        );
        assert_eq!(
            (
                row.7.as_deref(),
                row.8.clone(),
                row.9.as_deref(),
                row.10.as_deref(),
                row.11.as_str(),
                row.12.as_deref()
            ),
            (
                r.user_id.as_deref(),
                r.client_ip.map(|ip| ip.to_string()),
                r.user_agent.as_deref(),
                r.request_id.as_deref(),
                r.source(),
                r.loadtest_id.as_deref()
            )
        );
    }
}
