//! Configuration: the only code that reads the environment. Every variable is
//! declared once, in [`Variables`] (name, default, meaning), from which clap
//! builds `--help` and reads the values (command-line flags, then environment
//! variables, and an optional `.env` file loaded by `main`); [`Config`] is
//! built from them and validated at start-up with errors that name the
//! variable. The README's table and `.env.example` are checked against the
//! declaration by tests.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Command};
use secrecy::SecretString;

mod variables;

pub use variables::{Setting, Source, Variables, load_dotenv, resolve, with_variables};

/// How the service logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Pretty,
    Json,
}

/// SQLite `synchronous` setting for the database connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Synchronous {
    Full,
    Normal,
}

/// Every setting of the service. Secrets are `SecretString`, whose `Debug`
/// prints `[REDACTED]`.
#[derive(Debug, Clone)]
pub struct Config {
    pub host: IpAddr,
    pub port: u16,
    pub data_dir: PathBuf,
    /// `DATA_DIR` was set explicitly: then it must exist (a missing
    /// persistent disk must not silently become an empty local folder).
    pub data_dir_explicit: bool,
    pub database_url: Option<String>,
    pub sqlite_synchronous: Synchronous,
    pub db_readers: u32,
    pub log_format: LogFormat,
    /// `RUST_LOG`: the log filter (checked `EnvFilter` directives).
    pub log_filter: String,
    pub cors_origins: Vec<String>,
    pub request_timeout: Duration,
    /// Also the idle timeout of connections (HTTP/1 and HTTP/2).
    pub header_read_timeout: Duration,
    /// Open connections at most (beyond: 503 and close).
    pub max_connections: usize,
    pub body_limit_bytes: usize,
    pub shutdown_grace: Duration,
    pub cookie_secure: bool,

    pub session_ttl: Duration,
    pub admin_email: Option<String>,
    pub admin_password: Option<SecretString>,
    pub password_hash_concurrency: usize,
    /// Argon2id memory cost in KiB (OWASP minimum: 19456).
    pub argon2_memory_kib: u32,
    pub argon2_iterations: u32,

    pub job_concurrency: usize,
    pub job_poll_interval: Duration,
    pub job_lease: Duration,
    pub job_retention_days: u32,
    pub job_retry_base: Duration,
    pub job_retry_max: Duration,
    /// Unfinished (queued + running) jobs one user may have.
    pub job_max_pending_per_user: i64,

    pub anthropic_api_key: Option<SecretString>,
    pub anthropic_base_url: String,
    pub anthropic_model: String,
    pub anthropic_allowed_models: Vec<String>,
    pub ai_max_tokens: u32,
    pub ai_timeout: Duration,
    pub ai_connect_timeout: Duration,
    pub ai_max_retries: u32,
    /// Per user and UTC day; 0 switches the budget off.
    pub ai_daily_token_budget: u64,
    /// All users together per UTC day; unset or 0: no global budget.
    pub ai_global_daily_token_budget: Option<u64>,
    pub ai_breaker_failures: u32,
    pub ai_breaker_cooldown: Duration,

    pub rate_limit_per_minute: u32,
    pub ai_rate_limit_per_minute: u32,
    pub trust_proxy_hops: usize,

    /// Unset: half of the disk holding `DATA_DIR` (see `files::space`).
    pub storage_quota_bytes: Option<u64>,
    /// Unset: 100 MiB, or a tenth of the storage quota if that is less.
    pub user_quota_bytes: Option<u64>,
    /// Unset: 5% of the disk, at least 64 MiB and at most 1 GiB.
    pub storage_min_free_bytes: Option<u64>,
    pub upload_max_bytes: u64,
    pub upload_allowed_types: Vec<String>,
    pub chromium_path: Option<PathBuf>,
    pub screenshot_allowed_hosts: Vec<String>,
    pub screenshot_concurrency: usize,
    pub screenshot_idle: Duration,
    pub render_concurrency: usize,
    pub font_path: Option<PathBuf>,

    pub request_log: bool,
    pub log_retention_days: u32,
    pub rollup_retention_days: u32,
    pub alert_webhook_url: Option<String>,
    pub alert_interval: Duration,
    pub alert_error_rate: f64,
    pub alert_p95_ms: f64,
    pub alert_job_failure_rate: f64,
    pub alert_queue_age_seconds: u64,
    pub alert_min_free_disk_bytes: u64,
    pub alert_log_drops: u64,
    pub alert_max_rss_bytes: u64,
    pub metrics_token: Option<SecretString>,
    /// Enables test-only routes (`/api/monitoring/debug/fail`); they exist
    /// only in debug builds, never in release binaries.
    pub debug_routes: bool,

    pub loadtest_max_concurrency: u32,
    pub loadtest_max_duration_seconds: u32,
    pub loadtest_max_requests: u64,
    pub backup_interval_hours: u32,
    pub backup_keep: u32,
    pub maintenance_interval: Duration,
}

/// A current Claude model; the default and the allow-list are configuration
/// because model IDs are retired over time.
pub const DEFAULT_MODEL: &str = "claude-sonnet-4-5";

impl Config {
    /// Builds the configuration from variables given as a map, without
    /// reading the process environment (tests run in parallel in one
    /// process): the map becomes the declared flags, parsed by the same
    /// declaration as the real command line. Names that are not declared
    /// variables are refused, so a misspelt setting cannot pass unnoticed.
    pub fn from_map(map: &HashMap<String, String>) -> anyhow::Result<Self> {
        let declared = Variables::augment_args(Command::new("hs-platform"));
        let mut argv = vec!["hs-platform".to_string()];
        for (name, value) in map {
            let arg = declared
                .get_arguments()
                .find(|arg| arg.get_env() == Some(std::ffi::OsStr::new(name)))
                .with_context(|| format!("{name}: not a configuration variable"))?;
            let flag = arg
                .get_long()
                .expect("every variable is declared with a flag");
            argv.push(format!("--{flag}={value}"));
        }
        // The declaration without its environment lookups: only the map counts.
        let declared = declared.mut_args(|arg| arg.env(None::<&str>));
        let matches = declared.try_get_matches_from(argv)?;
        Self::from_settings(&resolve(&matches))
    }

    /// Builds and validates the configuration from resolved variables.
    pub fn from_settings(settings: &[Setting]) -> anyhow::Result<Self> {
        let env = Env(settings);
        let data_dir_explicit = settings
            .iter()
            .any(|s| s.name == "DATA_DIR" && s.source != Source::Default);
        let data_dir = PathBuf::from(env.string("DATA_DIR"));
        let anthropic_model = env.string("ANTHROPIC_MODEL");
        let mut anthropic_allowed_models = env.list("ANTHROPIC_ALLOWED_MODELS");
        if anthropic_allowed_models.is_empty() {
            anthropic_allowed_models = vec![
                anthropic_model.clone(),
                "claude-opus-4-5".into(),
                "claude-sonnet-4-5".into(),
                "claude-haiku-4-5".into(),
            ];
            anthropic_allowed_models.dedup();
        } else if !anthropic_allowed_models.contains(&anthropic_model) {
            bail!(
                "ANTHROPIC_MODEL: {anthropic_model:?} is not in ANTHROPIC_ALLOWED_MODELS ({})",
                anthropic_allowed_models.join(",")
            );
        }
        let cfg = Config {
            host: env.parse("HOST")?,
            port: env.parse("PORT")?,
            data_dir,
            data_dir_explicit,
            database_url: env.opt_string("DATABASE_URL"),
            sqlite_synchronous: match env
                .string("SQLITE_SYNCHRONOUS")
                .to_ascii_uppercase()
                .as_str()
            {
                "FULL" => Synchronous::Full,
                "NORMAL" => Synchronous::Normal,
                other => bail!("SQLITE_SYNCHRONOUS: expected FULL or NORMAL, got {other:?}"),
            },
            db_readers: env.parse_range("DB_READERS", 1, 64)?,
            log_format: match env.string("LOG_FORMAT").as_str() {
                "pretty" => LogFormat::Pretty,
                "json" => LogFormat::Json,
                other => bail!("LOG_FORMAT: expected pretty or json, got {other:?}"),
            },
            log_filter: {
                let filter = env.string("RUST_LOG");
                if let Err(e) = tracing_subscriber::EnvFilter::try_new(&filter) {
                    bail!("RUST_LOG: {e}, got {filter:?}");
                }
                filter
            },
            cors_origins: env.list("CORS_ORIGINS"),
            request_timeout: env.seconds("REQUEST_TIMEOUT_SECONDS", 1, 3600)?,
            header_read_timeout: env.seconds("HEADER_READ_TIMEOUT_SECONDS", 1, 300)?,
            max_connections: match env.opt_parse::<usize>("MAX_CONNECTIONS")? {
                None => crate::http::server::default_max_connections(),
                Some(n) if (1..=1_000_000).contains(&n) => n,
                Some(n) => bail!("MAX_CONNECTIONS: expected a value from 1 to 1000000, got {n}"),
            },
            body_limit_bytes: env.parse_range("MAX_BODY_BYTES", 1024, 1 << 30)?,
            shutdown_grace: env.seconds("SHUTDOWN_GRACE_SECONDS", 0, 600)?,
            cookie_secure: env.bool("COOKIE_SECURE")?,

            session_ttl: env.seconds("SESSION_TTL_SECONDS", 1, 365 * 86_400)?,
            admin_email: env.opt_string("ADMIN_EMAIL"),
            admin_password: env.opt_string("ADMIN_PASSWORD").map(SecretString::from),
            password_hash_concurrency: env.parse_range("PASSWORD_HASH_CONCURRENCY", 1, 64)?,
            argon2_memory_kib: env.parse_range("ARGON2_MEMORY_KIB", 19_456, 1 << 22)?,
            argon2_iterations: env.parse_range("ARGON2_ITERATIONS", 2, 32)?,

            job_concurrency: env.parse_range("JOB_CONCURRENCY", 1, 256)?,
            job_poll_interval: Duration::from_millis(env.parse_range(
                "JOB_POLL_INTERVAL_MS",
                10,
                60_000,
            )?),
            job_lease: env.seconds("JOB_LEASE_SECONDS", 2, 3600)?,
            job_retention_days: env.parse_range("JOB_RETENTION_DAYS", 0, 3650)?,
            job_max_pending_per_user: env.parse_range("JOB_MAX_PENDING_PER_USER", 1, 100_000)?,
            job_retry_base: Duration::from_millis(env.parse_range(
                "JOB_RETRY_BASE_MS",
                1,
                3_600_000,
            )?),
            job_retry_max: Duration::from_millis(env.parse_range(
                "JOB_RETRY_MAX_MS",
                1,
                86_400_000,
            )?),

            anthropic_api_key: env.opt_string("ANTHROPIC_API_KEY").map(SecretString::from),
            anthropic_base_url: {
                let raw = env.string("ANTHROPIC_BASE_URL");
                let parsed = url::Url::parse(&raw)
                    .with_context(|| format!("ANTHROPIC_BASE_URL: not a URL: {raw:?}"))?;
                if !matches!(parsed.scheme(), "http" | "https") {
                    bail!("ANTHROPIC_BASE_URL: expected an http(s) URL, got {raw:?}");
                }
                raw.trim_end_matches('/').to_string()
            },
            anthropic_model,
            anthropic_allowed_models,
            ai_max_tokens: env.parse_range("AI_MAX_TOKENS", 1, 200_000)?,
            ai_timeout: env.seconds("AI_TIMEOUT_SECONDS", 1, 3600)?,
            ai_connect_timeout: env.seconds("AI_CONNECT_TIMEOUT_SECONDS", 1, 300)?,
            ai_max_retries: env.parse_range("AI_MAX_RETRIES", 0, 10)?,
            ai_daily_token_budget: env.parse("AI_DAILY_TOKEN_BUDGET")?,
            ai_global_daily_token_budget: env
                .opt_parse("AI_GLOBAL_DAILY_TOKEN_BUDGET")?
                .filter(|b: &u64| *b > 0),
            ai_breaker_failures: env.parse_range("AI_BREAKER_FAILURES", 1, 1000)?,
            ai_breaker_cooldown: env.seconds("AI_BREAKER_COOLDOWN_SECONDS", 1, 3600)?,

            rate_limit_per_minute: env.parse("RATE_LIMIT_PER_MINUTE")?,
            ai_rate_limit_per_minute: env.parse("AI_RATE_LIMIT_PER_MINUTE")?,
            trust_proxy_hops: env.parse_range("TRUST_PROXY_HOPS", 0, 16)?,

            storage_quota_bytes: env.opt_parse("STORAGE_QUOTA_BYTES")?,
            user_quota_bytes: env.opt_parse("USER_QUOTA_BYTES")?,
            storage_min_free_bytes: env.opt_parse("STORAGE_MIN_FREE_BYTES")?,
            upload_max_bytes: env.parse_range("UPLOAD_MAX_BYTES", 1, 1 << 40)?,
            upload_allowed_types: {
                let list = env.list("UPLOAD_ALLOWED_TYPES");
                if list.is_empty() {
                    DEFAULT_UPLOAD_TYPES.iter().map(|s| s.to_string()).collect()
                } else {
                    list
                }
            },
            chromium_path: env.opt_string("CHROMIUM_PATH").map(PathBuf::from),
            screenshot_allowed_hosts: env
                .list("SCREENSHOT_ALLOWED_HOSTS")
                .into_iter()
                .map(|h| h.to_ascii_lowercase())
                .collect(),
            screenshot_concurrency: env.parse_range("SCREENSHOT_CONCURRENCY", 1, 32)?,
            screenshot_idle: env.seconds("SCREENSHOT_IDLE_SECONDS", 1, 86_400)?,
            render_concurrency: env.parse_range("RENDER_CONCURRENCY", 1, 64)?,
            font_path: env.opt_string("FONT_PATH").map(PathBuf::from),

            request_log: env.bool("REQUEST_LOG")?,
            log_retention_days: env.parse_range("LOG_RETENTION_DAYS", 1, 3650)?,
            rollup_retention_days: env.parse_range("ROLLUP_RETENTION_DAYS", 1, 36_500)?,
            alert_webhook_url: env.opt_string("ALERT_WEBHOOK_URL"),
            alert_interval: env.seconds("ALERT_INTERVAL_SECONDS", 1, 3600)?,
            alert_error_rate: env.parse("ALERT_ERROR_RATE")?,
            alert_p95_ms: env.parse("ALERT_P95_MS")?,
            alert_job_failure_rate: env.parse("ALERT_JOB_FAILURE_RATE")?,
            alert_queue_age_seconds: env.parse("ALERT_QUEUE_AGE_SECONDS")?,
            alert_min_free_disk_bytes: env.parse("ALERT_MIN_FREE_DISK_BYTES")?,
            alert_log_drops: env.parse("ALERT_LOG_DROPS")?,
            alert_max_rss_bytes: env.parse("ALERT_MAX_RSS_BYTES")?,
            metrics_token: env.opt_string("METRICS_TOKEN").map(SecretString::from),
            debug_routes: env.bool("DEBUG_ROUTES")?,

            loadtest_max_concurrency: env.parse_range("LOADTEST_MAX_CONCURRENCY", 1, 10_000)?,
            loadtest_max_duration_seconds: env.parse_range(
                "LOADTEST_MAX_DURATION_SECONDS",
                1,
                86_400,
            )?,
            loadtest_max_requests: env.parse_range("LOADTEST_MAX_REQUESTS", 1, u64::MAX)?,
            backup_interval_hours: env.parse_range("BACKUP_INTERVAL_HOURS", 0, 24 * 365)?,
            backup_keep: env.parse_range("BACKUP_KEEP", 1, 1000)?,
            maintenance_interval: env.seconds("MAINTENANCE_INTERVAL_SECONDS", 10, 86_400 * 7)?,
        };
        if let Some(url) = &cfg.alert_webhook_url {
            url::Url::parse(url)
                .with_context(|| format!("ALERT_WEBHOOK_URL: not a URL: {url:?}"))?;
        }
        Ok(cfg)
    }

    /// The sqlx URL of the database file.
    pub fn database_url(&self) -> String {
        match &self.database_url {
            Some(url) => url.clone(),
            None => format!("sqlite://{}", self.database_path().display()),
        }
    }

    /// Where the database file lives when `DATABASE_URL` is not set.
    pub fn database_path(&self) -> PathBuf {
        if let Some(url) = &self.database_url {
            let path = url
                .trim_start_matches("sqlite://")
                .trim_start_matches("sqlite:");
            let path = path.split('?').next().unwrap_or(path);
            return PathBuf::from(path);
        }
        self.data_dir.join("hs-platform.db")
    }

    /// Directory of stored files (generated and uploaded).
    pub fn files_dir(&self) -> PathBuf {
        self.data_dir.join("files")
    }

    /// Directory of database backups.
    pub fn backups_dir(&self) -> PathBuf {
        self.data_dir.join("backups")
    }
}

/// Upload types accepted when `UPLOAD_ALLOWED_TYPES` is unset.
pub const DEFAULT_UPLOAD_TYPES: &[&str] = &[
    "image/png",
    "image/jpeg",
    "image/gif",
    "image/webp",
    "application/pdf",
    "text/plain",
    "text/csv",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "application/vnd.openxmlformats-officedocument.presentationml.presentation",
];

/// The resolved variables, read by name. Every name read here must be
/// declared in [`Variables`] (reading another is a bug, caught by the
/// defaults test); a declared default is always present.
struct Env<'a>(&'a [Setting]);

impl Env<'_> {
    fn opt_string(&self, name: &str) -> Option<String> {
        self.0
            .iter()
            .find(|s| s.name == name)
            .unwrap_or_else(|| panic!("{name} is not declared in config::Variables"))
            .value
            .clone()
    }

    fn string(&self, name: &str) -> String {
        self.opt_string(name)
            .unwrap_or_else(|| panic!("{name} has no declared default"))
    }

    fn list(&self, name: &str) -> Vec<String> {
        self.opt_string(name)
            .map(|v| {
                v.split(',')
                    .map(|s| s.trim().to_string())
                    .filter(|s| !s.is_empty())
                    .collect()
            })
            .unwrap_or_default()
    }

    fn opt_parse<T: std::str::FromStr>(&self, name: &str) -> anyhow::Result<Option<T>>
    where
        T::Err: std::fmt::Display,
    {
        match self.opt_string(name) {
            None => Ok(None),
            Some(raw) => raw
                .parse()
                .map(Some)
                .map_err(|e| anyhow::anyhow!("{name}: cannot parse {raw:?}: {e}")),
        }
    }

    fn parse<T: std::str::FromStr>(&self, name: &str) -> anyhow::Result<T>
    where
        T::Err: std::fmt::Display,
    {
        let raw = self.string(name);
        raw.parse()
            .map_err(|e| anyhow::anyhow!("{name}: cannot parse {raw:?}: {e}"))
    }

    fn parse_range<T>(&self, name: &str, min: T, max: T) -> anyhow::Result<T>
    where
        T: std::str::FromStr + PartialOrd + std::fmt::Display + Copy,
        T::Err: std::fmt::Display,
    {
        let value = self.parse(name)?;
        if value < min || value > max {
            bail!("{name}: expected a value from {min} to {max}, got {value}");
        }
        Ok(value)
    }

    fn seconds(&self, name: &str, min: u64, max: u64) -> anyhow::Result<Duration> {
        Ok(Duration::from_secs(self.parse_range(name, min, max)?))
    }

    fn bool(&self, name: &str) -> anyhow::Result<bool> {
        let v = self.string(name);
        match v.to_ascii_lowercase().as_str() {
            "1" | "true" | "yes" | "on" => Ok(true),
            "0" | "false" | "no" | "off" => Ok(false),
            _ => bail!("{name}: expected true or false, got {v:?}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(pairs: &[(&str, &str)]) -> anyhow::Result<Config> {
        let map = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_map(&map)
    }

    #[test]
    fn defaults_match_the_contract() {
        let c = cfg(&[]).unwrap();
        assert_eq!(c.port, 8080);
        assert_eq!(c.host.to_string(), "127.0.0.1");
        assert_eq!(c.session_ttl, Duration::from_secs(86_400));
        assert_eq!(c.rate_limit_per_minute, 60);
        assert_eq!(c.ai_rate_limit_per_minute, 10);
        assert_eq!(
            c.storage_quota_bytes, None,
            "derived from the disk at start-up"
        );
        assert_eq!(c.ai_daily_token_budget, 200_000);
        assert_eq!(c.upload_max_bytes, 26_214_400);
        assert!(c.anthropic_api_key.is_none());
        assert_eq!(c.database_path(), PathBuf::from("./data/hs-platform.db"));
    }

    #[test]
    fn invalid_values_name_the_variable() {
        let err = cfg(&[("PORT", "eighty")]).unwrap_err().to_string();
        assert!(err.starts_with("PORT:"), "{err}");
        let err = cfg(&[("LOG_FORMAT", "xml")]).unwrap_err().to_string();
        assert!(err.starts_with("LOG_FORMAT:"), "{err}");
        let err = cfg(&[("RUST_LOG", "info,=nonsense=x")])
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("RUST_LOG:"), "{err}");
        assert_eq!(
            cfg(&[("RUST_LOG", "warn,hs_platform=debug")])
                .unwrap()
                .log_filter,
            "warn,hs_platform=debug"
        );
        let err = cfg(&[("JOB_CONCURRENCY", "0")]).unwrap_err().to_string();
        assert!(err.starts_with("JOB_CONCURRENCY:"), "{err}");
    }

    #[test]
    fn secrets_are_not_printed_by_debug() {
        let c = cfg(&[
            ("ANTHROPIC_API_KEY", "sk-secret-value"),
            ("ADMIN_PASSWORD", "hunter2hunter2"),
        ])
        .unwrap();
        let printed = format!("{c:?}");
        assert!(!printed.contains("sk-secret-value"));
        assert!(!printed.contains("hunter2hunter2"));
    }

    #[test]
    fn empty_values_count_as_unset() {
        let c = cfg(&[("PORT", " "), ("ANTHROPIC_API_KEY", ""), ("DATA_DIR", "")]).unwrap();
        assert_eq!(c.port, 8080);
        assert!(c.anthropic_api_key.is_none());
        assert!(!c.data_dir_explicit);
        let c = cfg(&[("PORT", " 9000 "), ("DATA_DIR", "/srv/data")]).unwrap();
        assert_eq!(c.port, 9000);
        assert!(c.data_dir_explicit);
        assert_eq!(c.data_dir, PathBuf::from("/srv/data"));
    }

    #[test]
    fn undeclared_names_are_refused() {
        let err = cfg(&[("SESSION_TTL", "5")]).unwrap_err().to_string();
        assert_eq!(err, "SESSION_TTL: not a configuration variable");
    }
}
