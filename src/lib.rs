//! hs-platform: accounts, durable jobs, AI chat, documents and monitoring in
//! one binary on one SQLite file.
//!
//! Map of the crate (a request's path through it is in [`http`]):
//! - [`main`](../hs_platform/index.html) (`src/main.rs`): the CLI.
//! - [`config`]: the only reader of the environment.
//! - [`app`]: build, serve, shut down.
//! - [`state`]: the handles, built once, and each domain's service cut from
//!   them (`FromRef`); only `app`, `state` and `http` see the whole state.
//! - [`error`]: the one error type and problem+json.
//! - [`retry`]: the one backoff schedule (jobs, the Claude API client, the
//!   alert webhook).
//! - [`db`]: SQLite pools, pragmas (and the page counts and incremental
//!   vacuum shared by maintenance and the log retention), migrations,
//!   timestamp format.
//! - [`time`]: [`time::Timestamp`], the one time type; [`ids`]: id newtypes.
//! - [`http`]: router assembly, middleware, extractors, rate limiting, the
//!   response cache, OpenAPI, accept loop.
//! - Domains, each with a service type holding exactly the handles it needs
//!   (handlers take `State<ThatService>`; its `router()` is generic over the
//!   outer state), `routes.rs` (handlers), `db.rs` (all its SQL) and
//!   `model.rs` (types): [`health`] (liveness and dependency checks),
//!   [`users`], [`sessions`], [`jobs`], [`ai`], [`files`], [`monitoring`]
//!   (request log, errors, performance, alerts, metrics), [`analytics`],
//!   [`loadtest`], [`maintenance`].
//! - [`sys`]: the only `unsafe` code (allocator and SQLite settings).

pub mod ai;
pub mod analytics;
pub mod app;
pub mod config;
pub mod console;
pub mod db;
pub mod error;
pub mod files;
pub mod health;
pub mod http;
pub mod ids;
pub mod jobs;
pub mod loadtest;
pub mod maintenance;
pub mod monitoring;
pub mod retry;
pub mod sessions;
pub mod state;
pub mod sys;
pub mod telemetry;
pub mod time;
pub mod users;

/// Installs the TLS crypto provider (ring) used by outgoing HTTPS clients.
/// Safe to call more than once.
pub fn init_crypto() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
