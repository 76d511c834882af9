//! One integration-test binary: every test starts the real service with
//! `spawn_app()` on port 0 with its own SQLite file, and talks HTTP to it.

mod helpers;

mod ai;
mod analytics;
mod backups;
mod connections;
mod console;
mod contract;
mod egress;
mod fake_claude;
mod files;
mod foundation;
mod jobs;
mod latency;
mod loadtest;
mod maintenance;
mod monitoring;
mod priority;
mod sessions;
mod takeover;
mod users;
mod virtual_users;
