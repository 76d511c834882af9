//! Maintenance and backups: pruning, file reconciliation, PRAGMA optimize, WAL checkpoints, online backups and restore.

pub mod routes;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::state::AppState;

/// Starts this domain's background work (none yet).
pub fn spawn_workers(_state: &AppState, _tracker: &TaskTracker, _shutdown: CancellationToken) {}

/// One thing maintenance did, or would do on a dry run. Each domain that
/// keeps data reports its own actions through a
/// `pub async fn maintenance(state: &AppState, apply: bool) -> anyhow::Result<Vec<Action>>`.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
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
