//! Logging: pretty or JSON lines (`LOG_FORMAT`), filtered by `RUST_LOG`
//! (both declared in `config::variables`).

use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::config::LogFormat;

/// Installs the global subscriber: `format` lines filtered by `filter`
/// (`RUST_LOG`, checked by the configuration).
pub fn init(format: LogFormat, filter: &str) {
    let filter = EnvFilter::new(filter);
    let registry = tracing_subscriber::registry().with(filter);
    let result = match format {
        LogFormat::Json => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .with_current_span(true),
            )
            .try_init(),
        LogFormat::Pretty => registry.with(tracing_subscriber::fmt::layer()).try_init(),
    };
    let _ = result;
}
