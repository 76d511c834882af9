//! The built-in load tester: scenarios against this service itself, run as a job, with HdrHistogram reports.

pub mod routes;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::state::AppState;

/// Starts this domain's background work (none yet).
pub fn spawn_workers(_state: &AppState, _tracker: &TaskTracker, _shutdown: CancellationToken) {}
