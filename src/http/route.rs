//! The matched route of a request, for metric labels, the request log and
//! the rate limiter's exemptions.

use axum::extract::{MatchedPath, Request};

/// The route template of a request (`/api/users/{userId}`), or a fixed
/// placeholder for unmatched paths so label sets stay bounded.
pub fn route_of(req: &Request) -> &str {
    req.extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", MatchedPath::as_str)
}
