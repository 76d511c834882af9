//! Request ids: echoed when the client sent a sane `x-request-id`, generated
//! otherwise, returned on every response (see [`super::middleware::edge`])
//! and visible to the code handling the request through a task-local (error
//! bodies carry it).

use std::sync::Arc;

use axum::http::{HeaderMap, HeaderValue};

pub const HEADER: &str = "x-request-id";

tokio::task_local! {
    static REQUEST_ID: Arc<str>;
}

/// The id of the request being handled by this task, if any.
pub fn current_request_id() -> Option<String> {
    REQUEST_ID.try_with(|id| id.to_string()).ok()
}

/// A client-sent id is kept when it is 1-128 characters of `[A-Za-z0-9._:-]`.
fn is_sane(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

/// The request's id: the client's when sane, else a fresh UUID, with the
/// header value that returns it.
pub fn assign(headers: &HeaderMap) -> (Arc<str>, HeaderValue) {
    if let Some(v) = headers.get(HEADER)
        && let Ok(s) = v.to_str()
        && is_sane(s)
    {
        return (Arc::from(s), v.clone());
    }
    let mut buf = uuid::Uuid::encode_buffer();
    let id: &str = uuid::Uuid::new_v4().simple().encode_lower(&mut buf);
    let value = HeaderValue::from_str(id).unwrap_or_else(|_| HeaderValue::from_static("invalid"));
    (Arc::from(id), value)
}

/// Runs `fut` with the given request id visible to [`current_request_id`].
pub async fn scope<F: Future>(id: Arc<str>, fut: F) -> F::Output {
    REQUEST_ID.scope(id, fut).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_short_plain_ids_are_echoed() {
        assert!(is_sane("abc-123_x.y:z"));
        assert!(!is_sane(""));
        assert!(!is_sane("has space"));
        assert!(!is_sane("<script>"));
        assert!(!is_sane(&"a".repeat(129)));
    }

    #[test]
    fn sane_ids_are_kept_and_others_replaced() {
        let mut h = HeaderMap::new();
        h.insert(HEADER, HeaderValue::from_static("client-id.1"));
        let (id, v) = assign(&h);
        assert_eq!((&*id, v.to_str().unwrap()), ("client-id.1", "client-id.1"));
        h.insert(HEADER, HeaderValue::from_static("bad id"));
        let (id, v) = assign(&h);
        assert_eq!(id.len(), 32);
        assert_eq!(v.to_str().unwrap(), &*id);
    }
}
