//! One function's key/value namespace. Each stored value is prefixed with its expiry time
//! (milliseconds since the epoch, big-endian, 0 for none) so TTLs survive restarts and an
//! expired value is never returned even before the sweeper removes it.

mod txn;
mod usage;

use std::sync::Arc;

use thiserror::Error;

use super::{KvLimits, KvWrites};
use crate::event::now_millis;

pub use txn::KvTxn;
pub use usage::{KvQuota, KvUsage, QuotaPart};

const HEADER: usize = 8;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum KvError {
    #[error("key is {actual} bytes; the limit is {limit}")]
    KeyTooLarge { actual: usize, limit: u32 },
    #[error("value is {actual} bytes; the limit is {limit}")]
    ValueTooLarge { actual: usize, limit: u32 },
    #[error("value is not a decimal 64-bit counter, or the sum overflowed")]
    NotACounter,
    #[error("the function's kv quota of {limit} {part} would be exceeded")]
    QuotaExceeded { part: QuotaPart, limit: u64 },
    #[error("this event's kv writes would exceed {limit} bytes")]
    EventWriteLimit { limit: u64 },
    #[error("an entry the event read was changed by another event before it committed")]
    Conflict,
    #[error("state database: {0}")]
    Storage(String),
}

impl From<sled::Error> for KvError {
    fn from(error: sled::Error) -> Self {
        KvError::Storage(error.to_string())
    }
}

/// A decoded stored value.
struct Stored<'a> {
    expires_at: u64,
    value: &'a [u8],
}

fn decode(raw: &[u8]) -> Option<Stored<'_>> {
    let (header, value) = raw.split_first_chunk::<HEADER>()?;
    Some(Stored {
        expires_at: u64::from_be_bytes(*header),
        value,
    })
}

fn encode(expires_at: u64, value: &[u8]) -> Vec<u8> {
    let mut raw = Vec::with_capacity(HEADER + value.len());
    raw.extend_from_slice(&expires_at.to_be_bytes());
    raw.extend_from_slice(value);
    raw
}

fn is_live(stored: &Stored<'_>, now: u64) -> bool {
    stored.expires_at == 0 || stored.expires_at > now
}

/// The live value in a raw stored entry, if any.
fn live_value(raw: &[u8], now: u64) -> Option<&[u8]> {
    decode(raw).filter(|s| is_live(s, now)).map(|s| s.value)
}

/// One function's namespace. Operations on the store itself commit at once; an event's
/// operations go through a [`KvTxn`] and commit together.
#[derive(Clone)]
pub struct KvStore {
    tree: sled::Tree,
    limits: KvLimits,
    writes: Arc<KvWrites>,
    usage: Arc<KvUsage>,
    quota: KvQuota,
}

impl KvStore {
    pub(super) fn new(
        tree: sled::Tree,
        limits: KvLimits,
        writes: Arc<KvWrites>,
        usage: Arc<KvUsage>,
    ) -> Self {
        Self {
            tree,
            limits,
            writes,
            usage,
            quota: KvQuota::UNLIMITED,
        }
    }

    /// The same namespace, held to `quota`.
    pub fn with_quota(mut self, quota: KvQuota) -> Self {
        self.quota = quota;
        self
    }

    /// What the namespace holds now.
    pub fn usage(&self) -> &KvUsage {
        &self.usage
    }

    /// Holds off every other commit to the namespace until the guard is dropped. A
    /// transaction run under it must say so ([`KvTxn::set_exclusive`]).
    pub fn exclusive(&self) -> std::sync::RwLockWriteGuard<'_, ()> {
        self.usage
            .commits
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn check_key(&self, key: &str) -> Result<(), KvError> {
        if key.len() > self.limits.max_key_bytes as usize {
            return Err(KvError::KeyTooLarge {
                actual: key.len(),
                limit: self.limits.max_key_bytes,
            });
        }
        Ok(())
    }

    fn check_value(&self, value: &[u8]) -> Result<(), KvError> {
        if value.len() > self.limits.max_value_bytes as usize {
            return Err(KvError::ValueTooLarge {
                actual: value.len(),
                limit: self.limits.max_value_bytes,
            });
        }
        Ok(())
    }

    fn written(&self) -> Result<(), KvError> {
        if self.limits.flush_each_write {
            self.tree.flush()?;
        } else {
            self.writes.made();
        }
        Ok(())
    }

    /// Runs `operation` in a transaction of its own and commits it, again if another
    /// writer changed what it read.
    fn at_once<T>(
        &self,
        operation: impl Fn(&mut KvTxn, &Self) -> Result<T, KvError>,
    ) -> Result<T, KvError> {
        loop {
            let mut txn = KvTxn::default();
            let result = operation(&mut txn, self)?;
            match txn.commit(self) {
                Err(KvError::Conflict) => continue,
                Err(error) => return Err(error),
                Ok(()) => return Ok(result),
            }
        }
    }

    pub fn get(&self, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        KvTxn::default().get(self, key)
    }

    pub fn set(&self, key: &str, value: &[u8], ttl_ms: Option<u64>) -> Result<(), KvError> {
        self.at_once(|txn, store| txn.set(store, key, value, ttl_ms))
    }

    pub fn delete(&self, key: &str) -> Result<bool, KvError> {
        self.at_once(|txn, store| txn.delete(store, key))
    }

    pub fn incr(&self, key: &str, delta: i64) -> Result<i64, KvError> {
        self.at_once(|txn, store| txn.incr(store, key, delta))
    }

    pub fn compare_and_swap(
        &self,
        key: &str,
        expected: Option<&[u8]>,
        new: Option<&[u8]>,
    ) -> Result<bool, KvError> {
        self.at_once(|txn, store| txn.compare_and_swap(store, key, expected, new))
    }

    pub fn scan(&self, prefix: &str, limit: u32) -> Result<Vec<(String, Vec<u8>)>, KvError> {
        KvTxn::default().scan(self, prefix, limit)
    }

    /// Removes expired entries; an entry rewritten meanwhile is left alone.
    pub(super) fn sweep_expired(&self) -> Result<usize, sled::Error> {
        let now = now_millis();
        let mut removed = 0;
        for item in self.tree.iter() {
            let (key, raw) = item?;
            let expired = decode(&raw).is_none_or(|stored| !is_live(&stored, now));
            if expired
                && self
                    .tree
                    .compare_and_swap(&key, Some(&raw), None::<&[u8]>)?
                    .is_ok()
            {
                let key = String::from_utf8_lossy(&key);
                self.usage
                    .apply_shrink(usage::UsageDelta::replacing(&key, Some(&raw), None));
                removed += 1;
            }
        }
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::StateConfig;
    use crate::state::StateDb;

    fn store() -> KvStore {
        let config = StateConfig {
            max_key_bytes: 16,
            max_value_bytes: 32,
            ..StateConfig::default()
        };
        StateDb::temporary(&config).unwrap().kv("test").unwrap()
    }

    #[test]
    fn writes_wait_for_a_flush_reads_do_not() {
        let db = StateDb::temporary(&StateConfig::default()).unwrap();
        let kv = db.kv("test").unwrap();
        assert!(db.kv_durable());
        kv.set("a", b"1", None).unwrap();
        assert!(!db.kv_durable());
        db.flush().unwrap();
        assert!(db.kv_durable());
        assert_eq!(kv.get("a").unwrap().as_deref(), Some(&b"1"[..]));
        assert!(db.kv_durable());
        assert_eq!(kv.incr("n", 1).unwrap(), 1);
        assert!(!db.kv_durable());
    }

    #[test]
    fn set_get_delete() {
        let kv = store();
        assert_eq!(kv.get("a").unwrap(), None);
        kv.set("a", b"1", None).unwrap();
        assert_eq!(kv.get("a").unwrap().as_deref(), Some(&b"1"[..]));
        assert!(kv.delete("a").unwrap());
        assert!(!kv.delete("a").unwrap());
        assert_eq!(kv.get("a").unwrap(), None);
    }

    #[test]
    fn expired_keys_are_never_returned_and_get_swept() {
        let kv = store();
        let raw = encode(now_millis() - 1, b"old");
        kv.tree.insert("gone", raw).unwrap();
        kv.set("kept", b"v", Some(60_000)).unwrap();
        assert_eq!(kv.get("gone").unwrap(), None);
        assert!(!kv.delete("gone").unwrap());
        kv.tree
            .insert("gone", encode(now_millis() - 1, b"old"))
            .unwrap();
        let keys: Vec<_> = kv
            .scan("", 10)
            .unwrap()
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        assert_eq!(keys, ["kept"]);
        assert_eq!(kv.sweep_expired().unwrap(), 1);
        assert_eq!(kv.tree.len(), 1);
    }

    #[test]
    fn incr_counts_and_rejects_non_counters() {
        let kv = store();
        assert_eq!(kv.incr("n", 5).unwrap(), 5);
        assert_eq!(kv.incr("n", -7).unwrap(), -2);
        assert_eq!(kv.get("n").unwrap().as_deref(), Some(&b"-2"[..]));
        kv.set("text", b"abc", None).unwrap();
        assert_eq!(kv.incr("text", 1), Err(KvError::NotACounter));
        kv.set("max", i64::MAX.to_string().as_bytes(), None)
            .unwrap();
        assert_eq!(kv.incr("max", 1), Err(KvError::NotACounter));
    }

    #[test]
    fn compare_and_swap_checks_the_live_value() {
        let kv = store();
        assert!(kv.compare_and_swap("k", None, Some(b"1")).unwrap());
        assert!(!kv.compare_and_swap("k", None, Some(b"2")).unwrap());
        assert!(!kv.compare_and_swap("k", Some(b"9"), Some(b"2")).unwrap());
        assert!(kv.compare_and_swap("k", Some(b"1"), Some(b"2")).unwrap());
        assert!(kv.compare_and_swap("k", Some(b"2"), None).unwrap());
        assert_eq!(kv.get("k").unwrap(), None);
    }

    #[test]
    fn scan_is_prefix_ordered_and_limited() {
        let kv = store();
        for key in ["b/2", "a/1", "b/1", "b/3"] {
            kv.set(key, key.as_bytes(), None).unwrap();
        }
        let keys: Vec<_> = kv
            .scan("b/", 2)
            .unwrap()
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        assert_eq!(keys, ["b/1", "b/2"]);
    }

    #[test]
    fn size_limits_are_enforced() {
        let kv = store();
        assert_eq!(
            kv.set(&"k".repeat(17), b"", None),
            Err(KvError::KeyTooLarge {
                actual: 17,
                limit: 16
            })
        );
        assert_eq!(
            kv.set("k", &[0; 33], None),
            Err(KvError::ValueTooLarge {
                actual: 33,
                limit: 32
            })
        );
        assert!(kv.set("k", &[0; 32], None).is_ok());
    }
}
