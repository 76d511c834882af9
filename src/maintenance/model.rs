//! Maintenance report types.

use serde::Serialize;
use utoipa::ToSchema;

use crate::time::Timestamp;
/// One thing maintenance did, or would do on a dry run. Each domain that
/// keeps data reports its own actions through a
/// `pub async fn maintenance(service: &ItsService, apply: bool) -> anyhow::Result<Vec<Action>>`.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Action {
    /// Stable name, e.g. `sessions.prune`.
    pub name: String,
    pub description: String,
    /// Rows, files or entries concerned.
    pub count: u64,
    /// Bytes freed (or that would be freed).
    pub bytes: u64,
}

/// What a maintenance run did (`applied`) or would do (dry run).
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    /// false for the dry run of `GET /api/performance/optimize`.
    pub applied: bool,
    pub started_at: Timestamp,
    pub finished_at: Timestamp,
    pub duration_ms: u64,
    pub actions: Vec<Action>,
    pub totals: Totals,
    /// The database file before and after (absent if that step failed).
    pub database: Option<DatabaseStats>,
    /// Steps that failed; the others still ran.
    pub failures: Vec<Failure>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = MaintenanceTotals)]
pub struct Totals {
    /// Sum of the actions' counts.
    pub count: u64,
    /// Sum of the actions' bytes (freed, or that would be freed).
    pub bytes: u64,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DatabaseStats {
    pub page_size: u64,
    pub size_bytes_before: u64,
    pub size_bytes_after: u64,
    /// Bytes in free pages (reclaimed by the incremental vacuum).
    pub free_bytes_before: u64,
    pub free_bytes_after: u64,
    pub wal_bytes_before: u64,
    pub wal_bytes_after: u64,
    /// The checkpoint could not finish because readers were active.
    pub checkpoint_busy: bool,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Failure {
    pub domain: String,
    pub message: String,
}
