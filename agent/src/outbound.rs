//! Messages leaving fogd: function results and `messaging.publish` calls. The host hands
//! them to an [`OutboundSink`]; what stands behind it (a log, a channel to the MQTT client,
//! the durable outbox) is chosen when the agent is assembled.

use std::sync::Arc;

use thiserror::Error;
use tokio::sync::mpsc;

/// MQTT delivery guarantee.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Qos {
    AtMostOnce,
    AtLeastOnce,
    ExactlyOnce,
}

/// One message to publish.
#[derive(Debug, Clone)]
pub struct OutboundMessage {
    pub topic: String,
    pub payload: Vec<u8>,
    pub qos: Qos,
    pub retain: bool,
    /// The function that produced it.
    pub origin: Arc<str>,
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum OutboundError {
    #[error("the outbound queue is full")]
    Full,
    #[error("the outbound path is closed")]
    Closed,
}

/// Where outbound messages go. `send` must not block for long: it runs on guest threads.
pub trait OutboundSink: Send + Sync {
    fn send(&self, message: OutboundMessage) -> Result<(), OutboundError>;
}

/// A bounded in-memory channel; the receiver decides what to do with the messages.
pub struct ChannelSink {
    sender: mpsc::Sender<OutboundMessage>,
}

impl ChannelSink {
    pub fn new(capacity: usize) -> (Self, mpsc::Receiver<OutboundMessage>) {
        let (sender, receiver) = mpsc::channel(capacity);
        (Self { sender }, receiver)
    }
}

impl OutboundSink for ChannelSink {
    fn send(&self, message: OutboundMessage) -> Result<(), OutboundError> {
        self.sender.try_send(message).map_err(|error| match error {
            mpsc::error::TrySendError::Full(_) => OutboundError::Full,
            mpsc::error::TrySendError::Closed(_) => OutboundError::Closed,
        })
    }
}

/// Drops every message; for benchmarks and one-off invocations that print results instead.
pub struct DiscardSink;

impl OutboundSink for DiscardSink {
    fn send(&self, _message: OutboundMessage) -> Result<(), OutboundError> {
        Ok(())
    }
}
