//! Shared extractors: JSON, path and query extractors whose rejections answer
//! in our problem+json shape, the authenticated caller, and pagination.

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRef, FromRequest, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use crate::error::AppError;
use crate::sessions::auth::AuthCache;
use crate::sessions::auth::Principal;

/// `axum::Json` with our error shape: 400 malformed, 415 wrong content type,
/// 413 too large, 422 well-formed JSON of the wrong shape (unknown fields
/// included).
#[derive(Debug, Clone, Copy, Default, FromRequest)]
#[from_request(via(axum::Json), rejection(AppError))]
pub struct Json<T>(pub T);

impl<T: Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

impl From<JsonRejection> for AppError {
    fn from(rejection: JsonRejection) -> Self {
        match rejection.status() {
            StatusCode::PAYLOAD_TOO_LARGE => {
                AppError::PayloadTooLarge("the request body is too large".into())
            }
            StatusCode::UNSUPPORTED_MEDIA_TYPE => AppError::UnsupportedMediaType(
                "expected a body with Content-Type: application/json".into(),
            ),
            StatusCode::UNPROCESSABLE_ENTITY => AppError::Problem {
                status: StatusCode::UNPROCESSABLE_ENTITY,
                code: "invalid_request",
                message: clean_serde_message(&rejection.body_text()),
            },
            _ => AppError::BadRequest(clean_serde_message(&rejection.body_text())),
        }
    }
}

/// axum prefixes serde's message with its own sentence; keep serde's part.
fn clean_serde_message(text: &str) -> String {
    let text = text.split_once(": ").map(|(_, rest)| rest).unwrap_or(text);
    let mut s: String = text.chars().take(300).collect();
    if s.is_empty() {
        s = "malformed request body".into();
    }
    s
}

/// `axum::extract::Path` with our error shape.
#[derive(Debug, FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(AppError))]
pub struct Path<T>(pub T);

impl From<PathRejection> for AppError {
    fn from(rejection: PathRejection) -> Self {
        AppError::BadRequest(clean_serde_message(&rejection.body_text()))
    }
}

/// `axum::extract::Query` with our error shape.
#[derive(Debug, FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(AppError))]
pub struct Query<T>(pub T);

impl From<QueryRejection> for AppError {
    fn from(rejection: QueryRejection) -> Self {
        AppError::BadRequest(clean_serde_message(&rejection.body_text()))
    }
}

/// The caller, authenticated by `Authorization: Bearer <token>` or the
/// session cookie. Rejects with 401.
#[derive(Debug, Clone)]
pub struct AuthUser(pub Principal);

impl std::ops::Deref for AuthUser {
    type Target = Principal;
    fn deref(&self) -> &Principal {
        &self.0
    }
}

pub const SESSION_COOKIE: &str = "hs_session";

/// The token of an `Authorization: Bearer <token>` header, if any.
pub fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(token.trim())
        .filter(|t| !t.is_empty())
}

/// The raw token a request carries, from the bearer header or the cookie.
pub fn request_token(parts: &Parts) -> Option<&str> {
    if parts.headers.contains_key(header::AUTHORIZATION) {
        return bearer_token(&parts.headers);
    }
    parts
        .headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == SESSION_COOKIE)
        .map(|(_, v)| v)
        .filter(|t| !t.is_empty())
}

/// Works under any state that holds the [`AuthCache`], so that every
/// domain's router can take it whatever its own state.
impl<S> FromRequestParts<S> for AuthUser
where
    AuthCache: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, AppError> {
        if let Some(p) = parts.extensions.get::<Principal>() {
            return Ok(AuthUser(p.clone()));
        }
        let token = request_token(parts).ok_or(AppError::Unauthorized)?;
        let principal = AuthCache::from_ref(state)
            .authenticate(token)
            .await?
            .ok_or(AppError::Unauthorized)?;
        parts.extensions.insert(principal.clone());
        Ok(AuthUser(principal))
    }
}

/// An authenticated admin: 401 when anonymous, 403 for other users.
#[derive(Debug, Clone)]
pub struct AdminUser(pub Principal);

impl<S> FromRequestParts<S> for AdminUser
where
    AuthCache: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, AppError> {
        let AuthUser(p) = AuthUser::from_request_parts(parts, state).await?;
        if !p.is_admin() {
            return Err(AppError::Forbidden);
        }
        Ok(AdminUser(p))
    }
}

/// `?limit=&cursor=` with the contract's defaults (50, at most 200).
#[derive(Debug, Clone, Deserialize, utoipa::IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct PageParams {
    /// Items per page, 1-200 (default 50).
    pub limit: Option<u32>,
    /// The `nextCursor` of the previous page.
    pub cursor: Option<String>,
}

impl PageParams {
    pub fn limit(&self) -> Result<i64, AppError> {
        match self.limit {
            None => Ok(50),
            Some(n) if (1..=200).contains(&n) => Ok(i64::from(n)),
            Some(_) => Err(AppError::validation("limit", "must be from 1 to 200")),
        }
    }
}

/// A page of a list.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

impl<T> Page<T> {
    /// Builds a page from up to `limit + 1` rows fetched in order: the extra
    /// row only says that there is a next page, whose cursor is the last
    /// item's key.
    pub fn from_rows(mut rows: Vec<T>, limit: i64, key: impl Fn(&T) -> String) -> Self {
        let limit = usize::try_from(limit).unwrap_or(50);
        let next_cursor = if rows.len() > limit {
            rows.truncate(limit);
            rows.last().map(key)
        } else {
            None
        };
        Self {
            items: rows,
            next_cursor,
        }
    }
}
