//! A message to publish, as the agent and the controller both hand it to a connection.

use std::sync::Arc;

/// MQTT delivery guarantee.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Qos {
    AtMostOnce,
    AtLeastOnce,
    ExactlyOnce,
}

impl Qos {
    pub fn level(self) -> u8 {
        match self {
            Qos::AtMostOnce => 0,
            Qos::AtLeastOnce => 1,
            Qos::ExactlyOnce => 2,
        }
    }

    pub fn from_level(level: u8) -> Option<Self> {
        match level {
            0 => Some(Qos::AtMostOnce),
            1 => Some(Qos::AtLeastOnce),
            2 => Some(Qos::ExactlyOnce),
            _ => None,
        }
    }
}

/// MQTT v5 properties carried by an outbound message.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MessageProperties {
    pub correlation_data: Option<Vec<u8>>,
    pub content_type: Option<String>,
    pub user_properties: Vec<(String, String)>,
}

/// One message to publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboundMessage {
    pub topic: String,
    pub payload: Vec<u8>,
    pub qos: Qos,
    pub retain: bool,
    /// The function that produced it.
    pub origin: Arc<str>,
    /// The broker connection it must leave through; `None` means the origin's default.
    pub broker: Option<Arc<str>>,
    pub properties: MessageProperties,
}

impl OutboundMessage {
    /// A QoS 1, non-retained message with no properties.
    pub fn new(topic: String, payload: Vec<u8>, origin: Arc<str>) -> Self {
        Self {
            topic,
            payload,
            qos: Qos::AtLeastOnce,
            retain: false,
            origin,
            broker: None,
            properties: MessageProperties::default(),
        }
    }
}
