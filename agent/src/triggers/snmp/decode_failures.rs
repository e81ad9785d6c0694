//! Refusals async-snmp reports only in its log: datagrams it could not decode, and v3
//! messages whose sender's clock is outside the time window (it counts no usmStats for
//! those). [`counter`] is the log layer that counts them, independent of the log level, for
//! the receiver the datagram came through: each log line names the relay socket it arrived
//! from ([`watch`]).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tracing::Level;
use tracing_subscriber::Layer;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::Context;

use crate::telemetry::LogObserver;

/// Which receiver's counts each relay socket's datagrams go to.
static SENDERS: Mutex<Option<HashMap<SocketAddr, Arc<LoggedRefusals>>>> = Mutex::new(None);

/// One receiver's refusals that async-snmp only logs.
#[derive(Default)]
pub struct LoggedRefusals {
    malformed: AtomicU64,
    decryption_failed: AtomicU64,
    outside_time_window: AtomicU64,
    foreign_engine: AtomicU64,
}

impl LoggedRefusals {
    /// The undecodable datagrams counted so far.
    pub fn malformed(&self) -> u64 {
        self.malformed.load(Ordering::Relaxed)
    }

    /// The authenticated v3 messages whose decrypted contents did not decode, so far.
    pub fn decryption_failed(&self) -> u64 {
        self.decryption_failed.load(Ordering::Relaxed)
    }

    /// The v3 messages from senders outside the time window counted so far.
    pub fn outside_time_window(&self) -> u64 {
        self.outside_time_window.load(Ordering::Relaxed)
    }

    /// The authenticated v3 informs addressed to another engine than the receiver's.
    pub fn foreign_engine(&self) -> u64 {
        self.foreign_engine.load(Ordering::Relaxed)
    }
}

fn senders() -> MutexGuard<'static, Option<HashMap<SocketAddr, Arc<LoggedRefusals>>>> {
    SENDERS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Counts what the log says of datagrams from `relayed` into `refusals`.
pub fn watch(relayed: SocketAddr, refusals: Arc<LoggedRefusals>) {
    senders()
        .get_or_insert_with(HashMap::new)
        .insert(relayed, refusals);
}

/// Stops counting for `relayed`, a relay socket given up.
pub fn unwatch(relayed: SocketAddr) {
    if let Some(senders) = senders().as_mut() {
        senders.remove(&relayed);
    }
}

fn refusals_of(source: &str) -> Option<Arc<LoggedRefusals>> {
    let source: SocketAddr = source.parse().ok()?;
    senders().as_ref()?.get(&source).cloned()
}

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
/// How it reports an authenticated inform whose engine ID is not the receiver's: an unknown
/// engine ID that usmStats does not count.
const FOREIGN_ENGINE: &str = "dropped v3 Inform localized to a foreign authoritative engine ID";
/// Where and with which message it reports a message from a sender outside the window.
const V3_TARGET: &str = "async_snmp::v3";
const OUTSIDE_WINDOW: &str = "message outside time window";

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
        let counter: fn(&LoggedRefusals) -> &AtomicU64 = if target == NOTIFICATION_TARGET
            && fields.message == SKIPPED
            && !fields.error.starts_with(AUTHENTICATION_FAILED)
        {
            if fields.error.contains(IN_DECRYPTED_PLAINTEXT) {
                |refusals| &refusals.decryption_failed
            } else {
                |refusals| &refusals.malformed
            }
        } else if target == NOTIFICATION_TARGET && fields.message == FOREIGN_ENGINE {
            |refusals| &refusals.foreign_engine
        } else if target == V3_TARGET && fields.message == OUTSIDE_WINDOW {
            |refusals| &refusals.outside_time_window
        } else {
            return;
        };
        if let Some(refusals) = refusals_of(&fields.source) {
            counter(&refusals).fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// The message, error text and source of one log event.
#[derive(Default)]
struct Fields {
    message: String,
    error: String,
    source: String,
}

impl tracing::field::Visit for Fields {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        match field.name() {
            "message" => self.message = format!("{value:?}"),
            "error" => self.error = format!("{value:?}"),
            "snmp.source" => self.source = format!("{value:?}"),
            _ => {}
        }
    }
}
