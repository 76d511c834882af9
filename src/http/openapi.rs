//! The OpenAPI 3.1 document: general information and the bearer scheme. The
//! paths come from each handler's `#[utoipa::path]` through the routers;
//! [`complete`] then adds what every route shares (errors, headers).

use axum::http::StatusCode;
use utoipa::Modify;
use utoipa::OpenApi;
use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::path::{Operation, ParameterIn};
use utoipa::openapi::schema::{Object, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{Content, Ref, RefOr, Response};

use crate::config::Config;
use crate::error::{PROBLEM_CODES, PROBLEM_JSON};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "hs-platform",
        description = "Accounts, durable jobs, AI chat, documents and monitoring in one service. \
                       Errors are RFC 9457 problem+json bodies with a stable `code`.",
    ),
    modifiers(&BearerScheme),
    components(schemas(crate::error::Problem, crate::error::FieldError)),
    tags(
        (name = "health", description = "Liveness"),
        (name = "users", description = "Accounts"),
        (name = "sessions", description = "Login, logout and sessions"),
        (name = "jobs", description = "The durable job queue"),
        (name = "ai", description = "AI chat through the Claude Messages API"),
        (name = "files", description = "Document generation, uploads and downloads"),
        (name = "monitoring", description = "Request log, errors, performance, system, alerts, metrics (admin)"),
        (name = "analytics", description = "Platform analytics computed by SQL (admin)"),
        (name = "loadtest", description = "Built-in load testing (admin)"),
        (name = "maintenance", description = "Maintenance and backups (admin)"),
    )
)]
pub struct ApiDoc;

struct BearerScheme;

impl Modify for BearerScheme {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("The token answered by POST /api/sessions"))
                    .build(),
            ),
        );
    }
}
/// The served document: the assembled paths [`complete`]d, the validation
/// rules of [`super::openapi_rules`] merged in, and `Problem.code` as the
/// enum of [`PROBLEM_CODES`].
pub fn document(mut doc: utoipa::openapi::OpenApi, config: &Config) -> serde_json::Value {
    complete(&mut doc);
    let mut doc = serde_json::to_value(&doc).expect("the OpenAPI document serialises");
    let missing = super::openapi_rules::apply(&mut doc, super::openapi_rules::rules(config));
    if !missing.is_empty() {
        tracing::error!(
            ?missing,
            "validation rules whose target is not in the document"
        );
    }
    debug_assert!(
        missing.is_empty(),
        "validation rules whose target is not in the document: {missing:?}"
    );
    if let Some(code) = doc.pointer_mut("/components/schemas/Problem/properties/code") {
        code["enum"] = serde_json::json!(PROBLEM_CODES);
    }
    doc
}

/// Completes the assembled document from facts of each operation, so that
/// what every route can answer is stated once, here, and not in each
/// annotation:
/// - a `description` on every response (OpenAPI requires one);
/// - every error (4xx, 5xx) as `application/problem+json` with the shared
///   `Problem` schema;
/// - 401 where a bearer is required, 403 where the `admin` role is, 400,
///   413, 415 and 422 where a JSON or multipart body is read, 422 where
///   query parameters are, 408 and 429 everywhere (the timeout and the rate
///   limit sit in front of every route);
/// - `x-request-id` on every response, `Retry-After` and the `RateLimit`
///   headers on 429, `Retry-After` on 503, `Location` on 202.
pub fn complete(doc: &mut utoipa::openapi::OpenApi) {
    let components = doc.components.get_or_insert_with(Default::default);
    for (name, description) in HEADERS {
        components.headers.insert(
            (*name).to_string(),
            HeaderBuilder::new()
                .schema(Some(Object::with_type(Type::String)))
                .description(Some(*description))
                .build()
                .into(),
        );
    }
    for item in doc.paths.paths.values_mut() {
        for op in [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.patch,
        ]
        .into_iter()
        .flatten()
        {
            complete_operation(op);
        }
    }
}

const REQUEST_ID: &str = "x-request-id";

/// Response headers, in `components/headers`.
const HEADERS: &[(&str, &str)] = &[
    (
        REQUEST_ID,
        "The request's id: the client's `x-request-id` if it sent a sane one, else generated. Also `requestId` in problem bodies.",
    ),
    ("Retry-After", "Seconds to wait before retrying."),
    (
        "RateLimit",
        "IETF draft `RateLimit` header: the remaining quota and when it resets (`limit=..., remaining=..., reset=...`).",
    ),
    (
        "RateLimit-Policy",
        "IETF draft `RateLimit-Policy` header: the quota that applies (`N;w=60`).",
    ),
    (
        "Location",
        "Where the created resource (or the job doing the work) is.",
    ),
];

fn complete_operation(op: &mut Operation) {
    let requirements: Vec<serde_json::Value> = op
        .security
        .iter()
        .flatten()
        .filter_map(|r| serde_json::to_value(r).ok())
        .collect();
    let secured = requirements
        .iter()
        .any(|r| r.as_object().is_some_and(|o| !o.is_empty()));
    let admin = requirements
        .iter()
        .filter_map(|r| r.as_object())
        .flat_map(|o| o.values())
        .filter_map(|scopes| scopes.as_array())
        .any(|scopes| scopes.iter().any(|s| s == "admin"));
    let body_types: Vec<String> = match &op.request_body {
        Some(RefOr::T(body)) => body.content.keys().cloned().collect(),
        _ => Vec::new(),
    };
    let query = op
        .parameters
        .iter()
        .flatten()
        .any(|p| matches!(p, RefOr::T(p) if matches!(p.parameter_in, ParameterIn::Query)));
    let idempotent = op
        .parameters
        .iter()
        .flatten()
        .any(|p| matches!(p, RefOr::T(p) if p.name.eq_ignore_ascii_case("Idempotency-Key")));

    let mut statuses: Vec<(u16, &str)> = vec![
        (
            408,
            "the request took longer than `REQUEST_TIMEOUT_SECONDS`",
        ),
        (
            429,
            "rate limited (`RATE_LIMIT_PER_MINUTE`): retry after `Retry-After` seconds",
        ),
    ];
    if secured {
        statuses.push((401, "missing, invalid or expired credentials"));
    }
    if admin {
        statuses.push((403, "the caller is not an admin"));
    }
    if !body_types.is_empty() {
        statuses.extend([
            (
                400,
                "the body is not well-formed (not JSON, or a malformed multipart body)",
            ),
            (413, "the body is larger than the limit"),
            (
                415,
                "the body's `Content-Type` is not one this operation reads",
            ),
            (
                422,
                "the body does not fit the schema; `errors` names each field",
            ),
        ]);
    }
    if query {
        statuses.push((422, "a query parameter is invalid; `errors` names it"));
    }
    if idempotent {
        statuses.push((
            409,
            "this `Idempotency-Key` was already used for a different request",
        ));
    }
    for (status, description) in statuses {
        op.responses
            .responses
            .entry(status.to_string())
            .or_insert_with(|| Response::new(description).into());
    }

    for (status, response) in &mut op.responses.responses {
        let RefOr::T(response) = response else {
            continue;
        };
        let code: u16 = status.parse().unwrap_or(0);
        if response.description.is_empty() {
            response.description = StatusCode::from_u16(code)
                .ok()
                .and_then(|s| s.canonical_reason())
                .unwrap_or("answer")
                .to_string();
        }
        let mut headers = vec![REQUEST_ID];
        if code >= 400 {
            response.content.clear();
            response.content.insert(
                PROBLEM_JSON.to_string(),
                Content::new(Some(Ref::from_schema_name("Problem"))).into(),
            );
        }
        match code {
            429 => headers.extend(["Retry-After", "RateLimit", "RateLimit-Policy"]),
            503 => headers.push("Retry-After"),
            202 => headers.push("Location"),
            _ => {}
        }
        for name in headers {
            response
                .headers
                .entry(name.to_string())
                .or_insert_with(|| RefOr::Ref(Ref::new(format!("#/components/headers/{name}"))));
        }
    }
}
