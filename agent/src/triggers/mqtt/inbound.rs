//! Inbound messages become events. QoS 0 is offered to the functions' queues (a full queue
//! drops it, counted). QoS 1/2 waits for room (backpressure: the session stops reading), and
//! is acknowledged only after every function finished (with retries, then the dead-letter
//! topic) and everything they published is safe: received by its broker or durably in the
//! outbox. Nothing is acknowledged during shutdown: the broker redelivers it to the next
//! start.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};

use super::client::InboundMessage;
use super::{AckRequest, Settle};
use crate::event::{Event, Source, mqtt_attributes as attr, new_event};
use crate::outbound::{OutboundMessage, Outboxes};
use crate::router::{Delivery, Dispatch};
use crate::runtime::{FunctionQueue, InvokeError, Outcome};
use crate::state::StateDb;
use crate::telemetry::AcknowledgedMetrics;
use crate::topic::render_template;

/// How long an acknowledgement waits for the results to reach their broker before it has
/// them flushed to disk instead.
const DELIVERY_PATIENCE: Duration = Duration::from_millis(100);

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
    pub outboxes: Arc<Outboxes>,
    pub state: StateDb,
    pub acks: mpsc::UnboundedSender<AckRequest>,
    pub max_bytes: usize,
    pub pending: PendingAcks,
    pub acknowledged: AcknowledgedMetrics,
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
            metrics.input_rejected("mqtt", "too_large");
            tracing::warn!(broker = %self.broker, topic = %message.topic, bytes = message.payload.len(), limit = self.max_bytes, "message rejected: payload too large");
            if let Some(ack) = ack {
                let _ = self.acks.send(ack);
            }
            return;
        }
        let event = Arc::new(to_event(&self.broker, message));
        metrics.event_received("mqtt");
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
        let completion = Completion {
            broker: self.broker.clone(),
            acknowledged: self.acknowledged.clone(),
            outboxes: self.outboxes.clone(),
            state: self.state.clone(),
            acks: self.acks.clone(),
            guard: self.pending.begin(),
        };
        tokio::spawn(completion.finish(event, admitted, ack));
    }
}

struct Completion {
    broker: Arc<str>,
    acknowledged: AcknowledgedMetrics,
    outboxes: Arc<Outboxes>,
    state: StateDb,
    acks: mpsc::UnboundedSender<AckRequest>,
    guard: PendingGuard,
}

impl Completion {
    async fn finish(
        self,
        event: Arc<Event>,
        admitted: Vec<(FunctionQueue, Delivery, oneshot::Receiver<Outcome>)>,
        ack: AckRequest,
    ) {
        for (queue, delivery, outcome) in admitted {
            let outcome = outcome.await.unwrap_or(Err(InvokeError::ShuttingDown));
            match retry(&queue, &delivery, &event, outcome).await {
                Ok(_) => {}
                Err(InvokeError::ShuttingDown) => {
                    let _ = self.acks.send(ack.released());
                    return;
                }
                Err(error) => self.dead_letter(&queue, &delivery, &event, &error),
            }
        }
        // Results the broker has need no flush: at low rates a flush per message was half
        // the CPU time. kv writes still do.
        let delivered =
            self.state.kv_durable() && self.outboxes.delivered_within(DELIVERY_PATIENCE).await;
        if !delivered && let Err(error) = self.state.sync().await {
            tracing::error!(broker = %self.broker, %error, "state not durable; message left unacknowledged for redelivery");
            let _ = self.acks.send(ack.released());
            return;
        }
        if delivered {
            self.acknowledged.after_delivery.inc();
        } else {
            self.acknowledged.after_flush.inc();
        }
        let _ = self.acks.send(ack);
        drop(self.guard);
    }

    fn dead_letter(
        &self,
        queue: &FunctionQueue,
        delivery: &Delivery,
        event: &Event,
        error: &InvokeError,
    ) {
        let function = queue.function().name();
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
                queue.metrics().dropped("dead_lettered");
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
                tracing::info!(function = %queue.function().name(), event_id = %event.id, attempt, %error, "retrying failed event")
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
    attributes.push((attr::BROKER.into(), broker.to_string()));
    attributes.push((attr::QOS.into(), message.qos.to_string()));
    attributes.push((attr::RETAIN.into(), message.retain.to_string()));
    attributes.push((attr::DUP.into(), message.dup.to_string()));
    let properties = message.properties;
    if let Some(topic) = properties.response_topic {
        attributes.push((attr::RESPONSE_TOPIC.into(), topic));
    }
    if let Some(data) = properties.correlation_data {
        attributes.push((attr::CORRELATION_DATA.into(), hex::encode(data)));
    }
    if let Some(content_type) = properties.content_type {
        attributes.push((attr::CONTENT_TYPE.into(), content_type));
    }
    for (key, value) in properties.user_properties {
        attributes.push((format!("{}{key}", attr::USER_PREFIX), value));
    }
    event
}
