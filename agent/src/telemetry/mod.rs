//! Logs, metrics and health.

mod health;
mod http;
mod labels;
mod latency;
mod metrics;
mod spaced_log;
pub mod stderr;
pub mod systemd;

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer, Registry};

use crate::config::{LogConfig, LogFormat};

pub use health::{ComponentHealth, Health, HealthReport};
pub use http::{JsonPage, JsonPages, serve};
pub use labels::{EventDrop, OutboxDrop, Rejection, RequestOutcome};
pub use latency::{LatencyRecord, LatencySnapshot};
pub use metrics::{
    AcknowledgedMetrics, BrokerMetrics, ConnectionMetrics, FunctionMetrics, Metrics,
    OutboundRequestMetrics,
};
pub use spaced_log::SpacedLog;

/// A layer that watches log events for what a dependency reports only there (the SNMP
/// receiver's decode failures), installed beside the output whatever the level.
pub type LogObserver = Box<dyn Layer<Registry> + Send + Sync>;

/// Installs the global log subscriber with `observers`. `RUST_LOG` overrides the configured
/// level. Logs go to stderr so that command output (`fogd invoke`, `fogd bench --json`)
/// stays clean on stdout.
pub fn init_logging(config: &LogConfig, mut observers: Vec<LogObserver>) {
    // The embedded broker logs ordinary disconnects as errors, async-snmp warns once per
    // undecodable datagram (counted instead by an observer), and its client logs every
    // failed request as an error with no message (a poll failure fogd reports itself): keep
    // them quiet unless the level names the crate.
    let mut level = config.level.clone();
    for quiet in ["rumqttd=off", "async_snmp=error", "async_snmp::client=off"] {
        let (target, _) = quiet.split_once('=').unwrap_or((quiet, ""));
        let krate = target.split("::").next().unwrap_or(target);
        if !config.level.contains(krate) {
            level = format!("{level},{quiet}");
        }
    }
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    // Under systemd, stderr is the journal: it timestamps each line itself and shows no colour.
    let journal = std::env::var_os("JOURNAL_STREAM").is_some();
    // Taken before anything logs, so every line goes through the copy.
    let _ = stderr::log_output();
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(stderr::writer)
        .with_target(false);
    let fmt: Box<dyn Layer<Registry> + Send + Sync> = match (config.format, journal) {
        (LogFormat::Human, false) => fmt.boxed(),
        (LogFormat::Human, true) => fmt.without_time().with_ansi(false).boxed(),
        (LogFormat::Json, _) => fmt.json().flatten_event(true).boxed(),
    };
    observers.push(fmt.with_filter(filter).boxed());
    let _ = tracing_subscriber::registry().with(observers).try_init();
}
