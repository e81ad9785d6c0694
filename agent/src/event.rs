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

/// Attribute of timer events naming the trigger that fired (`<function>/timer<index>`), so a
/// timer reaches only its own function even when two timers share a display name.
pub const TIMER_ATTRIBUTE: &str = "timer";

/// Attribute names of MQTT events (the README documents them).
pub mod mqtt_attributes {
    /// Name of the broker connection the message arrived on.
    pub const BROKER: &str = "mqtt.broker";
    /// `0`, `1` or `2`.
    pub const QOS: &str = "mqtt.qos";
    /// `true` if the broker delivered a retained message.
    pub const RETAIN: &str = "mqtt.retain";
    /// `true` if the broker marked the message as a redelivery.
    pub const DUP: &str = "mqtt.dup";
    /// MQTT v5 response topic of a request.
    pub const RESPONSE_TOPIC: &str = "mqtt.response_topic";
    /// MQTT v5 correlation data, as lower-case hex.
    pub const CORRELATION_DATA: &str = "mqtt.correlation_data";
    /// MQTT v5 content type.
    pub const CONTENT_TYPE: &str = "mqtt.content_type";
    /// Prefix of MQTT v5 user properties: `mqtt.user.<name>`.
    pub const USER_PREFIX: &str = "mqtt.user.";
}

/// The value of the first attribute named `key`.
pub fn attribute<'a>(event: &'a Event, key: &str) -> Option<&'a str> {
    event
        .attributes
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}
