//! One MQTT client over rumqttc's two protocol implementations (v5 and 3.1.1), reduced to
//! what a session needs: a handful of events in, subscribe/publish/ack/disconnect out.

use bytes::Bytes;
use rumqttc::v5;
use rumqttc::v5::mqttbytes::v5::{
    Filter, Packet, PubAckReason, PubRecReason, Publish as V5Publish, PublishProperties,
    RetainForwardRule,
};

use super::OutboundMessage;
use crate::config::Retained;

/// MQTT v5 properties of an inbound message (empty for 3.1.1).
#[derive(Debug, Clone, Default)]
pub struct InboundProperties {
    pub response_topic: Option<String>,
    pub correlation_data: Option<Bytes>,
    pub content_type: Option<String>,
    pub user_properties: Vec<(String, String)>,
}

/// A message the broker delivered.
#[derive(Debug, Clone)]
pub struct InboundMessage {
    pub topic: String,
    pub payload: Bytes,
    pub qos: u8,
    pub retain: bool,
    pub dup: bool,
    pub pkid: u16,
    pub properties: InboundProperties,
}

/// What happened on the connection.
#[derive(Debug)]
pub enum SessionEvent {
    Connected {
        session_present: bool,
        /// The largest packet the broker takes, when it says (MQTT v5 CONNACK).
        max_packet: Option<usize>,
    },
    Message(InboundMessage),
    /// A publish left for the network with this packet id (0 for QoS 0).
    Sent {
        pkid: u16,
    },
    /// The broker completed a QoS 1 (PUBACK) or QoS 2 (PUBCOMP) publish.
    Completed {
        pkid: u16,
    },
    /// The broker answered a publish with a failure reason code (MQTT v5): it will not
    /// deliver that message, now or if it is sent again.
    Refused {
        pkid: u16,
        reason: String,
    },
    /// The broker confirmed a subscription.
    Subscribed,
    Other,
}

/// Why a publish was not handed to the event loop.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum PublishRefused {
    #[error("{size} bytes, larger than the broker's maximum packet size of {max_packet}")]
    TooLarge { size: usize, max_packet: usize },
    /// Try again later.
    #[error("the MQTT client's request queue is full")]
    ClientFull,
}

/// A subscribe or acknowledgement the event loop did not take: its request queue was full
/// or it had stopped (rumqttc does not say which).
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("the MQTT client did not take the {0} request (its queue is full or it stopped)")]
pub struct RequestRefused(&'static str);

pub enum MqttClient {
    V5(v5::AsyncClient),
    V311(rumqttc::AsyncClient),
}

/// Why a connection ended.
#[derive(Debug)]
pub struct ConnectionLost {
    pub reason: String,
    /// The broker acknowledged a publish with a reason code rumqttc cannot read, which ends
    /// the connection: Mosquitto answers a message over its `message_size_limit` with Packet
    /// Too Large (0x95), a code the standard reserves for DISCONNECT. Acknowledgements come
    /// in the order the publishes were sent, so the refused one is the oldest in flight.
    pub unreadable_ack: bool,
    /// The broker's answers to publishes in the packets read just before the failure (whose
    /// events the failure would otherwise swallow), as the session would have seen them.
    pub answers: Vec<SessionEvent>,
}

impl ConnectionLost {
    fn v5(error: v5::ConnectionError, eventloop: &mut v5::EventLoop) -> Self {
        use rumqttc::v5::mqttbytes::Error as Decode;
        let unreadable_ack = matches!(
            &error,
            v5::ConnectionError::MqttState(v5::StateError::Deserialization(
                Decode::InvalidConnectReturnCode(_)
            ))
        );
        let answers = std::mem::take(&mut eventloop.state.events)
            .into_iter()
            .filter_map(|event| match event {
                v5::Event::Incoming(Packet::PubAck(ack)) => Some(puback_answer(&ack)),
                v5::Event::Incoming(Packet::PubRec(rec)) => pubrec_refusal(&rec),
                v5::Event::Incoming(Packet::PubComp(comp)) => {
                    Some(SessionEvent::Completed { pkid: comp.pkid })
                }
                _ => None,
            })
            .collect();
        Self {
            reason: error.to_string(),
            unreadable_ack,
            answers,
        }
    }

    fn v311(error: rumqttc::ConnectionError) -> Self {
        Self {
            reason: error.to_string(),
            unreadable_ack: false,
            answers: Vec::new(),
        }
    }
}

pub enum MqttEventLoop {
    V5(Box<v5::EventLoop>),
    V311(Box<rumqttc::EventLoop>),
}

fn v5_qos(qos: u8) -> v5::mqttbytes::QoS {
    match qos {
        0 => v5::mqttbytes::QoS::AtMostOnce,
        2 => v5::mqttbytes::QoS::ExactlyOnce,
        _ => v5::mqttbytes::QoS::AtLeastOnce,
    }
}

fn v311_qos(qos: u8) -> rumqttc::QoS {
    match qos {
        0 => rumqttc::QoS::AtMostOnce,
        2 => rumqttc::QoS::ExactlyOnce,
        _ => rumqttc::QoS::AtLeastOnce,
    }
}

fn v5_properties(message: &OutboundMessage) -> PublishProperties {
    PublishProperties {
        correlation_data: message.properties.correlation_data.clone().map(Bytes::from),
        content_type: message.properties.content_type.clone(),
        user_properties: message.properties.user_properties.clone(),
        ..PublishProperties::default()
    }
}

impl MqttClient {
    /// Subscribes to `filter`; over MQTT v5, `retained` says when the broker sends the
    /// retained message (Retain Handling). Over 3.1.1 the broker sends it at every subscribe.
    pub fn subscribe(
        &self,
        filter: &str,
        qos: u8,
        retained: Retained,
    ) -> Result<(), RequestRefused> {
        match self {
            MqttClient::V5(client) => {
                let mut subscription = Filter::new(filter, v5_qos(qos));
                subscription.retain_forward_rule = match retained {
                    Retained::New => RetainForwardRule::Never,
                    Retained::Once => RetainForwardRule::OnNewSubscribe,
                    Retained::Always => RetainForwardRule::OnEverySubscribe,
                };
                client
                    .try_subscribe_many([subscription])
                    .map_err(|_| RequestRefused("subscribe"))
            }
            MqttClient::V311(client) => client
                .try_subscribe(filter, v311_qos(qos))
                .map_err(|_| RequestRefused("subscribe")),
        }
    }

    /// Asks the broker to stop delivering `filter`.
    pub fn unsubscribe(&self, filter: &str) -> Result<(), RequestRefused> {
        let refused = RequestRefused("unsubscribe");
        match self {
            MqttClient::V5(client) => client.try_unsubscribe(filter).map_err(|_| refused),
            MqttClient::V311(client) => client.try_unsubscribe(filter).map_err(|_| refused),
        }
    }

    /// Hands a publish to the event loop. Refused without being sent when its packet is
    /// larger than `max_packet` (what an MQTT v5 broker announced), or when the client's
    /// request channel is full.
    pub fn publish(
        &self,
        message: &OutboundMessage,
        max_packet: Option<usize>,
    ) -> Result<(), PublishRefused> {
        let qos = message.qos.level();
        let payload = Bytes::copy_from_slice(&message.payload);
        match self {
            MqttClient::V5(client) => {
                let properties = v5_properties(message);
                if let Some(max_packet) = max_packet {
                    // Built to be measured only: the payload is shared, not copied.
                    let size = V5Publish::new(
                        message.topic.as_str(),
                        v5_qos(qos),
                        payload.clone(),
                        Some(properties.clone()),
                    )
                    .size();
                    if size > max_packet {
                        return Err(PublishRefused::TooLarge { size, max_packet });
                    }
                }
                client
                    .try_publish_with_properties(
                        message.topic.as_str(),
                        v5_qos(qos),
                        message.retain,
                        payload,
                        properties,
                    )
                    .map_err(|_| PublishRefused::ClientFull)
            }
            MqttClient::V311(client) => client
                .try_publish(
                    message.topic.as_str(),
                    v311_qos(qos),
                    message.retain,
                    payload,
                )
                .map_err(|_| PublishRefused::ClientFull),
        }
    }

    /// Acknowledges a QoS 1/2 message by its packet id.
    pub fn ack(&self, qos: u8, pkid: u16) -> Result<(), RequestRefused> {
        match self {
            MqttClient::V5(client) => {
                let mut publish =
                    v5::mqttbytes::v5::Publish::new("", v5_qos(qos), Bytes::new(), None);
                publish.pkid = pkid;
                client
                    .try_ack(&publish)
                    .map_err(|_| RequestRefused("acknowledgement"))
            }
            MqttClient::V311(client) => {
                let mut publish = rumqttc::Publish::new("", v311_qos(qos), Vec::new());
                publish.pkid = pkid;
                client
                    .try_ack(&publish)
                    .map_err(|_| RequestRefused("acknowledgement"))
            }
        }
    }

    pub fn disconnect(&self) {
        let _ = match self {
            MqttClient::V5(client) => client.try_disconnect().map_err(|e| e.to_string()),
            MqttClient::V311(client) => client.try_disconnect().map_err(|e| e.to_string()),
        };
    }
}

impl MqttEventLoop {
    /// The next event; an error means the connection is gone.
    pub async fn poll(&mut self) -> Result<SessionEvent, ConnectionLost> {
        match self {
            MqttEventLoop::V5(eventloop) => {
                let polled = eventloop.poll().await;
                match polled.map_err(|error| ConnectionLost::v5(error, eventloop))? {
                    v5::Event::Incoming(Packet::ConnAck(ack)) => Ok(SessionEvent::Connected {
                        session_present: ack.session_present,
                        max_packet: ack
                            .properties
                            .and_then(|properties| properties.max_packet_size)
                            .map(|size| size as usize),
                    }),
                    v5::Event::Incoming(Packet::Publish(publish)) => {
                        let properties = publish.properties.unwrap_or_default();
                        Ok(SessionEvent::Message(InboundMessage {
                            topic: String::from_utf8_lossy(&publish.topic).into_owned(),
                            payload: publish.payload,
                            qos: publish.qos as u8,
                            retain: publish.retain,
                            dup: publish.dup,
                            pkid: publish.pkid,
                            properties: InboundProperties {
                                response_topic: properties.response_topic,
                                correlation_data: properties.correlation_data,
                                content_type: properties.content_type,
                                user_properties: properties.user_properties,
                            },
                        }))
                    }
                    v5::Event::Incoming(Packet::PubAck(ack)) => {
                        let answer = puback_answer(&ack);
                        if matches!(answer, SessionEvent::Refused { .. }) {
                            resume_after_refusal(eventloop, ack.pkid);
                        }
                        Ok(answer)
                    }
                    v5::Event::Incoming(Packet::PubRec(rec)) => match pubrec_refusal(&rec) {
                        Some(refusal) => {
                            resume_after_refusal(eventloop, rec.pkid);
                            Ok(refusal)
                        }
                        None => Ok(SessionEvent::Other),
                    },
                    v5::Event::Incoming(Packet::PubComp(comp)) => {
                        Ok(SessionEvent::Completed { pkid: comp.pkid })
                    }
                    v5::Event::Incoming(Packet::SubAck(_)) => Ok(SessionEvent::Subscribed),
                    v5::Event::Outgoing(rumqttc::Outgoing::Publish(pkid)) => {
                        Ok(SessionEvent::Sent { pkid })
                    }
                    _ => Ok(SessionEvent::Other),
                }
            }
            MqttEventLoop::V311(eventloop) => {
                match eventloop.poll().await.map_err(ConnectionLost::v311)? {
                    rumqttc::Event::Incoming(rumqttc::Packet::ConnAck(ack)) => {
                        Ok(SessionEvent::Connected {
                            session_present: ack.session_present,
                            max_packet: None,
                        })
                    }
                    rumqttc::Event::Incoming(rumqttc::Packet::Publish(publish)) => {
                        Ok(SessionEvent::Message(InboundMessage {
                            topic: publish.topic,
                            payload: publish.payload,
                            qos: publish.qos as u8,
                            retain: publish.retain,
                            dup: publish.dup,
                            pkid: publish.pkid,
                            properties: InboundProperties::default(),
                        }))
                    }
                    rumqttc::Event::Incoming(rumqttc::Packet::PubAck(ack)) => {
                        Ok(SessionEvent::Completed { pkid: ack.pkid })
                    }
                    rumqttc::Event::Incoming(rumqttc::Packet::PubComp(comp)) => {
                        Ok(SessionEvent::Completed { pkid: comp.pkid })
                    }
                    rumqttc::Event::Incoming(rumqttc::Packet::SubAck(_)) => {
                        Ok(SessionEvent::Subscribed)
                    }
                    rumqttc::Event::Outgoing(rumqttc::Outgoing::Publish(pkid)) => {
                        Ok(SessionEvent::Sent { pkid })
                    }
                    _ => Ok(SessionEvent::Other),
                }
            }
        }
    }
}

fn puback_answer(ack: &v5::mqttbytes::v5::PubAck) -> SessionEvent {
    match ack.reason {
        PubAckReason::Success | PubAckReason::NoMatchingSubscribers => {
            SessionEvent::Completed { pkid: ack.pkid }
        }
        reason => SessionEvent::Refused {
            pkid: ack.pkid,
            reason: format!("{reason:?}"),
        },
    }
}

/// A QoS 2 publish is completed by PUBCOMP, or refused by a PUBREC with a failure code.
fn pubrec_refusal(rec: &v5::mqttbytes::v5::PubRec) -> Option<SessionEvent> {
    match rec.reason {
        PubRecReason::Success | PubRecReason::NoMatchingSubscribers => None,
        reason => Some(SessionEvent::Refused {
            pkid: rec.pkid,
            reason: format!("{reason:?}"),
        }),
    }
}

/// rumqttc frees a refused publish's packet id but returns before it sends the publish that
/// was waiting for that id (its "collision"), which would then wait until two keep-alives
/// pass and the connection fails. The waiting publish goes out now, under the freed id.
fn resume_after_refusal(eventloop: &mut v5::EventLoop, pkid: u16) {
    if eventloop
        .state
        .collision
        .as_ref()
        .is_some_and(|waiting| waiting.pkid == pkid)
        && let Some(waiting) = eventloop.state.collision.take()
    {
        eventloop.pending.push_front(v5::Request::Publish(waiting));
    }
}
