//! Job types: what is enqueued, what the API shows, and how a handler fails.

use std::ops::RangeInclusive;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use crate::error::{AppError, FieldError};
use crate::ids::{JobId, UserId};
use crate::time::Timestamp;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum JobStatus {
    Queued,
    Running,
    Succeeded,
    Failed,
    Cancelled,
}

impl JobStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Running => "running",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
        }
    }

    pub fn from_db(s: &str) -> Self {
        match s {
            "running" => Self::Running,
            "succeeded" => Self::Succeeded,
            "failed" => Self::Failed,
            "cancelled" => Self::Cancelled,
            _ => Self::Queued,
        }
    }

    pub fn is_finished(self) -> bool {
        matches!(self, Self::Succeeded | Self::Failed | Self::Cancelled)
    }
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Progress {
    pub percent: i64,
    pub message: Option<String>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct JobErrorBody {
    pub code: String,
    pub message: String,
}

/// A job as the API shows it.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Job {
    pub id: JobId,
    pub kind: String,
    pub status: JobStatus,
    pub priority: i64,
    pub progress: Progress,
    pub attempts: i64,
    pub max_attempts: i64,
    pub run_at: Timestamp,
    pub created_at: Timestamp,
    pub started_at: Option<Timestamp>,
    pub finished_at: Option<Timestamp>,
    pub updated_at: Timestamp,
    pub user_id: Option<UserId>,
    pub cancel_requested: bool,
    #[schema(value_type = Option<Object>)]
    pub result: Option<Value>,
    pub error: Option<JobErrorBody>,
    /// The job's input as it was enqueued (the request that created it).
    /// Only in `GET /api/jobs/{jobId}`, which only the owner or an admin may
    /// read; lists leave it out.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub payload: Option<Value>,
}

/// A job to enqueue.
#[derive(Debug, Clone)]
pub struct NewJob {
    pub kind: String,
    pub payload: Value,
    pub user_id: Option<UserId>,
    pub priority: i64,
    pub max_attempts: i64,
    pub run_at: Option<Timestamp>,
    pub idempotency_key: Option<String>,
    /// When set, the job is refused (429 `too_many_jobs`) if its owner has
    /// this many unfinished jobs already; counted in the inserting
    /// transaction.
    pub max_pending: Option<i64>,
}

impl NewJob {
    pub fn new(kind: &str, payload: Value) -> Self {
        Self {
            kind: kind.to_string(),
            payload,
            user_id: None,
            priority: 0,
            max_attempts: 3,
            run_at: None,
            idempotency_key: None,
            max_pending: None,
        }
    }

    pub fn owner(mut self, user_id: &UserId) -> Self {
        self.user_id = Some(user_id.clone());
        self
    }

    pub fn priority(mut self, priority: i64) -> Self {
        self.priority = priority;
        self
    }

    pub fn max_attempts(mut self, n: i64) -> Self {
        self.max_attempts = n.max(1);
        self
    }

    pub fn run_at(mut self, at: Timestamp) -> Self {
        self.run_at = Some(at);
        self
    }

    pub fn idempotency_key(mut self, key: Option<String>) -> Self {
        self.idempotency_key = key;
        self
    }

    /// Refuses the job when its owner has `n` unfinished jobs already.
    pub fn max_pending(mut self, n: i64) -> Self {
        self.max_pending = Some(n);
        self
    }
}

/// The priorities a user may give a job they create (`priority` on a
/// job-creating request); higher runs first among the user's own jobs.
pub const USER_PRIORITIES: RangeInclusive<i64> = -10..=10;
/// The wider range of an admin.
pub const ADMIN_PRIORITIES: RangeInclusive<i64> = -100..=100;

/// The priority a job-creating request asked for (default 0), if it lies in
/// the caller's range; else the field error on `priority`.
pub fn request_priority(requested: Option<i64>, admin: bool) -> Result<i64, FieldError> {
    let range = if admin {
        ADMIN_PRIORITIES
    } else {
        USER_PRIORITIES
    };
    let priority = requested.unwrap_or(0);
    if range.contains(&priority) {
        Ok(priority)
    } else {
        Err(FieldError::new(
            "priority",
            format!(
                "must be from {} to {}{}",
                range.start(),
                range.end(),
                if admin { "" } else { " (admins: -100 to 100)" }
            ),
        ))
    }
}

/// A request's own checks and the check of its `priority` together: the
/// checked value and the priority, or every field error at once.
pub fn with_priority<T>(
    checked: Result<T, AppError>,
    requested: Option<i64>,
    admin: bool,
) -> Result<(T, i64), AppError> {
    match (checked, request_priority(requested, admin)) {
        (Ok(value), Ok(priority)) => Ok((value, priority)),
        (Err(AppError::Validation(mut errors)), Err(e)) => {
            errors.push(e);
            Err(AppError::Validation(errors))
        }
        (Err(e), _) => Err(e),
        (Ok(_), Err(e)) => Err(AppError::Validation(vec![e])),
    }
}

/// How a job handler failed.
#[derive(Debug, Clone)]
pub enum JobError {
    /// Worth another attempt (after backoff, or at least `retry_after`).
    Retry {
        code: String,
        message: String,
        retry_after: Option<Duration>,
    },
    /// Retrying cannot help (bad input, a 4xx from upstream): fail at once.
    Fail { code: String, message: String },
}

impl JobError {
    pub fn retry(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Retry {
            code: code.into(),
            message: message.into(),
            retry_after: None,
        }
    }

    pub fn retry_after(
        code: impl Into<String>,
        message: impl Into<String>,
        after: Duration,
    ) -> Self {
        Self::Retry {
            code: code.into(),
            message: message.into(),
            retry_after: Some(after),
        }
    }

    pub fn fail(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Fail {
            code: code.into(),
            message: message.into(),
        }
    }

    pub fn code(&self) -> &str {
        match self {
            Self::Retry { code, .. } | Self::Fail { code, .. } => code,
        }
    }

    pub fn message(&self) -> &str {
        match self {
            Self::Retry { message, .. } | Self::Fail { message, .. } => message,
        }
    }
}

impl From<anyhow::Error> for JobError {
    /// Internal failures are retried; their detail is logged, not stored.
    fn from(err: anyhow::Error) -> Self {
        tracing::warn!(error = %format!("{err:#}"), "job failed with an internal error");
        JobError::retry("internal", "internal error")
    }
}

impl From<AppError> for JobError {
    fn from(err: AppError) -> Self {
        match err {
            AppError::Internal(e) => e.into(),
            AppError::Unavailable {
                code,
                message,
                retry_after,
            } => Self::Retry {
                code: code.to_string(),
                message,
                retry_after,
            },
            other => JobError::fail(other.code(), other.public_message()),
        }
    }
}

/// Length of an `Idempotency-Key` header, in bytes.
pub const IDEMPOTENCY_KEY_BYTES: std::ops::RangeInclusive<usize> = 1..=200;

/// `GET /api/jobs` filters.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct JobFilter {
    pub status: Option<JobStatus>,
    pub kind: Option<String>,
    /// Admins only: jobs of this user.
    pub user_id: Option<UserId>,
    pub limit: Option<u32>,
    pub cursor: Option<String>,
}

/// Exponential backoff with jitter: `min(base * 2^(attempt-1), max)` minus up
/// to 25%, and never less than what the failure asked for.
pub fn backoff(
    attempt: i64,
    base: Duration,
    max: Duration,
    at_least: Option<Duration>,
    jitter: f64,
) -> Duration {
    let retries_done = u32::try_from(attempt.saturating_sub(1).clamp(0, 30)).unwrap_or(30);
    let wait = crate::retry::backoff(retries_done, base, max, jitter);
    at_least.map_or(wait, |m| wait.max(m))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap_with_at_most_a_quarter_of_jitter() {
        let base = Duration::from_secs(1);
        let max = Duration::from_secs(8);
        assert_eq!(backoff(1, base, max, None, 0.0), Duration::from_secs(1));
        assert_eq!(backoff(2, base, max, None, 0.0), Duration::from_secs(2));
        assert_eq!(backoff(3, base, max, None, 0.0), Duration::from_secs(4));
        assert_eq!(backoff(10, base, max, None, 0.0), Duration::from_secs(8));
        assert_eq!(
            backoff(2, base, max, None, 1.0),
            Duration::from_millis(1500)
        );
        assert_eq!(
            backoff(1, base, max, Some(Duration::from_secs(5)), 0.0),
            Duration::from_secs(5)
        );
    }

    #[test]
    fn users_and_admins_have_their_own_priority_range() {
        assert_eq!(request_priority(None, false).unwrap(), 0);
        assert_eq!(request_priority(Some(-10), false).unwrap(), -10);
        assert_eq!(request_priority(Some(10), false).unwrap(), 10);
        assert_eq!(
            request_priority(Some(11), false).unwrap_err().field,
            "priority"
        );
        assert_eq!(request_priority(Some(50), true).unwrap(), 50);
        assert_eq!(request_priority(Some(-100), true).unwrap(), -100);
        assert_eq!(
            request_priority(Some(101), true).unwrap_err().field,
            "priority"
        );
    }

    #[test]
    fn a_bad_priority_joins_the_other_field_errors() {
        let other = Err::<(), _>(AppError::Validation(vec![FieldError::new("url", "bad")]));
        match with_priority(other, Some(50), false) {
            Err(AppError::Validation(errors)) => {
                let fields: Vec<_> = errors.iter().map(|e| e.field.as_str()).collect();
                assert_eq!(fields, ["url", "priority"]);
            }
            other => panic!("expected both field errors, got {other:?}"),
        }
        assert_eq!(with_priority(Ok(()), Some(-3), false).unwrap(), ((), -3));
    }

    #[test]
    fn finished_statuses() {
        assert!(JobStatus::Succeeded.is_finished());
        assert!(JobStatus::Cancelled.is_finished());
        assert!(!JobStatus::Running.is_finished());
        assert_eq!(JobStatus::from_db("failed"), JobStatus::Failed);
    }
}
