//! Inbound messages become events. QoS 0 is offered to the functions' queues (a full queue
//! drops it, counted). QoS 1/2 waits for room (backpressure: the session stops reading), and
//! is acknowledged only after every function finished (with retries, then the dead-letter
//! topic) and everything they published is safe: received by its broker or durably in the
//! outbox. Nothing is acknowledged during shutdown: the broker redelivers it to the next
//! start.
//!
//! One [`Completions`] task per connection takes the messages as they finish, in arrival
//! order, and makes each group of finished messages safe with one wait for delivery (or one
//! flush): a task, a waiter and a timer per message took about a tenth of fogd's time at
//! 20,000 msg/s.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};

use super::{AckRequest, Settle};
use crate::event::{Event, Source, attributes as attr, new_event};
use crate::outbound::{OutboundMessage, Outboxes};
use crate::router::{Delivery, Dispatch};
use crate::runtime::{FunctionQueue, InvokeError, Outcome};
use crate::state::StateDb;
use crate::telemetry::{AcknowledgedMetrics, EventDrop, Rejection};
use crate::topic::render_template;
use fogd_fleet::mqtt::client::InboundMessage;

/// How long an acknowledgement waits for the results to reach their broker before it has
/// them flushed to disk instead.
const DELIVERY_PATIENCE: Duration = Duration::from_millis(100);

/// Finished messages made safe together, at most.
const MAX_GROUP: usize = 256;

/// Counts completions still owed an acknowledgement, so shutdown can wait for them.
#[derive(Clone)]
pub struct PendingAcks(Arc<watch::Sender<usize>>);

impl Default for PendingAcks {
    fn default() -> Self {
        Self(Arc::new(watch::Sender::new(0)))
    }
}

impl PendingAcks {
    fn begin(&self) -> PendingGuard {
        self.0.send_modify(|count| *count += 1);
        PendingGuard(self.0.clone())
    }

    /// Resolves when no completion is pending.
    pub async fn idle(&self) {
        let mut count = self.0.subscribe();
        let _ = count.wait_for(|count| *count == 0).await;
    }
}

struct PendingGuard(Arc<watch::Sender<usize>>);

impl Drop for PendingGuard {
    fn drop(&mut self) {
        self.0.send_modify(|count| *count = count.saturating_sub(1));
    }
}

pub struct Inbound {
    pub broker: Arc<str>,
    pub dispatch: Dispatch,
    pub acks: mpsc::UnboundedSender<AckRequest>,
    pub max_bytes: usize,
    pub pending: PendingAcks,
    pub completions: Completions,
}

impl Inbound {
    /// Runs the message's functions; a QoS 1/2 message (`position` in its connection's
    /// arrival order) is settled through the ack channel when they are done.
    pub async fn handle(&self, message: InboundMessage, generation: u64, position: Option<u64>) {
        let ack = position.map(|position| AckRequest {
            generation,
            position,
            settle: Settle::Ack {
                qos: message.qos,
                pkid: message.pkid,
            },
        });
        let metrics = self.dispatch.metrics();
        if message.payload.len() > self.max_bytes {
            metrics.input_rejected(Source::Mqtt, Rejection::TooLarge);
            tracing::warn!(broker = %self.broker, topic = %message.topic, bytes = message.payload.len(), limit = self.max_bytes, "message rejected: payload too large");
            if let Some(ack) = ack {
                let _ = self.acks.send(ack);
            }
            return;
        }
        let event = Arc::new(to_event(&self.broker, message));
        metrics.event_received(Source::Mqtt);
        let targets = self.dispatch.targets(&event);
        let Some(ack) = ack else {
            for (queue, _) in targets {
                let _ = queue.try_submit(event.clone());
            }
            return;
        };
        let mut admitted = Vec::with_capacity(targets.len());
        for (queue, delivery) in targets {
            match queue.submit(event.clone()).await {
                Ok(outcome) => admitted.push((queue, delivery, outcome)),
                // Shutting down: leave the message unacknowledged for the next start.
                Err(_) => {
                    let _ = self.acks.send(ack.released());
                    return;
                }
            }
        }
        let running = Running {
            event,
            admitted,
            settled: Settled {
                ack,
                guard: self.pending.begin(),
            },
        };
        if let Err(mpsc::error::SendError(running)) = self.completions.sender.send(running) {
            let _ = self.acks.send(running.settled.ack.released());
        }
    }
}

/// A QoS 1/2 message whose functions were admitted and may still be running.
struct Running {
    event: Arc<Event>,
    admitted: Vec<(FunctionQueue, Delivery, oneshot::Receiver<Outcome>)>,
    settled: Settled,
}

impl Running {
    /// Whether every function has answered, so waiting for it costs nothing.
    fn answered(&self) -> bool {
        self.admitted
            .iter()
            .all(|(_, _, outcome)| !outcome.is_empty())
    }
}

/// What acknowledging a message takes once its functions are done.
struct Settled {
    ack: AckRequest,
    /// Keeps shutdown waiting until the message is acknowledged or released.
    guard: PendingGuard,
}

/// Hands one connection's messages to its completion task.
pub struct Completions {
    sender: mpsc::UnboundedSender<Running>,
}

impl Completions {
    /// Starts the completion task; it ends once the [`Completions`] is dropped and every
    /// message handed to it is settled.
    pub fn start(completer: Completer) -> Self {
        let (sender, receiver) = mpsc::unbounded_channel();
        tokio::spawn(Arc::new(completer).run(receiver));
        Self { sender }
    }
}

/// What the completion task of one connection works with.
pub struct Completer {
    pub broker: Arc<str>,
    pub acknowledged: AcknowledgedMetrics,
    pub outboxes: Arc<Outboxes>,
    pub state: StateDb,
    pub acks: mpsc::UnboundedSender<AckRequest>,
}

impl Completer {
    async fn run(self: Arc<Self>, mut messages: mpsc::UnboundedReceiver<Running>) {
        let mut next = None;
        loop {
            let first = match next.take() {
                Some(running) => running,
                None => match messages.recv().await {
                    Some(running) => running,
                    None => return,
                },
            };
            let mut group = Vec::new();
            self.collect(first, &mut group).await;
            // Messages behind it whose functions already answered join the group; the first
            // one still running starts the next.
            while group.len() < MAX_GROUP {
                let Ok(running) = messages.try_recv() else {
                    break;
                };
                if !running.answered() {
                    next = Some(running);
                    break;
                }
                self.collect(running, &mut group).await;
            }
            if !group.is_empty() {
                tokio::spawn(self.clone().settle(group));
            }
        }
    }

    /// Waits for a message's functions. One that failed goes on in a task of its own with its
    /// retries and dead-lettering, so its backoff holds up no other message (the session
    /// still acknowledges in arrival order); the others join `group`.
    async fn collect(self: &Arc<Self>, running: Running, group: &mut Vec<Settled>) {
        let mut outcomes = Vec::with_capacity(running.admitted.len());
        for (queue, delivery, outcome) in running.admitted {
            let outcome = outcome.await.unwrap_or(Err(InvokeError::ShuttingDown));
            outcomes.push((queue, delivery, outcome));
        }
        if outcomes.iter().all(|(_, _, outcome)| outcome.is_ok()) {
            group.push(running.settled);
            return;
        }
        let completer = self.clone();
        tokio::spawn(completer.recover(running.event, outcomes, running.settled));
    }

    async fn recover(
        self: Arc<Self>,
        event: Arc<Event>,
        outcomes: Vec<(FunctionQueue, Delivery, Outcome)>,
        settled: Settled,
    ) {
        for (queue, delivery, outcome) in outcomes {
            match retry(&queue, &delivery, &event, outcome).await {
                Ok(_) => {}
                Err(InvokeError::ShuttingDown) => {
                    let Settled { ack, guard } = settled;
                    let _ = self.acks.send(ack.released());
                    drop(guard);
                    return;
                }
                Err(error) => self.dead_letter(&queue, &delivery, &event, &error),
            }
        }
        self.settle(vec![settled]).await;
    }

    /// Acknowledges finished messages once what their functions published is safe.
    async fn settle(self: Arc<Self>, group: Vec<Settled>) {
        // Results the broker has need no flush: at low rates a flush per message was half
        // the CPU time. kv writes still do.
        let delivered =
            self.state.kv_durable() && self.outboxes.delivered_within(DELIVERY_PATIENCE).await;
        if !delivered && let Err(error) = self.state.sync().await {
            tracing::error!(broker = %self.broker, %error, messages = group.len(), "state not durable; messages left unacknowledged for redelivery");
            for Settled { ack, guard } in group {
                let _ = self.acks.send(ack.released());
                drop(guard);
            }
            return;
        }
        let counter = if delivered {
            &self.acknowledged.after_delivery
        } else {
            &self.acknowledged.after_flush
        };
        counter.inc_by(group.len() as u64);
        for Settled { ack, guard } in group {
            let _ = self.acks.send(ack);
            drop(guard);
        }
    }

    fn dead_letter(
        &self,
        queue: &FunctionQueue,
        delivery: &Delivery,
        event: &Event,
        error: &InvokeError,
    ) {
        let function = queue.name();
        let Some(template) = &delivery.dead_letter else {
            tracing::warn!(function = %function, event_id = %event.id, %error, "event failed every attempt; no dead-letter topic");
            return;
        };
        let topic = render_template(template, function, &event.subject);
        let mut message =
            OutboundMessage::new(topic.clone(), event.payload.clone(), function.clone());
        message.properties.user_properties = vec![
            ("fogd-error".into(), error.to_string()),
            ("fogd-error-kind".into(), error.kind().into()),
            ("fogd-function".into(), function.to_string()),
            ("fogd-topic".into(), event.subject.clone()),
            ("fogd-event-id".into(), event.id.clone()),
        ];
        match self.outboxes.push(&self.broker, &message) {
            Ok(()) => {
                queue.metrics().dropped(EventDrop::DeadLettered);
                tracing::warn!(function = %function, event_id = %event.id, %error, %topic, "event failed every attempt; dead-lettered");
            }
            Err(push_error) => {
                tracing::error!(function = %function, event_id = %event.id, %error, %push_error, "event failed and could not be dead-lettered")
            }
        }
    }
}

/// Resubmits a failed event up to `delivery.retries` times, doubling the delay each time.
async fn retry(
    queue: &FunctionQueue,
    delivery: &Delivery,
    event: &Arc<Event>,
    mut outcome: Outcome,
) -> Outcome {
    let mut delay = delivery.backoff;
    for attempt in 1..=delivery.retries {
        match &outcome {
            Ok(_) | Err(InvokeError::ShuttingDown) => return outcome,
            Err(error) => {
                tracing::info!(function = %queue.name(), event_id = %event.id, attempt, %error, "retrying failed event")
            }
        }
        tokio::time::sleep(delay).await;
        delay = delay.saturating_mul(2);
        outcome = queue.invoke(event.clone()).await;
    }
    outcome
}

fn to_event(broker: &Arc<str>, message: InboundMessage) -> Event {
    let mut event = new_event(Source::Mqtt, message.topic, message.payload.to_vec());
    let attributes = &mut event.attributes;
    attributes.push((attr::MQTT_BROKER.into(), broker.to_string()));
    attributes.push((attr::MQTT_QOS.into(), message.qos.to_string()));
    attributes.push((attr::MQTT_RETAIN.into(), message.retain.to_string()));
    attributes.push((attr::MQTT_DUP.into(), message.dup.to_string()));
    let properties = message.properties;
    if let Some(topic) = properties.response_topic {
        attributes.push((attr::MQTT_RESPONSE_TOPIC.into(), topic));
    }
    if let Some(data) = properties.correlation_data {
        attributes.push((attr::MQTT_CORRELATION_DATA.into(), hex::encode(data)));
    }
    if let Some(content_type) = properties.content_type {
        attributes.push((attr::MQTT_CONTENT_TYPE.into(), content_type));
    }
    for (key, value) in properties.user_properties {
        attributes.push((format!("{}{key}", attr::MQTT_USER_PREFIX), value));
    }
    event
}
