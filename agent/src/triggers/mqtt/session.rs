//! One broker connection's life: connect (with backoff), subscribe, hand inbound messages to
//! the [`Inbound`] handler, send acknowledgements it asks for, and publish the outbox. A
//! broker has one such connection doing all of it, or two: one subscribing and
//! acknowledging, one publishing (`separate_publisher`).
//!
//! The outbox is the truth for outbound delivery: each connection starts a fresh client and
//! publishes from the oldest entry still queued; an entry is removed only once the broker
//! completed it (PUBACK/PUBCOMP; for QoS 0, once written to the network). A message may thus
//! be sent twice around a reconnect or restart, never lost.

use std::collections::{HashMap, VecDeque};
use tokio::sync::{mpsc, watch};

use super::ack_order::AckOrder;
use super::backoff::Backoff;
use super::client::{MqttClient, SessionEvent};
use super::inbound::Inbound;
use super::options::ConnectionSettings;
use super::{AckRequest, BrokerStatus};
use crate::event::now_millis;
use crate::outbound::decode;
use crate::state::Outbox;

/// Outbox entries read per batch.
const READ_BATCH: usize = 64;

/// Control signals from the agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Running,
    /// Stop taking new messages (they stay with the broker), keep acknowledging and publishing.
    Draining,
    /// Disconnect and end.
    Stopped,
}

pub struct Session {
    pub settings: ConnectionSettings,
    pub subscriptions: Vec<(String, u8)>,
    /// Where messages go; `None` on a connection that only publishes.
    pub inbound: Option<Inbound>,
    /// What this connection publishes; `None` when another connection publishes it.
    pub outbox: Option<Outbox>,
    pub acks: mpsc::UnboundedReceiver<AckRequest>,
    pub status: BrokerStatus,
    pub phase: watch::Receiver<Phase>,
}

impl Session {
    pub async fn run(mut self) {
        let spec = &self.settings.spec;
        let mut backoff = Backoff::new(
            spec.reconnect_min.as_duration(),
            spec.reconnect_max.as_duration(),
        );
        let mut generation = 0u64;
        loop {
            generation += 1;
            let error = self.connection(generation, &mut backoff).await;
            self.status.set_connected(false, &error);
            let Some(error) = error else { return };
            let delay = backoff.next_delay();
            tracing::warn!(broker = %self.settings.name, connection = %self.status.connection, %error, retry_in_ms = delay.as_millis() as u64, "broker connection lost");
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = wait_for(&mut self.phase, Phase::Stopped) => return,
            }
        }
    }

    /// One connection, until it fails (`Some(reason)`) or the agent stops (`None`).
    async fn connection(&mut self, generation: u64, backoff: &mut Backoff) -> Option<String> {
        let (client, mut eventloop) = self.settings.connect();
        let mut publisher = self
            .outbox
            .clone()
            .map(|outbox| Publisher::new(outbox, usize::from(self.settings.spec.inflight)));
        let mut connected = false;
        let mut awaiting_subacks = usize::MAX;
        // Acknowledgements the client could not take yet (its queue was full): they are
        // retried before anything else, never dropped, or the broker would stall.
        let mut unsent_acks: VecDeque<(u8, u16)> = VecDeque::new();
        let mut order = AckOrder::default();
        loop {
            while let Some(&(qos, pkid)) = unsent_acks.front() {
                if client.ack(qos, pkid).is_err() {
                    break;
                }
                unsent_acks.pop_front();
            }
            if connected
                && unsent_acks.is_empty()
                && let Some(publisher) = publisher.as_mut()
            {
                publisher.fill(&client, &self.status);
            }
            let room = connected && publisher.as_ref().is_some_and(Publisher::has_room);
            let draining = *self.phase.borrow() != Phase::Running;
            tokio::select! {
                biased;
                changed = self.phase.changed() => {
                    if changed.is_err() || *self.phase.borrow() == Phase::Stopped {
                        client.disconnect();
                        // Let the event loop write the DISCONNECT, briefly.
                        let _ = tokio::time::timeout(std::time::Duration::from_millis(500), async {
                            while eventloop.poll().await.is_ok() {}
                        })
                        .await;
                        return None;
                    }
                }
                Some(ack) = self.acks.recv() => {
                    // An ack from an earlier connection must not confirm a packet id reused
                    // by this one; the broker redelivers that message instead.
                    if ack.generation == generation {
                        for (qos, pkid) in order.finish(ack.position, ack.settle) {
                            if !unsent_acks.is_empty() || client.ack(qos, pkid).is_err() {
                                unsent_acks.push_back((qos, pkid));
                            }
                        }
                    }
                }
                event = eventloop.poll() => match event {
                    Err(error) => return Some(error),
                    Ok(SessionEvent::Connected { session_present }) => {
                        connected = true;
                        if let Some(publisher) = &publisher {
                            publisher.outbox.set_publishing(true);
                        }
                        backoff.reset();
                        tracing::info!(broker = %self.settings.name, connection = %self.status.connection, address = %self.settings.spec.address, session_present, queued = self.outbox.as_ref().map(Outbox::len), "broker connected");
                        for (filter, qos) in &self.subscriptions {
                            if let Err(error) = client.subscribe(filter, *qos) {
                                return Some(format!("cannot subscribe to {filter}: {error}"));
                            }
                        }
                        awaiting_subacks = self.subscriptions.len();
                        if awaiting_subacks == 0 {
                            self.status.set_connected(true, &None);
                        }
                    }
                    Ok(SessionEvent::Subscribed) => {
                        awaiting_subacks = awaiting_subacks.saturating_sub(1);
                        if awaiting_subacks == 0 {
                            // Healthy only once every trigger is really subscribed.
                            self.status.set_connected(true, &None);
                            tracing::info!(broker = %self.settings.name, filters = self.subscriptions.len(), "triggers subscribed");
                        }
                    }
                    Ok(SessionEvent::Message(message)) => {
                        let Some(inbound) = &self.inbound else { continue };
                        if draining {
                            // Not acknowledged: the broker keeps it for the next start.
                            continue;
                        }
                        let position = (message.qos > 0).then(|| order.admit());
                        inbound.handle(message, generation, position).await;
                    }
                    Ok(SessionEvent::Sent { pkid }) => {
                        if let Some(publisher) = publisher.as_mut() {
                            publisher.sent(pkid, &self.status);
                        }
                    }
                    Ok(SessionEvent::Completed { pkid }) => {
                        if let Some(publisher) = publisher.as_mut() {
                            publisher.completed(pkid, &self.status);
                        }
                    }
                    Ok(SessionEvent::Other) => {}
                },
                _ = pushed(&self.outbox), if room => {}
            }
        }
    }
}

/// Resolves when something is added to `outbox`; never without one.
async fn pushed(outbox: &Option<Outbox>) {
    match outbox {
        Some(outbox) => outbox.pushed().await,
        None => std::future::pending().await,
    }
}

async fn wait_for(phase: &mut watch::Receiver<Phase>, wanted: Phase) {
    while *phase.borrow_and_update() != wanted {
        if phase.changed().await.is_err() {
            return;
        }
    }
}

/// The outbox entries of one connection on their way to the broker.
struct Publisher {
    outbox: Outbox,
    window: usize,
    /// Last outbox entry handed to the client.
    cursor: Option<u64>,
    /// Handed to the client, not yet written (packet id unknown), in order.
    unsent: VecDeque<(u64, u8)>,
    /// Written, awaiting the broker's completion, by packet id.
    in_flight: HashMap<u16, u64>,
}

impl Publisher {
    fn new(outbox: Outbox, window: usize) -> Self {
        Self {
            outbox,
            window: window.max(1),
            cursor: None,
            unsent: VecDeque::new(),
            in_flight: HashMap::new(),
        }
    }

    fn has_room(&self) -> bool {
        self.unsent.len() + self.in_flight.len() < self.window
    }

    fn fill(&mut self, client: &MqttClient, status: &BrokerStatus) {
        while self.has_room() {
            let room = self.window - self.unsent.len() - self.in_flight.len();
            let entries = match self.outbox.read_after(self.cursor, room.min(READ_BATCH)) {
                Ok(entries) => entries,
                Err(error) => {
                    tracing::error!(broker = %status.name(), %error, "cannot read the outbox");
                    return;
                }
            };
            if entries.is_empty() {
                return;
            }
            for entry in entries {
                if now_millis().saturating_sub(entry.queued_at) > self.outbox.max_age_ms() {
                    self.discard(entry.seq, status, "expired");
                    self.cursor = Some(entry.seq);
                    continue;
                }
                let message = match decode(&entry.record) {
                    Ok(message) => message,
                    Err(error) => {
                        tracing::error!(broker = %status.name(), seq = entry.seq, %error, "dropping a corrupt outbox record");
                        self.discard(entry.seq, status, "corrupt");
                        self.cursor = Some(entry.seq);
                        continue;
                    }
                };
                if client.publish(&message).is_err() {
                    // The client's queue is full: try this entry again on the next round.
                    return;
                }
                self.cursor = Some(entry.seq);
                self.unsent.push_back((entry.seq, message.qos.level()));
            }
        }
    }

    fn discard(&self, seq: u64, status: &BrokerStatus, reason: &str) {
        if self.outbox.remove(seq).is_ok() {
            status.outbox_dropped(reason, 1);
        }
    }

    fn sent(&mut self, pkid: u16, status: &BrokerStatus) {
        let Some((seq, qos)) = self.unsent.pop_front() else {
            return;
        };
        if qos == 0 || pkid == 0 {
            self.delivered(seq, status);
        } else {
            self.in_flight.insert(pkid, seq);
        }
    }

    fn completed(&mut self, pkid: u16, status: &BrokerStatus) {
        if let Some(seq) = self.in_flight.remove(&pkid) {
            self.delivered(seq, status);
        }
    }

    fn delivered(&self, seq: u64, status: &BrokerStatus) {
        if let Err(error) = self.outbox.remove(seq) {
            tracing::error!(broker = %status.name(), seq, %error, "cannot remove a delivered message from the outbox");
        }
        status.published(self.outbox.len());
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
        self.outbox.set_publishing(false);
    }
}
