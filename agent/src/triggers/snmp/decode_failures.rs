//! Refusals async-snmp reports only in its log: datagrams it could not decode, and v3
//! messages whose sender's clock is outside the time window (it counts no usmStats for
//! those). [`counter`] is the log layer that counts them, independent of the log level.

use std::sync::atomic::{AtomicU64, Ordering};

use tracing::Level;
use tracing_subscriber::Layer;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::Context;

use crate::telemetry::LogObserver;

static MALFORMED: AtomicU64 = AtomicU64::new(0);
static DECRYPTION_FAILED: AtomicU64 = AtomicU64::new(0);
static OUTSIDE_TIME_WINDOW: AtomicU64 = AtomicU64::new(0);

/// Where and with which message async-snmp reports a datagram it skipped.
const NOTIFICATION_TARGET: &str = "async_snmp::notification";
const SKIPPED: &str = "failed to parse notification";
/// How the text of an authentication error begins. Such a datagram is already counted
/// under its usmStats reason (or as outside the time window), not again as malformed.
const AUTHENTICATION_FAILED: &str = "authentication failed";
/// Where a decode error is placed when it is in what decryption gave: an authenticated
/// message whose plaintext is not BER, which is what a wrong privacy key produces (CBC and
/// CFB decrypt anything). RFC 3414 (3.2, step 8) counts it as a decryption error.
const IN_DECRYPTED_PLAINTEXT: &str = "decrypted scoped-PDU plaintext";
/// Where and with which message it reports a message from a sender outside the window.
const V3_TARGET: &str = "async_snmp::v3";
const OUTSIDE_WINDOW: &str = "message outside time window";

/// The undecodable datagrams counted so far in this process.
pub fn malformed() -> u64 {
    MALFORMED.load(Ordering::Relaxed)
}

/// The authenticated v3 messages whose decrypted contents did not decode, so far.
pub fn decryption_failed() -> u64 {
    DECRYPTION_FAILED.load(Ordering::Relaxed)
}

/// The v3 messages from senders outside the time window counted so far in this process.
pub fn outside_time_window() -> u64 {
    OUTSIDE_TIME_WINDOW.load(Ordering::Relaxed)
}

/// The layer to install with the log subscriber (`telemetry::init_logging`).
pub fn counter() -> LogObserver {
    // Decided once per call site, with a level hint: otherwise every debug and trace call
    // site of every dependency (and every `log` record, which the bridge to tracing then
    // builds) would be evaluated on each call, a measurable share of the MQTT path's time.
    RefusalCounter
        .with_filter(
            Targets::new()
                .with_target(NOTIFICATION_TARGET, Level::WARN)
                .with_target(V3_TARGET, Level::WARN),
        )
        .boxed()
}

struct RefusalCounter;

impl<S: tracing::Subscriber> Layer<S> for RefusalCounter {
    fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
        let mut fields = Fields::default();
        event.record(&mut fields);
        let target = event.metadata().target();
        if target == NOTIFICATION_TARGET
            && fields.message == SKIPPED
            && !fields.error.starts_with(AUTHENTICATION_FAILED)
        {
            if fields.error.contains(IN_DECRYPTED_PLAINTEXT) {
                DECRYPTION_FAILED.fetch_add(1, Ordering::Relaxed);
            } else {
                MALFORMED.fetch_add(1, Ordering::Relaxed);
            }
        } else if target == V3_TARGET && fields.message == OUTSIDE_WINDOW {
            OUTSIDE_TIME_WINDOW.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// The message and error text of one log event.
#[derive(Default)]
struct Fields {
    message: String,
    error: String,
}

impl tracing::field::Visit for Fields {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        match field.name() {
            "message" => self.message = format!("{value:?}"),
            "error" => self.error = format!("{value:?}"),
            _ => {}
        }
    }
}
