//! MQTT: broker connections (v5 or 3.1.1, TCP or TLS/mTLS), triggers with at-least-once
//! delivery, and publishing through each connection's durable outbox.

mod ack_order;
pub mod embedded;
mod inbound;
mod session;

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use fogd_fleet::mqtt::ConnectionSettings;

use crate::config::{FunctionSpec, TriggerSpec};
use crate::outbound::Outboxes;
use crate::router::Dispatch;
use crate::state::StateDb;
use crate::telemetry::{BrokerMetrics, ConnectionMetrics, Health, Metrics, OutboxDrop};

use ack_order::Settle;
use inbound::{Completer, Completions, Inbound, PendingAcks};
use session::{Phase, Session, Subscription};

/// What a finished QoS 1/2 message asks its session to do.
#[derive(Debug, Clone, Copy)]
pub struct AckRequest {
    /// The connection the message arrived on; a later connection must not ack it.
    generation: u64,
    /// Its place in the connection's arrival order (`AckOrder`).
    position: u64,
    settle: Settle,
}

impl AckRequest {
    /// The same message, left unacknowledged for redelivery.
    fn released(self) -> Self {
        Self {
            settle: Settle::Release,
            ..self
        }
    }
}

/// A connection's state as seen from outside: metrics and health.
pub struct BrokerStatus {
    name: Arc<str>,
    /// The connection's own name in `/healthz` and its connection metrics: the broker's name,
    /// or `<name>/publish` for its publishing connection.
    connection: String,
    /// Connection state.
    link: ConnectionMetrics,
    /// What the broker's outbox delivered, whichever connection publishes it.
    metrics: BrokerMetrics,
    health: Arc<Health>,
}

impl BrokerStatus {
    fn new(name: Arc<str>, metrics: &Metrics, health: Arc<Health>) -> Self {
        let broker = metrics.broker(&name);
        Self {
            connection: name.to_string(),
            name,
            link: broker.connection.clone(),
            metrics: broker,
            health,
        }
    }

    /// The status of the broker's separate publishing connection.
    fn publishing(&self, metrics: &Metrics) -> Self {
        let connection = format!("{}/publish", self.name);
        Self {
            name: self.name.clone(),
            link: metrics.connection(&connection),
            connection,
            metrics: self.metrics.clone(),
            health: self.health.clone(),
        }
    }

    fn name(&self) -> &str {
        &self.name
    }

    fn set_connected(&self, connected: bool, error: &Option<String>) {
        self.link.connected.set(i64::from(connected));
        if connected {
            self.link.connects.inc();
        }
        let detail = match (connected, error) {
            (true, _) => "connected".to_owned(),
            (false, Some(error)) => format!("disconnected: {error}"),
            (false, None) => "disconnected".to_owned(),
        };
        self.health
            .set(format!("broker/{}", self.connection), connected, detail);
    }

    fn connecting(&self) {
        self.health
            .set(format!("broker/{}", self.connection), false, "connecting");
    }

    fn published(&self, queued: u64) {
        self.metrics.published.inc();
        self.queued(queued);
    }

    fn queued(&self, queued: u64) {
        self.metrics.outbox_depth.set(queued as i64);
    }

    fn outbox_dropped(&self, function: &str, reason: OutboxDrop, count: u64) {
        self.metrics.outbox_dropped(function, reason, count);
    }
}

/// What each broker's subscribing connection subscribes to for `functions`: one
/// subscription per filter, with the highest QoS and the most retained messages any of
/// their triggers asks for. Triggers without a broker go to `default_broker`.
fn subscriptions(
    functions: &[FunctionSpec],
    default_broker: Option<&Arc<str>>,
) -> HashMap<Arc<str>, Vec<Subscription>> {
    let mut subscriptions: HashMap<Arc<str>, Vec<Subscription>> = HashMap::new();
    for function in functions {
        for trigger in &function.triggers {
            let TriggerSpec::Mqtt(mqtt) = trigger else {
                continue;
            };
            let broker = mqtt
                .broker
                .as_deref()
                .map(Arc::from)
                .or_else(|| default_broker.cloned());
            if let Some(broker) = broker {
                let wanted = subscriptions.entry(broker).or_default();
                match wanted.iter_mut().find(|s| s.filter == mqtt.topic) {
                    Some(subscription) => {
                        subscription.qos = subscription.qos.max(mqtt.qos);
                        subscription.retained = subscription.retained.max(mqtt.retained);
                    }
                    None => wanted.push(Subscription {
                        filter: mqtt.topic.clone(),
                        qos: mqtt.qos,
                        retained: mqtt.retained,
                    }),
                }
            }
        }
    }
    subscriptions
}

/// The running MQTT side of the agent.
pub struct MqttTriggers {
    phase: watch::Sender<Phase>,
    sessions: Vec<JoinHandle<()>>,
    pending: PendingAcks,
    /// What each broker's subscribing connection is to subscribe to.
    subscriptions: HashMap<Arc<str>, watch::Sender<Vec<Subscription>>>,
    default_broker: Option<Arc<str>>,
}

/// What the sessions need from the rest of the agent.
pub struct MqttContext<'a> {
    /// Loaded connection settings, in config order (the first is the default broker).
    pub brokers: Vec<ConnectionSettings>,
    pub functions: &'a [FunctionSpec],
    pub dispatch: &'a Dispatch,
    pub outboxes: &'a Arc<Outboxes>,
    pub state: &'a StateDb,
    pub health: &'a Arc<Health>,
}

impl MqttTriggers {
    /// Starts one session per broker, subscribed to the filters of the functions' triggers.
    pub fn start(context: MqttContext<'_>) -> Self {
        let (phase, phase_rx) = watch::channel(Phase::Running);
        let pending = PendingAcks::default();
        let default_broker = context
            .brokers
            .first()
            .map(|settings| settings.name.clone());
        let mut wanted = subscriptions(context.functions, default_broker.as_ref());
        let mut subscriptions = HashMap::new();
        let mut sessions = Vec::new();
        for settings in context.brokers {
            let name = settings.name.clone();
            let max_bytes = settings.spec.max_message_bytes as usize;
            let Some(outbox) = context.outboxes.get(&name).cloned() else {
                continue;
            };
            let (acks, acks_rx) = mpsc::unbounded_channel();
            let status = BrokerStatus::new(
                name.clone(),
                context.dispatch.metrics(),
                context.health.clone(),
            );
            status.connecting();
            let completions = Completions::start(Completer {
                broker: name.clone(),
                acknowledged: context.dispatch.metrics().acknowledged(&name),
                outboxes: context.outboxes.clone(),
                state: context.state.clone(),
                acks: acks.clone(),
            });
            let inbound = Inbound {
                broker: name,
                dispatch: context.dispatch.clone(),
                acks,
                max_bytes,
                pending: pending.clone(),
                completions,
            };
            let (subscribe, subscribed) =
                watch::channel(wanted.remove(&inbound.broker).unwrap_or_default());
            subscriptions.insert(inbound.broker.clone(), subscribe);
            // The subscribing connection publishes too, unless the broker gets a second
            // connection for it.
            let mut outbox = Some(outbox);
            if settings.spec.separate_publisher {
                let publishing = status.publishing(context.dispatch.metrics());
                publishing.connecting();
                let publisher = Session {
                    settings: settings.second_connection("publish"),
                    subscriptions: watch::channel(Vec::new()).1,
                    inbound: None,
                    outbox: outbox.take(),
                    acks: mpsc::unbounded_channel().1,
                    status: publishing,
                    phase: phase_rx.clone(),
                };
                sessions.push(tokio::spawn(publisher.run()));
            }
            let subscriber = Session {
                settings,
                subscriptions: subscribed,
                inbound: Some(inbound),
                outbox,
                acks: acks_rx,
                status,
                phase: phase_rx.clone(),
            };
            sessions.push(tokio::spawn(subscriber.run()));
        }
        Self {
            phase,
            sessions,
            pending,
            subscriptions,
            default_broker,
        }
    }
}

impl super::Trigger for MqttTriggers {
    fn kind(&self) -> &'static str {
        "mqtt"
    }

    /// Whether every broker session is still running (connected or reconnecting).
    fn is_alive(&self) -> bool {
        self.sessions.iter().all(|session| !session.is_finished())
    }

    /// Subscribes each broker's connection to what the functions' triggers now name and
    /// unsubscribes it from what they no longer name, without reconnecting.
    fn follow<'a>(&'a mut self, functions: &'a [FunctionSpec]) -> super::Stopping<'a> {
        let mut wanted = subscriptions(functions, self.default_broker.as_ref());
        for (broker, subscriptions) in &self.subscriptions {
            let now = wanted.remove(broker).unwrap_or_default();
            subscriptions.send_if_modified(|current| {
                let changed = *current != now;
                *current = now;
                changed
            });
        }
        Box::pin(async {})
    }

    /// Stops taking new messages; acknowledgements and publishing go on.
    fn drain(&mut self) -> super::Stopping<'_> {
        self.phase.send_replace(Phase::Draining);
        Box::pin(async {})
    }

    /// Waits until every admitted message has been acknowledged (or `deadline` passes: the
    /// broker redelivers the rest), then disconnects every session.
    fn stop(self: Box<Self>, deadline: Instant) -> super::Stopping<'static> {
        Box::pin(async move {
            if tokio::time::timeout_at(deadline, self.pending.idle())
                .await
                .is_err()
            {
                tracing::warn!(
                    "some messages were not acknowledged in time; the broker will redeliver them"
                );
            }
            self.phase.send_replace(Phase::Stopped);
            for session in self.sessions {
                let _ = session.await;
            }
        })
    }
}
