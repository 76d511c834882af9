//! The declaration of every configuration variable (name, default,
//! meaning) as clap arguments, and their resolution into effective values
//! with where each came from.

use std::collections::BTreeSet;

use clap::parser::ValueSource;
use clap::{ArgMatches, Args, Command};

use super::DEFAULT_MODEL;

/// Every environment variable of the service, declared once: its name, its
/// default and its meaning. Each is also a flag (`--port 9000` for `PORT`)
/// that overrides the environment. [`Config`] reads the values by variable
/// name through [`resolve`], so an error always names the variable the value
/// came from; the fields themselves are only clap's declaration.
#[derive(Args, Debug)]
#[command(
    next_help_heading = "Configuration (environment variables; a flag overrides its variable)"
)]
pub struct Variables {
    /// Address to bind (Render: `0.0.0.0`).
    #[arg(long, env = "HOST", default_value = "127.0.0.1")]
    pub host: Option<String>,
    /// Port to bind (`0`: any free port).
    #[arg(long, env = "PORT", default_value = "8080")]
    pub port: Option<String>,
    /// Database file, stored files (`files/`) and backups (`backups/`); the default
    /// `./data` is created if missing, a directory set explicitly must already exist; must
    /// be writable.
    #[arg(long, env = "DATA_DIR", default_value = "./data")]
    pub data_dir: Option<String>,
    /// Database location; unset: `sqlite://$DATA_DIR/hs-platform.db`.
    #[arg(long, env = "DATABASE_URL")]
    pub database_url: Option<String>,
    /// `FULL` or `NORMAL` durability of commits.
    #[arg(long, env = "SQLITE_SYNCHRONOUS", default_value = "FULL")]
    pub sqlite_synchronous: Option<String>,
    /// Read connections (writes use one dedicated connection), 1-64.
    #[arg(long, env = "DB_READERS", default_value = "4")]
    pub db_readers: Option<String>,
    /// `pretty` or `json` (JSON lines); what is logged is `RUST_LOG`'s choice.
    #[arg(long, env = "LOG_FORMAT", default_value = "pretty")]
    pub log_format: Option<String>,
    /// What is logged: a level (`debug`, `info`, `warn`, ...) or `target=level`
    /// directives, comma-separated (`tracing` `EnvFilter` syntax).
    #[arg(
        long,
        env = "RUST_LOG",
        default_value = "info,sqlx=warn,chromiumoxide=warn,hyper=warn"
    )]
    pub rust_log: Option<String>,
    /// Comma-separated allowed origins (`*` for any); unset: no cross-origin access.
    #[arg(long, env = "CORS_ORIGINS")]
    pub cors_origins: Option<String>,
    /// Longest time to produce a response (408 after).
    #[arg(long, env = "REQUEST_TIMEOUT_SECONDS", default_value = "90")]
    pub request_timeout_seconds: Option<String>,
    /// A client must send its request headers within this; also the idle
    /// timeout: an HTTP/1 or HTTP/2 connection with no request in flight for
    /// this long is closed.
    #[arg(long, env = "HEADER_READ_TIMEOUT_SECONDS", default_value = "10")]
    pub header_read_timeout_seconds: Option<String>,
    /// Open connections at most; beyond it a new connection is answered 503
    /// and closed at once. Unset: 1024, or the open-file limit minus 128 when
    /// that is lower.
    #[arg(long, env = "MAX_CONNECTIONS")]
    pub max_connections: Option<String>,
    /// Largest JSON body (413 over it); uploads have their own limit.
    #[arg(long, env = "MAX_BODY_BYTES", default_value = "1048576")]
    pub max_body_bytes: Option<String>,
    /// Time given to in-flight requests and running jobs on SIGTERM.
    #[arg(long, env = "SHUTDOWN_GRACE_SECONDS", default_value = "20")]
    pub shutdown_grace_seconds: Option<String>,
    /// Add `Secure` to the session cookie (set `true` behind HTTPS).
    #[arg(long, env = "COOKIE_SECURE", default_value = "false")]
    pub cookie_secure: Option<String>,
    /// Session lifetime.
    #[arg(long, env = "SESSION_TTL_SECONDS", default_value = "86400")]
    pub session_ttl_seconds: Option<String>,
    /// With `ADMIN_PASSWORD`: create the first admin at start-up when no admin exists
    /// (an existing account with this email is never promoted).
    #[arg(long, env = "ADMIN_EMAIL")]
    pub admin_email: Option<String>,
    /// Password of `ADMIN_EMAIL` (and of `create-admin`; unset: read from standard input).
    #[arg(long, env = "ADMIN_PASSWORD", hide_env_values = true)]
    pub admin_password: Option<String>,
    /// Argon2id hashes computed at once (more wait; over 256 waiting: 503).
    #[arg(long, env = "PASSWORD_HASH_CONCURRENCY", default_value = "2")]
    pub password_hash_concurrency: Option<String>,
    /// Argon2id memory cost in KiB (OWASP minimum; lower values are refused).
    #[arg(long, env = "ARGON2_MEMORY_KIB", default_value = "19456")]
    pub argon2_memory_kib: Option<String>,
    /// Argon2id iterations (OWASP minimum; lower values are refused).
    #[arg(long, env = "ARGON2_ITERATIONS", default_value = "2")]
    pub argon2_iterations: Option<String>,
    /// Jobs run at once.
    #[arg(long, env = "JOB_CONCURRENCY", default_value = "8")]
    pub job_concurrency: Option<String>,
    /// Unfinished (queued + running) jobs one user may have; beyond it job-creating requests answer 429 `too_many_jobs` with `Retry-After`.
    #[arg(long, env = "JOB_MAX_PENDING_PER_USER", default_value = "100")]
    pub job_max_pending_per_user: Option<String>,
    /// Fallback polling of the job queue (enqueues wake the runner at once).
    #[arg(long, env = "JOB_POLL_INTERVAL_MS", default_value = "1000")]
    pub job_poll_interval_ms: Option<String>,
    /// Lease of a running job, extended while it runs.
    #[arg(long, env = "JOB_LEASE_SECONDS", default_value = "30")]
    pub job_lease_seconds: Option<String>,
    /// Finished jobs are deleted after this.
    #[arg(long, env = "JOB_RETENTION_DAYS", default_value = "7")]
    pub job_retention_days: Option<String>,
    /// Retry backoff base: `min(base * 2^(attempt-1), max)` minus up to 25% jitter.
    #[arg(long, env = "JOB_RETRY_BASE_MS", default_value = "1000")]
    pub job_retry_base_ms: Option<String>,
    /// Retry backoff cap.
    #[arg(long, env = "JOB_RETRY_MAX_MS", default_value = "300000")]
    pub job_retry_max_ms: Option<String>,
    /// Claude API key; unset: chat answers 503 `not_configured`.
    #[arg(long, env = "ANTHROPIC_API_KEY", hide_env_values = true)]
    pub anthropic_api_key: Option<String>,
    /// Claude API base URL.
    #[arg(
        long,
        env = "ANTHROPIC_BASE_URL",
        default_value = "https://api.anthropic.com"
    )]
    pub anthropic_base_url: Option<String>,
    /// Default model.
    #[arg(long, env = "ANTHROPIC_MODEL", default_value = DEFAULT_MODEL)]
    pub anthropic_model: Option<String>,
    /// Comma-separated models clients may ask for (checked against `GET /v1/models` at
    /// start-up); unset: the default + `claude-opus-4-5`, `claude-sonnet-4-5`,
    /// `claude-haiku-4-5`.
    #[arg(long, env = "ANTHROPIC_ALLOWED_MODELS")]
    pub anthropic_allowed_models: Option<String>,
    /// Largest and default `maxTokens`.
    #[arg(long, env = "AI_MAX_TOKENS", default_value = "4096")]
    pub ai_max_tokens: Option<String>,
    /// Per-attempt timeout of a Claude call (streams: the head, then each silence).
    #[arg(long, env = "AI_TIMEOUT_SECONDS", default_value = "120")]
    pub ai_timeout_seconds: Option<String>,
    /// Connect timeout of a Claude call.
    #[arg(long, env = "AI_CONNECT_TIMEOUT_SECONDS", default_value = "10")]
    pub ai_connect_timeout_seconds: Option<String>,
    /// Upstream retries per call.
    #[arg(long, env = "AI_MAX_RETRIES", default_value = "2")]
    pub ai_max_retries: Option<String>,
    /// Per-user input+output tokens per UTC day, reserved before each call (429 `budget_exhausted`); 0: unlimited.
    #[arg(long, env = "AI_DAILY_TOKEN_BUDGET", default_value = "200000")]
    pub ai_daily_token_budget: Option<String>,
    /// All users' input+output tokens per UTC day (429 `budget_exhausted`); unset or 0: no global budget.
    #[arg(long, env = "AI_GLOBAL_DAILY_TOKEN_BUDGET")]
    pub ai_global_daily_token_budget: Option<String>,
    /// Failures in a row that open the circuit breaker.
    #[arg(long, env = "AI_BREAKER_FAILURES", default_value = "5")]
    pub ai_breaker_failures: Option<String>,
    /// How long the circuit breaker stays open.
    #[arg(long, env = "AI_BREAKER_COOLDOWN_SECONDS", default_value = "30")]
    pub ai_breaker_cooldown_seconds: Option<String>,
    /// Per user (anonymous: per client IP) request limit, with a burst of a full minute
    /// (`0`: off).
    #[arg(long, env = "RATE_LIMIT_PER_MINUTE", default_value = "60")]
    pub rate_limit_per_minute: Option<String>,
    /// Per-user AI chat limit (`0`: off).
    #[arg(long, env = "AI_RATE_LIMIT_PER_MINUTE", default_value = "10")]
    pub ai_rate_limit_per_minute: Option<String>,
    /// Proxies in front whose `X-Forwarded-For` entries are trusted (Render: `2`,
    /// Cloudflare then Render's proxy).
    #[arg(long, env = "TRUST_PROXY_HOPS", default_value = "0")]
    pub trust_proxy_hops: Option<String>,
    /// Total bytes of stored files (507 / job `quota_exceeded`); unset: half of the disk holding DATA_DIR.
    #[arg(long, env = "STORAGE_QUOTA_BYTES")]
    pub storage_quota_bytes: Option<String>,
    /// Per-user bytes of stored files and queued job payloads; unset: 100 MiB, or a tenth of the total quota if less (more than a tenth is refused).
    #[arg(long, env = "USER_QUOTA_BYTES")]
    pub user_quota_bytes: Option<String>,
    /// Free disk space below which uploads, generated files and backups are refused with 507; unset: 5% of the disk, 64 MiB to 1 GiB.
    #[arg(long, env = "STORAGE_MIN_FREE_BYTES")]
    pub storage_min_free_bytes: Option<String>,
    /// Largest upload (413, enforced while streaming).
    #[arg(long, env = "UPLOAD_MAX_BYTES", default_value = "26214400")]
    pub upload_max_bytes: Option<String>,
    /// Comma-separated sniffed MIME types accepted (415 otherwise); unset: images, PDF,
    /// CSV, text, Office documents.
    #[arg(long, env = "UPLOAD_ALLOWED_TYPES")]
    pub upload_allowed_types: Option<String>,
    /// Browser for screenshots; unset: found on `PATH`.
    #[arg(long, env = "CHROMIUM_PATH")]
    pub chromium_path: Option<String>,
    /// Comma-separated hosts exempt from the private-address block (e.g. `127.0.0.1` in
    /// tests).
    #[arg(long, env = "SCREENSHOT_ALLOWED_HOSTS")]
    pub screenshot_allowed_hosts: Option<String>,
    /// Browser pages at once.
    #[arg(long, env = "SCREENSHOT_CONCURRENCY", default_value = "2")]
    pub screenshot_concurrency: Option<String>,
    /// Seconds without screenshots after which the shared Chromium is shut down (relaunched by the next one).
    #[arg(long, env = "SCREENSHOT_IDLE_SECONDS", default_value = "300")]
    pub screenshot_idle_seconds: Option<String>,
    /// PDF/DOCX/CSV renders at once.
    #[arg(long, env = "RENDER_CONCURRENCY", default_value = "2")]
    pub render_concurrency: Option<String>,
    /// TTF for glyphs DejaVu lacks (CJK); unset: Debian's `fonts-droid-fallback` if
    /// installed.
    #[arg(long, env = "FONT_PATH")]
    pub font_path: Option<String>,
    /// Record every request in SQLite.
    #[arg(long, env = "REQUEST_LOG", default_value = "true")]
    pub request_log: Option<String>,
    /// Days kept of the raw request log and error occurrences.
    #[arg(long, env = "LOG_RETENTION_DAYS", default_value = "7")]
    pub log_retention_days: Option<String>,
    /// Days kept of hourly roll-ups, activity and resolved alerts.
    #[arg(long, env = "ROLLUP_RETENTION_DAYS", default_value = "400")]
    pub rollup_retention_days: Option<String>,
    /// Alert evaluation period.
    #[arg(long, env = "ALERT_INTERVAL_SECONDS", default_value = "30")]
    pub alert_interval_seconds: Option<String>,
    /// Alert threshold: share of 5xx answers.
    #[arg(long, env = "ALERT_ERROR_RATE", default_value = "0.05")]
    pub alert_error_rate: Option<String>,
    /// Alert threshold: p95 latency in ms.
    #[arg(long, env = "ALERT_P95_MS", default_value = "1000")]
    pub alert_p95_ms: Option<String>,
    /// Alert threshold: share of failed jobs.
    #[arg(long, env = "ALERT_JOB_FAILURE_RATE", default_value = "0.2")]
    pub alert_job_failure_rate: Option<String>,
    /// Alert threshold: age of the oldest queued job.
    #[arg(long, env = "ALERT_QUEUE_AGE_SECONDS", default_value = "300")]
    pub alert_queue_age_seconds: Option<String>,
    /// Alert threshold: free bytes on the data disk.
    #[arg(long, env = "ALERT_MIN_FREE_DISK_BYTES", default_value = "1073741824")]
    pub alert_min_free_disk_bytes: Option<String>,
    /// Alert threshold: request-log entries dropped (`0`: off).
    #[arg(long, env = "ALERT_LOG_DROPS", default_value = "1")]
    pub alert_log_drops: Option<String>,
    /// Alert when the service's resident memory plus its Chromium's passes this (400 MiB).
    #[arg(long, env = "ALERT_MAX_RSS_BYTES", default_value = "419430400")]
    pub alert_max_rss_bytes: Option<String>,
    /// Receives `{"service","event":"firing"/"resolved","alert":{...}}`, with retries.
    #[arg(long, env = "ALERT_WEBHOOK_URL")]
    pub alert_webhook_url: Option<String>,
    /// Bearer token accepted by `/metrics` (admins' tokens are too).
    #[arg(long, env = "METRICS_TOKEN", hide_env_values = true)]
    pub metrics_token: Option<String>,
    /// Debug builds only: enables the test route that panics on purpose.
    #[arg(long, env = "DEBUG_ROUTES", default_value = "false")]
    pub debug_routes: Option<String>,
    /// Most connections a load test may use.
    #[arg(long, env = "LOADTEST_MAX_CONCURRENCY", default_value = "256")]
    pub loadtest_max_concurrency: Option<String>,
    /// Longest load test.
    #[arg(long, env = "LOADTEST_MAX_DURATION_SECONDS", default_value = "300")]
    pub loadtest_max_duration_seconds: Option<String>,
    /// Most requests of one load test.
    #[arg(long, env = "LOADTEST_MAX_REQUESTS", default_value = "10000000")]
    pub loadtest_max_requests: Option<String>,
    /// Scheduled backups into `DATA_DIR/backups/` (`0`: off).
    #[arg(long, env = "BACKUP_INTERVAL_HOURS", default_value = "24")]
    pub backup_interval_hours: Option<String>,
    /// Newest backups kept.
    #[arg(long, env = "BACKUP_KEEP", default_value = "7")]
    pub backup_keep: Option<String>,
    /// Scheduled maintenance (a `maintenance.run` job).
    #[arg(long, env = "MAINTENANCE_INTERVAL_SECONDS", default_value = "3600")]
    pub maintenance_interval_seconds: Option<String>,
}

/// Adds every configuration variable to `cmd` as a global flag (so that it
/// is listed by `--help` of every subcommand) read from its environment
/// variable.
pub fn with_variables(cmd: Command) -> Command {
    Variables::augment_args(cmd).mut_args(|arg| {
        if arg.get_env().is_some() {
            arg.global(true)
        } else {
            arg
        }
    })
}

/// Where a variable's effective value came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The declared default.
    Default,
    /// The process environment (or the `.env` file).
    Environment,
    /// A command-line flag.
    CommandLine,
    /// Neither given nor defaulted.
    Unset,
}

/// One variable's effective value.
#[derive(Clone)]
pub struct Setting {
    pub name: String,
    pub value: Option<String>,
    pub source: Source,
    /// The value is a secret: never print it.
    pub secret: bool,
}

impl std::fmt::Debug for Setting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Setting")
            .field("name", &self.name)
            .field("value", &self.shown())
            .field("source", &self.source)
            .finish()
    }
}

impl Setting {
    /// The value as it may be printed: secrets as `[redacted]`, nothing as
    /// `unset`.
    pub fn shown(&self) -> &str {
        match &self.value {
            None => "unset",
            Some(_) if self.secret => "[redacted]",
            Some(v) => v,
        }
    }
}

/// Each declared variable's effective value, in declaration order, from
/// matches of a command built by [`with_variables`]. A value given empty
/// (or blank) counts as not given, so the declared default applies.
pub fn resolve(matches: &ArgMatches) -> Vec<Setting> {
    let declared = Variables::augment_args(Command::new("hs-platform"));
    declared
        .get_arguments()
        .filter_map(|arg| {
            let name = arg.get_env()?.to_string_lossy().into_owned();
            let id = arg.get_id().as_str();
            let given = matches
                .get_one::<String>(id)
                .map(|v| v.trim())
                .filter(|v| !v.is_empty());
            let source = match matches.value_source(id) {
                Some(ValueSource::CommandLine) => Source::CommandLine,
                Some(ValueSource::EnvVariable) => Source::Environment,
                _ => Source::Default,
            };
            let default = arg.get_default_values().first();
            let (value, source) = match (given, source, default) {
                (Some(v), Source::CommandLine | Source::Environment, _) => {
                    (Some(v.to_string()), source)
                }
                (_, _, Some(d)) => (Some(d.to_string_lossy().into_owned()), Source::Default),
                (_, _, None) => (None, Source::Unset),
            };
            Some(Setting {
                name,
                value,
                source,
                secret: arg.is_hide_env_values_set(),
            })
        })
        .collect()
}

/// Loads `.env` (from the working directory or a parent) into the process
/// environment without overriding variables already set; returns the names
/// it supplied, so that `check-config` can say where a value came from.
pub fn load_dotenv() -> BTreeSet<String> {
    let supplied = match dotenvy::dotenv_iter() {
        Ok(items) => items
            .filter_map(Result::ok)
            .map(|(name, _)| name)
            .filter(|name| std::env::var_os(name).is_none())
            .collect(),
        Err(_) => BTreeSet::new(),
    };
    let _ = dotenvy::dotenv();
    supplied
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each declared variable: its name and its default (`None`: unset).
    fn declared() -> Vec<(String, Option<String>)> {
        Variables::augment_args(Command::new("t"))
            .get_arguments()
            .filter_map(|arg| {
                let name = arg.get_env()?.to_string_lossy().into_owned();
                let default = arg
                    .get_default_values()
                    .first()
                    .map(|d| d.to_string_lossy().into_owned());
                Some((name, default))
            })
            .collect()
    }

    fn read(file: &str) -> String {
        let path = format!("{}/{file}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    /// The README's configuration table: each variable and its default cell
    /// (a row may name several variables, with as many defaults).
    fn readme_table() -> Vec<(String, String)> {
        let readme = read("README.md");
        let section = readme
            .split("\n## Configuration\n")
            .nth(1)
            .expect("README has a Configuration section");
        let section = section.split("\n## ").next().unwrap();
        let mut rows = Vec::new();
        for line in section.lines().filter(|l| l.starts_with("| `")) {
            let cells: Vec<&str> = line.split(" | ").collect();
            let names: Vec<&str> = cells[0]
                .trim_start_matches("| ")
                .split(", ")
                .map(|n| n.trim_matches('`'))
                .collect();
            let defaults: Vec<&str> = if names.len() == 1 {
                vec![cells[1]]
            } else {
                cells[1].split(", ").collect()
            };
            let defaults = match defaults.len() {
                n if n == names.len() => defaults,
                1 => vec![defaults[0]; names.len()],
                _ => panic!("README row {line:?}: one default per variable, or one for all"),
            };
            for (name, default) in names.into_iter().zip(defaults) {
                rows.push((name.to_string(), default.to_string()));
            }
        }
        rows
    }

    #[test]
    fn readme_table_lists_every_declared_variable_with_its_default() {
        let table = readme_table();
        let mut listed: Vec<&str> = table.iter().map(|(n, _)| n.as_str()).collect();
        listed.sort_unstable();
        let declared = declared();
        let mut names: Vec<&str> = declared.iter().map(|(n, _)| n.as_str()).collect();
        names.sort_unstable();
        assert_eq!(listed, names, "README table vs config::Variables");
        for (name, default) in &declared {
            let cell = &table.iter().find(|(n, _)| n == name).unwrap().1;
            match default {
                Some(d) => assert_eq!(cell, &format!("`{d}`"), "README default of {name}"),
                // No declared default: the README says what happens in words
                // (`unset`, `empty`, ...), not as a value.
                None => assert!(
                    !(cell.starts_with('`') && cell.ends_with('`')),
                    "README gives {name} the default {cell}, but none is declared"
                ),
            }
        }
    }

    #[test]
    fn env_example_lists_every_declared_variable_with_its_default() {
        let example = read(".env.example");
        let listed: Vec<(String, String)> = example
            .lines()
            .filter_map(|l| l.strip_prefix("# "))
            .filter_map(|l| l.split_once('='))
            .filter(|(n, _)| {
                n.chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
            })
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect();
        let declared: Vec<(String, String)> = declared()
            .into_iter()
            .map(|(n, d)| (n, d.unwrap_or_default()))
            .collect();
        assert_eq!(
            listed, declared,
            ".env.example vs config::Variables (same order)"
        );
    }

    #[test]
    fn secrets_are_redacted_in_the_effective_configuration() {
        let matches = Variables::augment_args(Command::new("t"))
            .mut_args(|arg| arg.env(None::<&str>))
            .try_get_matches_from(["t", "--metrics-token=tok-123", "--port=9000"])
            .unwrap();
        let settings = resolve(&matches);
        let shown = |name: &str| {
            let s = settings.iter().find(|s| s.name == name).unwrap();
            (s.shown().to_string(), s.source)
        };
        assert_eq!(
            shown("METRICS_TOKEN"),
            ("[redacted]".into(), Source::CommandLine)
        );
        assert_eq!(shown("ADMIN_PASSWORD"), ("unset".into(), Source::Unset));
        assert_eq!(shown("PORT"), ("9000".into(), Source::CommandLine));
        assert_eq!(shown("HOST"), ("127.0.0.1".into(), Source::Default));
        let secrets: Vec<&str> = settings
            .iter()
            .filter(|s| s.secret)
            .map(|s| s.name.as_str())
            .collect();
        assert_eq!(
            secrets,
            ["ADMIN_PASSWORD", "ANTHROPIC_API_KEY", "METRICS_TOKEN"]
        );
        assert!(!format!("{settings:?}").contains("tok-123"));
    }
}
