//! One broker connection's life: connect (with backoff), subscribe, hand inbound messages to
//! the [`Inbound`] handler, send acknowledgements it asks for, and publish the outbox. A
//! broker has one such connection doing all of it, or two: one subscribing and
//! acknowledging, one publishing (`separate_publisher`).
//!
//! The outbox is the truth for outbound delivery: each connection starts a fresh client and
//! publishes from the oldest entry still queued; an entry is removed only once the broker
//! completed it (PUBACK/PUBCOMP; for QoS 0, once written to the network). A message may thus
//! be sent twice around a reconnect or restart, never lost. The outbox holds one queue per
//! function; the publisher takes a few entries from each in turn.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};

use super::ack_order::AckOrder;
use super::inbound::Inbound;
use super::{AckRequest, BrokerStatus};
use crate::config::Retained;
use crate::event::now_millis;
use crate::outbound::decode;
use crate::state::{FairOutbox, Lane};
use crate::telemetry::{OutboxDrop, SpacedLog};
use fogd_fleet::mqtt::ConnectionSettings;
use fogd_fleet::mqtt::backoff::Backoff;
use fogd_fleet::mqtt::client::{MqttClient, PublishRefused, RequestRefused, SessionEvent};

/// Entries taken from one function's queue before the next queue's turn.
const LANE_TURN: usize = 16;

/// Control signals from the agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Running,
    /// Stop taking new messages (they stay with the broker), keep acknowledging and publishing.
    Draining,
    /// Disconnect and end.
    Stopped,
}

/// One filter a connection subscribes to, for all the triggers that name it: the highest QoS
/// and the most retained messages any of them asks for (each trigger then skips what it
/// does not want).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    pub filter: String,
    pub qos: u8,
    pub retained: Retained,
}

pub struct Session {
    pub settings: ConnectionSettings,
    /// What the triggers want subscribed; a reconfiguration may change it while connected.
    pub subscriptions: watch::Receiver<Vec<Subscription>>,
    /// Where messages go; `None` on a connection that only publishes.
    pub inbound: Option<Inbound>,
    /// What this connection publishes; `None` when another connection publishes it.
    pub outbox: Option<FairOutbox>,
    pub acks: mpsc::UnboundedReceiver<AckRequest>,
    pub status: BrokerStatus,
    pub phase: watch::Receiver<Phase>,
}

impl Session {
    pub async fn run(mut self) {
        let spec = &self.settings.spec;
        let mut backoff = Backoff::new(
            spec.reconnect_min.as_duration(),
            spec.reconnect_max().as_duration(),
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
        let mut subscribed: Vec<Subscription> = Vec::new();
        let mut following = true;
        // Acknowledgements the client could not take yet (its queue was full): they are
        // retried before anything else, never dropped, or the broker would stall.
        let mut unsent_acks: VecDeque<(u8, u16)> = VecDeque::new();
        let mut order = AckOrder::default();
        let publish_timeout = self.settings.spec.publish_timeout.as_duration();
        let check_every = (publish_timeout / 4).max(Duration::from_millis(10));
        let mut stall_check =
            tokio::time::interval_at(tokio::time::Instant::now() + check_every, check_every);
        stall_check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            send_acks(&client, &mut unsent_acks);
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
                        // Acknowledgements settled before the stop go out ahead of the
                        // DISCONNECT; left in the channel, the broker would redeliver
                        // messages whose results it already has.
                        while let Ok(ack) = self.acks.try_recv() {
                            if ack.generation == generation {
                                unsent_acks.extend(order.finish(ack.position, ack.settle));
                            }
                        }
                        send_acks(&client, &mut unsent_acks);
                        client.disconnect();
                        // Let the event loop write the DISCONNECT, briefly.
                        let _ = tokio::time::timeout(std::time::Duration::from_millis(500), async {
                            while eventloop.poll().await.is_ok() {}
                        })
                        .await;
                        return None;
                    }
                }
                changed = self.subscriptions.changed(), if connected && following => {
                    if changed.is_err() {
                        following = false;
                        continue;
                    }
                    let wanted = self.subscriptions.borrow_and_update().clone();
                    let added: Vec<_> = wanted.iter().filter(|s| !subscribed.contains(s)).collect();
                    for subscription in &added {
                        if let Err(error) = subscribe(&client, subscription) {
                            return Some(error.to_string());
                        }
                    }
                    let removed: Vec<_> = subscribed
                        .iter()
                        .filter(|old| !wanted.iter().any(|new| new.filter == old.filter))
                        .collect();
                    for subscription in &removed {
                        if let Err(error) = client.unsubscribe(&subscription.filter) {
                            return Some(format!("cannot unsubscribe from {}: {error}", subscription.filter));
                        }
                    }
                    tracing::info!(broker = %self.settings.name, subscribed = added.len(), unsubscribed = removed.len(), "subscriptions changed");
                    awaiting_subacks = awaiting_subacks.saturating_add(added.len());
                    subscribed = wanted;
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
                    Err(lost) => {
                        if let Some(publisher) = publisher.as_mut() {
                            for answer in lost.answers {
                                publisher.answered(answer, &self.status);
                            }
                            if lost.unreadable_ack {
                                publisher.refuse_oldest(&lost.reason, &self.status);
                            }
                        }
                        return Some(lost.reason);
                    }
                    Ok(SessionEvent::Connected { session_present, max_packet }) => {
                        connected = true;
                        if let Some(publisher) = publisher.as_mut() {
                            publisher.queues.set_publishing(true);
                            publisher.max_packet = max_packet;
                        }
                        backoff.reset();
                        tracing::info!(broker = %self.settings.name, connection = %self.status.connection, address = %self.settings.spec.address, session_present, queued = self.outbox.as_ref().map(FairOutbox::len), "broker connected");
                        subscribed = self.subscriptions.borrow_and_update().clone();
                        for wanted in &subscribed {
                            if let Err(error) = subscribe(&client, wanted) {
                                return Some(error.to_string());
                            }
                        }
                        awaiting_subacks = subscribed.len();
                        if awaiting_subacks == 0 {
                            self.status.set_connected(true, &None);
                        }
                    }
                    Ok(SessionEvent::Subscribed) => {
                        awaiting_subacks = awaiting_subacks.saturating_sub(1);
                        if awaiting_subacks == 0 {
                            // Healthy only once every trigger is really subscribed.
                            self.status.set_connected(true, &None);
                            tracing::info!(broker = %self.settings.name, filters = subscribed.len(), "triggers subscribed");
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
                    Ok(answer @ (SessionEvent::Completed { .. } | SessionEvent::Refused { .. })) => {
                        if let Some(publisher) = publisher.as_mut() {
                            publisher.answered(answer, &self.status);
                        }
                    }
                    Ok(SessionEvent::Other) => {}
                },
                _ = pushed(&self.outbox), if room => {}
                // Only once connected: a branch that wins while the client is still
                // connecting drops its half-made connection, and the next poll opens another.
                _ = stall_check.tick(), if connected && publisher.is_some() => {
                    if let Some(publisher) = &publisher
                        && let Some(waited) = publisher.stalled_for(publish_timeout)
                    {
                        tracing::warn!(broker = %self.settings.name, connection = %self.status.connection, waiting = publisher.waiting(), waited_ms = waited.as_millis() as u64, "publishing stalled: no message completed while messages waited; reconnecting");
                        return Some(format!(
                            "publishing stalled: no message completed in {} ms while {} waited",
                            waited.as_millis(),
                            publisher.waiting()
                        ));
                    }
                }
            }
        }
    }
}

/// The client did not take a subscription: the connection is made again.
#[derive(Debug, thiserror::Error)]
#[error("cannot subscribe to {filter}: {source}")]
struct SubscribeRefused {
    filter: String,
    source: RequestRefused,
}

fn subscribe(client: &MqttClient, wanted: &Subscription) -> Result<(), SubscribeRefused> {
    client
        .subscribe(&wanted.filter, wanted.qos, wanted.retained)
        .map_err(|source| SubscribeRefused {
            filter: wanted.filter.clone(),
            source,
        })
}

/// Hands the waiting acknowledgements to the client in order, as many as it takes now.
fn send_acks(client: &MqttClient, unsent_acks: &mut VecDeque<(u8, u16)>) {
    while let Some(&(qos, pkid)) = unsent_acks.front() {
        if client.ack(qos, pkid).is_err() {
            break;
        }
        unsent_acks.pop_front();
    }
}

/// Resolves when something is added to `outbox`; never without one.
async fn pushed(outbox: &Option<FairOutbox>) {
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
    queues: FairOutbox,
    /// Each function's queue and the last of its entries handed to the client.
    lanes: Vec<(Lane, Option<u64>)>,
    /// The lane whose turn is next.
    turn: usize,
    window: usize,
    /// Handed to the client, not yet written (packet id unknown), in order: lane, entry, QoS.
    unsent: VecDeque<(usize, u64, u8)>,
    /// Written, awaiting the broker's completion, by packet id: lane, entry and when it was
    /// written (a count).
    in_flight: HashMap<u16, (usize, u64, u64)>,
    /// Publishes written so far.
    written: u64,
    /// When a message last completed, or when the wait for one began.
    last_progress: Instant,
    /// The largest packet the broker takes, when it said.
    max_packet: Option<usize>,
    refusals: SpacedLog,
}

impl Publisher {
    fn new(queues: FairOutbox, window: usize) -> Self {
        Self {
            queues,
            lanes: Vec::new(),
            turn: 0,
            window: window.max(1),
            unsent: VecDeque::new(),
            in_flight: HashMap::new(),
            written: 0,
            last_progress: Instant::now(),
            max_packet: None,
            refusals: SpacedLog::default(),
        }
    }

    /// Messages handed to the client and not yet completed.
    fn waiting(&self) -> usize {
        self.unsent.len() + self.in_flight.len()
    }

    /// How long messages have waited with none completed, once that passes `timeout`.
    fn stalled_for(&self, timeout: Duration) -> Option<Duration> {
        let waited = self.last_progress.elapsed();
        (self.waiting() > 0 && waited > timeout).then_some(waited)
    }

    fn has_room(&self) -> bool {
        self.waiting() < self.window
    }

    /// Hands entries to the client while the window has room, a turn per lane.
    fn fill(&mut self, client: &MqttClient, status: &BrokerStatus) {
        if self.queues.lane_count() > self.lanes.len() {
            let opened = self.queues.lanes_from(self.lanes.len());
            self.lanes
                .extend(opened.into_iter().map(|lane| (lane, None)));
        }
        let mut idle_lanes = 0;
        while self.has_room() && idle_lanes < self.lanes.len() {
            let lane = self.turn;
            self.turn = (self.turn + 1) % self.lanes.len();
            match self.take_turn(lane, client, status) {
                Turn::Idle => idle_lanes += 1,
                Turn::Handed => idle_lanes = 0,
                Turn::ClientFull => return,
            }
        }
    }

    fn take_turn(&mut self, index: usize, client: &MqttClient, status: &BrokerStatus) -> Turn {
        let room = self.window - self.waiting();
        let (lane, cursor) = &self.lanes[index];
        let entries = match lane.outbox.read_after(*cursor, room.min(LANE_TURN)) {
            Ok(entries) => entries,
            Err(error) => {
                tracing::error!(broker = %status.name(), function = %lane.origin, %error, "cannot read the outbox");
                return Turn::Idle;
            }
        };
        if entries.is_empty() {
            return Turn::Idle;
        }
        let lane = lane.clone();
        for entry in entries {
            if now_millis().saturating_sub(entry.queued_at) > self.queues.max_age_ms() {
                self.discard(&lane, entry.seq, status, OutboxDrop::Expired);
                self.lanes[index].1 = Some(entry.seq);
                continue;
            }
            let message = match decode(&entry.record) {
                Ok(message) => message,
                Err(error) => {
                    tracing::error!(broker = %status.name(), seq = entry.seq, %error, "dropping a corrupt outbox record");
                    self.discard(&lane, entry.seq, status, OutboxDrop::Corrupt);
                    self.lanes[index].1 = Some(entry.seq);
                    continue;
                }
            };
            match client.publish(&message, self.max_packet) {
                Ok(()) => {}
                Err(refused @ PublishRefused::TooLarge { .. }) => {
                    self.log_refusal(&lane.origin, &refused.to_string(), status);
                    self.discard(&lane, entry.seq, status, OutboxDrop::TooLarge);
                    self.lanes[index].1 = Some(entry.seq);
                    continue;
                }
                // Try this entry again on the next round.
                Err(PublishRefused::ClientFull) => return Turn::ClientFull,
            }
            if self.waiting() == 0 {
                self.last_progress = Instant::now();
            }
            self.lanes[index].1 = Some(entry.seq);
            self.unsent
                .push_back((index, entry.seq, message.qos.level()));
        }
        Turn::Handed
    }

    fn sent(&mut self, pkid: u16, status: &BrokerStatus) {
        let Some((lane, seq, qos)) = self.unsent.pop_front() else {
            return;
        };
        if qos == 0 || pkid == 0 {
            self.delivered(lane, seq, status);
        } else {
            self.written += 1;
            self.in_flight.insert(pkid, (lane, seq, self.written));
        }
    }

    /// The broker completed or refused a publish.
    fn answered(&mut self, answer: SessionEvent, status: &BrokerStatus) {
        match answer {
            SessionEvent::Completed { pkid } => {
                if let Some((lane, seq, _)) = self.in_flight.remove(&pkid) {
                    self.delivered(lane, seq, status);
                }
            }
            SessionEvent::Refused { pkid, reason } => self.refused(pkid, &reason, status),
            _ => {}
        }
    }

    /// The broker will not take the message under `pkid`: sending it again would only be
    /// refused again, so it leaves the outbox, counted.
    fn refused(&mut self, pkid: u16, reason: &str, status: &BrokerStatus) {
        if let Some((lane, seq, _)) = self.in_flight.remove(&pkid) {
            self.last_progress = Instant::now();
            let lane = self.lanes[lane].0.clone();
            self.log_refusal(&lane.origin, reason, status);
            self.discard(&lane, seq, status, OutboxDrop::Refused);
        }
    }

    /// The broker refused the oldest message in flight in a way that ended the connection.
    fn refuse_oldest(&mut self, reason: &str, status: &BrokerStatus) {
        let oldest = self
            .in_flight
            .iter()
            .min_by_key(|(_, (_, _, written))| *written)
            .map(|(pkid, _)| *pkid);
        if let Some(pkid) = oldest {
            self.refused(pkid, reason, status);
        }
    }

    fn log_refusal(&self, function: &str, reason: &str, status: &BrokerStatus) {
        if let Some(count) = self.refusals.report() {
            tracing::warn!(broker = %status.name(), function, reason, count, "the broker will not take a message; dropped");
        }
    }

    fn delivered(&mut self, lane: usize, seq: u64, status: &BrokerStatus) {
        self.last_progress = Instant::now();
        let outbox = &self.lanes[lane].0.outbox;
        if let Err(error) = outbox.remove(seq) {
            tracing::error!(broker = %status.name(), seq, %error, "cannot remove a delivered message from the outbox");
        }
        status.published(self.queued());
    }

    /// Drops an entry the broker will never take, counted under `reason`.
    fn discard(&self, lane: &Lane, seq: u64, status: &BrokerStatus, reason: OutboxDrop) {
        if lane.outbox.remove(seq).is_ok() {
            status.outbox_dropped(&lane.origin, reason, 1);
            status.queued(self.queued());
        }
    }

    fn queued(&self) -> u64 {
        self.lanes.iter().map(|(lane, _)| lane.outbox.len()).sum()
    }
}

/// What one lane's turn did.
enum Turn {
    /// Its queue had nothing new.
    Idle,
    /// It handed entries to the client (or dropped expired and corrupt ones).
    Handed,
    /// The client could take no more for now.
    ClientFull,
}

impl Drop for Publisher {
    fn drop(&mut self) {
        self.queues.set_publishing(false);
    }
}
