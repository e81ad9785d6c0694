//! fogd's state database (sled): one tree per function for `kv`, and the trees later
//! parts of the agent add (outbox, deployments, artifacts).
//!
//! Durability: sled buffers writes and flushes them every `state.flush_every`; a crash loses
//! at most that window of kv writes. `flush_every = "0ms"` flushes after every write. Outbox
//! records are written in batches before each flush and every `state.flush_every`;
//! [`StateDb::sync`] returns once the records pushed before it are on disk.

mod kv;
mod outbox;

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use thiserror::Error;
use tokio::sync::watch;

use crate::config::{OutboxLimits, StateConfig};

pub use kv::{KvError, KvQuota, KvStore, KvTxn, KvUsage, QuotaPart};
use outbox::OutboxRegistry;
use outbox::OutboxSignal;
pub use outbox::{Delivered, FairOutbox, Lane, Outbox, OutboxEntry, PushReport};

#[derive(Debug, Error)]
pub enum StateError {
    #[error("cannot open the state database in {path}: {source}")]
    Open { path: String, source: sled::Error },
    #[error("state database: {0}")]
    Sled(#[from] sled::Error),
    #[error("flushing the state database failed: {0}")]
    Flush(String),
    #[error("cannot start the outbox writer thread: {0}")]
    OutboxWriter(std::io::Error),
}

/// The open state database.
#[derive(Clone)]
pub struct StateDb {
    db: sled::Db,
    limits: KvLimits,
    durability: Arc<GroupFlush>,
    outboxes: Arc<OutboxRegistry>,
    kv_writes: Arc<KvWrites>,
    /// What each function's namespace holds, measured when first opened, shared by every
    /// handle on it.
    kv_usage: Arc<Mutex<HashMap<String, Arc<KvUsage>>>>,
}

/// kv writes made, and how many of them a flush has put on disk.
#[derive(Default)]
struct KvWrites {
    made: AtomicU64,
    flushed: AtomicU64,
}

impl KvWrites {
    fn made(&self) {
        self.made.fetch_add(1, Ordering::AcqRel);
    }
}

/// Group commit: callers of [`StateDb::sync`] that arrive while a flush runs share the next one.
struct GroupFlush {
    requested: AtomicU64,
    flushing: AtomicBool,
    done: watch::Sender<u64>,
}

impl Default for GroupFlush {
    fn default() -> Self {
        Self {
            requested: AtomicU64::new(0),
            flushing: AtomicBool::new(false),
            done: watch::Sender::new(0),
        }
    }
}

/// Size limits applied to every kv tree.
#[derive(Debug, Clone, Copy)]
pub struct KvLimits {
    pub max_key_bytes: u32,
    pub max_value_bytes: u32,
    /// Flush after every write instead of on the background interval.
    pub flush_each_write: bool,
}

const KV_TREE_PREFIX: &str = "kv/";

/// How long `open` waits for a just-closed database's lock: attempts × pause (2 s).
const LOCK_ATTEMPTS: u32 = 100;
const LOCK_RETRY: std::time::Duration = std::time::Duration::from_millis(20);

impl StateDb {
    /// Opens (or creates) the database in `dir`.
    pub fn open(dir: &Path, config: &StateConfig) -> Result<Self, StateError> {
        let flush_each_write = config.flush_every.0 == 0;
        let sled_config = sled::Config::new()
            .path(dir)
            .cache_capacity(u64::from(config.cache_mib) * 1024 * 1024)
            .flush_every_ms((!flush_each_write).then_some(config.flush_every.0));
        // sled's background threads release the file lock of a database just closed (the
        // previous agent's, on reload) a moment after its last handle is dropped: wait for
        // that, briefly, rather than fail.
        let mut attempts = 0;
        let db = loop {
            match sled_config.open() {
                Err(sled::Error::Io(error))
                    if error.kind() == std::io::ErrorKind::Other
                        && error.to_string().contains("could not acquire lock")
                        && attempts < LOCK_ATTEMPTS =>
                {
                    attempts += 1;
                    std::thread::sleep(LOCK_RETRY);
                }
                result => {
                    break result.map_err(|source| StateError::Open {
                        path: dir.display().to_string(),
                        source,
                    })?;
                }
            }
        };
        let outboxes = Arc::new(OutboxRegistry::default());
        if !flush_each_write {
            OutboxRegistry::persist_periodically(
                Arc::downgrade(&outboxes),
                config.flush_every.as_duration(),
            )
            .map_err(StateError::OutboxWriter)?;
        }
        Ok(Self {
            db,
            limits: KvLimits {
                max_key_bytes: config.max_key_bytes,
                max_value_bytes: config.max_value_bytes,
                flush_each_write,
            },
            durability: Arc::default(),
            outboxes,
            kv_writes: Arc::default(),
            kv_usage: Arc::default(),
        })
    }

    /// Opens a temporary database that is removed when dropped (benchmarks, `fogd invoke`
    /// without a config).
    pub fn temporary(config: &StateConfig) -> Result<Self, StateError> {
        let db = sled::Config::new()
            .temporary(true)
            .cache_capacity(u64::from(config.cache_mib) * 1024 * 1024)
            .open()?;
        Ok(Self {
            db,
            limits: KvLimits {
                max_key_bytes: config.max_key_bytes,
                max_value_bytes: config.max_value_bytes,
                flush_each_write: false,
            },
            durability: Arc::default(),
            outboxes: Arc::default(),
            kv_writes: Arc::default(),
            kv_usage: Arc::default(),
        })
    }

    /// The kv namespace of one function.
    pub fn kv(&self, function: &str) -> Result<KvStore, StateError> {
        let tree = self.db.open_tree(format!("{KV_TREE_PREFIX}{function}"))?;
        let usage = {
            let mut known = self.kv_usage.lock().unwrap_or_else(PoisonError::into_inner);
            match known.get(function) {
                Some(usage) => usage.clone(),
                None => {
                    let usage = Arc::new(KvUsage::measure(&tree)?);
                    known.insert(function.to_owned(), usage.clone());
                    usage
                }
            }
        };
        Ok(KvStore::new(
            tree,
            self.limits,
            self.kv_writes.clone(),
            usage,
        ))
    }

    /// Removes expired keys from every function's namespace; returns how many.
    pub fn sweep_expired(&self) -> Result<usize, StateError> {
        let mut removed = 0;
        for name in self.db.tree_names() {
            if let Some(function) = name.strip_prefix(KV_TREE_PREFIX.as_bytes()) {
                removed += self
                    .kv(&String::from_utf8_lossy(function))?
                    .sweep_expired()?;
            }
        }
        Ok(removed)
    }

    /// The outbox of one broker connection.
    pub fn outbox(&self, broker: &str, limits: OutboxLimits) -> Result<Outbox, StateError> {
        self.outbox_in(&format!("outbox/{broker}"), limits, Arc::default())
    }

    /// The outbound queues of one broker connection: one per function that publishes to it,
    /// drained in turn, so that no function's messages wait behind another's.
    pub fn fair_outbox(
        &self,
        broker: &str,
        limits: OutboxLimits,
    ) -> Result<FairOutbox, StateError> {
        FairOutbox::open(self.clone(), broker, limits)
    }

    /// The outbox kept in the tree `name`, waking and flagged through `signal`.
    fn outbox_in(
        &self,
        name: &str,
        limits: OutboxLimits,
        signal: Arc<OutboxSignal>,
    ) -> Result<Outbox, StateError> {
        // With a flush after every write, every outbox record is written as it is pushed.
        let outbox = Outbox::open(
            self.db.open_tree(name)?,
            limits,
            self.limits.flush_each_write,
            signal,
        )?;
        self.outboxes.register(&outbox);
        Ok(outbox)
    }

    /// Names of the trees starting with `prefix`.
    fn tree_names_under(&self, prefix: &str) -> Vec<String> {
        self.db
            .tree_names()
            .into_iter()
            .filter_map(|name| {
                name.strip_prefix(prefix.as_bytes())
                    .map(|rest| String::from_utf8_lossy(rest).into_owned())
            })
            .collect()
    }

    /// Writes everything buffered, outbox records included, to disk.
    pub fn flush(&self) -> Result<(), StateError> {
        let kv_writes = self.kv_writes.made.load(Ordering::Acquire);
        self.outboxes.persist_all()?;
        self.db.flush()?;
        self.kv_writes
            .flushed
            .fetch_max(kv_writes, Ordering::AcqRel);
        Ok(())
    }

    /// Whether every kv write made so far is on disk (always, with a flush after each write).
    pub fn kv_durable(&self) -> bool {
        self.limits.flush_each_write
            || self.kv_writes.flushed.load(Ordering::Acquire)
                >= self.kv_writes.made.load(Ordering::Acquire)
    }

    /// Returns once every write made before the call is on disk. Concurrent callers share
    /// flushes (group commit), so many acknowledgements cost one fsync.
    pub async fn sync(&self) -> Result<(), StateError> {
        let group = &*self.durability;
        let ticket = group.requested.fetch_add(1, Ordering::AcqRel) + 1;
        let mut done = group.done.subscribe();
        loop {
            if *done.borrow_and_update() >= ticket {
                return Ok(());
            }
            if group
                .flushing
                .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                let target = group.requested.load(Ordering::Acquire);
                let db = self.clone();
                let flushed = tokio::task::spawn_blocking(move || db.flush()).await;
                // Clear the flag before announcing, so a waiter woken by the announcement can
                // lead the next flush.
                group.flushing.store(false, Ordering::Release);
                match flushed {
                    Ok(Ok(())) => group.done.send_modify(|done| *done = (*done).max(target)),
                    Ok(Err(error)) => {
                        group.done.send_modify(|_| {});
                        return Err(error);
                    }
                    Err(join) => {
                        group.done.send_modify(|_| {});
                        return Err(StateError::Flush(join.to_string()));
                    }
                }
                continue;
            }
            if done.changed().await.is_err() {
                return Err(StateError::Flush("state database closed".into()));
            }
        }
    }
}
