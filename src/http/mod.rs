//! HTTP assembly: every domain's router merged in one place (the whole API
//! table is visible here), the middleware stack in the order a request meets
//! it, and the OpenAPI document.
//!
//! A request passes, outermost first: the edge middleware (request id,
//! span, caller identification, the CSRF check of cookie writes, logging
//! of internal causes, problem normalisation, security headers, request
//! log, metrics, error tracking)
//! -> panic catching -> CORS (when `CORS_ORIGINS` is set) -> rate limit ->
//! timeout -> body limit -> the route's handler.

pub mod cache;
pub mod client_ip;
pub mod csrf;
pub mod extract;
pub mod middleware;
pub mod openapi;
pub mod openapi_rules;
pub mod ratelimit;
pub mod request_id;
pub mod route;
pub mod server;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderName, HeaderValue, Method, StatusCode, header};
use axum::middleware::from_fn_with_state;
use axum::routing::get;
use tower::util::option_layer;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::timeout::TimeoutLayer;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_scalar::{Scalar, Servable};

use crate::error::AppError;
use crate::state::AppState;

/// Every domain's routes, with their OpenAPI descriptions.
pub fn api() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .merge(crate::health::router())
        .merge(crate::users::routes::router())
        .merge(crate::sessions::routes::router())
        .merge(crate::jobs::routes::router())
        .merge(crate::ai::routes::router())
        .merge(crate::files::routes::router())
        .merge(crate::monitoring::routes::router())
        .merge(crate::analytics::routes::router())
        .merge(crate::loadtest::routes::router())
        .merge(crate::maintenance::routes::router())
}

/// The complete application router.
pub fn router(state: AppState) -> Router {
    let (api, doc) = api().split_for_parts();
    let doc = openapi::document(doc, &state.config);
    // The document is served as the JSON it serialises to once; the tree
    // itself (about 1 MB of small allocations) is not kept.
    let doc_json =
        bytes::Bytes::from(serde_json::to_vec(&doc).expect("the OpenAPI document serialises"));
    let config = state.config.clone();

    api.route(
        "/openapi.json",
        get(move || {
            let body = doc_json.clone();
            async move { ([(header::CONTENT_TYPE, "application/json")], body) }
        }),
    )
    .merge(Router::from(Scalar::with_url("/docs", doc)))
    .merge(crate::console::router())
    .fallback(|| async {
        AppError::Problem {
            status: StatusCode::NOT_FOUND,
            code: "not_found",
            message: "no route matches this path".into(),
        }
    })
    .layer(DefaultBodyLimit::max(config.body_limit_bytes))
    .layer(TimeoutLayer::with_status_code(
        StatusCode::REQUEST_TIMEOUT,
        config.request_timeout,
    ))
    .layer(from_fn_with_state(
        state.limits.clone(),
        ratelimit::middleware,
    ))
    .layer(option_layer(cors(&config.cors_origins)))
    .layer(CatchPanicLayer::custom(middleware::panic_response))
    .layer(from_fn_with_state(state.clone(), middleware::edge))
    .with_state(state)
}

/// CORS for the configured origins; none at all (same-origin only) when
/// `CORS_ORIGINS` is empty, so that requests do not pay for the layer.
fn cors(origins: &[String]) -> Option<CorsLayer> {
    let base = CorsLayer::new()
        .allow_methods([Method::GET, Method::POST, Method::PUT, Method::DELETE])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            HeaderName::from_static("prefer"),
            HeaderName::from_static("idempotency-key"),
            HeaderName::from_static(request_id::HEADER),
        ])
        .expose_headers([
            HeaderName::from_static(request_id::HEADER),
            header::LOCATION,
            header::RETRY_AFTER,
            header::CONTENT_DISPOSITION,
        ])
        .max_age(std::time::Duration::from_secs(600));
    if origins.iter().any(|o| o == "*") {
        return Some(base.allow_origin(AllowOrigin::any()));
    }
    let list: Vec<HeaderValue> = origins.iter().filter_map(|o| o.parse().ok()).collect();
    if list.is_empty() {
        return None;
    }
    Some(
        base.allow_origin(AllowOrigin::list(list))
            .allow_credentials(true),
    )
}
