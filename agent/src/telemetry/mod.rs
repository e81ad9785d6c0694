//! Logs, metrics and health.

mod health;
mod http;
mod latency;
mod metrics;
mod spaced_log;
pub mod systemd;

use tracing::Level;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer, Registry};

use crate::triggers::snmp;

use crate::config::{LogConfig, LogFormat};

pub use health::{ComponentHealth, Health, HealthReport};
pub use http::serve;
pub use latency::{LatencyRecord, LatencySnapshot};
pub use metrics::{
    AcknowledgedMetrics, BrokerMetrics, ConnectionMetrics, FunctionMetrics, Metrics,
};
pub use spaced_log::SpacedLog;

/// Installs the global log subscriber. `RUST_LOG` overrides the configured level. Logs go to
/// stderr so that command output (`fogd invoke`, `fogd bench --json`) stays clean on stdout.
pub fn init_logging(config: &LogConfig) {
    // The embedded broker logs ordinary disconnects as errors, async-snmp warns once per
    // undecodable datagram (counted instead, see `DecodeFailureCounter`), and its client
    // logs every failed request as an error with no message (a poll failure fogd reports
    // itself): keep them quiet unless the level names the crate.
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
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_target(false);
    let fmt: Box<dyn Layer<Registry> + Send + Sync> = match (config.format, journal) {
        (LogFormat::Human, false) => fmt.boxed(),
        (LogFormat::Human, true) => fmt.without_time().with_ansi(false).boxed(),
        (LogFormat::Json, _) => fmt.json().flatten_event(true).boxed(),
    };
    let _ = tracing_subscriber::registry()
        .with(fmt.with_filter(filter))
        .with(
            // Decided once per call site, with a level hint: otherwise every debug and trace
            // call site of every dependency (and every `log` record, which the bridge to
            // tracing then builds) would be evaluated on each call, a measurable share of the
            // MQTT path's time.
            DecodeFailureCounter
                .with_filter(Targets::new().with_target(snmp::DECODE_FAILURE_TARGET, Level::WARN)),
        )
        .try_init();
}

/// Counts the datagrams async-snmp skips as undecodable, which it reports only as a log
/// event; independent of the log level.
struct DecodeFailureCounter;

impl<S: tracing::Subscriber> Layer<S> for DecodeFailureCounter {
    fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
        let mut message = MessageText(false);
        event.record(&mut message);
        if message.0 {
            snmp::count_decode_failure();
        }
    }
}

/// Whether an event's message is async-snmp's decode-failure message.
struct MessageText(bool);

impl tracing::field::Visit for MessageText {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.0 = format!("{value:?}") == snmp::DECODE_FAILURE_MESSAGE;
        }
    }
}
