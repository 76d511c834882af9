//! hs-platform: accounts, durable jobs, AI chat, documents and monitoring in
//! one binary on one SQLite file.
//!
//! Map of the crate (a request's path through it is in [`http`]):
//! - [`main`](../hs_platform/index.html) (`src/main.rs`): the CLI.
//! - [`config`]: the only reader of the environment.
//! - [`app`]: build, serve, shut down.
//! - [`state`]: handles shared by handlers.
//! - [`error`]: the one error type and problem+json.
//! - [`db`]: SQLite pools, pragmas, migrations, timestamp format.
//! - [`http`]: router assembly, middleware, extractors, OpenAPI, accept loop.
//! - Domains, each with `routes.rs` (handlers), `db.rs` (all its SQL) and
//!   `model.rs` (types): [`health`], [`users`], [`sessions`], [`jobs`],
//!   [`ai`], [`files`], [`monitoring`], [`analytics`], [`loadtest`],
//!   [`maintenance`].
//! - [`sys`]: the only `unsafe` code (allocator and SQLite settings).

pub mod ai;
pub mod analytics;
pub mod app;
pub mod config;
pub mod db;
pub mod error;
pub mod files;
pub mod health;
pub mod http;
pub mod jobs;
pub mod loadtest;
pub mod maintenance;
pub mod monitoring;
pub mod sessions;
pub mod state;
pub mod sys;
pub mod telemetry;
pub mod users;

/// Installs the TLS crypto provider (ring) used by outgoing HTTPS clients.
/// Safe to call more than once.
pub fn init_crypto() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
