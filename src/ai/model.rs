//! Types of the ai domain: the chat request as clients send it, its validated
//! form, the chat result, and the wire shapes of the Anthropic Messages API.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::config::Config;
use crate::error::{AppError, FieldError};

/// Longest single message or system prompt accepted, in characters.
pub const MAX_CONTENT_CHARS: usize = 100_000;
/// Most messages in one conversation.
pub const MAX_MESSAGES: usize = 100;
/// Longest conversation (all contents plus the system prompt), in characters.
pub const MAX_TOTAL_CHARS: usize = 400_000;

/// `POST /api/claude-ai/chat`: a single `message` or a `messages`
/// conversation (exactly one of them).
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ChatRequest {
    /// A single user message (shorthand for `messages: [{role: "user", content}]`).
    pub message: Option<String>,
    /// A conversation, oldest first, starting with a `user` turn.
    pub messages: Option<Vec<ChatMessage>>,
    /// System prompt.
    pub system: Option<String>,
    /// One of `ANTHROPIC_ALLOWED_MODELS`; default `ANTHROPIC_MODEL`.
    pub model: Option<String>,
    /// 1..=`AI_MAX_TOKENS` (the default).
    pub max_tokens: Option<u32>,
    /// 0..=1.
    pub temperature: Option<f64>,
    /// Answer a `text/event-stream` instead of a job.
    #[serde(default)]
    pub stream: bool,
    /// Orders the caller's own jobs: a higher priority runs before their
    /// lower ones (default 0; ignored with `stream`); fairness between users is unchanged. Users
    /// -10 to 10, admins -100 to 100.
    #[serde(default)]
    pub priority: Option<i64>,
}

/// One turn of a conversation.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ChatMessage {
    /// `user` or `assistant`.
    pub role: String,
    pub content: String,
}

/// A validated chat: what a job carries as its payload and what is sent
/// upstream.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ChatParams {
    pub model: String,
    pub messages: Vec<ChatMessage>,
    pub system: Option<String>,
    pub max_tokens: u32,
    pub temperature: Option<f64>,
}

impl ChatRequest {
    /// Checks every field against the configuration; all problems are
    /// reported at once (422 with `errors`).
    pub fn validate(self, config: &Config) -> Result<(ChatParams, bool), AppError> {
        let mut errors = Vec::new();
        let messages = match (self.message, self.messages) {
            (Some(_), Some(_)) => {
                errors.push(FieldError::new(
                    "message",
                    "send either `message` or `messages`, not both",
                ));
                Vec::new()
            }
            (None, None) => {
                errors.push(FieldError::new(
                    "message",
                    "`message` or `messages` is required",
                ));
                Vec::new()
            }
            (Some(text), None) => {
                check_content(&text, "message", &mut errors);
                vec![ChatMessage {
                    role: "user".into(),
                    content: text,
                }]
            }
            (None, Some(list)) => {
                if list.is_empty() {
                    errors.push(FieldError::new("messages", "must not be empty"));
                } else if list.len() > MAX_MESSAGES {
                    errors.push(FieldError::new(
                        "messages",
                        format!("at most {MAX_MESSAGES} messages"),
                    ));
                }
                for (i, m) in list.iter().enumerate() {
                    if m.role != "user" && m.role != "assistant" {
                        errors.push(FieldError::new(
                            format!("messages[{i}].role"),
                            "must be `user` or `assistant`",
                        ));
                    }
                    check_content(&m.content, &format!("messages[{i}].content"), &mut errors);
                }
                if list.first().is_some_and(|m| m.role != "user") {
                    errors.push(FieldError::new(
                        "messages[0].role",
                        "a conversation starts with a `user` message",
                    ));
                }
                list
            }
        };
        if let Some(system) = &self.system
            && system.chars().count() > MAX_CONTENT_CHARS
        {
            errors.push(FieldError::new(
                "system",
                format!("at most {MAX_CONTENT_CHARS} characters"),
            ));
        }
        let total: usize = messages
            .iter()
            .map(|m| m.content.chars().count())
            .sum::<usize>()
            + self.system.as_deref().map_or(0, |s| s.chars().count());
        if total > MAX_TOTAL_CHARS {
            errors.push(FieldError::new(
                "messages",
                format!("the conversation is longer than {MAX_TOTAL_CHARS} characters"),
            ));
        }
        let model = self.model.unwrap_or_else(|| config.anthropic_model.clone());
        if !config.anthropic_allowed_models.contains(&model) {
            errors.push(FieldError::new(
                "model",
                format!(
                    "must be one of: {}",
                    config.anthropic_allowed_models.join(", ")
                ),
            ));
        }
        let max_tokens = self.max_tokens.unwrap_or(config.ai_max_tokens);
        if max_tokens == 0 || max_tokens > config.ai_max_tokens {
            errors.push(FieldError::new(
                "maxTokens",
                format!("must be from 1 to {}", config.ai_max_tokens),
            ));
        }
        if let Some(t) = self.temperature
            && !(t.is_finite() && (0.0..=1.0).contains(&t))
        {
            errors.push(FieldError::new("temperature", "must be from 0 to 1"));
        }
        if !errors.is_empty() {
            return Err(AppError::Validation(errors));
        }
        Ok((
            ChatParams {
                model,
                messages,
                system: self.system.filter(|s| !s.is_empty()),
                max_tokens,
                temperature: self.temperature,
            },
            self.stream,
        ))
    }
}

fn check_content(text: &str, field: &str, errors: &mut Vec<FieldError>) {
    if text.trim().is_empty() {
        errors.push(FieldError::new(field, "must not be empty"));
    } else if text.chars().count() > MAX_CONTENT_CHARS {
        errors.push(FieldError::new(
            field,
            format!("at most {MAX_CONTENT_CHARS} characters"),
        ));
    }
}

/// Token usage of one call.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct TokenUsage {
    pub input_tokens: u64,
    pub output_tokens: u64,
}

impl TokenUsage {
    pub fn total(&self) -> u64 {
        self.input_tokens + self.output_tokens
    }
}

/// The answer of a chat: a chat job's `result` and a stream's `done` event.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ChatResult {
    pub text: String,
    /// The model that answered (as reported by the API).
    pub model: String,
    /// `end_turn`, `max_tokens`, `stop_sequence`, ...
    pub stop_reason: Option<String>,
    pub usage: TokenUsage,
    /// The API's `request-id`, for support requests.
    pub request_id: Option<String>,
}

/// The `data` of a stream's `delta` event.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ChatDelta {
    pub text: String,
}

/// Health of the AI dependency, for monitoring.
#[derive(Debug, Clone, Serialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct AiHealth {
    /// An API key is configured.
    pub configured: bool,
    /// `closed`, `open` or `half_open`.
    pub breaker: String,
    pub detail: String,
}

// --- the Anthropic Messages API wire format ----------------------------------

/// The body of `POST /v1/messages`.
#[derive(Debug, Serialize)]
pub struct MessagesRequest<'a> {
    pub model: &'a str,
    pub max_tokens: u32,
    pub messages: &'a [ChatMessage],
    #[serde(skip_serializing_if = "Option::is_none")]
    pub system: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub stream: bool,
}

impl<'a> MessagesRequest<'a> {
    pub fn new(params: &'a ChatParams, stream: bool) -> Self {
        Self {
            model: &params.model,
            max_tokens: params.max_tokens,
            messages: &params.messages,
            system: params.system.as_deref(),
            temperature: params.temperature,
            stream,
        }
    }
}

/// A message as the API answers it.
#[derive(Debug, Clone, Deserialize)]
pub struct MessageResponse {
    #[serde(rename = "type")]
    pub type_: String,
    pub model: String,
    #[serde(default)]
    pub content: Vec<ContentBlock>,
    pub stop_reason: Option<String>,
    #[serde(default)]
    pub usage: WireUsage,
}

impl MessageResponse {
    /// The concatenated text blocks.
    pub fn text(&self) -> String {
        self.content
            .iter()
            .filter(|b| b.type_ == "text")
            .filter_map(|b| b.text.as_deref())
            .collect()
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct ContentBlock {
    #[serde(rename = "type")]
    pub type_: String,
    pub text: Option<String>,
}

/// `usage` of a message. Cache reads and writes count as input tokens.
#[derive(Debug, Clone, Copy, Default, Deserialize)]
pub struct WireUsage {
    pub input_tokens: Option<u64>,
    pub output_tokens: Option<u64>,
    pub cache_creation_input_tokens: Option<u64>,
    pub cache_read_input_tokens: Option<u64>,
}

impl WireUsage {
    /// Input tokens including cache writes and reads, if reported.
    pub fn input(&self) -> Option<u64> {
        let parts = [
            self.input_tokens,
            self.cache_creation_input_tokens,
            self.cache_read_input_tokens,
        ];
        if parts.iter().all(Option::is_none) {
            return None;
        }
        Some(parts.iter().flatten().sum())
    }

    pub fn to_usage(self) -> TokenUsage {
        TokenUsage {
            input_tokens: self.input().unwrap_or(0),
            output_tokens: self.output_tokens.unwrap_or(0),
        }
    }
}

/// `{"type":"error","error":{"type","message"}}`.
#[derive(Debug, Clone, Deserialize)]
pub struct ErrorEnvelope {
    pub error: ErrorBody,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ErrorBody {
    #[serde(rename = "type")]
    pub type_: String,
    #[serde(default)]
    pub message: String,
}

/// The `data` of a streaming event (every event carries its `type`).
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum StreamEvent {
    MessageStart {
        message: StreamMessage,
    },
    ContentBlockStart {},
    ContentBlockDelta {
        delta: BlockDelta,
    },
    ContentBlockStop {},
    MessageDelta {
        delta: MessageDeltaBody,
        #[serde(default)]
        usage: WireUsage,
    },
    MessageStop {},
    Ping {},
    Error {
        error: ErrorBody,
    },
    #[serde(other)]
    Unknown,
}

#[derive(Debug, Clone, Deserialize)]
pub struct StreamMessage {
    pub model: String,
    #[serde(default)]
    pub usage: WireUsage,
}

#[derive(Debug, Clone, Deserialize)]
pub struct BlockDelta {
    #[serde(rename = "type")]
    pub type_: String,
    pub text: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct MessageDeltaBody {
    pub stop_reason: Option<String>,
}

/// One page of `GET /v1/models`.
#[derive(Debug, Clone, Deserialize)]
pub struct ModelsPage {
    #[serde(default)]
    pub data: Vec<ModelInfo>,
    #[serde(default)]
    pub has_more: bool,
    pub last_id: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ModelInfo {
    pub id: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config() -> Config {
        let mut map = HashMap::new();
        map.insert("ANTHROPIC_MODEL".to_string(), "m-default".to_string());
        map.insert(
            "ANTHROPIC_ALLOWED_MODELS".to_string(),
            "m-default,m-other".to_string(),
        );
        map.insert("AI_MAX_TOKENS".to_string(), "1000".to_string());
        Config::from_map(&map).unwrap()
    }

    fn request(json: serde_json::Value) -> ChatRequest {
        serde_json::from_value(json).unwrap()
    }

    fn fields(err: AppError) -> Vec<String> {
        match err {
            AppError::Validation(list) => list.into_iter().map(|e| e.field).collect(),
            other => panic!("expected a validation error, got {other:?}"),
        }
    }

    #[test]
    fn a_single_message_becomes_a_user_turn_with_defaults() {
        let (p, stream) = request(serde_json::json!({"message": "hi"}))
            .validate(&config())
            .unwrap();
        assert!(!stream);
        assert_eq!(p.model, "m-default");
        assert_eq!(p.max_tokens, 1000);
        assert_eq!(
            p.messages,
            vec![ChatMessage {
                role: "user".into(),
                content: "hi".into()
            }]
        );
    }

    #[test]
    fn every_invalid_field_is_reported() {
        let err = request(serde_json::json!({
            "messages": [{"role": "assistant", "content": ""}, {"role": "robot", "content": "x"}],
            "model": "m-unknown", "maxTokens": 1001, "temperature": 1.5
        }))
        .validate(&config())
        .unwrap_err();
        let f = fields(err);
        for expected in [
            "messages[0].content",
            "messages[1].role",
            "messages[0].role",
            "model",
            "maxTokens",
            "temperature",
        ] {
            assert!(f.contains(&expected.to_string()), "{expected} in {f:?}");
        }
    }

    #[test]
    fn message_and_messages_are_exclusive_and_one_is_required() {
        let both = request(
            serde_json::json!({"message": "a", "messages": [{"role":"user","content":"b"}]}),
        );
        assert_eq!(fields(both.validate(&config()).unwrap_err()), ["message"]);
        let none = request(serde_json::json!({"system": "s"}));
        assert_eq!(fields(none.validate(&config()).unwrap_err()), ["message"]);
        let zero = request(serde_json::json!({"message": "a", "maxTokens": 0}));
        assert_eq!(fields(zero.validate(&config()).unwrap_err()), ["maxTokens"]);
    }

    #[test]
    fn unknown_fields_are_rejected() {
        let res: Result<ChatRequest, _> =
            serde_json::from_value(serde_json::json!({"message": "a", "max_tokens": 5}));
        assert!(res.is_err());
    }

    #[test]
    fn usage_counts_cache_tokens_as_input() {
        let u: WireUsage = serde_json::from_value(serde_json::json!({
            "input_tokens": 10, "output_tokens": 3, "cache_read_input_tokens": 5
        }))
        .unwrap();
        assert_eq!(
            u.to_usage(),
            TokenUsage {
                input_tokens: 15,
                output_tokens: 3
            }
        );
    }

    #[test]
    fn stream_events_parse_from_the_wire_shape() {
        let e: StreamEvent = serde_json::from_str(
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hi"}}"#,
        )
        .unwrap();
        assert!(
            matches!(e, StreamEvent::ContentBlockDelta { delta } if delta.text.as_deref() == Some("Hi"))
        );
        let e: StreamEvent = serde_json::from_str(
            r#"{"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":15}}"#,
        )
        .unwrap();
        assert!(
            matches!(e, StreamEvent::MessageDelta { usage, .. } if usage.output_tokens == Some(15))
        );
        let e: StreamEvent = serde_json::from_str(r#"{"type":"ping"}"#).unwrap();
        assert!(matches!(e, StreamEvent::Ping {}));
        let e: StreamEvent = serde_json::from_str(r#"{"type":"something_new","x":1}"#).unwrap();
        assert!(matches!(e, StreamEvent::Unknown));
    }
}
