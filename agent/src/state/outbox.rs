//! A durable, ordered, bounded queue of outbound records for one broker connection. Records
//! are opaque bytes (the encoding belongs to the outbound layer) keyed by a rising sequence
//! number, so they leave in the order they were queued, across restarts.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

use super::StateError;
use crate::config::OutboxLimits;
use crate::event::now_millis;

const HEADER: usize = 8;

/// One queued record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxEntry {
    pub seq: u64,
    /// When it was queued, in milliseconds since the epoch.
    pub queued_at: u64,
    pub record: Vec<u8>,
}

/// What `push` had to do to stay within the limits.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PushReport {
    /// Oldest records dropped to make room.
    pub dropped_oldest: u64,
}

#[derive(Clone)]
pub struct Outbox {
    inner: Arc<Inner>,
}

struct Inner {
    tree: sled::Tree,
    limits: OutboxLimits,
    /// The next sequence number. Held while inserting, so records become visible in
    /// sequence order: a reader that saw record n never finds n-1 appearing later.
    next_seq: Mutex<u64>,
    len: AtomicU64,
    bytes: AtomicU64,
    pushed: Notify,
}

impl Outbox {
    pub(super) fn open(tree: sled::Tree, limits: OutboxLimits) -> Result<Self, StateError> {
        let mut len = 0;
        let mut bytes = 0;
        for item in tree.iter() {
            let (_, value) = item?;
            len += 1;
            bytes += value.len() as u64;
        }
        let next_seq = match tree.last()? {
            Some((key, _)) => decode_seq(&key).map_or(0, |seq| seq + 1),
            None => 0,
        };
        Ok(Self {
            inner: Arc::new(Inner {
                tree,
                limits,
                next_seq: Mutex::new(next_seq),
                len: AtomicU64::new(len),
                bytes: AtomicU64::new(bytes),
                pushed: Notify::new(),
            }),
        })
    }

    /// Queues a record at the end, dropping the oldest records if the limits require.
    pub fn push(&self, record: &[u8]) -> Result<PushReport, StateError> {
        let inner = &*self.inner;
        let size = (HEADER + record.len()) as u64;
        let mut report = PushReport::default();
        while inner.len.load(Ordering::Acquire) >= inner.limits.max_messages
            || inner.bytes.load(Ordering::Acquire) + size > inner.limits.max_bytes
        {
            match inner.tree.first()? {
                Some((key, _)) => {
                    if self.remove_key(&key)? {
                        report.dropped_oldest += 1;
                    }
                }
                None => break,
            }
        }
        let mut value = Vec::with_capacity(size as usize);
        value.extend_from_slice(&now_millis().to_be_bytes());
        value.extend_from_slice(record);
        {
            let mut next_seq = inner
                .next_seq
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            inner.tree.insert(next_seq.to_be_bytes(), value)?;
            *next_seq += 1;
        }
        inner.len.fetch_add(1, Ordering::AcqRel);
        inner.bytes.fetch_add(size, Ordering::AcqRel);
        inner.pushed.notify_one();
        Ok(report)
    }

    /// Up to `limit` records after `after` (from the start when `None`), in order.
    pub fn read_after(
        &self,
        after: Option<u64>,
        limit: usize,
    ) -> Result<Vec<OutboxEntry>, StateError> {
        let start = after.map_or(0, |seq| seq.saturating_add(1));
        let mut entries = Vec::new();
        for item in self.inner.tree.range(start.to_be_bytes()..).take(limit) {
            let (key, value) = item?;
            let (Some(seq), Some((header, record))) =
                (decode_seq(&key), value.split_first_chunk::<HEADER>())
            else {
                continue;
            };
            entries.push(OutboxEntry {
                seq,
                queued_at: u64::from_be_bytes(*header),
                record: record.to_vec(),
            });
        }
        Ok(entries)
    }

    /// Removes a record once it has been delivered (or given up on).
    pub fn remove(&self, seq: u64) -> Result<(), StateError> {
        self.remove_key(&seq.to_be_bytes())?;
        Ok(())
    }

    fn remove_key(&self, key: &[u8]) -> Result<bool, StateError> {
        match self.inner.tree.remove(key)? {
            Some(value) => {
                self.inner.len.fetch_sub(1, Ordering::AcqRel);
                self.inner
                    .bytes
                    .fetch_sub(value.len() as u64, Ordering::AcqRel);
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// Records waiting.
    pub fn len(&self) -> u64 {
        self.inner.len.load(Ordering::Acquire)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Oldest age a record may reach before it is dropped instead of sent, in milliseconds.
    pub fn max_age_ms(&self) -> u64 {
        self.inner.limits.max_age.0
    }

    /// Resolves when a record is pushed (or was pushed since the last wait).
    pub async fn pushed(&self) {
        self.inner.pushed.notified().await;
    }
}

fn decode_seq(key: &[u8]) -> Option<u64> {
    key.try_into().ok().map(u64::from_be_bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Millis, StateConfig};
    use crate::state::StateDb;

    fn outbox(db: &StateDb, limits: OutboxLimits) -> Outbox {
        db.outbox("local", limits).unwrap()
    }

    fn records(outbox: &Outbox) -> Vec<Vec<u8>> {
        outbox
            .read_after(None, 100)
            .unwrap()
            .into_iter()
            .map(|e| e.record)
            .collect()
    }

    #[test]
    fn keeps_order_and_survives_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let limits = OutboxLimits::default();
        {
            let db = StateDb::open(dir.path(), &StateConfig::default()).unwrap();
            let outbox = outbox(&db, limits);
            for record in [b"a", b"b", b"c"] {
                outbox.push(record).unwrap();
            }
            let first = outbox.read_after(None, 1).unwrap().remove(0);
            outbox.remove(first.seq).unwrap();
            db.flush().unwrap();
        }
        let db = StateDb::open(dir.path(), &StateConfig::default()).unwrap();
        let outbox = outbox(&db, limits);
        assert_eq!(outbox.len(), 2);
        outbox.push(b"d").unwrap();
        assert_eq!(records(&outbox), [b"b", b"c", b"d"]);
        let entries = outbox.read_after(None, 10).unwrap();
        assert_eq!(
            outbox.read_after(Some(entries[0].seq), 10).unwrap().len(),
            2
        );
    }

    #[test]
    fn concurrent_pushes_become_visible_in_sequence_order() {
        let db = StateDb::temporary(&StateConfig::default()).unwrap();
        let outbox = outbox(&db, OutboxLimits::default());
        std::thread::scope(|scope| {
            for _ in 0..4 {
                scope.spawn(|| {
                    for _ in 0..500 {
                        outbox.push(b"x").unwrap();
                    }
                });
            }
            // A reader following the tail must never skip a record.
            let mut cursor = None;
            let mut seen = 0;
            while seen < 2000 {
                for entry in outbox.read_after(cursor, 64).unwrap() {
                    assert_eq!(
                        Some(entry.seq),
                        cursor.map_or(Some(0), |c: u64| Some(c + 1)),
                        "a record was skipped"
                    );
                    cursor = Some(entry.seq);
                    seen += 1;
                }
            }
        });
    }

    #[test]
    fn drops_the_oldest_when_full() {
        let db = StateDb::temporary(&StateConfig::default()).unwrap();
        let limits = OutboxLimits {
            max_messages: 2,
            max_bytes: 1 << 20,
            max_age: Millis(1000),
        };
        let outbox = outbox(&db, limits);
        assert_eq!(outbox.push(b"1").unwrap().dropped_oldest, 0);
        assert_eq!(outbox.push(b"2").unwrap().dropped_oldest, 0);
        assert_eq!(outbox.push(b"3").unwrap().dropped_oldest, 1);
        assert_eq!(records(&outbox), [b"2", b"3"]);

        let by_bytes = db
            .outbox(
                "bytes",
                OutboxLimits {
                    max_messages: 100,
                    max_bytes: 3 * (HEADER as u64 + 4),
                    max_age: Millis(1000),
                },
            )
            .unwrap();
        for record in [b"aaaa", b"bbbb", b"cccc", b"dddd"] {
            by_bytes.push(record).unwrap();
        }
        assert_eq!(records(&by_bytes), [b"bbbb", b"cccc", b"dddd"]);
    }
}
