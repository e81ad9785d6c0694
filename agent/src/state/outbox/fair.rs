//! One broker connection's outbound queues: an [`Outbox`] per function that publishes to it
//! (tree `outbox/<broker>/fn/<function>`), beside the connection's own (`outbox/<broker>`,
//! for messages of no function and those an earlier version queued). Its publisher takes a
//! few records from each queue in turn, so a function that floods fills, and waits behind,
//! only its own queue. Each queue keeps its order and is bounded by the connection's
//! outbox limits on its own.

use std::sync::{Arc, PoisonError, RwLock};

use super::{Outbox, OutboxSignal, PushReport};
use crate::config::OutboxLimits;
use crate::state::{StateDb, StateError};

/// The queue of one origin.
#[derive(Clone)]
pub struct Lane {
    /// The function whose messages it holds; empty for the connection's own queue.
    pub origin: Arc<str>,
    pub outbox: Outbox,
}

#[derive(Clone)]
pub struct FairOutbox {
    inner: Arc<Inner>,
}

struct Inner {
    db: StateDb,
    broker: String,
    limits: OutboxLimits,
    signal: Arc<OutboxSignal>,
    /// Only ever appended to, so a lane's index stays valid.
    lanes: RwLock<Vec<Lane>>,
}

impl FairOutbox {
    /// Opens the connection's own queue and every function queue left from before.
    pub(in crate::state) fn open(
        db: StateDb,
        broker: &str,
        limits: OutboxLimits,
    ) -> Result<Self, StateError> {
        let signal = Arc::new(OutboxSignal::default());
        let mut lanes = vec![Lane {
            origin: Arc::from(""),
            outbox: db.outbox_in(&format!("outbox/{broker}"), limits, signal.clone())?,
        }];
        for function in db.tree_names_under(&function_prefix(broker)) {
            let outbox = db.outbox_in(
                &format!("{}{function}", function_prefix(broker)),
                limits,
                signal.clone(),
            )?;
            lanes.push(Lane {
                origin: Arc::from(function),
                outbox,
            });
        }
        Ok(Self {
            inner: Arc::new(Inner {
                db,
                broker: broker.to_owned(),
                limits,
                signal,
                lanes: RwLock::new(lanes),
            }),
        })
    }

    /// Queues a record of `origin` at the end of its own queue.
    pub fn push(&self, origin: &str, record: &[u8]) -> Result<PushReport, StateError> {
        self.lane(origin)?.push(record)
    }

    /// The queue of `origin`, opened on its first message.
    fn lane(&self, origin: &str) -> Result<Outbox, StateError> {
        let find = |lanes: &[Lane]| {
            lanes
                .iter()
                .find(|lane| &*lane.origin == origin)
                .map(|lane| lane.outbox.clone())
        };
        if let Some(outbox) = find(
            &self
                .inner
                .lanes
                .read()
                .unwrap_or_else(PoisonError::into_inner),
        ) {
            return Ok(outbox);
        }
        let mut lanes = self
            .inner
            .lanes
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(outbox) = find(&lanes) {
            return Ok(outbox);
        }
        let inner = &*self.inner;
        let outbox = inner.db.outbox_in(
            &format!("{}{origin}", function_prefix(&inner.broker)),
            inner.limits,
            inner.signal.clone(),
        )?;
        lanes.push(Lane {
            origin: Arc::from(origin),
            outbox: outbox.clone(),
        });
        Ok(outbox)
    }

    /// The queues from index `from` on (all of them from 0), in the order they were opened.
    pub fn lanes_from(&self, from: usize) -> Vec<Lane> {
        let lanes = self
            .inner
            .lanes
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        lanes.get(from..).map(<[Lane]>::to_vec).unwrap_or_default()
    }

    /// How many queues there are.
    pub fn lane_count(&self) -> usize {
        self.inner
            .lanes
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// Records waiting, in all queues.
    pub fn len(&self) -> u64 {
        let lanes = self
            .inner
            .lanes
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        lanes.iter().map(|lane| lane.outbox.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Says whether a connection is up and publishing these queues.
    pub fn set_publishing(&self, publishing: bool) {
        self.inner
            .signal
            .publishing
            .store(publishing, std::sync::atomic::Ordering::Release);
    }

    /// Resolves when a record is pushed to any queue (or was since the last wait).
    pub async fn pushed(&self) {
        self.inner.signal.pushed.notified().await;
    }

    /// Oldest age a record may reach before it is dropped instead of sent, in milliseconds.
    pub fn max_age_ms(&self) -> u64 {
        self.inner.limits.max_age.0
    }
}

fn function_prefix(broker: &str) -> String {
    format!("outbox/{broker}/fn/")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::StateConfig;

    #[test]
    fn each_origin_gets_its_own_bounded_queue_and_they_survive_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let limits = OutboxLimits {
            max_messages: 2,
            ..OutboxLimits::default()
        };
        {
            let db = StateDb::open(dir.path(), &StateConfig::default()).unwrap();
            let fair = db.fair_outbox("local", limits).unwrap();
            for index in 0..5u8 {
                fair.push("flood", &[index]).unwrap();
            }
            fair.push("quiet", b"q").unwrap();
            fair.push("", b"own").unwrap();
            let origins: Vec<_> = fair
                .lanes_from(0)
                .iter()
                .map(|l| l.origin.to_string())
                .collect();
            assert_eq!(origins, ["", "flood", "quiet"]);
            assert_eq!(fair.len(), 4, "the flood kept only its own two");
            db.flush().unwrap();
        }
        let db = StateDb::open(dir.path(), &StateConfig::default()).unwrap();
        let fair = db.fair_outbox("local", limits).unwrap();
        let mut origins: Vec<_> = fair
            .lanes_from(0)
            .iter()
            .map(|l| l.origin.to_string())
            .collect();
        origins.sort();
        assert_eq!(origins, ["", "flood", "quiet"]);
        let quiet = fair
            .lanes_from(0)
            .into_iter()
            .find(|l| &*l.origin == "quiet")
            .unwrap();
        let records: Vec<_> = quiet
            .outbox
            .read_after(None, 10)
            .unwrap()
            .into_iter()
            .map(|entry| entry.record.to_vec())
            .collect();
        assert_eq!(records, [b"q".to_vec()]);
        assert_eq!(fair.len(), 4);
    }
}
