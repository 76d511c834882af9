//! The body of `health-detailed`: each dependency's check and the verdict.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::monitoring::model::Alert;

#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum CheckStatus {
    Ok,
    Degraded,
    Down,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Check {
    pub name: String,
    pub status: CheckStatus,
    pub detail: String,
    /// A failing critical check makes the service `down` (503); others only
    /// `degraded`.
    pub critical: bool,
    pub duration_ms: f64,
}

impl Check {
    pub fn new(name: &str, status: CheckStatus, detail: impl Into<String>) -> Self {
        Self {
            name: name.to_string(),
            status,
            detail: detail.into(),
            critical: false,
            duration_ms: 0.0,
        }
    }

    pub fn critical(mut self) -> Self {
        self.critical = true;
        self
    }
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct HealthDetailed {
    /// `ok`, `degraded` or `down` (answered with 503).
    pub status: CheckStatus,
    pub checked_at: String,
    pub checks: Vec<Check>,
    pub firing_alerts: Vec<Alert>,
}
