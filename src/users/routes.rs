//! HTTP handlers of the users domain.

use axum::extract::FromRef;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::Users;
use super::model::{SignUp, UpdateUser, User, UserFilter, UserProfile};
use crate::error::{Problem, Result};
use crate::http::extract::{AdminUser, AuthUser, Json, Page, PageParams, Path, Query};
use crate::ids::UserId;
use crate::sessions::auth::AuthCache;

pub fn router<S>() -> OpenApiRouter<S>
where
    Users: FromRef<S>,
    AuthCache: FromRef<S>,
    S: Clone + Send + Sync + 'static,
{
    OpenApiRouter::new()
        .routes(routes!(sign_up, list_users))
        .routes(routes!(get_user, update_user))
}

/// Sign up.
#[utoipa::path(post, path = "/api/users", tag = "users", request_body(content = SignUp, example = json!({"email": "ann@example.com", "password": "correct horse battery", "name": "Ann"})),
    responses(
        (status = 201, description = "account created", body = User),
        (status = 400, description = "malformed JSON", body = Problem),
        (status = 409, description = "email already registered", body = Problem),
        (status = 415, description = "not JSON", body = Problem),
        (status = 422, description = "invalid or unknown fields", body = Problem),
    ))]
async fn sign_up(State(users): State<Users>, Json(req): Json<SignUp>) -> Result<impl IntoResponse> {
    let user = users.sign_up(req).await?;
    Ok((StatusCode::CREATED, Json(user)))
}

/// Accounts, newest first (admin): `q` searches email and name (substring,
/// case-insensitive for ASCII), `role` filters, cursor pages.
#[utoipa::path(get, path = "/api/users", tag = "users",
    params(UserFilter), security(("bearer" = [])),
    responses(
        (status = 200, body = Page<User>),
        (status = 400, description = "malformed query", body = Problem),
        (status = 401, body = Problem),
        (status = 403, body = Problem),
        (status = 422, description = "`limit` out of 1-200 or `q` too long", body = Problem),
    ))]
async fn list_users(
    State(users): State<Users>,
    _admin: AdminUser,
    Query(filter): Query<UserFilter>,
) -> Result<impl IntoResponse> {
    let limit = PageParams {
        limit: filter.limit,
        cursor: None,
    }
    .limit()?;
    let rows = users.list(&filter, limit + 1).await?;
    Ok(Json(Page::from_rows(rows, limit, |u: &User| {
        u.id.to_string()
    })))
}

/// A user's profile with usage statistics (self or admin).
#[utoipa::path(get, path = "/api/users/{userId}", tag = "users",
    params(("userId" = String, Path, description = "user id")),
    security(("bearer" = [])),
    responses(
        (status = 200, body = UserProfile),
        (status = 401, body = Problem),
        (status = 404, description = "no such user, or not yours", body = Problem),
    ))]
async fn get_user(
    State(users): State<Users>,
    user: AuthUser,
    Path(user_id): Path<UserId>,
) -> Result<impl IntoResponse> {
    let profile = users.profile(&user, &user_id).await?;
    Ok(Json(profile))
}

/// Update name, preferences, metadata, password (with `currentPassword`), or
/// role (admin only). A password change logs out every session of the user.
#[utoipa::path(put, path = "/api/users/{userId}", tag = "users", request_body(content = UpdateUser, example = json!({"name": "Ann Lee", "preferences": {"theme": "dark"}})),
    params(("userId" = String, Path, description = "user id")),
    security(("bearer" = [])),
    responses(
        (status = 200, body = User),
        (status = 401, body = Problem),
        (status = 403, description = "role change by a non-admin, or wrong current password", body = Problem),
        (status = 404, body = Problem),
        (status = 422, body = Problem),
    ))]
async fn update_user(
    State(users): State<Users>,
    user: AuthUser,
    Path(user_id): Path<UserId>,
    Json(req): Json<UpdateUser>,
) -> Result<impl IntoResponse> {
    let updated = users.update(&user, &user_id, req).await?;
    Ok(Json(updated))
}
