//! Analytics types: the summary body and its parts.

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::ids::UserId;
use crate::time::Timestamp;

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct SummaryQuery {
    /// Start (inclusive): RFC 3339 or `YYYY-MM-DD` (UTC). Default: 30 days
    /// before `to`.
    pub from: Option<String>,
    /// End (exclusive): RFC 3339 or `YYYY-MM-DD` (UTC). Default: now.
    pub to: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    pub from: Timestamp,
    pub to: Timestamp,
    pub generated_at: Timestamp,
    pub users: UserFigures,
    pub sessions: SessionFigures,
    pub requests: RequestFigures,
    pub jobs: JobFigures,
    pub files: FileFigures,
    pub ai: AiFigures,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DayCount {
    pub day: NaiveDate,
    pub count: i64,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UserFigures {
    /// All accounts now.
    pub total: i64,
    /// Accounts created in the range.
    pub new_in_range: i64,
    pub new_per_day: Vec<DayCount>,
    /// Users who made at least one authenticated request, per day.
    pub active_per_day: Vec<DayCount>,
    /// Distinct users active in the range.
    pub active_in_range: i64,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SessionFigures {
    /// Sessions usable now (not expired, not revoked).
    pub active: i64,
    pub users_with_active_sessions: i64,
    pub created_in_range: i64,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RequestDay {
    pub day: NaiveDate,
    pub requests: i64,
    pub client_errors: i64,
    pub server_errors: i64,
    /// server errors / requests
    pub error_rate: f64,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RouteLatency {
    pub method: String,
    pub route: String,
    pub requests: i64,
    pub server_errors: i64,
    pub mean_ms: f64,
    /// Upper bound of the roll-up bucket holding the 95th percentile.
    pub p95_ms: f64,
    pub max_ms: f64,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RequestFigures {
    /// API requests (load-test traffic excluded) in the hours of the range.
    pub total: i64,
    pub client_errors: i64,
    pub server_errors: i64,
    pub error_rate: f64,
    /// Requests made by the built-in load tester.
    pub loadtest_requests: i64,
    pub per_day: Vec<RequestDay>,
    /// The ten slowest routes by p95 (routes with at least 5 requests).
    pub slowest_routes: Vec<RouteLatency>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct JobCount {
    pub kind: String,
    pub status: String,
    pub count: i64,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct JobStats {
    pub kind: String,
    /// Jobs that finished (succeeded or failed) in the range.
    pub finished: i64,
    pub succeeded: i64,
    pub failed: i64,
    /// succeeded / finished
    pub success_rate: f64,
    /// Of succeeded jobs: started -> finished of the last attempt.
    pub mean_ms: Option<f64>,
    pub p95_ms: Option<f64>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct JobFigures {
    /// Jobs created in the range, per kind and current status.
    pub by_kind_and_status: Vec<JobCount>,
    pub stats: Vec<JobStats>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct FileKind {
    pub kind: String,
    pub files: i64,
    pub bytes: i64,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct FileFigures {
    /// Files created in the range, per kind.
    pub by_kind: Vec<FileKind>,
    /// All stored files now.
    pub stored_files: i64,
    pub stored_bytes: i64,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AiDay {
    pub day: NaiveDate,
    pub model: String,
    pub calls: i64,
    pub failed: i64,
    pub input_tokens: i64,
    pub output_tokens: i64,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AiFigures {
    pub calls: i64,
    pub failed: i64,
    pub failure_rate: f64,
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub by_day_and_model: Vec<AiDay>,
}

/// How many users `GET /api/analytics/storage` may list.
pub const STORAGE_LIMIT: std::ops::RangeInclusive<u32> = 1..=100;

/// `GET /api/analytics/storage` query.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct StorageQuery {
    /// How many users to list, largest first: 1-100 (default 10).
    pub limit: Option<u32>,
}

/// One user's stored files.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UserStorage {
    pub user_id: UserId,
    /// Absent if the account is gone.
    pub email: Option<String>,
    pub files: i64,
    pub bytes: i64,
}

/// Storage used now: totals, quotas, and the users storing the most.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Storage {
    pub total_files: i64,
    pub total_bytes: i64,
    pub users_with_files: i64,
    /// `STORAGE_QUOTA_BYTES` in force (all files and queued payloads).
    pub quota_bytes: u64,
    /// `USER_QUOTA_BYTES` in force (per account).
    pub user_quota_bytes: u64,
    /// Largest first.
    pub items: Vec<UserStorage>,
}
