//! Cross-site request forgery protection for the session cookie.
//!
//! A state-changing request (any method but GET, HEAD and OPTIONS) that is
//! authenticated by the `hs_session` cookie, not by a bearer token, must come
//! from this service's own pages (the console at `/admin`) or from an origin
//! listed in `CORS_ORIGINS`. Browsers say where a request comes from:
//! `Sec-Fetch-Site` (every current browser) and `Origin` (every cross-origin
//! request and every non-GET `fetch`). A request with neither header was not
//! sent by a browser page, so it cannot be a forged one, and passes: API
//! clients, curl and tests are not affected. The cookie's `SameSite=Lax`
//! already keeps it off cross-site POSTs; this check also covers same-site
//! pages on other hosts and browsers without SameSite.

use axum::http::{HeaderMap, Method, StatusCode, header};

use crate::error::AppError;
use crate::http::extract::SESSION_COOKIE;

/// `Ok` when the request may proceed; a 403 problem otherwise.
pub fn check(method: &Method, headers: &HeaderMap, allowed: &[String]) -> Result<(), AppError> {
    if matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
        || headers.contains_key(header::AUTHORIZATION)
        || !has_session_cookie(headers)
    {
        return Ok(());
    }
    let origin = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok());
    let listed = origin.is_some_and(|o| allowed.iter().any(|a| a == o || a == "*"));
    let fetch_site = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok());
    let ok = match fetch_site {
        Some("same-origin" | "none") => true,
        Some(_) => listed,
        None => match origin {
            None => true,
            Some(o) => listed || is_own_origin(o, headers),
        },
    };
    if ok {
        Ok(())
    } else {
        Err(AppError::Problem {
            status: StatusCode::FORBIDDEN,
            code: "cross_site_request",
            message:
                "a change made with the session cookie must come from this service's own pages"
                    .into(),
        })
    }
}

fn has_session_cookie(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .any(|c| {
            c.trim()
                .split_once('=')
                .is_some_and(|(k, _)| k == SESSION_COOKIE)
        })
}

/// `Origin` names the host the request was sent to (scheme aside: a proxy
/// may end TLS in front of the service).
fn is_own_origin(origin: &str, headers: &HeaderMap) -> bool {
    let Some(host) = headers.get(header::HOST).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    origin
        .strip_prefix("https://")
        .or_else(|| origin.strip_prefix("http://"))
        .is_some_and(|o| o.eq_ignore_ascii_case(host))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            header::HOST,
            HeaderValue::from_static("console.example:8080"),
        );
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_static(v));
        }
        h
    }

    const COOKIE: (&str, &str) = ("cookie", "theme=dark; hs_session=abc");

    #[test]
    fn cookie_writes_from_other_sites_are_refused() {
        for extra in [
            ("sec-fetch-site", "cross-site"),
            ("sec-fetch-site", "same-site"),
            ("origin", "https://evil.example"),
            ("origin", "null"),
        ] {
            let err = check(&Method::POST, &headers(&[COOKIE, extra]), &[]).unwrap_err();
            assert_eq!(err.status(), StatusCode::FORBIDDEN, "{extra:?}");
            assert_eq!(err.code(), "cross_site_request");
        }
        let h = headers(&[
            COOKIE,
            ("sec-fetch-site", "cross-site"),
            ("origin", "https://evil.example"),
        ]);
        assert!(check(&Method::DELETE, &h, &[]).is_err());
    }

    #[test]
    fn own_pages_reads_bearer_tokens_and_non_browsers_pass() {
        let ok = [
            headers(&[COOKIE, ("sec-fetch-site", "same-origin")]),
            headers(&[COOKIE, ("sec-fetch-site", "none")]),
            headers(&[COOKIE, ("origin", "http://console.example:8080")]),
            headers(&[COOKIE]),
            headers(&[("sec-fetch-site", "cross-site")]),
            headers(&[
                COOKIE,
                ("authorization", "Bearer t"),
                ("sec-fetch-site", "cross-site"),
            ]),
        ];
        for h in &ok {
            assert!(check(&Method::POST, h, &[]).is_ok(), "{h:?}");
        }
        let cross = headers(&[COOKIE, ("sec-fetch-site", "cross-site")]);
        assert!(check(&Method::GET, &cross, &[]).is_ok());
    }

    #[test]
    fn configured_cors_origins_may_write_with_the_cookie() {
        let h = headers(&[
            COOKIE,
            ("sec-fetch-site", "cross-site"),
            ("origin", "https://app.example"),
        ]);
        assert!(check(&Method::PUT, &h, &["https://app.example".into()]).is_ok());
        assert!(check(&Method::PUT, &h, &["https://other.example".into()]).is_err());
    }
}
