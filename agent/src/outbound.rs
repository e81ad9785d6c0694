//! Messages leaving fogd: function results and `messaging.publish` calls. The host hands
//! them to an [`OutboundSink`]; what stands behind it (the log, or the durable outbox of a
//! broker connection) is chosen when the agent is assembled.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::metrics::gauge::Gauge;
use thiserror::Error;
use tokio::sync::mpsc;

use crate::state::{Delivered, FairOutbox};
use crate::telemetry::OutboxDrop;
pub use fogd_fleet::mqtt::{MessageProperties, OutboundMessage, Qos};

#[derive(Debug, Error, PartialEq, Eq)]
pub enum OutboundError {
    #[error("the outbound queue is full")]
    Full,
    #[error("the outbound path is closed")]
    Closed,
    #[error("no broker connection named {0:?}")]
    UnknownBroker(String),
    #[error("the outbox cannot store the message: {0}")]
    Storage(String),
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

/// What the outboxes report: what they had to drop, per broker and per function whose
/// messages they were, and how many messages wait.
pub trait OutboxMetrics: Send + Sync {
    fn dropped(&self, broker: &str, function: &str, reason: OutboxDrop, count: u64);
    /// The gauge of how many messages wait in `broker`'s outbox, resolved once per broker.
    fn depth(&self, broker: &str) -> Gauge;
}

/// The durable outboxes of all broker connections, shared by every function's sink.
pub struct Outboxes {
    outboxes: HashMap<Arc<str>, BrokerOutbox>,
    metrics: Arc<dyn OutboxMetrics>,
}

struct BrokerOutbox {
    queues: FairOutbox,
    depth: Gauge,
}

impl Outboxes {
    pub fn new(outboxes: HashMap<Arc<str>, FairOutbox>, metrics: Arc<dyn OutboxMetrics>) -> Self {
        let outboxes = outboxes
            .into_iter()
            .map(|(broker, queues)| {
                let depth = metrics.depth(&broker);
                (broker, BrokerOutbox { queues, depth })
            })
            .collect();
        Self { outboxes, metrics }
    }

    pub fn get(&self, broker: &str) -> Option<&FairOutbox> {
        self.outboxes.get(broker).map(|outbox| &outbox.queues)
    }

    /// Whether every message pushed before the call left its outbox (delivered, or dropped
    /// and counted) within `patience`; false at once if some cannot leave soon.
    pub async fn delivered_within(&self, patience: Duration) -> bool {
        let mut waits = Vec::new();
        for lane in self
            .outboxes
            .values()
            .flat_map(|outbox| outbox.queues.lanes_from(0))
        {
            match lane.outbox.delivered() {
                Delivered::Already => {}
                Delivered::When(gone) => waits.push(gone),
                Delivered::NotSoon => return false,
            }
        }
        let all_gone = async {
            for gone in waits {
                if gone.await.is_err() {
                    return false;
                }
            }
            true
        };
        tokio::time::timeout(patience, all_gone)
            .await
            .unwrap_or(false)
    }

    /// Queues a message durably-ordered on `broker`'s outbox (durable after the next
    /// [`crate::state::StateDb::sync`]).
    pub fn push(&self, broker: &str, message: &OutboundMessage) -> Result<(), OutboundError> {
        let outbox = self
            .outboxes
            .get(broker)
            .ok_or_else(|| OutboundError::UnknownBroker(broker.to_owned()))?;
        let report = outbox
            .queues
            .push(&message.origin, &encode(message))
            .map_err(|error| OutboundError::Storage(error.to_string()))?;
        outbox.depth.set(outbox.queues.len() as i64);
        if report.dropped_oldest > 0 {
            self.metrics.dropped(
                broker,
                &message.origin,
                OutboxDrop::OutboxFull,
                report.dropped_oldest,
            );
            tracing::warn!(
                broker,
                function = %message.origin,
                dropped = report.dropped_oldest,
                "the function's outbox queue is full: its oldest messages dropped"
            );
        }
        Ok(())
    }
}

/// One function's way out: its messages go to the broker they name or to the function's
/// default broker.
pub struct OutboxSink {
    outboxes: Arc<Outboxes>,
    default_broker: Arc<str>,
}

impl OutboxSink {
    pub fn new(outboxes: Arc<Outboxes>, default_broker: Arc<str>) -> Self {
        Self {
            outboxes,
            default_broker,
        }
    }
}

impl OutboundSink for OutboxSink {
    fn send(&self, message: OutboundMessage) -> Result<(), OutboundError> {
        let broker = message
            .broker
            .clone()
            .unwrap_or_else(|| self.default_broker.clone());
        self.outboxes.push(&broker, &message)
    }
}

const RECORD_VERSION: u8 = 1;

/// Serialises a message for the outbox.
pub fn encode(message: &OutboundMessage) -> Vec<u8> {
    let mut out = Vec::with_capacity(32 + message.topic.len() + message.payload.len());
    out.push(RECORD_VERSION);
    out.push(message.qos.level());
    out.push(u8::from(message.retain));
    put_bytes(&mut out, message.topic.as_bytes());
    put_bytes(&mut out, message.origin.as_bytes());
    let properties = &message.properties;
    put_optional(&mut out, properties.correlation_data.as_deref());
    put_optional(
        &mut out,
        properties.content_type.as_deref().map(str::as_bytes),
    );
    out.extend_from_slice(&(properties.user_properties.len() as u32).to_be_bytes());
    for (key, value) in &properties.user_properties {
        put_bytes(&mut out, key.as_bytes());
        put_bytes(&mut out, value.as_bytes());
    }
    out.extend_from_slice(&message.payload);
    out
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
    out.extend_from_slice(bytes);
}

fn put_optional(out: &mut Vec<u8>, bytes: Option<&[u8]>) {
    match bytes {
        Some(bytes) => {
            out.push(1);
            put_bytes(out, bytes);
        }
        None => out.push(0),
    }
}

#[derive(Debug, Error, PartialEq, Eq)]
#[error("corrupt outbox record: {0}")]
pub struct DecodeError(&'static str);

/// Reads a message written by [`encode`]. The broker is not part of the record (each
/// outbox belongs to one broker).
pub fn decode(record: &[u8]) -> Result<OutboundMessage, DecodeError> {
    let mut reader = Reader(record);
    if reader.byte()? != RECORD_VERSION {
        return Err(DecodeError("unknown version"));
    }
    let qos = Qos::from_level(reader.byte()?).ok_or(DecodeError("bad qos"))?;
    let retain = reader.byte()? != 0;
    let topic = reader.text()?;
    let origin: Arc<str> = Arc::from(reader.text()?);
    let correlation_data = reader.optional()?.map(<[u8]>::to_vec);
    let content_type = match reader.optional()? {
        Some(bytes) => {
            Some(String::from_utf8(bytes.to_vec()).map_err(|_| DecodeError("content type"))?)
        }
        None => None,
    };
    let count = reader.length()?;
    let mut user_properties = Vec::new();
    for _ in 0..count {
        user_properties.push((reader.text()?, reader.text()?));
    }
    Ok(OutboundMessage {
        topic,
        payload: reader.0.to_vec(),
        qos,
        retain,
        origin,
        broker: None,
        properties: MessageProperties {
            correlation_data,
            content_type,
            user_properties,
        },
    })
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, count: usize) -> Result<&'a [u8], DecodeError> {
        if self.0.len() < count {
            return Err(DecodeError("truncated"));
        }
        let (head, rest) = self.0.split_at(count);
        self.0 = rest;
        Ok(head)
    }

    fn byte(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }

    fn length(&mut self) -> Result<usize, DecodeError> {
        let bytes = self.take(4)?;
        Ok(u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as usize)
    }

    fn bytes(&mut self) -> Result<&'a [u8], DecodeError> {
        let length = self.length()?;
        self.take(length)
    }

    fn text(&mut self) -> Result<String, DecodeError> {
        String::from_utf8(self.bytes()?.to_vec()).map_err(|_| DecodeError("text is not UTF-8"))
    }

    fn optional(&mut self) -> Result<Option<&'a [u8]>, DecodeError> {
        match self.byte()? {
            0 => Ok(None),
            _ => self.bytes().map(Some),
        }
    }
}

impl OutboxMetrics for crate::telemetry::Metrics {
    fn dropped(&self, broker: &str, function: &str, reason: OutboxDrop, count: u64) {
        self.broker(broker).outbox_dropped(function, reason, count);
    }

    fn depth(&self, broker: &str) -> Gauge {
        self.broker(broker).outbox_depth
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip() {
        let message = OutboundMessage {
            topic: "a/b".into(),
            payload: vec![0, 159, 146, 150, 255],
            qos: Qos::ExactlyOnce,
            retain: true,
            origin: Arc::from("f"),
            broker: None,
            properties: MessageProperties {
                correlation_data: Some(vec![1, 2, 3]),
                content_type: Some("application/json".into()),
                user_properties: vec![("fogd-error".into(), "boom".into())],
            },
        };
        assert_eq!(decode(&encode(&message)), Ok(message));
        let plain = OutboundMessage::new("t".into(), Vec::new(), Arc::from("g"));
        assert_eq!(decode(&encode(&plain)), Ok(plain));
    }

    #[test]
    fn corrupt_records_are_errors_not_panics() {
        let record = encode(&OutboundMessage::new(
            "topic".into(),
            b"x".to_vec(),
            Arc::from("f"),
        ));
        for cut in 0..record.len() - 1 {
            let _ = decode(&record[..cut]);
        }
        assert!(decode(&record[..5]).is_err());
        assert_eq!(decode(&[9]), Err(DecodeError("unknown version")));
    }
}
