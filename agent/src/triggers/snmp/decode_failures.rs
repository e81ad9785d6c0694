//! Datagrams async-snmp could not decode. It skips them and reports each one only as a
//! tracing event; [`counter`] is the log layer that counts them, independent of the log level.

use std::sync::atomic::{AtomicU64, Ordering};

use tracing::Level;
use tracing_subscriber::Layer;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::Context;

use crate::telemetry::LogObserver;

static DECODE_FAILURES: AtomicU64 = AtomicU64::new(0);

/// The tracing target and message with which async-snmp reports a datagram it skipped.
const TARGET: &str = "async_snmp::notification";
const MESSAGE: &str = "failed to parse notification";

/// The decode failures counted so far in this process.
pub fn count() -> u64 {
    DECODE_FAILURES.load(Ordering::Relaxed)
}

/// The layer to install with the log subscriber (`telemetry::init_logging`).
pub fn counter() -> LogObserver {
    // Decided once per call site, with a level hint: otherwise every debug and trace call
    // site of every dependency (and every `log` record, which the bridge to tracing then
    // builds) would be evaluated on each call, a measurable share of the MQTT path's time.
    DecodeFailureCounter
        .with_filter(Targets::new().with_target(TARGET, Level::WARN))
        .boxed()
}

struct DecodeFailureCounter;

impl<S: tracing::Subscriber> Layer<S> for DecodeFailureCounter {
    fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
        let mut message = IsDecodeFailure(false);
        event.record(&mut message);
        if message.0 {
            DECODE_FAILURES.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Whether an event's message is async-snmp's decode-failure message.
struct IsDecodeFailure(bool);

impl tracing::field::Visit for IsDecodeFailure {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.0 = format!("{value:?}") == MESSAGE;
        }
    }
}
