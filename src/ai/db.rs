//! All SQL of the ai domain: the `ai_calls` ledger.

use sqlx::{SqliteConnection, SqliteExecutor};

use crate::ids::{JobId, UserId};
use crate::time::Timestamp;

/// One upstream call (after its retries), as recorded.
#[derive(Debug, Clone)]
pub struct NewCall {
    pub user_id: Option<UserId>,
    pub job_id: Option<JobId>,
    pub model: String,
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub latency_ms: i64,
    /// `succeeded` or `failed`.
    pub outcome: &'static str,
    pub error_code: Option<&'static str>,
    pub http_status: Option<i64>,
    pub upstream_request_id: Option<String>,
    pub stop_reason: Option<String>,
    pub streamed: bool,
    pub attempts: i64,
}

#[tracing::instrument(skip_all, fields(model = call.model, outcome = call.outcome))]
pub async fn insert_call(conn: &mut SqliteConnection, call: &NewCall) -> sqlx::Result<String> {
    let id = crate::db::new_id();
    let now = Timestamp::now();
    sqlx::query!(
        "INSERT INTO ai_calls (id, user_id, job_id, model, input_tokens, output_tokens,
             latency_ms, outcome, error_code, http_status, upstream_request_id,
             stop_reason, streamed, attempts, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)",
        id,
        call.user_id,
        call.job_id,
        call.model,
        call.input_tokens,
        call.output_tokens,
        call.latency_ms,
        call.outcome,
        call.error_code,
        call.http_status,
        call.upstream_request_id,
        call.stop_reason,
        call.streamed,
        call.attempts,
        now,
    )
    .execute(conn)
    .await?;
    Ok(id)
}

/// Input plus output tokens a user's calls used since `since` (e.g. today's
/// UTC midnight).
#[tracing::instrument(skip_all)]
pub async fn tokens_since(
    exec: impl SqliteExecutor<'_>,
    user_id: &UserId,
    since: Timestamp,
) -> sqlx::Result<i64> {
    let row = sqlx::query!(
        r#"SELECT coalesce(sum(input_tokens + output_tokens), 0) AS "tokens!: i64"
           FROM ai_calls WHERE user_id = ?1 AND created_at >= ?2"#,
        user_id,
        since,
    )
    .fetch_one(exec)
    .await?;
    Ok(row.tokens)
}

/// Input plus output tokens of every call since `since` (the global budget).
#[tracing::instrument(skip_all)]
pub async fn all_tokens_since(
    exec: impl SqliteExecutor<'_>,
    since: Timestamp,
) -> sqlx::Result<i64> {
    let row = sqlx::query!(
        r#"SELECT coalesce(sum(input_tokens + output_tokens), 0) AS "tokens!: i64"
           FROM ai_calls WHERE created_at >= ?1"#,
        since,
    )
    .fetch_one(exec)
    .await?;
    Ok(row.tokens)
}
