//! The validation rules of request fields and query parameters, stated once
//! for the OpenAPI document from the same constants the handlers check
//! (`PASSWORD_CHARS`, `PAGE_LIMIT`, `MAX_SECTIONS`...), so that the
//! document and the checks cannot drift apart: change a constant and both
//! change. A rule whose target is missing from the document (a renamed type
//! or field) stops the document's assembly in debug builds, so every test
//! that starts the app fails.
//!
//! Convention for a new field with a rule: put the bound in a `pub const`
//! next to the type in its domain's `model.rs`, use it in the check, and add
//! a row here (`field(schema, property, keywords)` or `param(path, name,
//! keywords)`). Rules that depend on configuration (the chat models and
//! token limit) come from [`Config`].

use serde_json::{Value, json};

use crate::ai::model::{MAX_CONTENT_CHARS, MAX_MESSAGES};
use crate::analytics::model::STORAGE_LIMIT;
use crate::config::Config;
use crate::files::model::{
    MAX_CSV_CELL_CHARS, MAX_CSV_COLUMNS, MAX_CSV_ROWS, MAX_KEYWORDS, MAX_LIST_ITEMS, MAX_SECTIONS,
    MAX_TABLE_COLUMNS, MAX_TABLE_ROWS, MAX_TEXT_CHARS, MAX_TIMEOUT_MS, MAX_TITLE_CHARS,
    MAX_VIEWPORT_HEIGHT, MAX_VIEWPORT_WIDTH, MIN_TIMEOUT_MS, MIN_VIEWPORT,
};
use crate::http::extract::PAGE_LIMIT;
use crate::jobs::model::{ADMIN_PRIORITIES, IDEMPOTENCY_KEY_BYTES};
use crate::loadtest::model::VIRTUAL_USERS;
use crate::monitoring::timeseries::WINDOWS as TIMESERIES_WINDOWS;
use crate::users::model::{EMAIL_MAX_BYTES, EMAIL_PATTERN, NAME_MAX_CHARS, PASSWORD_CHARS};

/// A string with at least one character that is not white space.
pub const NOT_BLANK: &str = r"\S";
/// A display name: no control characters, not only white space.
pub const NAME_PATTERN: &str =
    r"^[^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f][^\x00-\x1f\x7f-\x9f]*$";
/// An absolute http(s) URL with a host name and a path, no credentials.
pub const URL_PATTERN: &str = r"^https?://[a-z0-9]([a-z0-9\-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9\-]*[a-z0-9])?)*(/[A-Za-z0-9._~\-/]*)?$";
/// `parse_window` of monitoring: seconds, minutes, hours or days, within
/// 400 days.
pub const WINDOW_PATTERN: &str =
    r"^([1-9][0-9]{0,6}s?|[1-9][0-9]{0,4}m|[1-9][0-9]{0,2}h|[1-9][0-9]?d|[1-3][0-9]{2}d)$";
/// The request log's cursor: a row id.
pub const LOG_CURSOR_PATTERN: &str = r"^[0-9]{1,18}$";
/// The error groups' cursor: `<last seen>|<fingerprint>`.
pub const ERROR_CURSOR_PATTERN: &str = r"^(19|20)[0-9]{2}-(0[1-9]|1[0-2])-(0[1-9]|1[0-9]|2[0-8])T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]{1,9})?Z\|";

/// Keywords merged into one schema of the document, at a JSON pointer.
pub struct Rule {
    pub at: String,
    pub keywords: Value,
}

/// A property of a component schema (`SignUp`, `password`).
fn field(schema: &str, property: &str, keywords: Value) -> Rule {
    Rule {
        at: format!("/components/schemas/{schema}/properties/{property}"),
        keywords,
    }
}

/// A property of one variant of a tagged enum (`Section`, variant 2).
fn variant(schema: &str, index: usize, property: &str, keywords: Value) -> Rule {
    Rule {
        at: format!("/components/schemas/{schema}/oneOf/{index}/properties/{property}"),
        keywords,
    }
}

/// A whole component schema.
fn schema(name: &str, keywords: Value) -> Rule {
    Rule {
        at: format!("/components/schemas/{name}"),
        keywords,
    }
}

/// A variant of a tagged enum, as a whole.
fn variant_schema(schema: &str, index: usize, keywords: Value) -> Rule {
    Rule {
        at: format!("/components/schemas/{schema}/oneOf/{index}"),
        keywords,
    }
}

/// A query or header parameter; `path` `*` means every operation that has
/// it.
fn param(path: &str, name: &str, keywords: Value) -> Rule {
    Rule {
        at: format!("param:{path}:{name}"),
        keywords,
    }
}

/// A download's answer: bytes of any media type.
fn download(status: &str) -> Rule {
    // No `schema`: with a binary schema here, schemathesis 4.32 fails to
    // generate bodies for the operations that link to this one.
    Rule {
        at: format!("/paths/~1api~1files~1{{fileId}}/get/responses/{status}"),
        keywords: json!({"content": {"application/octet-stream": {}, "*/*": {}}}),
    }
}

fn text(min: usize, max: usize) -> Value {
    json!({"minLength": min, "maxLength": max})
}

fn not_blank(max: usize) -> Value {
    json!({"minLength": 1, "maxLength": max, "pattern": NOT_BLANK})
}

fn list(min: usize, max: usize) -> Value {
    json!({"minItems": min, "maxItems": max})
}

/// Every rule, from the handlers' constants.
pub fn rules(config: &Config) -> Vec<Rule> {
    let (pw_min, pw_max) = (*PASSWORD_CHARS.start(), *PASSWORD_CHARS.end());
    let password = json!({"minLength": pw_min, "maxLength": pw_max, "pattern": NOT_BLANK});
    let name = json!({"minLength": 1, "maxLength": NAME_MAX_CHARS, "pattern": NAME_PATTERN});
    let timestamp = json!({"format": "date-time"});
    let priority = json!({"minimum": ADMIN_PRIORITIES.start(), "maximum": ADMIN_PRIORITIES.end()});
    let cell = json!({"type": ["string", "number", "boolean", "null"], "maxLength": 10_000});
    let mut models = config.anthropic_allowed_models.clone();
    models.sort();
    models.dedup();
    let mut model_enum: Vec<Value> = models.into_iter().map(Value::from).collect();
    model_enum.push(Value::Null);
    vec![
        // Accounts.
        field(
            "SignUp",
            "email",
            json!({"maxLength": EMAIL_MAX_BYTES, "pattern": EMAIL_PATTERN}),
        ),
        field("SignUp", "password", password.clone()),
        field("SignUp", "name", name.clone()),
        field("UpdateUser", "name", name),
        field("UpdateUser", "password", password),
        // Lists.
        param(
            "*",
            "limit",
            json!({"minimum": PAGE_LIMIT.start(), "maximum": PAGE_LIMIT.end()}),
        ),
        // Job priority: the wider (admin) range; a user's is in the
        // description.
        field("Document", "priority", priority.clone()),
        field("CsvRequest", "priority", priority.clone()),
        field("ScreenshotRequest", "priority", priority.clone()),
        field("ChatRequest", "priority", priority),
        param(
            "/api/analytics/storage",
            "limit",
            json!({"minimum": STORAGE_LIMIT.start(), "maximum": STORAGE_LIMIT.end()}),
        ),
        param(
            "/api/monitoring/timeseries",
            "window",
            json!({"enum": TIMESERIES_WINDOWS.iter().map(|(w, ..)| *w).collect::<Vec<_>>()}),
        ),
        param(
            "/api/monitoring/logs",
            "cursor",
            json!({"pattern": LOG_CURSOR_PATTERN}),
        ),
        param("/api/monitoring/logs", "from", timestamp.clone()),
        param("/api/monitoring/logs", "to", timestamp.clone()),
        param(
            "/api/monitoring/logs",
            "status",
            json!({"minimum": u16::MIN, "maximum": u16::MAX}),
        ),
        param(
            "*",
            "Idempotency-Key",
            json!({"minLength": IDEMPOTENCY_KEY_BYTES.start(), "maxLength": IDEMPOTENCY_KEY_BYTES.end()}),
        ),
        param(
            "/api/monitoring/logs",
            "statusClass",
            json!({"enum": ["1xx", "2xx", "3xx", "4xx", "5xx"]}),
        ),
        param(
            "/api/monitoring/logs",
            "source",
            json!({"enum": ["api", "loadtest"]}),
        ),
        param(
            "/api/monitoring/errors",
            "cursor",
            json!({"pattern": ERROR_CURSOR_PATTERN}),
        ),
        param("/api/monitoring/errors", "since", timestamp.clone()),
        param(
            "/api/monitoring/performance",
            "window",
            json!({"pattern": WINDOW_PATTERN}),
        ),
        param("/api/analytics/summary", "from", json!({"format": "date"})),
        param("/api/analytics/summary", "to", json!({"format": "date"})),
        param(
            "/api/files",
            "kind",
            json!({"enum": ["pdf", "docx", "csv", "screenshot", "upload"]}),
        ),
        // Documents.
        field("Document", "title", not_blank(MAX_TITLE_CHARS)),
        field("Document", "sections", list(1, MAX_SECTIONS)),
        field("Document", "fileName", json!({"maxLength": 200})),
        field(
            "DocMetadata",
            "author",
            json!({"maxLength": MAX_TITLE_CHARS}),
        ),
        field(
            "DocMetadata",
            "subject",
            json!({"maxLength": MAX_TITLE_CHARS}),
        ),
        field(
            "DocMetadata",
            "keywords",
            json!({"maxItems": MAX_KEYWORDS, "items": {"type": "string", "maxLength": 100}}),
        ),
        variant_schema("Section", 0, json!({"additionalProperties": false})),
        variant_schema("Section", 1, json!({"additionalProperties": false})),
        variant_schema("Section", 2, json!({"additionalProperties": false})),
        variant_schema("Section", 3, json!({"additionalProperties": false})),
        variant("Section", 0, "text", json!({"maxLength": MAX_TITLE_CHARS})),
        variant("Section", 0, "level", json!({"minimum": 1, "maximum": 3})),
        variant("Section", 1, "text", json!({"maxLength": MAX_TEXT_CHARS})),
        variant(
            "Section",
            2,
            "items",
            json!({"minItems": 1, "maxItems": MAX_LIST_ITEMS, "items": {"type": "string", "maxLength": MAX_TEXT_CHARS}}),
        ),
        variant(
            "Section",
            3,
            "rows",
            json!({"minItems": 1, "maxItems": MAX_TABLE_ROWS, "items": {"type": "array", "minItems": 1, "maxItems": MAX_TABLE_COLUMNS, "items": cell}}),
        ),
        // CSV.
        field("CsvRequest", "columns", list(1, MAX_CSV_COLUMNS)),
        field(
            "CsvRequest",
            "rows",
            json!({"maxItems": MAX_CSV_ROWS, "items": {"type": "object", "additionalProperties": {"type": ["string", "number", "boolean", "null"], "maxLength": MAX_CSV_CELL_CHARS}}}),
        ),
        field("CsvRequest", "fileName", json!({"maxLength": 200})),
        field("CsvColumn", "key", text(1, 200)),
        field("CsvColumn", "title", json!({"maxLength": 1000})),
        // Screenshots.
        field(
            "LoadTestRequest",
            "virtualUsers",
            json!({"minimum": VIRTUAL_USERS.start(), "maximum": VIRTUAL_USERS.end()}),
        ),
        field(
            "ScreenshotRequest",
            "url",
            json!({"maxLength": 4096, "pattern": URL_PATTERN}),
        ),
        field("ScreenshotRequest", "selector", not_blank(500)),
        field(
            "ScreenshotRequest",
            "quality",
            json!({"minimum": 1, "maximum": 100}),
        ),
        field(
            "ScreenshotRequest",
            "timeoutMs",
            json!({"minimum": MIN_TIMEOUT_MS, "maximum": MAX_TIMEOUT_MS}),
        ),
        field("ScreenshotRequest", "fileName", json!({"maxLength": 200})),
        // `quality` applies to JPEG only.
        schema(
            "ScreenshotRequest",
            json!({"if": {"properties": {"format": {"const": "jpeg"}}, "required": ["format"]}, "else": {"properties": {"quality": {"type": "null"}}}}),
        ),
        field(
            "Viewport",
            "width",
            json!({"minimum": MIN_VIEWPORT, "maximum": MAX_VIEWPORT_WIDTH}),
        ),
        field(
            "Viewport",
            "height",
            json!({"minimum": MIN_VIEWPORT, "maximum": MAX_VIEWPORT_HEIGHT}),
        ),
        // The chat's stream: server-sent events.
        Rule {
            at:
                "/paths/~1api~1claude-ai~1chat/post/responses/200/content/text~1event-stream/schema"
                    .into(),
            keywords: json!({"type": "object", "required": ["event", "data"], "properties": {
                "event": {"enum": ["delta", "done", "error"]},
                "data": {"type": "string", "description": "JSON: `{text}` (delta), a ChatResult (done) or a Problem (error)"},
            }}),
        },
        // Downloads answer the file's own media type (`*/*`); generators
        // read the first entry (`application/octet-stream`).
        download("200"),
        download("206"),
        // Uploads: one part, `file`.
        schema("UploadForm", json!({"additionalProperties": false})),
        // "Not empty" (422) is in the description: `minLength` on a binary
        // part stops schemathesis 4.32 generating other operations' bodies.
        field(
            "UploadForm",
            "file",
            json!({"description": "the content (not empty); its type is sniffed and must be allowed"}),
        ),
        // Chat. "Exactly one of `message` or `messages`" is in the
        // description only: schemathesis' coverage phase mishandles a
        // root `anyOf` (tests/contract/schemathesis.toml).
        field("ChatRequest", "message", not_blank(MAX_CONTENT_CHARS)),
        field(
            "ChatRequest",
            "messages",
            json!({"minItems": 1, "maxItems": MAX_MESSAGES, "items": {"$ref": "#/components/schemas/ChatMessage"}, "prefixItems": [{"properties": {"role": {"const": "user"}}}]}),
        ),
        field(
            "ChatRequest",
            "system",
            json!({"maxLength": MAX_CONTENT_CHARS}),
        ),
        field("ChatRequest", "model", json!({"enum": model_enum})),
        field(
            "ChatRequest",
            "maxTokens",
            json!({"minimum": 1, "maximum": config.ai_max_tokens}),
        ),
        field(
            "ChatRequest",
            "temperature",
            json!({"minimum": 0, "maximum": 1}),
        ),
        field(
            "ChatMessage",
            "role",
            json!({"enum": ["user", "assistant"]}),
        ),
        field("ChatMessage", "content", not_blank(MAX_CONTENT_CHARS)),
    ]
}

/// Merges every rule into the document (a JSON value); answers the
/// pointers of the rules whose target is missing.
pub fn apply(doc: &mut Value, rules: Vec<Rule>) -> Vec<String> {
    let mut missing = Vec::new();
    for rule in rules {
        let landed = match rule.at.strip_prefix("param:") {
            Some(spec) => {
                let (path, name) = spec.rsplit_once(':').unwrap_or((spec, ""));
                apply_param(doc, path, name, &rule.keywords)
            }
            None => match doc.pointer_mut(&rule.at) {
                Some(target) => {
                    merge(target, &rule.keywords);
                    true
                }
                None => false,
            },
        };
        if !landed {
            missing.push(rule.at);
        }
    }
    missing
}

fn apply_param(doc: &mut Value, path: &str, name: &str, keywords: &Value) -> bool {
    let mut landed = false;
    let Some(paths) = doc.get_mut("paths").and_then(Value::as_object_mut) else {
        return false;
    };
    for (p, item) in paths.iter_mut() {
        if path != "*" && p != path {
            continue;
        }
        let Some(item) = item.as_object_mut() else {
            continue;
        };
        for op in item.values_mut() {
            let Some(params) = op.get_mut("parameters").and_then(Value::as_array_mut) else {
                continue;
            };
            for param in params {
                if param.get("name").and_then(Value::as_str) == Some(name)
                    && let Some(schema) = param.get_mut("schema")
                {
                    merge(schema, keywords);
                    landed = true;
                }
            }
        }
    }
    landed
}

/// Adds (or replaces) the keywords on a schema.
fn merge(target: &mut Value, keywords: &Value) {
    let (Some(target), Some(keywords)) = (target.as_object_mut(), keywords.as_object()) else {
        return;
    };
    for (k, v) in keywords {
        target.insert(k.clone(), v.clone());
    }
}
