//! Sessions: login, the bearer token, logout, expiry, and the periodic
//! clean-up of dead sessions.

pub mod auth;
pub mod backoff;
pub mod db;
pub mod model;
pub mod routes;

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use self::model::{Login, LoginResponse, Session, SessionWithUser, UpdateSession};
use crate::config::Config;
use crate::db::Db;
use crate::error::{AppError, Result};
use crate::http::extract::Page;
use crate::ids::{SessionId, UserId};
use crate::time::Timestamp;
use crate::users::Users;
use crate::users::model::{Email, parse_object};
use auth::{AuthCache, Principal};

/// The sessions domain's service: exactly the handles it needs.
#[derive(Clone)]
pub struct Sessions {
    pub db: Db,
    pub config: Arc<Config>,
    pub users: Users,
    pub auth: AuthCache,
    /// Per-account login backoff.
    pub backoff: backoff::LoginBackoff,
}

/// Where a login came from (stored with the session).
pub struct Origin {
    pub ip: Option<String>,
    pub user_agent: Option<String>,
}

#[tracing::instrument(skip_all)]
pub async fn login(state: &Sessions, req: Login, origin: Origin) -> Result<LoginResponse> {
    let metadata = match &req.metadata {
        Some(v) => parse_object("metadata", v).map_err(|e| AppError::Validation(vec![e]))?,
        None => "{}".to_string(),
    };
    // An unparseable email cannot match an account: answer like a wrong
    // password (same work, same 401) rather than revealing anything.
    let email = Email::parse(&req.email).ok();
    let email_key = match &email {
        Some(e) => e.as_str().to_string(),
        None => req.email.trim().to_lowercase().chars().take(254).collect(),
    };
    let creds = match &email {
        Some(e) => {
            let mut conn = state.db.reader.acquire().await?;
            crate::users::db::credentials_by_email(&mut conn, e.as_str()).await?
        }
        None => None,
    };
    let (user_id, hash) = match creds {
        Some(c) => (Some(c.id), Some(c.password_hash)),
        None => (None, None),
    };
    let ip_key = origin
        .ip
        .as_deref()
        .map(|ip| format!("{email_key} from {ip}"));
    let keys = [Some(email_key.as_str()), ip_key.as_deref()];
    admit(state, &keys, user_id.as_ref(), origin.ip.as_deref()).await?;
    if !state.users.hasher.verify(req.password, hash).await? {
        keys.iter().flatten().for_each(|k| state.backoff.failed(k));
        return Err(AppError::Unauthorized);
    }
    keys.iter()
        .flatten()
        .for_each(|k| state.backoff.succeeded(k));
    let user_id = user_id.ok_or(AppError::Unauthorized)?;

    let (token, token_hash) = auth::new_token();
    let now = Timestamp::now();
    let expires_at = now + chrono::Duration::from_std(state.config.session_ttl).unwrap_or_default();
    let id = SessionId::generate();
    let user_agent = origin
        .user_agent
        .map(|ua| ua.chars().take(512).collect::<String>());
    let mut tx = state.db.begin_write().await?;
    let row = db::insert(
        &mut tx,
        &db::NewSession {
            id: &id,
            user_id: &user_id,
            token_hash: &token_hash,
            expires_at,
            metadata: &metadata,
            ip: origin.ip.as_deref(),
            user_agent: user_agent.as_deref(),
        },
    )
    .await?;
    let user = crate::users::db::find(&mut tx, &user_id)
        .await?
        .ok_or(AppError::Unauthorized)?;
    tx.commit().await?;
    state.users.invalidate_profile(&user_id);
    Ok(LoginResponse {
        session: row.into_session(now),
        user: user.into(),
        token,
        token_type: "Bearer",
        expires_at,
    })
}

/// Admits a login attempt past the per-account backoff (`keys`: the email,
/// then the email from this address), or answers 429 with `Retry-After`.
/// The email's backoff does not hold an address the account logged in from
/// before (a kept session came from it): its owner is not locked out by
/// someone guessing elsewhere; that address has its own count.
async fn admit(
    state: &Sessions,
    [email_key, ip_key]: &[Option<&str>; 2],
    user_id: Option<&UserId>,
    ip: Option<&str>,
) -> Result<()> {
    if let Some(key) = email_key
        && let Err(wait) = state.backoff.attempt(key)
    {
        let known = match (user_id, ip) {
            (Some(user_id), Some(ip)) => {
                let mut conn = state.db.reader.acquire().await?;
                db::has_session_from(&mut conn, user_id, ip).await?
            }
            _ => false,
        };
        if !known {
            return Err(AppError::RateLimited { retry_after: wait });
        }
    }
    if let Some(key) = ip_key
        && let Err(wait) = state.backoff.attempt(key)
    {
        return Err(AppError::RateLimited { retry_after: wait });
    }
    Ok(())
}

async fn find_visible(
    state: &Sessions,
    caller: &Principal,
    id: &SessionId,
) -> Result<db::SessionRow> {
    let mut conn = state.db.reader.acquire().await?;
    let row = db::find(&mut conn, id).await?.ok_or(AppError::NotFound)?;
    if !caller.can_see(&row.user_id) {
        return Err(AppError::NotFound);
    }
    Ok(row)
}

pub async fn get(state: &Sessions, caller: &Principal, id: &SessionId) -> Result<SessionWithUser> {
    let row = find_visible(state, caller, id).await?;
    let mut conn = state.db.reader.acquire().await?;
    let user = crate::users::db::find(&mut conn, &row.user_id)
        .await?
        .ok_or(AppError::NotFound)?;
    Ok(SessionWithUser {
        session: row.into_session(Timestamp::now()),
        user: user.into(),
    })
}

/// Only the session's owner may change its data.
pub async fn update(
    state: &Sessions,
    caller: &Principal,
    id: &SessionId,
    req: UpdateSession,
) -> Result<Session> {
    let row = find_visible(state, caller, id).await?;
    if row.user_id != caller.user_id {
        return Err(AppError::NotFound);
    }
    let mut errors = Vec::new();
    let data = req
        .data
        .as_ref()
        .and_then(|v| parse_object("data", v).map_err(|e| errors.push(e)).ok());
    let metadata = req
        .metadata
        .as_ref()
        .and_then(|v| parse_object("metadata", v).map_err(|e| errors.push(e)).ok());
    if !errors.is_empty() {
        return Err(AppError::Validation(errors));
    }
    let mut tx = state.db.begin_write().await?;
    let row = db::update_data(&mut tx, id, data.as_deref(), metadata.as_deref())
        .await?
        .ok_or(AppError::NotFound)?;
    tx.commit().await?;
    Ok(row.into_session(Timestamp::now()))
}

/// Logout: the token stops working at once.
pub async fn revoke(state: &Sessions, caller: &Principal, id: &SessionId) -> Result<()> {
    find_visible(state, caller, id).await?;
    let mut tx = state.db.begin_write().await?;
    let hash = revoke_and_log(&mut tx, id).await?;
    tx.commit().await?;
    if let Some(hash) = hash {
        state.auth.forget_token_hash(&hash);
    }
    Ok(())
}

/// Revokes one session and records it for the other processes' caches;
/// returns its token hash.
async fn revoke_and_log(
    conn: &mut sqlx::SqliteConnection,
    id: &SessionId,
) -> sqlx::Result<Option<String>> {
    let hash = db::revoke(conn, id, Timestamp::now()).await?;
    if let Some(hash) = &hash {
        db::log_invalidation(conn, None, Some(hash)).await?;
    }
    Ok(hash)
}

pub async fn list_for_user(
    state: &Sessions,
    caller: &Principal,
    user_id: &UserId,
    cursor: Option<&str>,
    limit: i64,
) -> Result<Page<Session>> {
    if !caller.can_see(user_id) {
        return Err(AppError::NotFound);
    }
    let mut conn = state.db.reader.acquire().await?;
    if crate::users::db::find(&mut conn, user_id).await?.is_none() {
        return Err(AppError::NotFound);
    }
    let rows = db::list_for_user(&mut conn, user_id, cursor, limit + 1).await?;
    let now = Timestamp::now();
    let sessions = rows.into_iter().map(|r| r.into_session(now)).collect();
    Ok(Page::from_rows(sessions, limit, |s: &Session| {
        s.id.to_string()
    }))
}

/// A session the service issues for its own use (the load tester acts as the
/// admin who started a test): returns `(session id, token)`. Revoke it with
/// [`revoke_internal`] when done; it also expires after `ttl`.
pub async fn issue_internal(
    state: &Sessions,
    user_id: &UserId,
    ttl: Duration,
    metadata: &serde_json::Value,
) -> anyhow::Result<(SessionId, String)> {
    let (token, token_hash) = auth::new_token();
    let expires_at = Timestamp::now() + chrono::Duration::from_std(ttl)?;
    let id = SessionId::generate();
    let metadata = metadata.to_string();
    let mut tx = state.db.begin_write().await?;
    db::insert(
        &mut tx,
        &db::NewSession {
            id: &id,
            user_id,
            token_hash: &token_hash,
            expires_at,
            metadata: &metadata,
            ip: None,
            user_agent: Some("hs-platform internal"),
        },
    )
    .await?;
    tx.commit().await?;
    Ok((id, token))
}

/// Revokes a session issued by [`issue_internal`]; its token stops working at
/// once.
pub async fn revoke_internal(state: &Sessions, session_id: &SessionId) -> anyhow::Result<()> {
    let mut tx = state.db.begin_write().await?;
    let hash = revoke_and_log(&mut tx, session_id).await?;
    tx.commit().await?;
    if let Some(hash) = hash {
        state.auth.forget_token_hash(&hash);
    }
    Ok(())
}

/// Deletes sessions that ended more than a day ago; returns how many.
pub async fn prune(state: &Sessions) -> anyhow::Result<u64> {
    let before = Timestamp::now() - chrono::Duration::days(1);
    let mut tx = state.db.begin_write().await?;
    let n = db::delete_dead(&mut tx, before).await?;
    db::prune_invalidations(&mut tx, before).await?;
    tx.commit().await?;
    Ok(n)
}

/// Maintenance of this domain: dead sessions (expired or revoked more than a
/// day ago) are deleted when `apply`, counted otherwise.
pub async fn maintenance(
    state: &Sessions,
    apply: bool,
) -> anyhow::Result<Vec<crate::maintenance::model::Action>> {
    let count = if apply {
        prune(state).await?
    } else {
        let before = Timestamp::now() - chrono::Duration::days(1);
        let mut conn = state.db.reader.acquire().await?;
        db::count_dead(&mut conn, before).await?.max(0) as u64
    };
    Ok(vec![crate::maintenance::model::Action {
        name: "sessions.prune".into(),
        description: "delete sessions that expired or were revoked more than a day ago".into(),
        count,
        bytes: 0,
    }])
}

/// Background work: flush last-activity times; apply other processes'
/// invalidations every second; prune dead sessions hourly.
pub fn spawn_workers(state: &Sessions, tracker: &TaskTracker, shutdown: CancellationToken) {
    let st = state.clone();
    tracker.spawn(async move {
        let mut touch = tokio::time::interval(auth::TOUCH_INTERVAL);
        let mut poll = tokio::time::interval(auth::INVALIDATION_POLL);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut prune_tick = tokio::time::interval(Duration::from_secs(3600));
        loop {
            tokio::select! {
                _ = poll.tick() => {
                    if let Err(e) = st.auth.apply_invalidations().await {
                        tracing::warn!(error = %format!("{e:#}"), "failed to read session invalidations");
                    }
                }
                _ = touch.tick() => {
                    if let Err(e) = st.auth.flush_activity().await {
                        tracing::warn!(error = %format!("{e:#}"), "failed to record session activity");
                    }
                }
                _ = prune_tick.tick() => match prune(&st).await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(deleted = n, "pruned dead sessions"),
                    Err(e) => tracing::warn!(error = %format!("{e:#}"), "failed to prune sessions"),
                },
                () = shutdown.cancelled() => {
                    let _ = st.auth.flush_activity().await;
                    break;
                }
            }
        }
    });
}
