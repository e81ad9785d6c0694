//! A plain MQTT v5 client for tests (rumqttc), independent of fogd's own client code:
//! subscribes (again after every reconnect), publishes, and collects what arrives.

use std::time::{Duration, Instant};

use bytes::Bytes;
use rumqttc::Outgoing;
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::{Packet, PublishProperties};
use rumqttc::v5::{AsyncClient, Event, MqttOptions};
use tokio::sync::{mpsc, watch};

/// A message the test client received.
#[derive(Debug, Clone)]
pub struct Received {
    pub topic: String,
    pub payload: Bytes,
    /// The QoS it was delivered at (at most the subscription's, 1).
    pub qos: u8,
    pub correlation_data: Option<Bytes>,
    pub content_type: Option<String>,
    pub user_properties: Vec<(String, String)>,
}

impl Received {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.payload).into_owned()
    }

    pub fn user_property(&self, key: &str) -> Option<&str> {
        self.user_properties
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

pub struct TestClient {
    client: AsyncClient,
    received: mpsc::UnboundedReceiver<Received>,
    subscribed: watch::Receiver<u64>,
}

pub fn qos(level: u8) -> QoS {
    match level {
        0 => QoS::AtMostOnce,
        2 => QoS::ExactlyOnce,
        _ => QoS::AtLeastOnce,
    }
}

impl TestClient {
    /// Connects with a persistent session (so messages wait while it is away) and subscribes
    /// to `filters` at QoS 1; returns once the broker confirmed the subscriptions.
    pub async fn connect(port: u16, id: &str, filters: &[&str]) -> Self {
        let mut options = MqttOptions::new(id, "127.0.0.1", port);
        options
            .set_clean_start(false)
            .set_session_expiry_interval(Some(3600))
            .set_keep_alive(Duration::from_secs(5))
            .set_max_packet_size(Some(4 * 1024 * 1024));
        let (client, mut eventloop) = AsyncClient::new(options, 20_000);
        let (sender, received) = mpsc::unbounded_channel();
        let (acks, subscribed) = watch::channel(0u64);
        let filters: Vec<String> = filters.iter().map(|f| f.to_string()).collect();
        let wanted = filters.len() as u64;
        let subscriber = client.clone();
        tokio::spawn(async move {
            let mut closing = false;
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        for filter in &filters {
                            let _ = subscriber.subscribe(filter.clone(), QoS::AtLeastOnce).await;
                        }
                    }
                    Ok(Event::Incoming(Packet::SubAck(_))) => acks.send_modify(|count| *count += 1),
                    Ok(Event::Incoming(Packet::Publish(publish))) => {
                        let properties = publish.properties.unwrap_or_default();
                        let message = Received {
                            topic: String::from_utf8_lossy(&publish.topic).into_owned(),
                            payload: publish.payload,
                            qos: publish.qos as u8,
                            correlation_data: properties.correlation_data,
                            content_type: properties.content_type,
                            user_properties: properties.user_properties,
                        };
                        if sender.send(message).is_err() {
                            return;
                        }
                    }
                    // The client was dropped: what it queued before goes out first, then
                    // the connection ends and is not made again.
                    Ok(Event::Outgoing(Outgoing::Disconnect)) => closing = true,
                    Ok(_) => {}
                    Err(_) if closing => return,
                    // The broker is away: rumqttc reconnects on the next poll.
                    Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                }
            }
        });
        let mut client = Self {
            client,
            received,
            subscribed,
        };
        client.wait_subscribed(wanted).await;
        client
    }

    async fn wait_subscribed(&mut self, count: u64) {
        let result = tokio::time::timeout(
            Duration::from_secs(20),
            self.subscribed.wait_for(|n| *n >= count),
        )
        .await;
        assert!(
            matches!(result, Ok(Ok(_))),
            "the broker did not confirm the subscriptions"
        );
    }

    pub async fn publish(&self, topic: &str, payload: impl Into<Bytes>, level: u8) {
        self.client
            .publish(topic, qos(level), false, payload.into())
            .await
            .expect("publish queued");
    }

    /// Publishes at QoS 1 with the retain flag: the broker keeps it for new subscribers.
    pub async fn publish_retained(&self, topic: &str, payload: impl Into<Bytes>) {
        self.client
            .publish(topic, qos(1), true, payload.into())
            .await
            .expect("publish queued");
    }

    pub async fn request(
        &self,
        topic: &str,
        payload: &str,
        response_topic: &str,
        correlation: &[u8],
    ) {
        self.request_as(topic, payload, response_topic, correlation, None)
            .await
    }

    /// [`TestClient::request`] with a content type (MQTT v5 Content Type).
    pub async fn request_as(
        &self,
        topic: &str,
        payload: &str,
        response_topic: &str,
        correlation: &[u8],
        content_type: Option<&str>,
    ) {
        let properties = PublishProperties {
            response_topic: Some(response_topic.to_owned()),
            correlation_data: Some(Bytes::copy_from_slice(correlation)),
            content_type: content_type.map(str::to_owned),
            ..Default::default()
        };
        self.client
            .publish_with_properties(
                topic,
                QoS::AtLeastOnce,
                false,
                payload.to_owned(),
                properties,
            )
            .await
            .expect("request queued");
    }

    /// The next message, or `None` if none arrived within `patience`.
    pub async fn try_next(&mut self, patience: Duration) -> Option<Received> {
        tokio::time::timeout(patience, self.received.recv())
            .await
            .ok()
            .flatten()
    }

    /// Waits for the next message, failing after `patience`.
    pub async fn next(&mut self, patience: Duration) -> Received {
        tokio::time::timeout(patience, self.received.recv())
            .await
            .expect("a message arrives in time")
            .expect("the client is running")
    }

    /// The next message's topic and JSON payload, failing after [`crate::PATIENCE`].
    pub async fn next_json(&mut self) -> (String, serde_json::Value) {
        let message = self.next(crate::PATIENCE).await;
        let body = serde_json::from_slice(&message.payload)
            .unwrap_or_else(|e| panic!("{}: {e}", message.text()));
        (message.topic, body)
    }

    /// The JSON payload of the next message on `topic`, past messages on other topics.
    pub async fn next_json_on(&mut self, topic: &str) -> serde_json::Value {
        loop {
            let (on, body) = self.next_json().await;
            if on == topic {
                return body;
            }
        }
    }

    /// Collects messages until `done` says the collection is complete, failing after `patience`.
    pub async fn collect_until(
        &mut self,
        patience: Duration,
        mut done: impl FnMut(&[Received]) -> bool,
    ) -> Vec<Received> {
        let deadline = Instant::now() + patience;
        let mut all = Vec::new();
        while !done(&all) {
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, self.received.recv()).await {
                Ok(Some(message)) => all.push(message),
                _ => panic!(
                    "collection incomplete after {patience:?}: {} messages",
                    all.len()
                ),
            }
        }
        all
    }

    /// Messages already received, without waiting.
    pub fn drain(&mut self) -> Vec<Received> {
        let mut all = Vec::new();
        while let Ok(message) = self.received.try_recv() {
            all.push(message);
        }
        all
    }
}

/// A dropped client disconnects, so that a later client with the same id is not taken over
/// by this one reconnecting.
impl Drop for TestClient {
    fn drop(&mut self) {
        let _ = self.client.try_disconnect();
    }
}
