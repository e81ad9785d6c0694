//! `fogd:function/kv`: the function's own namespace in the state database, with its quota.

use wasmtime::component::{HasSelf, Linker};

use super::{Capability, GrantError, HostResources, HostState};
use crate::config::FunctionSpec;
use crate::contract::kv::{self, Error, Host};
use crate::state::{KvError, KvQuota, KvStore};

impl Capability for KvStore {
    fn prepare(spec: &FunctionSpec, resources: &HostResources) -> Result<Self, GrantError> {
        let quota = KvQuota {
            bytes: spec.limits.kv_bytes,
            keys: spec.limits.kv_keys,
            event_write_bytes: spec.limits.kv_write_bytes,
        };
        Ok(resources.state.kv(&spec.name)?.with_quota(quota))
    }

    fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
        kv::add_to_linker::<_, HasSelf<_>>(linker, |state| state)
    }
}

impl From<KvError> for Error {
    fn from(error: KvError) -> Self {
        match error {
            KvError::KeyTooLarge { limit, .. } => Error::KeyTooLarge(limit),
            KvError::ValueTooLarge { limit, .. } => Error::ValueTooLarge(limit),
            KvError::NotACounter => Error::NotACounter,
            KvError::QuotaExceeded { .. } | KvError::EventWriteLimit { .. } => {
                Error::QuotaExceeded(error.to_string())
            }
            KvError::Storage(message) => Error::Storage(message),
            KvError::Conflict => Error::Storage(error.to_string()),
        }
    }
}

impl Host for HostState {
    fn get(&mut self, key: String) -> Result<Option<Vec<u8>>, Error> {
        Ok(self
            .effects
            .kv_operation(&self.caps, |txn, store| txn.get(store, &key))?)
    }

    fn set(&mut self, key: String, value: Vec<u8>, ttl_ms: Option<u64>) -> Result<(), Error> {
        Ok(self.effects.kv_operation(&self.caps, |txn, store| {
            txn.set(store, &key, &value, ttl_ms)
        })?)
    }

    fn delete(&mut self, key: String) -> Result<bool, Error> {
        Ok(self
            .effects
            .kv_operation(&self.caps, |txn, store| txn.delete(store, &key))?)
    }

    fn incr(&mut self, key: String, delta: i64) -> Result<i64, Error> {
        Ok(self
            .effects
            .kv_operation(&self.caps, |txn, store| txn.incr(store, &key, delta))?)
    }

    fn compare_and_swap(
        &mut self,
        key: String,
        expected: Option<Vec<u8>>,
        new: Option<Vec<u8>>,
    ) -> Result<bool, Error> {
        Ok(self.effects.kv_operation(&self.caps, |txn, store| {
            txn.compare_and_swap(store, &key, expected.as_deref(), new.as_deref())
        })?)
    }

    fn scan(&mut self, prefix: String, limit: u32) -> Result<Vec<(String, Vec<u8>)>, Error> {
        Ok(self
            .effects
            .kv_operation(&self.caps, |txn, store| txn.scan(store, &prefix, limit))?)
    }
}
