//! One function's key/value namespace. Each stored value is prefixed with its expiry time
//! (milliseconds since the epoch, big-endian, 0 for none) so TTLs survive restarts and an
//! expired value is never returned even before the sweeper removes it.

use thiserror::Error;

use std::sync::Arc;

use super::{KvLimits, KvWrites};
use crate::event::now_millis;

const HEADER: usize = 8;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum KvError {
    #[error("key is {actual} bytes; the limit is {limit}")]
    KeyTooLarge { actual: usize, limit: u32 },
    #[error("value is {actual} bytes; the limit is {limit}")]
    ValueTooLarge { actual: usize, limit: u32 },
    #[error("value is not a decimal 64-bit counter, or the sum overflowed")]
    NotACounter,
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

#[derive(Clone)]
pub struct KvStore {
    tree: sled::Tree,
    limits: KvLimits,
    writes: Arc<KvWrites>,
}

impl KvStore {
    pub(super) fn new(tree: sled::Tree, limits: KvLimits, writes: Arc<KvWrites>) -> Self {
        Self {
            tree,
            limits,
            writes,
        }
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

    pub fn get(&self, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        self.check_key(key)?;
        let now = now_millis();
        Ok(self
            .tree
            .get(key)?
            .and_then(|raw| live_value(&raw, now).map(<[u8]>::to_vec)))
    }

    pub fn set(&self, key: &str, value: &[u8], ttl_ms: Option<u64>) -> Result<(), KvError> {
        self.check_key(key)?;
        self.check_value(value)?;
        let expires_at = ttl_ms.map_or(0, |ttl| now_millis().saturating_add(ttl.max(1)));
        self.tree.insert(key, encode(expires_at, value))?;
        self.written()
    }

    pub fn delete(&self, key: &str) -> Result<bool, KvError> {
        self.check_key(key)?;
        let now = now_millis();
        let removed = self.tree.remove(key)?;
        self.written()?;
        Ok(removed.is_some_and(|raw| live_value(&raw, now).is_some()))
    }

    pub fn incr(&self, key: &str, delta: i64) -> Result<i64, KvError> {
        self.check_key(key)?;
        loop {
            let now = now_millis();
            let current = self.tree.get(key)?;
            let (expires_at, value) = match current.as_deref().and_then(decode) {
                Some(stored) if is_live(&stored, now) => {
                    let text =
                        std::str::from_utf8(stored.value).map_err(|_| KvError::NotACounter)?;
                    let value: i64 = text.parse().map_err(|_| KvError::NotACounter)?;
                    (stored.expires_at, value)
                }
                _ => (0, 0),
            };
            let next = value.checked_add(delta).ok_or(KvError::NotACounter)?;
            let raw = encode(expires_at, next.to_string().as_bytes());
            if self.tree.compare_and_swap(key, current, Some(raw))?.is_ok() {
                self.written()?;
                return Ok(next);
            }
        }
    }

    pub fn compare_and_swap(
        &self,
        key: &str,
        expected: Option<&[u8]>,
        new: Option<&[u8]>,
    ) -> Result<bool, KvError> {
        self.check_key(key)?;
        if let Some(new) = new {
            self.check_value(new)?;
        }
        loop {
            let now = now_millis();
            let current = self.tree.get(key)?;
            let live = current.as_deref().and_then(|raw| live_value(raw, now));
            if live != expected {
                return Ok(false);
            }
            let replacement = new.map(|value| encode(0, value));
            if self
                .tree
                .compare_and_swap(key, current, replacement)?
                .is_ok()
            {
                self.written()?;
                return Ok(true);
            }
        }
    }

    pub fn scan(&self, prefix: &str, limit: u32) -> Result<Vec<(String, Vec<u8>)>, KvError> {
        self.check_key(prefix)?;
        let now = now_millis();
        let mut entries = Vec::new();
        for item in self.tree.scan_prefix(prefix) {
            if entries.len() >= limit as usize {
                break;
            }
            let (key, raw) = item?;
            if let Some(value) = live_value(&raw, now) {
                // Keys only enter through `&str`, so they are UTF-8.
                let key = String::from_utf8_lossy(&key).into_owned();
                entries.push((key, value.to_vec()));
            }
        }
        Ok(entries)
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
                    .compare_and_swap(&key, Some(raw), None::<&[u8]>)?
                    .is_ok()
            {
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
