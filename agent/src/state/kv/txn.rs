//! One event's kv operations as a transaction: writes wait in memory (reads see them) and
//! reach the tree together at [`KvTxn::commit`], or never, if the event fails. Commit checks
//! that every entry the event read is still as it was read (optimistic concurrency); if one
//! changed, nothing is written and the caller runs the event again.

use std::collections::{BTreeMap, HashMap};

use sled::IVec;
use sled::transaction::{ConflictableTransactionError, TransactionError};

use super::usage::{KvQuota, QuotaPart, UsageDelta};
use super::{KvError, KvStore, decode, encode, is_live, live_value};
use crate::event::now_millis;

/// The pending operations of one event on one function's namespace.
#[derive(Default)]
pub struct KvTxn {
    /// Each entry read from the tree, as first read: what commit checks is unchanged.
    reads: HashMap<String, Option<IVec>>,
    /// Raw values to store (`None` removes the key), in key order.
    writes: BTreeMap<String, Option<Vec<u8>>>,
    /// What the writes change in the namespace's usage, against what was read.
    delta: UsageDelta,
    /// Key and value bytes written by this event, for its write budget.
    written_bytes: u64,
    /// The caller holds the namespace's commits alone ([`KvStore::exclusive`]).
    exclusive: bool,
}

impl KvTxn {
    /// Says that the caller holds [`KvStore::exclusive`] while this transaction runs.
    pub fn set_exclusive(&mut self) {
        self.exclusive = true;
    }

    /// The raw value the event sees under `key`: its own pending write, else the tree's.
    fn current(&mut self, store: &KvStore, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        if let Some(pending) = self.writes.get(key) {
            return Ok(pending.clone());
        }
        // Read again each time: a guest waiting for another writer sees it. Commit checks
        // the first read, so an event that acted on a changed value runs again.
        let read = store.tree.get(key)?;
        let raw = read.as_deref().map(<[u8]>::to_vec);
        if !self.reads.contains_key(key) {
            self.reads.insert(key.to_owned(), read);
        }
        Ok(raw)
    }

    /// Stores `new` under `key`, whose current raw value (as [`Self::current`] gave it) is
    /// `previous`.
    fn write(
        &mut self,
        store: &KvStore,
        key: &str,
        previous: Option<&[u8]>,
        new: Option<Vec<u8>>,
    ) -> Result<(), KvError> {
        let quota = &store.quota;
        let written = key.len() as u64 + new.as_ref().map_or(0, |raw| raw.len() as u64);
        let written_bytes = self.written_bytes.saturating_add(written);
        if written_bytes > quota.event_write_bytes {
            return Err(KvError::EventWriteLimit {
                limit: quota.event_write_bytes,
            });
        }
        let change = UsageDelta::replacing(key, previous, new.as_deref());
        let mut delta = self.delta;
        delta.add(change);
        if change.bytes > 0 || change.keys > 0 {
            store
                .usage
                .fits(delta, quota)
                .map_err(|part| quota_error(part, quota))?;
        }
        self.delta = delta;
        self.written_bytes = written_bytes;
        self.writes.insert(key.to_owned(), new);
        Ok(())
    }

    pub fn get(&mut self, store: &KvStore, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        store.check_key(key)?;
        let now = now_millis();
        Ok(self
            .current(store, key)?
            .and_then(|raw| live_value(&raw, now).map(<[u8]>::to_vec)))
    }

    pub fn set(
        &mut self,
        store: &KvStore,
        key: &str,
        value: &[u8],
        ttl_ms: Option<u64>,
    ) -> Result<(), KvError> {
        store.check_key(key)?;
        store.check_value(value)?;
        let expires_at = ttl_ms.map_or(0, |ttl| now_millis().saturating_add(ttl.max(1)));
        let previous = self.current(store, key)?;
        self.write(
            store,
            key,
            previous.as_deref(),
            Some(encode(expires_at, value)),
        )
    }

    pub fn delete(&mut self, store: &KvStore, key: &str) -> Result<bool, KvError> {
        store.check_key(key)?;
        let now = now_millis();
        let Some(raw) = self.current(store, key)? else {
            return Ok(false);
        };
        let was_live = live_value(&raw, now).is_some();
        self.write(store, key, Some(&raw), None)?;
        Ok(was_live)
    }

    pub fn incr(&mut self, store: &KvStore, key: &str, delta: i64) -> Result<i64, KvError> {
        store.check_key(key)?;
        let now = now_millis();
        let current = self.current(store, key)?;
        let (expires_at, value) = match current.as_deref().and_then(decode) {
            Some(stored) if is_live(&stored, now) => {
                let text = std::str::from_utf8(stored.value).map_err(|_| KvError::NotACounter)?;
                let value: i64 = text.parse().map_err(|_| KvError::NotACounter)?;
                (stored.expires_at, value)
            }
            _ => (0, 0),
        };
        let next = value.checked_add(delta).ok_or(KvError::NotACounter)?;
        self.write(
            store,
            key,
            current.as_deref(),
            Some(encode(expires_at, next.to_string().as_bytes())),
        )?;
        Ok(next)
    }

    pub fn compare_and_swap(
        &mut self,
        store: &KvStore,
        key: &str,
        expected: Option<&[u8]>,
        new: Option<&[u8]>,
    ) -> Result<bool, KvError> {
        store.check_key(key)?;
        if let Some(new) = new {
            store.check_value(new)?;
        }
        let now = now_millis();
        let current = self.current(store, key)?;
        if current.as_deref().and_then(|raw| live_value(raw, now)) != expected {
            return Ok(false);
        }
        self.write(
            store,
            key,
            current.as_deref(),
            new.map(|value| encode(0, value)),
        )?;
        Ok(true)
    }

    /// Up to `limit` live entries under `prefix`, the event's own writes included. What a
    /// scan reads is not checked at commit.
    pub fn scan(
        &self,
        store: &KvStore,
        prefix: &str,
        limit: u32,
    ) -> Result<Vec<(String, Vec<u8>)>, KvError> {
        store.check_key(prefix)?;
        let now = now_millis();
        let limit = limit as usize;
        let mut pending = self
            .writes
            .range(prefix.to_owned()..)
            .take_while(|(key, _)| key.starts_with(prefix))
            .peekable();
        let mut stored = store.tree.scan_prefix(prefix).peekable();
        let mut entries = Vec::new();
        while entries.len() < limit {
            let stored_key = match stored.peek() {
                Some(Ok((key, _))) => Some(String::from_utf8_lossy(key).into_owned()),
                Some(Err(_)) => {
                    if let Some(Err(error)) = stored.next() {
                        return Err(error.into());
                    }
                    continue;
                }
                None => None,
            };
            let take_pending = match (pending.peek(), &stored_key) {
                (Some((pending_key, _)), Some(stored_key)) => {
                    pending_key.as_str() <= stored_key.as_str()
                }
                (Some(_), None) => true,
                (None, Some(_)) => false,
                (None, None) => break,
            };
            let (key, raw) = if take_pending {
                let Some((key, raw)) = pending.next() else {
                    break;
                };
                if stored_key.as_deref() == Some(key.as_str()) {
                    stored.next();
                }
                (key.clone(), raw.clone())
            } else {
                let Some(Ok((_, raw))) = stored.next() else {
                    break;
                };
                (stored_key.unwrap_or_default(), Some(raw.to_vec()))
            };
            if let Some(value) = raw.as_deref().and_then(|raw| live_value(raw, now)) {
                entries.push((key, value.to_vec()));
            }
        }
        Ok(entries)
    }

    /// Writes everything pending, or nothing: [`KvError::Conflict`] if an entry the event
    /// read changed meanwhile, a quota error if another commit took the room first. Either
    /// way nothing is pending afterwards; the event's write budget stays spent.
    pub fn commit(&mut self, store: &KvStore) -> Result<(), KvError> {
        let reads = std::mem::take(&mut self.reads);
        let writes = std::mem::take(&mut self.writes);
        let delta = std::mem::take(&mut self.delta);
        if writes.is_empty() {
            return Ok(());
        }
        let _shared = (!self.exclusive).then(|| {
            store
                .usage
                .commits
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
        });
        store
            .usage
            .reserve(delta, &store.quota)
            .map_err(|part| quota_error(part, &store.quota))?;
        match write_checked(store, &reads, &writes) {
            Ok(()) => {
                store.usage.apply_shrink(delta);
                store.written()
            }
            Err(error) => {
                store.usage.unreserve(delta);
                Err(error)
            }
        }
    }
}

fn quota_error(part: QuotaPart, quota: &KvQuota) -> KvError {
    let limit = match part {
        QuotaPart::Bytes => quota.bytes,
        QuotaPart::Keys => quota.keys,
    };
    KvError::QuotaExceeded { part, limit }
}

/// Applies `writes` if every entry in `reads` is unchanged.
fn write_checked(
    store: &KvStore,
    reads: &HashMap<String, Option<IVec>>,
    writes: &BTreeMap<String, Option<Vec<u8>>>,
) -> Result<(), KvError> {
    // One key read and written: sled's compare-and-swap, much cheaper than a transaction.
    if writes.len() == 1
        && reads.len() == 1
        && let Some((key, new)) = writes.iter().next()
        && let Some(read) = reads.get(key)
    {
        return match store
            .tree
            .compare_and_swap(key, read.clone(), new.clone())?
        {
            Ok(()) => Ok(()),
            Err(_) => Err(KvError::Conflict),
        };
    }
    let result = store.tree.transaction(|tree| {
        for (key, read) in reads {
            if tree.get(key)? != *read {
                return Err(ConflictableTransactionError::Abort(()));
            }
        }
        for (key, new) in writes {
            match new {
                Some(raw) => tree.insert(key.as_bytes(), raw.as_slice())?,
                None => tree.remove(key.as_bytes())?,
            };
        }
        Ok(())
    });
    match result {
        Ok(()) => Ok(()),
        Err(TransactionError::Abort(())) => Err(KvError::Conflict),
        Err(TransactionError::Storage(error)) => Err(error.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::StateConfig;
    use crate::state::{KvQuota, StateDb};

    fn store(quota: KvQuota) -> KvStore {
        StateDb::temporary(&StateConfig::default())
            .unwrap()
            .kv("test")
            .unwrap()
            .with_quota(quota)
    }

    #[test]
    fn writes_are_seen_by_the_event_and_reach_the_tree_only_at_commit() {
        let kv = store(KvQuota::UNLIMITED);
        kv.set("kept", b"old", None).unwrap();
        let mut txn = KvTxn::default();
        txn.set(&kv, "a", b"1", None).unwrap();
        assert_eq!(txn.incr(&kv, "n", 2).unwrap(), 2);
        assert!(txn.delete(&kv, "kept").unwrap());
        assert_eq!(txn.get(&kv, "a").unwrap().as_deref(), Some(&b"1"[..]));
        assert_eq!(txn.get(&kv, "kept").unwrap(), None);
        assert_eq!(kv.get("a").unwrap(), None, "not before the commit");
        assert_eq!(kv.get("kept").unwrap().as_deref(), Some(&b"old"[..]));
        txn.commit(&kv).unwrap();
        assert_eq!(kv.get("a").unwrap().as_deref(), Some(&b"1"[..]));
        assert_eq!(kv.get("n").unwrap().as_deref(), Some(&b"2"[..]));
        assert_eq!(kv.get("kept").unwrap(), None);
        assert_eq!((kv.usage().keys(), kv.usage().bytes()), (2, 4));
    }

    #[test]
    fn a_dropped_transaction_leaves_nothing() {
        let kv = store(KvQuota::UNLIMITED);
        let mut txn = KvTxn::default();
        txn.set(&kv, "a", b"1", None).unwrap();
        drop(txn);
        assert_eq!(kv.get("a").unwrap(), None);
        assert_eq!(kv.usage().keys(), 0);
    }

    #[test]
    fn a_commit_after_another_writer_changed_a_read_entry_conflicts_and_writes_nothing() {
        let kv = store(KvQuota::UNLIMITED);
        kv.set("shared", b"1", None).unwrap();
        let mut txn = KvTxn::default();
        let seen = txn.get(&kv, "shared").unwrap();
        assert_eq!(seen.as_deref(), Some(&b"1"[..]));
        txn.set(&kv, "derived", b"from 1", None).unwrap();
        txn.set(&kv, "other", b"x", None).unwrap();
        kv.set("shared", b"2", None).unwrap();
        assert_eq!(txn.commit(&kv), Err(KvError::Conflict));
        assert_eq!(kv.get("derived").unwrap(), None);
        assert_eq!(kv.get("other").unwrap(), None);
        assert_eq!(kv.usage().keys(), 1);

        let mut single = KvTxn::default();
        single.incr(&kv, "counter", 1).unwrap();
        kv.incr("counter", 5).unwrap();
        assert_eq!(single.commit(&kv), Err(KvError::Conflict));
        assert_eq!(kv.get("counter").unwrap().as_deref(), Some(&b"5"[..]));
    }

    #[test]
    fn quotas_refuse_the_write_that_would_pass_them() {
        let quota = KvQuota {
            bytes: 20,
            keys: 2,
            event_write_bytes: 1000,
        };
        let kv = store(quota);
        let mut txn = KvTxn::default();
        txn.set(&kv, "a", b"123456789", None).unwrap();
        assert!(matches!(
            txn.set(&kv, "b", b"1234567890", None),
            Err(KvError::QuotaExceeded {
                part: QuotaPart::Bytes,
                limit: 20
            })
        ));
        txn.set(&kv, "b", b"1", None).unwrap();
        assert!(matches!(
            txn.set(&kv, "c", b"", None),
            Err(KvError::QuotaExceeded {
                part: QuotaPart::Keys,
                limit: 2
            })
        ));
        // Replacing or removing what is there frees room.
        txn.delete(&kv, "b").unwrap();
        txn.set(&kv, "c", b"", None).unwrap();
        txn.commit(&kv).unwrap();
        assert_eq!((kv.usage().keys(), kv.usage().bytes()), (2, 11));
    }

    #[test]
    fn an_event_may_write_only_its_budget() {
        let kv = store(KvQuota {
            event_write_bytes: 10,
            ..KvQuota::UNLIMITED
        });
        let mut txn = KvTxn::default();
        txn.set(&kv, "a", b"1", None).unwrap();
        assert_eq!(
            txn.set(&kv, "b", b"1", None),
            Err(KvError::EventWriteLimit { limit: 10 })
        );
    }

    #[test]
    fn scan_merges_pending_writes_in_key_order() {
        let kv = store(KvQuota::UNLIMITED);
        for key in ["p/1", "p/3", "p/5", "q/1"] {
            kv.set(key, key.as_bytes(), None).unwrap();
        }
        let mut txn = KvTxn::default();
        txn.set(&kv, "p/2", b"new", None).unwrap();
        txn.set(&kv, "p/3", b"changed", None).unwrap();
        txn.delete(&kv, "p/5").unwrap();
        let scanned = txn.scan(&kv, "p/", 10).unwrap();
        let shown: Vec<_> = scanned
            .iter()
            .map(|(key, value)| format!("{key}={}", String::from_utf8_lossy(value)))
            .collect();
        assert_eq!(shown, ["p/1=p/1", "p/2=new", "p/3=changed"]);
        assert_eq!(txn.scan(&kv, "p/", 2).unwrap().len(), 2);
    }
}
