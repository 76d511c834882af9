//! HTTP handlers of the sessions domain.

use axum::extract::FromRef;
use axum::extract::State;
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::IntoResponse;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::Origin;
use super::Sessions;
use super::auth::AuthCache;
use super::model::{Login, LoginResponse, Session, SessionWithUser, UpdateSession};
use crate::error::{Problem, Result};
use crate::http::client_ip::client_ip;
use crate::http::extract::{AuthUser, Json, Page, PageParams, Path, Query, SESSION_COOKIE};
use crate::ids::{SessionId, UserId};

pub fn router<S>() -> OpenApiRouter<S>
where
    Sessions: FromRef<S>,
    AuthCache: FromRef<S>,
    S: Clone + Send + Sync + 'static,
{
    OpenApiRouter::new()
        .routes(routes!(login))
        .routes(routes!(current_session))
        .routes(routes!(get_session, update_session, delete_session))
        .routes(routes!(list_user_sessions))
}

/// Log in. Answers the session and a bearer token (shown once), and sets an
/// HttpOnly cookie for browsers. Unknown email and wrong password answer the
/// same 401.
#[utoipa::path(post, path = "/api/sessions", tag = "sessions", request_body(content = Login, example = json!({"email": "ann@example.com", "password": "correct horse battery"})),
    responses(
        (status = 201, body = LoginResponse),
        (status = 401, description = "unknown email or wrong password", body = Problem),
        (status = 422, body = Problem),
        (status = 429, description = "too many attempts from this address, or this account is backed off after failed logins (Retry-After)", body = Problem),
        (status = 503, description = "too many logins at once", body = Problem),
    ))]
async fn login(
    State(state): State<Sessions>,
    parts: Parts,
    Json(req): Json<Login>,
) -> Result<impl IntoResponse> {
    let origin = Origin {
        ip: client_ip(
            &parts.headers,
            &parts.extensions,
            state.config.trust_proxy_hops,
        )
        .map(|ip| ip.to_string()),
        user_agent: parts
            .headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
    };
    let res = super::login(&state, req, origin).await?;
    let cookie = format!(
        "{SESSION_COOKIE}={}; Path=/; HttpOnly; SameSite=Lax; Max-Age={}{}",
        res.token,
        state.config.session_ttl.as_secs(),
        if state.config.cookie_secure {
            "; Secure"
        } else {
            ""
        }
    );
    let mut response = (StatusCode::CREATED, Json(res)).into_response();
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        response.headers_mut().insert(header::SET_COOKIE, v);
    }
    Ok(response)
}

/// The caller's own session and user, found from the cookie or bearer token
/// (the console uses it to know who is signed in).
#[utoipa::path(get, path = "/api/sessions/current", tag = "sessions",
    security(("bearer" = [])),
    responses((status = 200, body = SessionWithUser), (status = 401, body = Problem)))]
async fn current_session(
    State(state): State<Sessions>,
    user: AuthUser,
) -> Result<impl IntoResponse> {
    Ok(Json(super::get(&state, &user, &user.session_id).await?))
}

/// A session and its user (owner or admin).
#[utoipa::path(get, path = "/api/sessions/{sessionId}", tag = "sessions",
    params(("sessionId" = String, Path)), security(("bearer" = [])),
    responses((status = 200, body = SessionWithUser), (status = 401, body = Problem), (status = 404, body = Problem)))]
async fn get_session(
    State(state): State<Sessions>,
    user: AuthUser,
    Path(id): Path<SessionId>,
) -> Result<impl IntoResponse> {
    Ok(Json(super::get(&state, &user, &id).await?))
}

/// Update the session's `data` and `metadata` (owner only).
#[utoipa::path(put, path = "/api/sessions/{sessionId}", tag = "sessions", request_body(content = UpdateSession, example = json!({"data": {"cart": ["sku-1"]}, "metadata": {"device": "laptop"}})),
    params(("sessionId" = String, Path)), security(("bearer" = [])),
    responses((status = 200, body = Session), (status = 401, body = Problem), (status = 404, body = Problem), (status = 422, body = Problem)))]
async fn update_session(
    State(state): State<Sessions>,
    user: AuthUser,
    Path(id): Path<SessionId>,
    Json(req): Json<UpdateSession>,
) -> Result<impl IntoResponse> {
    Ok(Json(super::update(&state, &user, &id, req).await?))
}

/// Log out (owner or admin): the token stops working at once.
#[utoipa::path(delete, path = "/api/sessions/{sessionId}", tag = "sessions",
    params(("sessionId" = String, Path)), security(("bearer" = [])),
    responses((status = 204, description = "logged out"), (status = 401, body = Problem), (status = 404, body = Problem)))]
async fn delete_session(
    State(state): State<Sessions>,
    user: AuthUser,
    Path(id): Path<SessionId>,
) -> Result<impl IntoResponse> {
    super::revoke(&state, &user, &id).await?;
    let mut res = StatusCode::NO_CONTENT.into_response();
    if id == user.session_id {
        res.headers_mut().insert(
            header::SET_COOKIE,
            HeaderValue::from_static("hs_session=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0"),
        );
    }
    Ok(res)
}

/// A user's sessions, newest first (self or admin).
#[utoipa::path(get, path = "/api/users/{userId}/sessions", tag = "sessions",
    params(("userId" = String, Path), PageParams), security(("bearer" = [])),
    responses((status = 200, body = Page<Session>), (status = 401, body = Problem), (status = 404, body = Problem)))]
async fn list_user_sessions(
    State(state): State<Sessions>,
    user: AuthUser,
    Path(user_id): Path<UserId>,
    Query(page): Query<PageParams>,
) -> Result<impl IntoResponse> {
    let limit = page.limit()?;
    Ok(Json(
        super::list_for_user(&state, &user, &user_id, page.cursor.as_deref(), limit).await?,
    ))
}
