//! AI chat through the Anthropic Claude Messages API: the production client with retries, a circuit breaker, token accounting and budgets, and the chat endpoint.

pub mod routes;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::state::AppState;

/// Starts this domain's background work (none yet).
pub fn spawn_workers(_state: &AppState, _tracker: &TaskTracker, _shutdown: CancellationToken) {}
