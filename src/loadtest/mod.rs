//! The built-in load tester: scenarios against this service itself, run as a
//! job, measured with HdrHistogram, stored in SQLite.
//!
//! - [`model`]: the request (validated), the report.
//! - [`engine`]: the workers that send requests over keep-alive HTTP/1.1
//!   connections to the service's own bound address, the schedule of a
//!   target rate (coordinated omission corrected) and the live counters.
//! - [`report`]: histograms and timeline into the report.
//! - [`db`]: the `load_tests` table.

pub mod db;
pub mod engine;
pub mod model;
pub mod report;
pub mod routes;

use std::sync::{Arc, Mutex};

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::state::AppState;

/// The one running (or starting) load test, shared by the handlers and the
/// job that runs it.
#[derive(Clone, Default)]
pub struct LoadTests {
    active: Arc<Mutex<Option<Active>>>,
}

/// A test that holds the single slot.
#[derive(Clone)]
pub struct Active {
    pub test_id: String,
    pub job_id: Option<String>,
    pub live: Arc<engine::Live>,
}

impl LoadTests {
    /// Takes the slot for `test_id`, or answers the test that holds it.
    pub fn claim(&self, test_id: &str) -> Result<Arc<engine::Live>, String> {
        let mut slot = self.active.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(a) = slot.as_ref() {
            return Err(a.test_id.clone());
        }
        let live = Arc::new(engine::Live::default());
        *slot = Some(Active {
            test_id: test_id.to_string(),
            job_id: None,
            live: live.clone(),
        });
        Ok(live)
    }

    pub fn set_job(&self, test_id: &str, job_id: &str) {
        let mut slot = self.active.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(a) = slot.as_mut().filter(|a| a.test_id == test_id) {
            a.job_id = Some(job_id.to_string());
        }
    }

    /// Frees the slot if `test_id` holds it.
    pub fn release(&self, test_id: &str) {
        let mut slot = self.active.lock().unwrap_or_else(|e| e.into_inner());
        if slot.as_ref().is_some_and(|a| a.test_id == test_id) {
            *slot = None;
        }
    }

    pub fn current(&self) -> Option<Active> {
        self.active
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// Starts this domain's background work (none yet).
pub fn spawn_workers(_state: &AppState, _tracker: &TaskTracker, _shutdown: CancellationToken) {}
