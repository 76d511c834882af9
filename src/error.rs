//! The one error type of the service and its RFC 9457 problem+json rendering.
//!
//! Client errors carry a stable machine `code` and a human message. Internal
//! errors answer a fixed body; their cause chain travels to the logging
//! middleware in a response extension ([`InternalCause`]) and is logged there
//! once, inside the request's span.

use std::time::Duration;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::http::request_id::current_request_id;

pub type Result<T, E = AppError> = std::result::Result<T, E>;

/// One invalid field of a request.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// 400: the request is malformed.
    #[error("{0}")]
    BadRequest(String),
    /// 422: well-formed but invalid, with the fields at fault.
    #[error("validation failed")]
    Validation(Vec<FieldError>),
    #[error("authentication required")]
    Unauthorized,
    #[error("not allowed")]
    Forbidden,
    #[error("not found")]
    NotFound,
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    PayloadTooLarge(String),
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("rate limited")]
    RateLimited { retry_after: Duration },
    /// 429 with its own code and message (a per-user limit, not a rate).
    #[error("{message}")]
    TooMany {
        code: &'static str,
        message: String,
        retry_after: Duration,
    },
    #[error("{0}")]
    QuotaExceeded(String),
    /// 503: a dependency is unavailable or not configured.
    #[error("{message}")]
    Unavailable {
        code: &'static str,
        message: String,
        retry_after: Option<Duration>,
    },
    /// Any other client-facing problem with an explicit status and code.
    #[error("{message}")]
    Problem {
        status: StatusCode,
        code: &'static str,
        message: String,
    },
    /// 500: a bug or an internal failure. Never shown to the client.
    #[error(transparent)]
    Internal(anyhow::Error),
}

impl AppError {
    pub fn validation(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Validation(vec![FieldError::new(field, message)])
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::Validation(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::Forbidden => StatusCode::FORBIDDEN,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::Conflict(_) => StatusCode::CONFLICT,
            Self::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::RateLimited { .. } | Self::TooMany { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::QuotaExceeded(_) => StatusCode::INSUFFICIENT_STORAGE,
            Self::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Self::Problem { status, .. } => *status,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            Self::BadRequest(_) => "invalid_request",
            Self::Validation(_) => "validation_failed",
            Self::Unauthorized => "unauthorized",
            Self::Forbidden => "forbidden",
            Self::NotFound => "not_found",
            Self::Conflict(_) => "conflict",
            Self::PayloadTooLarge(_) => "payload_too_large",
            Self::UnsupportedMediaType(_) => "unsupported_media_type",
            Self::RateLimited { .. } => "rate_limited",
            Self::TooMany { code, .. } => code,
            Self::QuotaExceeded(_) => "quota_exceeded",
            Self::Unavailable { code, .. } => code,
            Self::Problem { code, .. } => code,
            Self::Internal(_) => "internal",
        }
    }

    /// The message shown to the client (never internal details).
    pub fn public_message(&self) -> String {
        match self {
            Self::Internal(_) => "internal error".into(),
            Self::Validation(errors) => {
                let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
                format!("invalid fields: {}", fields.join(", "))
            }
            Self::Unauthorized => "missing, invalid or expired credentials".into(),
            Self::Forbidden => "this action needs the admin role".into(),
            Self::NotFound => "no such resource".into(),
            Self::RateLimited { retry_after } => {
                format!(
                    "too many requests; retry in {} s",
                    retry_after.as_secs().max(1)
                )
            }
            other => other.to_string(),
        }
    }
}

/// The problem+json body of every error response.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Problem {
    #[serde(rename = "type")]
    pub type_: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    pub code: String,
    pub request_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errors: Option<Vec<FieldError>>,
}

impl Problem {
    pub fn new(status: StatusCode, code: &str, detail: impl Into<String>) -> Self {
        Self {
            type_: format!(
                "https://hs-platform.dev/problems/{}",
                code.replace('_', "-")
            ),
            title: status.canonical_reason().unwrap_or("Error").to_string(),
            status: status.as_u16(),
            detail: detail.into(),
            code: code.to_string(),
            request_id: current_request_id(),
            errors: None,
        }
    }

    pub fn into_response_with_status(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = serde_json::to_vec(&self).unwrap_or_default();
        let mut res = (status, body).into_response();
        res.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        res
    }
}

pub const PROBLEM_JSON: &str = "application/problem+json";

/// Every `code` a problem body can carry: the one list, from which the
/// OpenAPI document's `Problem.code` enum is generated. A code used in the
/// source but missing here fails `every_problem_code_is_listed`.
pub const PROBLEM_CODES: &[&str] = &[
    "invalid_request",
    "validation_failed",
    "unauthorized",
    "wrong_password",
    "forbidden",
    "cross_site_request",
    "not_found",
    "method_not_allowed",
    "request_timeout",
    "conflict",
    "backup_unavailable",
    "payload_too_large",
    "unsupported_media_type",
    "range_not_satisfiable",
    "rate_limited",
    "too_many_jobs",
    "budget_exhausted",
    "quota_exceeded",
    "insufficient_storage",
    "unavailable",
    "not_configured",
    "not_ready",
    "overloaded",
    "upstream_auth",
    "upstream_error",
    "upstream_failure",
    "upstream_invalid_request",
    "upstream_malformed",
    "upstream_not_found",
    "upstream_overloaded",
    "upstream_rate_limited",
    "upstream_request_too_large",
    "upstream_spend_limit",
    "upstream_stream_incomplete",
    "upstream_timeout",
    "upstream_unavailable",
    "upstream_unreachable",
    "internal",
];

/// The cause of a 500, handed to the logging middleware.
#[derive(Debug, Clone)]
pub struct InternalCause(pub std::sync::Arc<String>);

/// Marks a response produced by a caught panic.
#[derive(Clone, Copy, Debug)]
pub struct Panicked;

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let status = self.status();
        let mut problem = Problem::new(status, self.code(), self.public_message());
        let mut retry_after = None;
        match &self {
            Self::Validation(errors) => problem.errors = Some(errors.clone()),
            Self::RateLimited { retry_after: d } | Self::TooMany { retry_after: d, .. } => {
                retry_after = Some(*d)
            }
            Self::Unavailable { retry_after: d, .. } => retry_after = *d,
            _ => {}
        }
        let mut res = problem.into_response_with_status();
        if let Some(d) = retry_after {
            let secs = d.as_secs() + u64::from(d.subsec_nanos() > 0);
            res.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs.max(1)));
        }
        if let Self::Internal(err) = &self {
            res.extensions_mut()
                .insert(InternalCause(std::sync::Arc::new(format!("{err:#}"))));
        }
        res
    }
}

/// Maps a unique-constraint violation to a 409 with the given message; other
/// database errors stay internal.
pub fn conflict_on_unique(err: sqlx::Error, message: &str) -> AppError {
    if let sqlx::Error::Database(db) = &err
        && db.is_unique_violation()
    {
        return AppError::Conflict(message.to_string());
    }
    AppError::Internal(anyhow::Error::new(err))
}

impl From<anyhow::Error> for AppError {
    /// An internal failure, except a write that met a full disk: that is a
    /// 507 `insufficient_storage` (the caller's temporary file is gone).
    fn from(err: anyhow::Error) -> Self {
        if chain_is_disk_full(&err) {
            tracing::warn!(error = %format!("{err:#}"), "a write met a full disk");
            return AppError::insufficient_storage();
        }
        AppError::Internal(err)
    }
}

impl From<sqlx::Error> for AppError {
    fn from(err: sqlx::Error) -> Self {
        AppError::Internal(anyhow::Error::new(err).context("database error"))
    }
}

impl AppError {
    /// The 507 of a disk that is (nearly) full: the floor was reached, or a
    /// write met "no space left on device".
    pub fn insufficient_storage() -> Self {
        AppError::Problem {
            status: axum::http::StatusCode::INSUFFICIENT_STORAGE,
            code: "insufficient_storage",
            message: "the server's disk is full; try again later".into(),
        }
    }
}

/// Whether an I/O error means the disk (or the user's disk quota) is full.
pub fn is_disk_full(err: &std::io::Error) -> bool {
    use std::io::ErrorKind;
    matches!(
        err.kind(),
        ErrorKind::StorageFull | ErrorKind::QuotaExceeded
    ) || matches!(err.raw_os_error(), Some(libc::ENOSPC | libc::EDQUOT))
}

/// Whether any cause in the chain is a full disk: an I/O error, or SQLite's
/// `SQLITE_FULL` (a backup's `VACUUM INTO`).
pub fn chain_is_disk_full(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            return is_disk_full(io);
        }
        if let Some(sqlx::Error::Database(db)) = cause.downcast_ref::<sqlx::Error>() {
            // SQLITE_FULL is 13 (extended codes keep it in the low byte).
            return db
                .code()
                .and_then(|c| c.parse::<i32>().ok())
                .is_some_and(|c| c & 0xff == 13);
        }
        false
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_disk_errors_are_recognised_through_context() {
        let io = std::io::Error::from_raw_os_error(libc::ENOSPC);
        assert!(is_disk_full(&io));
        let err = anyhow::Error::new(io).context("failed to write the upload");
        assert!(chain_is_disk_full(&err));
        let other = anyhow::Error::new(std::io::Error::from_raw_os_error(libc::EACCES))
            .context("failed to write the upload");
        assert!(!chain_is_disk_full(&other));
    }

    /// Scans the source for problem codes (`code: "..."`, the upstream
    /// codes, the status fallbacks) and finds each in [`PROBLEM_CODES`].
    #[test]
    fn every_problem_code_is_listed() {
        let mut files = vec![std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src")];
        let mut found = std::collections::BTreeSet::new();
        while let Some(path) = files.pop() {
            if path.is_dir() {
                files.extend(std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            for (i, _) in text.match_indices('"') {
                let rest = &text[i + 1..];
                let Some(end) = rest.find('"') else { continue };
                let word = &rest[..end];
                let before = text[..i].trim_end();
                let is_code = (before.ends_with("code:") && rest[end + 1..].starts_with(','))
                    || word.starts_with("upstream_");
                if is_code
                    && !word.ends_with('_')
                    && word.chars().all(|c| c.is_ascii_lowercase() || c == '_')
                {
                    found.insert(word.to_string());
                }
            }
        }
        for status in 400..600 {
            let status = StatusCode::from_u16(status).unwrap();
            found.insert(crate::http::middleware::code_for_status(status).to_string());
        }
        let missing: Vec<_> = found
            .iter()
            .filter(|c| !PROBLEM_CODES.contains(&c.as_str()))
            .collect();
        assert!(
            missing.is_empty(),
            "codes missing from PROBLEM_CODES: {missing:?}"
        );
        assert!(found.len() > 20, "the scan found too few codes: {found:?}");
    }
}
