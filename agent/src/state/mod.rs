//! fogd's state database (sled): one tree per function for `kv`, and the trees later
//! parts of the agent add (outbox, deployments, artifacts).
//!
//! Durability: sled buffers writes and flushes them every `state.flush_every`; a crash loses
//! at most that window of kv writes. `flush_every = "0ms"` flushes after every write.

mod kv;

use std::path::Path;

use thiserror::Error;

use crate::config::StateConfig;

pub use kv::{KvError, KvStore};

#[derive(Debug, Error)]
pub enum StateError {
    #[error("cannot open the state database in {path}: {source}")]
    Open { path: String, source: sled::Error },
    #[error("state database: {0}")]
    Sled(#[from] sled::Error),
}

/// The open state database.
#[derive(Clone)]
pub struct StateDb {
    db: sled::Db,
    limits: KvLimits,
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

impl StateDb {
    pub fn open(dir: &Path, config: &StateConfig) -> Result<Self, StateError> {
        let flush_each_write = config.flush_every.0 == 0;
        let db = sled::Config::new()
            .path(dir)
            .cache_capacity(u64::from(config.cache_mib) * 1024 * 1024)
            .flush_every_ms((!flush_each_write).then_some(config.flush_every.0))
            .open()
            .map_err(|source| StateError::Open {
                path: dir.display().to_string(),
                source,
            })?;
        Ok(Self {
            db,
            limits: KvLimits {
                max_key_bytes: config.max_key_bytes,
                max_value_bytes: config.max_value_bytes,
                flush_each_write,
            },
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
        })
    }

    /// The kv namespace of one function.
    pub fn kv(&self, function: &str) -> Result<KvStore, StateError> {
        let tree = self.db.open_tree(format!("{KV_TREE_PREFIX}{function}"))?;
        Ok(KvStore::new(tree, self.limits))
    }

    /// Removes expired keys from every function's namespace; returns how many.
    pub fn sweep_expired(&self) -> Result<usize, StateError> {
        let mut removed = 0;
        for name in self.db.tree_names() {
            if name.starts_with(KV_TREE_PREFIX.as_bytes()) {
                let tree = self.db.open_tree(name)?;
                removed += KvStore::new(tree, self.limits).sweep_expired()?;
            }
        }
        Ok(removed)
    }

    /// Writes everything buffered to disk.
    pub fn flush(&self) -> Result<(), StateError> {
        self.db.flush()?;
        Ok(())
    }
}
