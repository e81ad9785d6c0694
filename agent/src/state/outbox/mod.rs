//! A durable, ordered, bounded queue of outbound records for one broker connection. Records
//! are opaque bytes (the encoding belongs to the outbound layer) numbered by a rising
//! sequence number, so they leave in the order they were queued, across restarts.
//!
//! Pushed records wait in memory until the next [`Outbox::persist`], which writes all of them
//! to the tree as one batch (see [`batch`]): the state database persists every outbox before
//! each flush, so a record is on disk once a [`super::StateDb::sync`] that began after its
//! push returned. A batch leaves the tree once all its records were delivered. Writing and
//! removing one sled key per record was a quarter of the MQTT path's CPU time.
//!
//! [`Outbox::delivered`] tells when every record pushed so far has left (delivered or
//! dropped), so an acknowledgement can wait for that instead of a flush.
//!
//! The newest records are also kept in memory, as pushed: a publisher that keeps up reads
//! them from there instead of scanning the tree (a tenth of the MQTT path's time when every
//! read went to sled), and reads the tree after a restart or once it fell behind.

mod batch;
mod delivered;
mod fair;

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use tokio::sync::{Notify, oneshot};

use super::StateError;
use crate::config::OutboxLimits;
use crate::event::now_millis;
use batch::RecordRef;
use delivered::DeliveryWaiters;

pub use fair::{FairOutbox, Lane};

/// At most this many records, and this many bytes of them, are kept in memory for readers.
const RECENT_RECORDS: usize = 1024;
const RECENT_BYTES: usize = 1024 * 1024;
/// Pushed records are written as soon as this many, or this many bytes, wait.
const PENDING_RECORDS: usize = 256;
const PENDING_BYTES: u64 = 256 * 1024;
/// Records left beyond which [`Outbox::delivered`] does not offer to wait.
const SOON_RECORDS: u64 = RECENT_RECORDS as u64;

/// One queued record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxEntry {
    pub seq: u64,
    /// When it was queued, in milliseconds since the epoch.
    pub queued_at: u64,
    pub record: Arc<[u8]>,
}

impl OutboxEntry {
    fn as_ref(&self) -> RecordRef<'_> {
        RecordRef {
            seq: self.seq,
            queued_at: self.queued_at,
            record: &self.record,
        }
    }
}

impl From<RecordRef<'_>> for OutboxEntry {
    fn from(record: RecordRef<'_>) -> Self {
        Self {
            seq: record.seq,
            queued_at: record.queued_at,
            record: Arc::from(record.record),
        }
    }
}

/// When the records pushed so far will have left the outbox.
#[derive(Debug)]
pub enum Delivered {
    /// None is left.
    Already,
    /// The receiver resolves once they are gone.
    When(oneshot::Receiver<()>),
    /// No connection publishes them now, or more than a publisher's read-ahead wait before
    /// them.
    NotSoon,
}

/// What the outboxes of one connection share: the wake-up of its publisher, and whether it
/// is up and publishing them.
#[derive(Default)]
pub struct OutboxSignal {
    pushed: Notify,
    publishing: AtomicBool,
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
    /// Pending records that make a write.
    batch_records: usize,
    /// Records waiting and their stored size, read without the lock.
    len: AtomicU64,
    bytes: AtomicU64,
    signal: Arc<OutboxSignal>,
    queue: Mutex<Queue>,
}

/// Everything that changes together, under one lock: sequence numbers are given out in the
/// order records reach `pending`, so a reader that saw record n never finds n-1 later.
struct Queue {
    next_seq: u64,
    /// Pushed and not yet in the tree, in order; all after every record in the tree.
    pending: VecDeque<OutboxEntry>,
    pending_bytes: u64,
    /// The batches in the tree: each one's first sequence number (its key) and last, so the
    /// batch holding a record is found without reading the tree.
    batches: BTreeMap<u64, u64>,
    /// Batches in the tree that lost some of their records, by key: the records left.
    partial: BTreeMap<u64, PartialBatch>,
    recent: Recent,
    delivery_waiters: DeliveryWaiters,
}

impl Queue {
    /// The sequence number of the oldest record still queued, or the next one if none is.
    fn lowest_left(&self) -> u64 {
        if let Some((&key, _)) = self.batches.first_key_value() {
            return self
                .partial
                .get(&key)
                .and_then(|batch| batch.live.first())
                .map_or(key, |(seq, _)| *seq);
        }
        self.pending
            .front()
            .map_or(self.next_seq, |entry| entry.seq)
    }

    /// The key of the batch in the tree whose range of sequence numbers holds `seq`.
    fn batch_holding(&self, seq: u64) -> Option<u64> {
        let (&key, &last) = self.batches.range(..=seq).next_back()?;
        (last >= seq).then_some(key)
    }
}

struct PartialBatch {
    /// Sequence numbers and stored sizes of the records not yet removed, in order.
    live: Vec<(u64, u64)>,
}

/// The newest records, the same as the outbox's from `covers_from` on.
struct Recent {
    entries: VecDeque<OutboxEntry>,
    bytes: usize,
    /// Every record in the outbox from this sequence number on is in `entries`.
    covers_from: u64,
}

impl Recent {
    fn push(&mut self, entry: OutboxEntry) {
        self.bytes += entry.record.len();
        self.entries.push_back(entry);
        while self.entries.len() > RECENT_RECORDS || self.bytes > RECENT_BYTES {
            let Some(evicted) = self.entries.pop_front() else {
                break;
            };
            self.bytes -= evicted.record.len();
            self.covers_from = evicted.seq + 1;
        }
    }

    fn remove(&mut self, seq: u64) {
        if let Ok(index) = self.entries.binary_search_by_key(&seq, |entry| entry.seq)
            && let Some(removed) = self.entries.remove(index)
        {
            self.bytes -= removed.record.len();
        }
    }

    /// The records from `start` on, if they are all here.
    fn read(&self, start: u64, limit: usize) -> Option<Vec<OutboxEntry>> {
        if start < self.covers_from {
            return None;
        }
        let first = self.entries.partition_point(|entry| entry.seq < start);
        Some(self.entries.range(first..).take(limit).cloned().collect())
    }
}

impl Outbox {
    /// Opens the outbox kept in `tree`; with `write_through`, each push writes its record.
    pub(super) fn open(
        tree: sled::Tree,
        limits: OutboxLimits,
        write_through: bool,
        signal: Arc<OutboxSignal>,
    ) -> Result<Self, StateError> {
        let mut len = 0;
        let mut bytes = 0;
        let mut next_seq = 0;
        let mut damaged = Vec::new();
        let mut batches = BTreeMap::new();
        for item in tree.iter() {
            let (key, value) = item?;
            let decoded = decode_seq(&key).zip(batch::decode(&key, &value));
            match decoded.and_then(|(first, records)| Some((first, records.last()?.seq, records))) {
                Some((first, last, records)) => {
                    batches.insert(first, last);
                    for record in records {
                        len += 1;
                        bytes += batch::stored_size(record.record);
                        next_seq = next_seq.max(record.seq + 1);
                    }
                }
                None => damaged.push(key),
            }
        }
        if !damaged.is_empty() {
            tracing::error!(tree = %String::from_utf8_lossy(&tree.name()), batches = damaged.len(), "outbox: removing damaged batches that cannot be read");
            for key in damaged {
                tree.remove(key)?;
            }
        }
        Ok(Self {
            inner: Arc::new(Inner {
                tree,
                limits,
                batch_records: if write_through { 1 } else { PENDING_RECORDS },
                len: AtomicU64::new(len),
                bytes: AtomicU64::new(bytes),
                signal,
                queue: Mutex::new(Queue {
                    next_seq,
                    pending: VecDeque::new(),
                    pending_bytes: 0,
                    batches,
                    partial: BTreeMap::new(),
                    recent: Recent {
                        entries: VecDeque::new(),
                        bytes: 0,
                        covers_from: next_seq,
                    },
                    delivery_waiters: DeliveryWaiters::default(),
                }),
            }),
        })
    }

    /// Queues a record at the end, dropping the oldest records if the limits require. It is
    /// on disk after the next [`Outbox::persist`] and database flush.
    pub fn push(&self, record: &[u8]) -> Result<PushReport, StateError> {
        let inner = &*self.inner;
        let size = batch::stored_size(record);
        let mut report = PushReport::default();
        {
            let mut queue = self.queue();
            while inner.len.load(Ordering::Acquire) >= inner.limits.max_messages
                || inner.bytes.load(Ordering::Acquire) + size > inner.limits.max_bytes
            {
                let oldest = queue.lowest_left();
                if oldest >= queue.next_seq {
                    break;
                }
                if !inner.remove(&mut queue, oldest)? {
                    break;
                }
                report.dropped_oldest += 1;
            }
            let entry = OutboxEntry {
                seq: queue.next_seq,
                queued_at: now_millis(),
                record: Arc::from(record),
            };
            queue.next_seq += 1;
            queue.pending_bytes += size;
            queue.pending.push_back(entry.clone());
            queue.recent.push(entry);
            inner.len.fetch_add(1, Ordering::AcqRel);
            inner.bytes.fetch_add(size, Ordering::AcqRel);
            if queue.pending.len() >= inner.batch_records || queue.pending_bytes >= PENDING_BYTES {
                inner.write_pending(&mut queue)?;
            }
        }
        inner.signal.pushed.notify_one();
        Ok(report)
    }

    /// Writes the records pushed since the last write to the tree, as one batch; returns
    /// how many. They are on disk after the database's next flush.
    pub fn persist(&self) -> Result<usize, StateError> {
        self.inner.write_pending(&mut self.queue())
    }

    /// Up to `limit` records after `after` (from the start when `None`), in order.
    pub fn read_after(
        &self,
        after: Option<u64>,
        limit: usize,
    ) -> Result<Vec<OutboxEntry>, StateError> {
        let start = after.map_or(0, |seq| seq.saturating_add(1));
        if limit == 0 {
            return Ok(Vec::new());
        }
        let queue = self.queue();
        if let Some(entries) = queue.recent.read(start, limit) {
            return Ok(entries);
        }
        let mut entries = Vec::new();
        let first_key = queue.batch_holding(start).unwrap_or(start);
        for item in self.inner.tree.range(first_key.to_be_bytes()..) {
            let (key, value) = item?;
            let (Some(key), Some(records)) = (decode_seq(&key), batch::decode(&key, &value)) else {
                continue;
            };
            let partial = queue.partial.get(&key);
            for record in records {
                let live = partial.is_none_or(|batch| {
                    batch
                        .live
                        .binary_search_by_key(&record.seq, |(seq, _)| *seq)
                        .is_ok()
                });
                if record.seq >= start && live {
                    entries.push(OutboxEntry::from(record));
                    if entries.len() == limit {
                        return Ok(entries);
                    }
                }
            }
        }
        let first_pending = queue.pending.partition_point(|entry| entry.seq < start);
        entries.extend(
            queue
                .pending
                .range(first_pending..)
                .take(limit - entries.len())
                .cloned(),
        );
        Ok(entries)
    }

    /// Removes a record once it has been delivered (or given up on).
    pub fn remove(&self, seq: u64) -> Result<(), StateError> {
        self.inner.remove(&mut self.queue(), seq)?;
        Ok(())
    }

    /// When every record pushed before the call will have been removed (delivered or
    /// dropped).
    pub fn delivered(&self) -> Delivered {
        let mut queue = self.queue();
        let bound = queue.next_seq;
        let left = bound - queue.lowest_left().min(bound);
        if left == 0 {
            Delivered::Already
        } else if !self.inner.signal.publishing.load(Ordering::Acquire) || left > SOON_RECORDS {
            Delivered::NotSoon
        } else {
            Delivered::When(queue.delivery_waiters.wait(bound))
        }
    }

    /// Says whether a connection is up and publishing this outbox, which is what makes
    /// waiting for delivery worth it.
    pub fn set_publishing(&self, publishing: bool) {
        self.inner
            .signal
            .publishing
            .store(publishing, Ordering::Release);
    }

    fn queue(&self) -> MutexGuard<'_, Queue> {
        self.inner.queue()
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
        self.inner.signal.pushed.notified().await;
    }
}

impl Inner {
    fn queue(&self) -> MutexGuard<'_, Queue> {
        lock(&self.queue)
    }

    fn write_pending(&self, queue: &mut Queue) -> Result<usize, StateError> {
        let Some(first) = queue.pending.front() else {
            return Ok(0);
        };
        let value = batch::encode(queue.pending.iter().map(OutboxEntry::as_ref));
        self.tree.insert(first.seq.to_be_bytes(), value)?;
        let last = queue.pending.back().map_or(first.seq, |entry| entry.seq);
        queue.batches.insert(first.seq, last);
        let written = queue.pending.len();
        queue.pending.clear();
        queue.pending_bytes = 0;
        Ok(written)
    }

    /// Removes one record; false if it was not (or no longer) in the outbox.
    fn remove(&self, queue: &mut Queue, seq: u64) -> Result<bool, StateError> {
        let removed = self.remove_record(queue, seq)?;
        if removed {
            let lowest_left = queue.lowest_left();
            queue.delivery_waiters.wake(lowest_left);
        }
        Ok(removed)
    }

    fn remove_record(&self, queue: &mut Queue, seq: u64) -> Result<bool, StateError> {
        queue.recent.remove(seq);
        if queue.pending.front().is_some_and(|first| seq >= first.seq) {
            let Ok(index) = queue.pending.binary_search_by_key(&seq, |entry| entry.seq) else {
                return Ok(false);
            };
            let Some(removed) = queue.pending.remove(index) else {
                return Ok(false);
            };
            let size = batch::stored_size(&removed.record);
            queue.pending_bytes -= size;
            self.forget(size);
            return Ok(true);
        }
        let Some(key) = self.batch_of(queue, seq)? else {
            return Ok(false);
        };
        let Some(partial) = queue.partial.get_mut(&key) else {
            return Ok(false);
        };
        let Ok(index) = partial.live.binary_search_by_key(&seq, |(seq, _)| *seq) else {
            return Ok(false);
        };
        let (_, size) = partial.live.remove(index);
        if partial.live.is_empty() {
            self.tree.remove(key.to_be_bytes())?;
            queue.partial.remove(&key);
            queue.batches.remove(&key);
        }
        self.forget(size);
        Ok(true)
    }

    /// The key of the batch in the tree that holds `seq`, tracked in `queue.partial` from
    /// now on; `None` if no batch holds it.
    fn batch_of(&self, queue: &mut Queue, seq: u64) -> Result<Option<u64>, StateError> {
        let Some(key) = queue.batch_holding(seq) else {
            return Ok(None);
        };
        if queue.partial.contains_key(&key) {
            return Ok(Some(key));
        }
        let key_bytes = key.to_be_bytes();
        let Some(value) = self.tree.get(key_bytes)? else {
            return Ok(None);
        };
        let Some(records) = batch::decode(&key_bytes, &value) else {
            return Ok(None);
        };
        let live = records
            .iter()
            .map(|record| (record.seq, batch::stored_size(record.record)))
            .collect();
        queue.partial.insert(key, PartialBatch { live });
        Ok(Some(key))
    }

    fn forget(&self, size: u64) {
        self.len.fetch_sub(1, Ordering::AcqRel);
        self.bytes.fetch_sub(size, Ordering::AcqRel);
    }
}

/// The outboxes of one state database, so that it can persist them before each flush and
/// every `every` in the background.
#[derive(Default)]
pub(super) struct OutboxRegistry {
    outboxes: Mutex<Vec<Weak<Inner>>>,
}

impl OutboxRegistry {
    pub(super) fn register(&self, outbox: &Outbox) {
        let mut outboxes = self.outboxes();
        outboxes.retain(|inner| inner.strong_count() > 0);
        outboxes.push(Arc::downgrade(&outbox.inner));
    }

    /// Writes every outbox's pending records to its tree.
    pub(super) fn persist_all(&self) -> Result<(), StateError> {
        let outboxes: Vec<Arc<Inner>> = self.outboxes().iter().filter_map(Weak::upgrade).collect();
        for inner in outboxes {
            inner.write_pending(&mut inner.queue())?;
        }
        Ok(())
    }

    fn outboxes(&self) -> MutexGuard<'_, Vec<Weak<Inner>>> {
        lock(&self.outboxes)
    }

    /// Persists the outboxes every `every` until the registry is dropped, so records pushed
    /// by events nobody syncs for (QoS 0, traps, timers) reach the disk within about as long
    /// as the database's own buffered writes.
    pub(super) fn persist_periodically(
        registry: Weak<Self>,
        every: Duration,
    ) -> std::io::Result<()> {
        std::thread::Builder::new()
            .name("fogd-outbox".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(every);
                    let Some(registry) = registry.upgrade() else {
                        return;
                    };
                    if let Err(error) = registry.persist_all() {
                        tracing::error!(%error, "cannot write pending outbox records");
                    }
                }
            })
            .map(drop)
    }
}

/// Locks a mutex, going on with its data if a holder panicked, so that one panic does not
/// fail every later push and delivery.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
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
            .map(|e| e.record.to_vec())
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
    fn reads_from_memory_and_from_the_tree_agree() {
        let db = StateDb::temporary(&StateConfig::default()).unwrap();
        let outbox = outbox(&db, OutboxLimits::default());
        let total = RECENT_RECORDS as u64 + 10;
        for index in 0..total {
            outbox.push(&index.to_be_bytes()).unwrap();
        }
        outbox.remove(total - 3).unwrap();
        outbox.remove(5).unwrap();
        let expected: Vec<u64> = (0..total).filter(|i| ![5, total - 3].contains(i)).collect();
        let mut read = Vec::new();
        let mut cursor = None;
        loop {
            let entries = outbox.read_after(cursor, 64).unwrap();
            let Some(last) = entries.last() else { break };
            cursor = Some(last.seq);
            read.extend(entries.iter().map(|entry| {
                assert_eq!(entry.record[..], entry.seq.to_be_bytes());
                entry.seq
            }));
        }
        assert_eq!(read, expected);
        assert!(
            outbox.queue().recent.read(0, 1).is_none(),
            "the first records left memory"
        );
        assert_eq!(
            outbox
                .queue()
                .recent
                .read(total - 4, 2)
                .unwrap()
                .iter()
                .map(|e| e.seq)
                .collect::<Vec<_>>(),
            [total - 4, total - 2]
        );
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
        // The oldest may also be in a batch already written.
        outbox.persist().unwrap();
        assert_eq!(outbox.push(b"4").unwrap().dropped_oldest, 1);
        assert_eq!(records(&outbox), [b"3", b"4"]);
        outbox.persist().unwrap();
        assert_eq!(outbox.push(b"5").unwrap().dropped_oldest, 1);
        assert_eq!(records(&outbox), [b"4", b"5"]);
        assert_eq!(outbox.len(), 2);

        let by_bytes = db
            .outbox(
                "bytes",
                OutboxLimits {
                    max_messages: 100,
                    max_bytes: 3 * batch::stored_size(b"aaaa"),
                    max_age: Millis(1000),
                },
            )
            .unwrap();
        for record in [b"aaaa", b"bbbb", b"cccc", b"dddd"] {
            by_bytes.push(record).unwrap();
        }
        assert_eq!(records(&by_bytes), [b"bbbb", b"cccc", b"dddd"]);
    }

    #[test]
    fn delivered_waits_for_the_records_pushed_before_the_call() {
        let db = StateDb::temporary(&StateConfig::default()).unwrap();
        let outbox = outbox(&db, OutboxLimits::default());
        outbox.set_publishing(true);
        assert!(matches!(outbox.delivered(), Delivered::Already));
        for record in [b"a", b"b", b"c"] {
            outbox.push(record).unwrap();
        }
        // Written or still in memory, in any order of removal.
        outbox.persist().unwrap();
        outbox.push(b"d").unwrap();
        let Delivered::When(mut gone) = outbox.delivered() else {
            panic!("expected a wait");
        };
        outbox.push(b"e").unwrap();
        for seq in [1, 3, 0] {
            outbox.remove(seq).unwrap();
            assert!(gone.try_recv().is_err(), "woken with record 2 left");
        }
        outbox.remove(2).unwrap();
        assert_eq!(gone.try_recv(), Ok(()));
        assert_eq!(records(&outbox), [b"e"]);

        // Dropping counts as leaving, too.
        let Delivered::When(mut gone) = outbox.delivered() else {
            panic!("expected a wait");
        };
        outbox.remove(4).unwrap();
        assert_eq!(gone.try_recv(), Ok(()));
        assert!(matches!(outbox.delivered(), Delivered::Already));
    }

    #[test]
    fn delivered_does_not_offer_a_wait_without_a_publisher_or_behind_a_backlog() {
        let db = StateDb::temporary(&StateConfig::default()).unwrap();
        let outbox = outbox(&db, OutboxLimits::default());
        outbox.push(b"a").unwrap();
        assert!(matches!(outbox.delivered(), Delivered::NotSoon));
        outbox.set_publishing(true);
        assert!(matches!(outbox.delivered(), Delivered::When(_)));
        for _ in 0..SOON_RECORDS {
            outbox.push(b"b").unwrap();
        }
        assert!(matches!(outbox.delivered(), Delivered::NotSoon));
    }

    #[test]
    fn the_oldest_record_is_known_after_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let config = StateConfig::default();
        {
            let db = StateDb::open(dir.path(), &config).unwrap();
            let outbox = outbox(&db, OutboxLimits::default());
            for record in [b"a", b"b", b"c"] {
                outbox.push(record).unwrap();
            }
            db.flush().unwrap();
            outbox.push(b"d").unwrap();
            db.flush().unwrap();
            outbox.remove(0).unwrap();
            db.flush().unwrap();
        }
        let db = StateDb::open(dir.path(), &config).unwrap();
        let outbox = outbox(&db, OutboxLimits::default());
        outbox.set_publishing(true);
        let Delivered::When(mut gone) = outbox.delivered() else {
            panic!("expected a wait");
        };
        // The batch of a, b and c came back whole; d is in a batch of its own.
        for seq in [0, 1, 2] {
            outbox.remove(seq).unwrap();
        }
        assert!(gone.try_recv().is_err());
        outbox.remove(3).unwrap();
        assert_eq!(gone.try_recv(), Ok(()));
    }

    fn batches_in_tree(outbox: &Outbox) -> usize {
        outbox.inner.tree.len()
    }

    #[test]
    fn delivered_batches_leave_the_tree_and_partly_delivered_ones_come_back_after_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        {
            let db = StateDb::open(dir.path(), &StateConfig::default()).unwrap();
            let outbox = outbox(&db, OutboxLimits::default());
            for batch in [0..5u64, 5..8] {
                for index in batch {
                    outbox.push(&index.to_be_bytes()).unwrap();
                }
                outbox.persist().unwrap();
            }
            assert_eq!(batches_in_tree(&outbox), 2);
            for seq in 0..5 {
                outbox.remove(seq).unwrap();
            }
            assert_eq!(batches_in_tree(&outbox), 1, "the delivered batch is gone");
            outbox.remove(5).unwrap();
            outbox.remove(5).unwrap();
            assert_eq!(outbox.len(), 2, "a second removal changes nothing");
            let left: Vec<u64> = outbox
                .read_after(None, 10)
                .unwrap()
                .iter()
                .map(|entry| entry.seq)
                .collect();
            assert_eq!(left, [6, 7]);
            db.flush().unwrap();
        }
        let db = StateDb::open(dir.path(), &StateConfig::default()).unwrap();
        let outbox = outbox(&db, OutboxLimits::default());
        // Removals within a batch are not written: at least once, so 5 is offered again.
        assert_eq!(
            records(&outbox),
            [5u64, 6, 7].map(|index| index.to_be_bytes().to_vec())
        );
        outbox.push(b"next").unwrap();
        assert_eq!(outbox.read_after(Some(7), 10).unwrap()[0].seq, 8);
    }

    #[test]
    fn pending_records_reach_the_tree_by_flush_background_writer_or_write_through() {
        let dir = tempfile::tempdir().unwrap();
        let db = StateDb::open(dir.path(), &StateConfig::default()).unwrap();
        let flushed = outbox(&db, OutboxLimits::default());
        flushed.push(b"a").unwrap();
        db.flush().unwrap();
        assert_eq!(batches_in_tree(&flushed), 1);
        drop((flushed, db));

        let quick = StateConfig {
            flush_every: Millis(10),
            ..StateConfig::default()
        };
        let db = StateDb::open(dir.path(), &quick).unwrap();
        let background = db.outbox("background", OutboxLimits::default()).unwrap();
        background.push(b"b").unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while batches_in_tree(&background) == 0 {
            assert!(
                std::time::Instant::now() < deadline,
                "the background writer never wrote the record"
            );
            std::thread::yield_now();
        }
        drop((background, db));

        let each_write = StateConfig {
            flush_every: Millis(0),
            ..StateConfig::default()
        };
        let db = StateDb::open(dir.path(), &each_write).unwrap();
        let through = db.outbox("through", OutboxLimits::default()).unwrap();
        through.push(b"c").unwrap();
        through.push(b"d").unwrap();
        assert_eq!(batches_in_tree(&through), 2);
    }

    #[test]
    fn records_written_one_per_key_are_read_and_removed() {
        let db = StateDb::temporary(&StateConfig::default()).unwrap();
        let tree = db.db.open_tree("outbox/local").unwrap();
        for (seq, payload) in [(3u64, b"old-3"), (4, b"old-4")] {
            let mut value = 1_764_000_000_000u64.to_be_bytes().to_vec();
            value.extend_from_slice(payload);
            tree.insert(seq.to_be_bytes(), value).unwrap();
        }
        let outbox = outbox(&db, OutboxLimits::default());
        assert_eq!(outbox.len(), 2);
        outbox.push(b"new").unwrap();
        assert_eq!(records(&outbox), [&b"old-3"[..], b"old-4", b"new"]);
        assert_eq!(outbox.read_after(None, 10).unwrap()[2].seq, 5);
        outbox.remove(3).unwrap();
        assert_eq!(batches_in_tree(&outbox), 1);
        assert_eq!(records(&outbox), [&b"old-4"[..], b"new"]);
    }

    #[test]
    fn damaged_batches_are_removed_when_opening() {
        let db = StateDb::temporary(&StateConfig::default()).unwrap();
        let tree = db.db.open_tree("outbox/local").unwrap();
        tree.insert(1u64.to_be_bytes(), &[0xB1, 0, 0, 0, 9][..])
            .unwrap();
        // A batch of no records is no batch: nothing would ever remove it.
        tree.insert(2u64.to_be_bytes(), &[0xB1, 0, 0, 0, 0][..])
            .unwrap();
        let outbox = outbox(&db, OutboxLimits::default());
        assert!(outbox.is_empty());
        assert_eq!(batches_in_tree(&outbox), 0);
        outbox.push(b"x").unwrap();
        assert_eq!(records(&outbox), [b"x"]);
    }
}
