//! What one function keeps in kv, measured against its quota. The figures are kept in
//! memory (measured once when the namespace is opened) and changed only by committed writes
//! and the expiry sweep, so a quota check costs two atomic loads.

use std::sync::RwLock;
use std::sync::atomic::{AtomicU64, Ordering};

use super::HEADER;

/// A function's kv limits: what it may keep, and what one event may write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KvQuota {
    /// Key and value bytes kept.
    pub bytes: u64,
    /// Keys kept.
    pub keys: u64,
    /// Key and value bytes one event may write.
    pub event_write_bytes: u64,
}

impl KvQuota {
    pub const UNLIMITED: Self = Self {
        bytes: u64::MAX,
        keys: u64::MAX,
        event_write_bytes: u64::MAX,
    };
}

/// Which part of the quota a write would exceed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuotaPart {
    Bytes,
    Keys,
}

impl std::fmt::Display for QuotaPart {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            QuotaPart::Bytes => "bytes",
            QuotaPart::Keys => "keys",
        })
    }
}

/// Key and value bytes, and keys, a namespace holds; and the lock its commits share.
#[derive(Debug, Default)]
pub struct KvUsage {
    bytes: AtomicU64,
    keys: AtomicU64,
    /// Commits take it shared; an event that keeps conflicting runs holding it alone, so
    /// that nothing can change under it and it finishes.
    pub(super) commits: RwLock<()>,
}

/// A change of usage: what replacing some entries adds (negative: frees).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct UsageDelta {
    pub bytes: i64,
    pub keys: i64,
}

/// The bytes an entry counts against the quota: its key and its value, not fogd's header.
pub(super) fn entry_size(key: &str, raw: Option<&[u8]>) -> i64 {
    raw.map_or(0, |raw| {
        (key.len() + raw.len().saturating_sub(HEADER)) as i64
    })
}

impl UsageDelta {
    /// What replacing `old` by `new` under `key` changes (raw stored values; `None`: absent).
    pub fn replacing(key: &str, old: Option<&[u8]>, new: Option<&[u8]>) -> Self {
        Self {
            bytes: entry_size(key, new) - entry_size(key, old),
            keys: i64::from(new.is_some()) - i64::from(old.is_some()),
        }
    }

    pub fn add(&mut self, other: Self) {
        self.bytes += other.bytes;
        self.keys += other.keys;
    }
}

impl KvUsage {
    /// Measures what `tree` holds.
    pub(in crate::state) fn measure(tree: &sled::Tree) -> Result<Self, sled::Error> {
        let usage = Self::default();
        for item in tree.iter() {
            let (key, raw) = item?;
            usage.bytes.fetch_add(
                (key.len() + raw.len().saturating_sub(HEADER)) as u64,
                Ordering::Relaxed,
            );
            usage.keys.fetch_add(1, Ordering::Relaxed);
        }
        Ok(usage)
    }

    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Acquire)
    }

    pub fn keys(&self) -> u64 {
        self.keys.load(Ordering::Acquire)
    }

    /// Whether `pending` more would still fit `quota` (a check before committing).
    pub(super) fn fits(&self, pending: UsageDelta, quota: &KvQuota) -> Result<(), QuotaPart> {
        if pending.bytes > 0 && self.bytes().saturating_add(pending.bytes as u64) > quota.bytes {
            return Err(QuotaPart::Bytes);
        }
        if pending.keys > 0 && self.keys().saturating_add(pending.keys as u64) > quota.keys {
            return Err(QuotaPart::Keys);
        }
        Ok(())
    }

    /// Takes the growth in `delta` out of the quota, all or nothing, so that concurrent
    /// commits cannot together pass it. Shrinking parts are applied by [`Self::apply`] after
    /// the write.
    pub(super) fn reserve(&self, delta: UsageDelta, quota: &KvQuota) -> Result<(), QuotaPart> {
        if delta.bytes > 0 {
            reserve_one(&self.bytes, delta.bytes as u64, quota.bytes)
                .map_err(|()| QuotaPart::Bytes)?;
        }
        if delta.keys > 0 && reserve_one(&self.keys, delta.keys as u64, quota.keys).is_err() {
            if delta.bytes > 0 {
                self.bytes.fetch_sub(delta.bytes as u64, Ordering::AcqRel);
            }
            return Err(QuotaPart::Keys);
        }
        Ok(())
    }

    /// Gives back what [`Self::reserve`] took, for a write that did not happen.
    pub(super) fn unreserve(&self, delta: UsageDelta) {
        if delta.bytes > 0 {
            self.bytes.fetch_sub(delta.bytes as u64, Ordering::AcqRel);
        }
        if delta.keys > 0 {
            self.keys.fetch_sub(delta.keys as u64, Ordering::AcqRel);
        }
    }

    /// Applies the shrinking parts of a committed `delta` (the growing ones were reserved).
    pub(super) fn apply_shrink(&self, delta: UsageDelta) {
        if delta.bytes < 0 {
            saturating_sub(&self.bytes, delta.bytes.unsigned_abs());
        }
        if delta.keys < 0 {
            saturating_sub(&self.keys, delta.keys.unsigned_abs());
        }
    }
}

fn reserve_one(counter: &AtomicU64, amount: u64, limit: u64) -> Result<(), ()> {
    counter
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |current| {
            let next = current.saturating_add(amount);
            (next <= limit).then_some(next)
        })
        .map(|_| ())
        .map_err(|_| ())
}

fn saturating_sub(counter: &AtomicU64, amount: u64) {
    let _ = counter.fetch_update(Ordering::AcqRel, Ordering::Acquire, |current| {
        Some(current.saturating_sub(amount))
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quota(bytes: u64, keys: u64) -> KvQuota {
        KvQuota {
            bytes,
            keys,
            event_write_bytes: u64::MAX,
        }
    }

    #[test]
    fn a_reservation_is_all_or_nothing() {
        let usage = KvUsage::default();
        let quota = quota(10, 1);
        let grow = UsageDelta { bytes: 6, keys: 1 };
        assert_eq!(usage.reserve(grow, &quota), Ok(()));
        assert_eq!((usage.bytes(), usage.keys()), (6, 1));
        assert_eq!(
            usage.reserve(UsageDelta { bytes: 2, keys: 1 }, &quota),
            Err(QuotaPart::Keys)
        );
        assert_eq!(
            (usage.bytes(), usage.keys()),
            (6, 1),
            "the bytes were given back"
        );
        assert_eq!(
            usage.reserve(UsageDelta { bytes: 5, keys: 0 }, &quota),
            Err(QuotaPart::Bytes)
        );
        usage.apply_shrink(UsageDelta {
            bytes: -6,
            keys: -1,
        });
        assert_eq!((usage.bytes(), usage.keys()), (0, 0));
    }

    #[test]
    fn replacing_counts_keys_and_values_not_the_header() {
        let raw = |value: &[u8]| [&[0u8; HEADER][..], value].concat();
        let delta = UsageDelta::replacing("key", None, Some(&raw(b"12345")));
        assert_eq!(delta, UsageDelta { bytes: 8, keys: 1 });
        let delta = UsageDelta::replacing("key", Some(&raw(b"12345")), Some(&raw(b"1")));
        assert_eq!(delta, UsageDelta { bytes: -4, keys: 0 });
        let delta = UsageDelta::replacing("key", Some(&raw(b"1")), None);
        assert_eq!(
            delta,
            UsageDelta {
                bytes: -4,
                keys: -1
            }
        );
    }
}
