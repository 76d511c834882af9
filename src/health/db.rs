//! The SQL of the health checks.

use sqlx::SqliteConnection;

/// A read that touches a real table (health check).
pub async fn read_probe(conn: &mut SqliteConnection) -> sqlx::Result<i64> {
    sqlx::query_scalar!(r#"SELECT count(*) AS "n!: i64" FROM (SELECT 1 FROM users LIMIT 1)"#)
        .fetch_one(conn)
        .await
}
