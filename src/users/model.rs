//! Account types: validated inputs (parse, don't validate) and the bodies the
//! API returns.

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

use crate::error::AppError;
pub use crate::error::FieldError;
use crate::ids::UserId;
use crate::time::Timestamp;

/// Largest JSON object accepted for `preferences`, `metadata` and `data`.
pub const MAX_JSON_OBJECT_BYTES: usize = 16 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    User,
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::User => "user",
            Role::Admin => "admin",
        }
    }

    pub fn from_db(s: &str) -> Self {
        if s == "admin" {
            Role::Admin
        } else {
            Role::User
        }
    }
}

/// Longest email address, in bytes.
pub const EMAIL_MAX_BYTES: usize = 254;
/// Length of a new password, in characters.
pub const PASSWORD_CHARS: std::ops::RangeInclusive<usize> = 8..=128;
/// Longest display name, in characters.
pub const NAME_MAX_CHARS: usize = 100;

/// What an email address may be, as the OpenAPI document states it; the
/// check below ([`is_email`]) is this pattern written out, after trimming.
pub const EMAIL_PATTERN: &str =
    r"^\s*[A-Za-z0-9._%+\-]+@[A-Za-z0-9\-][A-Za-z0-9.\-]*\.[A-Za-z0-9.\-]*[A-Za-z0-9\-]\s*$";

/// [`EMAIL_PATTERN`] without the white space around: a local part of
/// `A-Z a-z 0-9 . _ % + -`, `@`, a domain of `A-Z a-z 0-9 . -` with a dot
/// that is neither its first nor its last character.
fn is_email(e: &str) -> bool {
    let Some((local, domain)) = e.split_once('@') else {
        return false;
    };
    let local_ok = |c: char| c.is_ascii_alphanumeric() || "._%+-".contains(c);
    let domain_ok = |c: char| c.is_ascii_alphanumeric() || ".-".contains(c);
    let inner = domain
        .get(1..domain.len().saturating_sub(1))
        .unwrap_or_default();
    !local.is_empty()
        && local.chars().all(local_ok)
        && domain.len() >= 3
        && domain.chars().all(domain_ok)
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && inner.contains('.')
}

/// A normalised email: trimmed, lower-case, one `@`, no spaces, <= 254 chars.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email(String);

impl Email {
    pub fn parse(raw: &str) -> Result<Self, FieldError> {
        let e = raw.trim().to_lowercase();
        let bad = |m: &str| FieldError::new("email", m);
        if e.is_empty() || e.len() > EMAIL_MAX_BYTES {
            return Err(bad("must be 1 to 254 characters"));
        }
        if !is_email(&e) {
            return Err(bad("must be an email address"));
        }
        if e.ends_with(super::TEST_ACCOUNT_DOMAIN) {
            // The load tester's accounts live there, and are deleted with
            // their test: nobody else may hold one.
            return Err(bad(&format!(
                "must not end with {}: that domain is reserved for load tests",
                super::TEST_ACCOUNT_DOMAIN
            )));
        }
        Ok(Self(e))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A new password: 8 to 128 characters, not only spaces.
pub struct Password(pub SecretString);

impl Password {
    pub fn parse(field: &str, raw: SecretString) -> Result<Self, FieldError> {
        let n = raw.expose_secret().chars().count();
        if !PASSWORD_CHARS.contains(&n) {
            return Err(FieldError::new(
                field,
                format!(
                    "must be {} to {} characters",
                    PASSWORD_CHARS.start(),
                    PASSWORD_CHARS.end()
                ),
            ));
        }
        if raw.expose_secret().trim().is_empty() {
            return Err(FieldError::new(field, "must not be only spaces"));
        }
        Ok(Self(raw))
    }
}

/// A display name: trimmed, 1 to 100 characters, no control characters.
pub fn parse_name(raw: &str) -> Result<String, FieldError> {
    let name = raw.trim();
    if name.is_empty()
        || name.chars().count() > NAME_MAX_CHARS
        || name.chars().any(char::is_control)
    {
        return Err(FieldError::new(
            "name",
            "must be 1 to 100 characters without control characters",
        ));
    }
    Ok(name.to_string())
}

/// A client JSON object, size-limited. Returns its compact text.
pub fn parse_object(field: &str, value: &Value) -> Result<String, FieldError> {
    if !value.is_object() {
        return Err(FieldError::new(field, "must be a JSON object"));
    }
    let text = value.to_string();
    if text.len() > MAX_JSON_OBJECT_BYTES {
        return Err(FieldError::new(
            field,
            format!("must be at most {MAX_JSON_OBJECT_BYTES} bytes of JSON"),
        ));
    }
    Ok(text)
}

/// Collects field errors; `Err` when there is any.
#[derive(Default)]
pub struct Checks(pub Vec<FieldError>);

impl Checks {
    pub fn take<T>(&mut self, r: Result<T, FieldError>) -> Option<T> {
        match r {
            Ok(v) => Some(v),
            Err(e) => {
                self.0.push(e);
                None
            }
        }
    }

    pub fn finish(self) -> Result<(), AppError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(AppError::Validation(self.0))
        }
    }
}

/// `POST /api/users`. Unknown fields (`role`, `id`...) are rejected.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SignUp {
    pub email: String,
    #[schema(value_type = String, format = Password)]
    pub password: SecretString,
    pub name: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub preferences: Option<Value>,
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Value>,
}

/// `PUT /api/users/{userId}`: every field optional. A password change needs
/// `currentPassword` (except an admin changing another user's); `role` only
/// by an admin.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct UpdateUser {
    pub name: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub preferences: Option<Value>,
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Value>,
    #[schema(value_type = Option<String>, format = Password)]
    pub password: Option<SecretString>,
    #[schema(value_type = Option<String>, format = Password)]
    pub current_password: Option<SecretString>,
    pub role: Option<Role>,
}

/// A user as the API shows it (never the password hash).
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct User {
    pub id: UserId,
    pub email: String,
    pub name: Option<String>,
    pub role: Role,
    #[schema(value_type = Object)]
    pub preferences: Map<String, Value>,
    #[schema(value_type = Object)]
    pub metadata: Map<String, Value>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// Usage figures of a user, computed by SQL (may lag a few seconds).
#[derive(Debug, Clone, Default, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UserStats {
    pub sessions: i64,
    pub active_sessions: i64,
    pub last_activity_at: Option<Timestamp>,
    pub jobs: i64,
    pub jobs_succeeded: i64,
    pub jobs_failed: i64,
    pub files: i64,
    pub file_bytes: i64,
    pub ai_calls: i64,
    pub ai_input_tokens: i64,
    pub ai_output_tokens: i64,
}

/// `GET /api/users/{userId}`.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UserProfile {
    #[serde(flatten)]
    pub user: User,
    pub stats: UserStats,
}

/// `GET /api/users` filters.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct UserFilter {
    /// Part of the email or name (case-insensitive for ASCII letters).
    pub q: Option<String>,
    pub role: Option<Role>,
    /// Items per page, 1-200 (default 50).
    pub limit: Option<u32>,
    /// The `nextCursor` of the previous page.
    pub cursor: Option<String>,
}

/// A `LIKE` pattern matching `q` anywhere, with `%`, `_` and `\` escaped
/// (`ESCAPE '\'`); `None` for an empty search.
pub fn contains_pattern(q: &str) -> Option<String> {
    let q = q.trim();
    if q.is_empty() {
        return None;
    }
    let mut p = String::with_capacity(q.len() + 2);
    p.push('%');
    for c in q.chars() {
        if matches!(c, '%' | '_' | '\\') {
            p.push('\\');
        }
        p.push(c);
    }
    p.push('%');
    Some(p)
}

/// Parses a stored JSON object column (always written by us as an object).
pub fn object_from_db(text: &str) -> Map<String, Value> {
    serde_json::from_str(text).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_normalised_and_checked() {
        assert_eq!(
            Email::parse("  Ann@Example.COM ").unwrap().as_str(),
            "ann@example.com"
        );
        for bad in [
            "",
            "ann",
            "@example.com",
            "ann@",
            "ann@com",
            "a b@example.com",
            "ann@.com",
            "ann*@example.com",
            "ann@exa_mple.com",
            "ann@example.",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn passwords_have_length_limits() {
        assert!(Password::parse("password", "short".to_string().into()).is_err());
        assert!(Password::parse("password", "x".repeat(129).into()).is_err());
        assert!(Password::parse("password", "         ".to_string().into()).is_err());
        assert!(Password::parse("password", "correct horse".to_string().into()).is_ok());
    }

    #[test]
    fn objects_must_be_small_json_objects() {
        assert!(parse_object("metadata", &serde_json::json!([1])).is_err());
        assert!(parse_object("metadata", &serde_json::json!({"a": "x".repeat(20_000)})).is_err());
        assert_eq!(
            parse_object("metadata", &serde_json::json!({"a": 1})).unwrap(),
            r#"{"a":1}"#
        );
    }
}
