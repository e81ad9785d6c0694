//! A connection for control traffic (deployment documents and device reports, for fogd's
//! sync and for fogctl): a few subscriptions, retained QoS 1 publishes, reconnects with
//! backoff. Unlike a trigger session it has no outbox: what it publishes is state that is
//! published again whenever it changes.

use std::time::Duration;

use bytes::Bytes;

use super::backoff::Backoff;
use super::client::{MqttClient, MqttEventLoop, PublishRefused, RequestRefused, SessionEvent};
use super::options::ConnectionSettings;
use super::{MessageProperties, OutboundMessage, Qos};
use crate::config::Retained;

/// What the connection delivered.
#[derive(Debug)]
pub enum ControlEvent {
    /// (Re)connected and subscribed anew.
    Connected,
    Message {
        topic: String,
        payload: Bytes,
        retain: bool,
    },
    /// The broker confirmed a subscription; retained messages on it were sent before this.
    Subscribed,
    /// The broker acknowledged a publish.
    Published,
    /// The connection failed; it is retried after a delay.
    Disconnected(String),
}

pub struct ControlConnection {
    client: MqttClient,
    eventloop: MqttEventLoop,
    filters: Vec<String>,
    backoff: Backoff,
    /// QoS 1 publishes handed to the client and not yet acknowledged by the broker.
    unacknowledged: usize,
}

impl ControlConnection {
    /// Connects (lazily, on the first [`next`](Self::next)) and subscribes to `filters` at
    /// QoS 1 on every connect.
    pub fn open(settings: &ConnectionSettings, filters: Vec<String>) -> Self {
        let (client, eventloop) = settings.connect();
        let spec = &settings.spec;
        Self {
            client,
            eventloop,
            filters,
            backoff: Backoff::new(
                spec.reconnect_min.as_duration(),
                spec.reconnect_max().as_duration(),
            ),
            unacknowledged: 0,
        }
    }

    /// The next event. Messages are acknowledged as they are handed out.
    pub async fn next(&mut self) -> ControlEvent {
        loop {
            match self.eventloop.poll().await {
                Ok(SessionEvent::Connected { .. }) => {
                    self.backoff.reset();
                    for filter in &self.filters {
                        if let Err(error) = self.client.subscribe(filter, 1, Retained::Always) {
                            return ControlEvent::Disconnected(format!(
                                "cannot subscribe to {filter}: {error}"
                            ));
                        }
                    }
                    return ControlEvent::Connected;
                }
                Ok(SessionEvent::Message(message)) => {
                    if message.qos > 0 {
                        let _ = self.client.ack(message.qos, message.pkid);
                    }
                    return ControlEvent::Message {
                        topic: message.topic,
                        payload: message.payload,
                        retain: message.retain,
                    };
                }
                Ok(SessionEvent::Subscribed) => return ControlEvent::Subscribed,
                Ok(SessionEvent::Completed { .. }) => {
                    self.unacknowledged = self.unacknowledged.saturating_sub(1);
                    return ControlEvent::Published;
                }
                Ok(_) => {}
                Err(error) => {
                    tokio::time::sleep(self.backoff.next_delay()).await;
                    return ControlEvent::Disconnected(error.reason);
                }
            }
        }
    }

    /// Subscribes to `filter` now, and again on every reconnect.
    pub fn subscribe(&mut self, filter: &str) -> Result<(), RequestRefused> {
        self.filters.push(filter.to_owned());
        self.client.subscribe(filter, 1, Retained::Always)
    }

    /// Publishes handed to the client that the broker has not acknowledged yet.
    pub fn unacknowledged(&self) -> usize {
        self.unacknowledged
    }

    /// Publishes `payload` at QoS 1. An empty retained payload clears the topic's retained
    /// message.
    pub fn publish(
        &mut self,
        topic: &str,
        payload: Vec<u8>,
        retain: bool,
    ) -> Result<(), PublishRefused> {
        self.client.publish(
            &OutboundMessage {
                topic: topic.to_owned(),
                payload,
                qos: Qos::AtLeastOnce,
                retain,
                origin: "control".into(),
                broker: None,
                properties: MessageProperties::default(),
            },
            None,
        )?;
        self.unacknowledged += 1;
        Ok(())
    }

    /// Drives the connection until the broker acknowledged every publish, or `timeout`
    /// passed; returns whether everything was acknowledged. Messages arriving meanwhile are
    /// acknowledged and dropped.
    pub async fn flush(&mut self, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        while self.unacknowledged > 0 {
            if tokio::time::timeout_at(deadline, self.next())
                .await
                .is_err()
            {
                return false;
            }
        }
        true
    }

    pub fn disconnect(&self) {
        self.client.disconnect();
    }

    /// Disconnects and drives the connection until the DISCONNECT is out and the broker
    /// closed it, or `timeout` passed.
    pub async fn close(&mut self, timeout: Duration) {
        self.client.disconnect();
        let _ = tokio::time::timeout(timeout, async {
            while !matches!(self.next().await, ControlEvent::Disconnected(_)) {}
        })
        .await;
    }
}
