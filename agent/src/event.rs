//! Building events. The event type itself is the contract's `event` record.

use std::time::{SystemTime, UNIX_EPOCH};

pub use crate::contract::{Event, Source};

/// Creates an event received now, with a fresh time-ordered id.
pub fn new_event(source: Source, subject: impl Into<String>, payload: Vec<u8>) -> Event {
    Event {
        id: uuid::Uuid::now_v7().to_string(),
        source,
        subject: subject.into(),
        payload,
        attributes: Vec::new(),
        received_at: now_micros(),
    }
}

/// Microseconds since the Unix epoch (0 if the clock is before it).
pub fn now_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// Milliseconds since the Unix epoch (0 if the clock is before it).
pub fn now_millis() -> u64 {
    now_micros() / 1000
}

/// The attribute names of events, shared with the guest SDK.
pub mod attributes {
    include!("../wit/attributes.rs");
}

/// The value of the first attribute named `key`.
pub fn attribute<'a>(event: &'a Event, key: &str) -> Option<&'a str> {
    event
        .attributes
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

/// The message text of a syslog event (its payload's `message`).
pub fn syslog_message(event: &Event) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct MessageOnly {
        message: String,
    }
    serde_json::from_slice::<MessageOnly>(&event.payload)
        .ok()
        .map(|m| m.message)
}
