//! Shared extractors: JSON, path and query extractors whose rejections answer
//! in our problem+json shape, the authenticated caller, and pagination.

use axum::body::Bytes;
use axum::extract::rejection::PathRejection;
use axum::extract::{FromRef, FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::error::AppError;
use crate::sessions::auth::AuthCache;
use crate::sessions::auth::Principal;

/// `axum::Json` with our error shape: 415 without a JSON `Content-Type`,
/// 413 too large, 400 when the body is not JSON at all, and 422 with
/// `errors[]` naming the field (`sections[0].text`) when it is JSON of the
/// wrong shape (a wrong type, an unknown or missing field, a bad value).
#[derive(Debug, Clone, Copy, Default)]
pub struct Json<T>(pub T);

impl<T: Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

impl<T, S> FromRequest<S> for Json<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = AppError;

    async fn from_request(req: Request, state: &S) -> Result<Self, AppError> {
        if !is_json(req.headers()) {
            return Err(AppError::UnsupportedMediaType(
                "expected a body with Content-Type: application/json".into(),
            ));
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            match rejection.status() {
                StatusCode::PAYLOAD_TOO_LARGE => {
                    AppError::PayloadTooLarge("the request body is too large".into())
                }
                _ => AppError::BadRequest("the request body could not be read".into()),
            }
        })?;
        parse_json(&bytes).map(Json)
    }
}

/// Parses a JSON body, naming the path of the field at fault.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, AppError> {
    let not_json = |e: &serde_json::Error| {
        AppError::BadRequest(format!(
            "the body is not JSON: {}",
            clean_serde_message(&e.to_string())
        ))
    };
    let mut value: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| not_json(&e))?;
    // Every request body of the API is an object; serde would otherwise
    // read a struct from an array of its fields in order.
    if !value.is_object() {
        return Err(AppError::validation("body", "must be a JSON object"));
    }
    integral_floats_as_integers(&mut value);
    let value = serde_path_to_error::deserialize(value).map_err(|err| {
        let path = field_path(err.path());
        let inner = err.into_inner();
        match inner.classify() {
            serde_json::error::Category::Data => {
                let message = clean_serde_message(&inner.to_string());
                AppError::validation(with_named_field(path, &message), message)
            }
            _ => not_json(&inner),
        }
    })?;
    Ok(value)
}

/// `2.0` is the integer 2 in JSON Schema (and to most JSON writers), but
/// serde refuses it for an integer field: such numbers become integers.
fn integral_floats_as_integers(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Number(n) => {
            if let Some(f) = n.as_f64().filter(|_| n.is_f64())
                && f.fract() == 0.0
                && f.abs() < 9.0e15
            {
                *n = serde_json::Number::from(f as i64);
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(integral_floats_as_integers),
        serde_json::Value::Object(map) => map.values_mut().for_each(integral_floats_as_integers),
        _ => {}
    }
}

/// serde reports a missing field at its parent's path; the field it names
/// completes the path (`sections[0].text`). An unknown field's path already
/// ends with it.
fn with_named_field(path: String, message: &str) -> String {
    let named = message
        .strip_prefix("missing field `")
        .and_then(|rest| rest.split_once('`'))
        .map(|(name, _)| name);
    match named {
        Some(name) if path == "body" => name.to_string(),
        Some(name) => format!("{path}.{name}"),
        None => path,
    }
}

/// `sections[0].text` for a path, `body` for the whole body.
fn field_path(path: &serde_path_to_error::Path) -> String {
    let text = path.to_string();
    if text == "." || text.is_empty() {
        "body".into()
    } else {
        text
    }
}

fn is_json(headers: &HeaderMap) -> bool {
    let Some(value) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let essence = value
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// serde's message without its position suffix (` at line 1 column 9`),
/// which means nothing to a client that names fields.
fn clean_serde_message(text: &str) -> String {
    let text = match text.rfind(" at line ") {
        Some(i) if text[i..].contains(" column ") => &text[..i],
        _ => text,
    };
    let mut s: String = text.chars().take(300).collect();
    if s.is_empty() {
        s = "malformed request".into();
    }
    s
}

/// `axum::extract::Path` with our error shape.
#[derive(Debug, FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(AppError))]
pub struct Path<T>(pub T);

impl From<PathRejection> for AppError {
    fn from(rejection: PathRejection) -> Self {
        let text = rejection.body_text();
        let text = text
            .split_once(": ")
            .map_or(text.as_str(), |(_, rest)| rest);
        AppError::BadRequest(clean_serde_message(text))
    }
}

/// `axum::extract::Query` with our error shape: a parameter that does not
/// parse answers 422 with `errors[]` naming it, like a failed rule.
#[derive(Debug)]
pub struct Query<T>(pub T);

impl<T, S> FromRequestParts<S> for Query<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, AppError> {
        let query = parts.uri.query().unwrap_or_default();
        let de = serde_urlencoded::Deserializer::new(form_urlencoded::parse(query.as_bytes()));
        serde_path_to_error::deserialize(de)
            .map(Query)
            .map_err(|err| {
                let path = field_path(err.path());
                let field = if path == "body" { "query".into() } else { path };
                AppError::validation(field, clean_serde_message(&err.into_inner().to_string()))
            })
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

/// The range of `limit` on every list (the document states it too).
pub const PAGE_LIMIT: std::ops::RangeInclusive<u32> = 1..=200;

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
            Some(n) if PAGE_LIMIT.contains(&n) => Ok(i64::from(n)),
            Some(_) => Err(AppError::validation(
                "limit",
                format!(
                    "must be from {} to {}",
                    PAGE_LIMIT.start(),
                    PAGE_LIMIT.end()
                ),
            )),
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
