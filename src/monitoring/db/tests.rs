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

/// Stores requests as the writer does (raw rows and hourly roll-ups).
async fn store(conn: &mut SqliteConnection, at_user: &[(&str, &str)]) {
    let records: Vec<RequestRecord> = at_user
        .iter()
        .enumerate()
        .map(|(i, (at, user))| RequestRecord {
            at: Timestamp::parse(at).unwrap(),
            user_id: Some(ShortStr::new(user)),
            loadtest_id: None,
            ..record(i)
        })
        .collect();
    let refs: Vec<&RequestRecord> = records.iter().collect();
    let a = crate::monitoring::writer::aggregate(&refs);
    insert_requests(conn, &refs).await.unwrap();
    add_rollups(conn, &a.rollups).await.unwrap();
    add_rollup_buckets(conn, &a.buckets).await.unwrap();
}

async fn scalar(conn: &mut SqliteConnection, sql: &str) -> String {
    sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_string()))
        .fetch_one(conn)
        .await
        .unwrap()
}

/// Closed hours and days are rolled once over, late records roll theirs
/// again, and reads take closed days from the daily tables.
#[tokio::test]
async fn closed_days_and_hours_are_rolled_once_over_and_again_when_late() {
    let (_dir, mut conn) = migrated().await;
    sqlx::query(
        "UPDATE rollup_closed SET days_before = '2026-11-27', \
         hours_before = '2026-11-27T10:00:00.000Z'",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    let t = |s: &str| Timestamp::parse(s).unwrap();
    store(
        &mut conn,
        &[
            ("2026-11-27T10:05:00.000Z", "a"),
            ("2026-11-27T10:30:00.000Z", "b"),
            ("2026-11-27T10:40:00.000Z", "a"),
            ("2026-11-28T01:00:00.000Z", "c"),
            ("2026-11-28T02:10:00.000Z", "d"),
        ],
    )
    .await;
    let now = t("2026-11-28T02:30:00.000Z");
    roll_closed(&mut conn, now, t("2026-11-27T10:05:00.000Z"))
        .await
        .unwrap();
    let c = closed(&mut conn).await.unwrap();
    assert_eq!(c.days_before.to_string(), "2026-11-28");
    assert_eq!(c.hours_before, t("2026-11-28T02:00:00.000Z"));
    let users = hour_users(&mut conn, t("2026-11-27T00:00:00.000Z"), c.hours_before)
        .await
        .unwrap();
    assert_eq!(
        users,
        vec![
            (t("2026-11-27T10:00:00.000Z"), 2),
            (t("2026-11-28T01:00:00.000Z"), 1)
        ]
    );
    let day = "SELECT (SELECT sum(count) FROM request_rollup_daily_buckets WHERE day = '2026-11-27') \
               || '/' || (SELECT sum(requests) FROM request_rollup_daily WHERE day = '2026-11-27') \
               || '/' || (SELECT count(*) FROM request_rollup_daily WHERE day = '2026-11-28')";
    assert_eq!(scalar(&mut conn, day).await, "3/3/0");

    // A late record of the closed day and hour.
    store(&mut conn, &[("2026-11-27T23:59:00.000Z", "e")]).await;
    roll_closed(&mut conn, now, t("2026-11-27T23:59:00.000Z"))
        .await
        .unwrap();
    assert_eq!(scalar(&mut conn, day).await, "4/4/0");
    let users = hour_users(&mut conn, t("2026-11-27T23:00:00.000Z"), c.hours_before)
        .await
        .unwrap();
    assert_eq!(users[0], (t("2026-11-27T23:00:00.000Z"), 1));

    // Reads: the 27th from the daily tables (its hourly rows removed), the
    // 28th from the hourly ones.
    sqlx::query("DELETE FROM request_rollup_buckets WHERE hour < '2026-11-28'")
        .execute(&mut conn)
        .await
        .unwrap();
    let split = split(&mut conn, t("2026-11-27T00:00:00.000Z"), None)
        .await
        .unwrap();
    assert_eq!(split.head_end, t("2026-11-27T00:00:00.000Z"));
    assert_eq!(split.tail, t("2026-11-28T00:00:00.000Z"));
    let buckets = route_buckets(&mut conn, split).await.unwrap();
    assert_eq!(buckets.iter().map(|b| b.3).sum::<u64>(), 6);
    // From 05:00 on the 27th no whole day is closed: hours only.
    let from = t("2026-11-27T05:00:00.000Z");
    let hours = super::split(&mut conn, from, None).await.unwrap();
    assert_eq!((hours.head_end, hours.tail), (from, from));
    assert_eq!(hours.first, hours.end);
}
