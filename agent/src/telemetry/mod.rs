//! Logs, metrics and health.

mod health;
mod http;
mod metrics;
pub mod systemd;

use tracing_subscriber::EnvFilter;

use crate::config::{LogConfig, LogFormat};

pub use health::{ComponentHealth, Health, HealthReport};
pub use http::serve;
pub use metrics::{BrokerMetrics, FunctionMetrics, Metrics};

/// Installs the global log subscriber. `RUST_LOG` overrides the configured level. Logs go to
/// stderr so that command output (`fogd invoke`, `fogd bench --json`) stays clean on stdout.
pub fn init_logging(config: &LogConfig) {
    // The embedded broker logs ordinary disconnects as errors; keep it quiet unless asked.
    let level = if config.level.contains("rumqttd") {
        config.level.clone()
    } else {
        format!("{},rumqttd=off", config.level)
    };
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false);
    // Under systemd, stderr is the journal: it timestamps each line itself and shows no colour.
    let journal = std::env::var_os("JOURNAL_STREAM").is_some();
    let _ = match (config.format, journal) {
        (LogFormat::Human, false) => builder.try_init(),
        (LogFormat::Human, true) => builder.without_time().with_ansi(false).try_init(),
        (LogFormat::Json, _) => builder.json().flatten_event(true).try_init(),
    };
}
