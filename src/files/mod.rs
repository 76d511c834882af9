//! Files: document generation (PDF, DOCX, CSV, screenshots), uploads, quota-bounded storage under DATA_DIR/files, and secure downloads.

pub mod routes;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::state::AppState;

/// Starts this domain's background work (none yet).
pub fn spawn_workers(_state: &AppState, _tracker: &TaskTracker, _shutdown: CancellationToken) {}
