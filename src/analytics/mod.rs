//! Analytics computed by SQL over the real tables, for admin dashboards.

pub mod routes;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::state::AppState;

/// Starts this domain's background work (none yet).
pub fn spawn_workers(_state: &AppState, _tracker: &TaskTracker, _shutdown: CancellationToken) {}
