//! Maintenance and backups: pruning, file reconciliation, PRAGMA optimize, WAL checkpoints, online backups and restore.

pub mod routes;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::state::AppState;

/// Starts this domain's background work (none yet).
pub fn spawn_workers(_state: &AppState, _tracker: &TaskTracker, _shutdown: CancellationToken) {}
