//! What one `flow` trigger gathers for its function: an open window of aggregates, a batch
//! of records, or nothing (counter samples go straight out). Records are added by the
//! listeners; events leave when a window closes, a batch fills or its flush time comes.

use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use serde::Serialize;
use tokio::time::Instant;

use super::aggregate::{Window, WindowTimes};
use super::decode::InterfaceCounters;
use super::record::FlowRecord;
use crate::config::{FlowMode, FlowTrigger};
use crate::event::{Event, Source, attributes, new_event};
use crate::router::Dispatch;

enum Gathering {
    Window {
        window: Box<Window>,
        opened: SystemTime,
        opened_at: Instant,
    },
    Batch {
        records: Vec<FlowRecord>,
        size: usize,
    },
    Counters,
}

/// One flow trigger of one function.
pub struct Sink {
    /// `<function>/flow<index>`: the route to its function.
    key: String,
    /// How often `flush` should be called; none for counter triggers.
    period: Option<Duration>,
    gathering: Mutex<Gathering>,
}

#[derive(Serialize)]
struct Batch<'a> {
    records: &'a [FlowRecord],
}

impl Sink {
    pub fn new(key: String, trigger: &FlowTrigger) -> Self {
        let (period, gathering) = match trigger.mode() {
            FlowMode::Window { window } => (
                Some(window.as_duration()),
                Gathering::Window {
                    window: Box::new(Window::new(&trigger.key, trigger.top, trigger.max_keys)),
                    opened: SystemTime::now(),
                    opened_at: Instant::now(),
                },
            ),
            FlowMode::Batch { records, flush } => (
                Some(flush.as_duration()),
                Gathering::Batch {
                    records: Vec::with_capacity(records),
                    size: records,
                },
            ),
            FlowMode::Counters => (None, Gathering::Counters),
        };
        Self {
            key,
            period,
            gathering: Mutex::new(gathering),
        }
    }

    pub fn period(&self) -> Option<Duration> {
        self.period
    }

    fn gathering(&self) -> MutexGuard<'_, Gathering> {
        self.gathering.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds one datagram's records; a batch that fills is sent at once.
    pub fn add(&self, records: &[FlowRecord], dispatch: &Dispatch) {
        let mut full = Vec::new();
        match &mut *self.gathering() {
            Gathering::Window { window, .. } => records.iter().for_each(|r| window.add(r)),
            Gathering::Batch {
                records: batch,
                size,
            } => {
                for record in records {
                    batch.push(*record);
                    if batch.len() == *size {
                        full.push(std::mem::replace(batch, Vec::with_capacity(*size)));
                    }
                }
            }
            Gathering::Counters => {}
        }
        for batch in full {
            dispatch.offer(self.batch_event(&batch));
        }
    }

    /// Sends counter samples, one event each, to a counters trigger.
    pub fn add_counters(&self, counters: &[InterfaceCounters], dispatch: &Dispatch) {
        if !matches!(*self.gathering(), Gathering::Counters) {
            return;
        }
        for sample in counters {
            let subject = format!("{}/{}", sample.agent, sample.if_index);
            let body = serde_json::to_vec(sample).unwrap_or_default();
            dispatch.offer(self.event(subject, "counters", body));
        }
    }

    /// Closes the window (sending its aggregates together, or dropping them together when
    /// the function's queue lacks room) or sends the partial batch.
    pub fn flush(&self, dispatch: &Dispatch) {
        let mut gathering = self.gathering();
        match &mut *gathering {
            Gathering::Window {
                window,
                opened,
                opened_at,
            } => {
                let closed = SystemTime::now();
                let times = WindowTimes {
                    start: rfc3339(*opened),
                    end: rfc3339(closed),
                    seconds: opened_at.elapsed().as_secs_f64(),
                };
                *opened = closed;
                *opened_at = Instant::now();
                if window.is_empty() {
                    return;
                }
                let aggregates = window.take(&times);
                drop(gathering);
                let events = aggregates
                    .iter()
                    .map(|aggregate| {
                        let body = serde_json::to_vec(aggregate).unwrap_or_default();
                        self.event(aggregate.subject(), "window", body)
                    })
                    .collect();
                dispatch.offer_together(events);
            }
            Gathering::Batch { records, size } => {
                if records.is_empty() {
                    return;
                }
                let batch = std::mem::replace(records, Vec::with_capacity(*size));
                drop(gathering);
                dispatch.offer(self.batch_event(&batch));
            }
            Gathering::Counters => {}
        }
    }

    fn batch_event(&self, records: &[FlowRecord]) -> Event {
        let body = serde_json::to_vec(&Batch { records }).unwrap_or_default();
        self.event("records".to_owned(), "batch", body)
    }

    fn event(&self, subject: String, kind: &str, body: Vec<u8>) -> Event {
        let mut event = new_event(Source::Flow, subject, body);
        event
            .attributes
            .push((attributes::FLOW_TRIGGER.to_owned(), self.key.clone()));
        event
            .attributes
            .push((attributes::FLOW_KIND.to_owned(), kind.to_owned()));
        event
    }
}

/// RFC 3339 in UTC with milliseconds.
fn rfc3339(time: SystemTime) -> String {
    chrono::DateTime::<chrono::Utc>::from(time).to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}
