//! Session types.

use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

use crate::ids::{SessionId, UserId};
use crate::time::Timestamp;
use crate::users::model::User;

/// `POST /api/sessions`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Login {
    pub email: String,
    #[schema(value_type = String, format = Password)]
    pub password: SecretString,
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Value>,
}

/// `PUT /api/sessions/{sessionId}`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct UpdateSession {
    #[schema(value_type = Option<Object>)]
    pub data: Option<Value>,
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Value>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Session {
    pub id: SessionId,
    pub user_id: UserId,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
    pub revoked_at: Option<Timestamp>,
    pub last_seen_at: Option<Timestamp>,
    /// Not expired and not revoked.
    pub active: bool,
    #[schema(value_type = Object)]
    pub data: Map<String, Value>,
    #[schema(value_type = Object)]
    pub metadata: Map<String, Value>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
}

/// Answer to a login: the token is shown only here.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LoginResponse {
    pub session: Session,
    pub user: User,
    /// Bearer token for `Authorization: Bearer <token>`; shown once.
    pub token: String,
    pub token_type: &'static str,
    pub expires_at: Timestamp,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SessionWithUser {
    pub session: Session,
    pub user: User,
}
