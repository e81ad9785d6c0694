//! What one event leaves behind: its kv writes and its publishes, counted against the
//! function's per-event limits. With `effects = "atomic"` (the default) they wait here and
//! take effect only when the event succeeds; with `"keep"` each takes effect as it is made.

use crate::config::{Effects, Limits};
use crate::outbound::{OutboundError, OutboundMessage};
use crate::state::{KvError, KvStore, KvTxn};

use super::FunctionCaps;

/// Per-event publish limits, resolved when the function loads (the result's limit is
/// applied where the result is returned).
#[derive(Debug, Clone, Copy)]
pub struct OutputLimits {
    pub publishes: u32,
    pub publish_bytes: u64,
}

impl From<&Limits> for OutputLimits {
    fn from(limits: &Limits) -> Self {
        Self {
            publishes: limits.publishes,
            publish_bytes: limits.publish_bytes,
        }
    }
}

/// A limit an event ran into. Once one is hit the event fails, whatever the guest does next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LimitHit {
    /// A per-event output limit (result, publishes, kv bytes written): kind `output_limit`.
    Output(String),
    /// The function's kv quota: kind `storage_quota`.
    StorageQuota(String),
}

/// Why an event's effects could not all take effect.
#[derive(Debug)]
pub enum CommitError {
    /// Another event changed an entry this one read: run it again.
    Conflict,
    Kv(KvError),
}

/// What committing left undone: publishes the outbound path refused, with the first reason.
#[derive(Debug, Default)]
pub struct Unpublished {
    pub count: u32,
    pub first_error: Option<OutboundError>,
}

#[derive(Default)]
pub struct EventEffects {
    pub(super) kv: KvTxn,
    publishes: Vec<OutboundMessage>,
    published: u32,
    published_bytes: u64,
    limit_hit: Option<LimitHit>,
}

impl EventEffects {
    pub fn limit_hit(&self) -> Option<&LimitHit> {
        self.limit_hit.as_ref()
    }

    fn hit(&mut self, hit: LimitHit) {
        self.limit_hit.get_or_insert(hit);
    }

    /// Notes a kv error that is a limit (the guest sees the error either way).
    pub(super) fn kv_error(&mut self, error: &KvError) {
        match error {
            KvError::QuotaExceeded { .. } => self.hit(LimitHit::StorageQuota(error.to_string())),
            KvError::EventWriteLimit { .. } => self.hit(LimitHit::Output(error.to_string())),
            _ => {}
        }
    }

    /// Counts a publish against the event's budget; `Err` with the reason when it is spent.
    pub(super) fn count_publish(
        &mut self,
        bytes: usize,
        limits: &OutputLimits,
    ) -> Result<(), String> {
        let published = self.published.saturating_add(1);
        let published_bytes = self.published_bytes.saturating_add(bytes as u64);
        let refusal = if published > limits.publishes {
            Some(format!(
                "more than {} publishes in one event",
                limits.publishes
            ))
        } else if published_bytes > limits.publish_bytes {
            Some(format!(
                "more than {} bytes published in one event",
                limits.publish_bytes
            ))
        } else {
            None
        };
        if let Some(reason) = refusal {
            self.hit(LimitHit::Output(reason.clone()));
            return Err(reason);
        }
        self.published = published;
        self.published_bytes = published_bytes;
        Ok(())
    }

    /// Sends `message` now (`keep`) or holds it for the commit (`atomic`).
    pub(super) fn publish(
        &mut self,
        caps: &FunctionCaps,
        message: OutboundMessage,
    ) -> Result<(), OutboundError> {
        match caps.limits.effects {
            Effects::Keep => caps.grants.messaging.sink().send(message),
            Effects::Atomic => {
                self.publishes.push(message);
                Ok(())
            }
        }
    }

    /// Runs one kv operation; with `keep` it is committed at once (again on a conflict).
    pub(super) fn kv_operation<T>(
        &mut self,
        caps: &FunctionCaps,
        operation: impl Fn(&mut KvTxn, &KvStore) -> Result<T, KvError>,
    ) -> Result<T, KvError> {
        let result = loop {
            let result = operation(&mut self.kv, &caps.grants.kv);
            if caps.limits.effects == Effects::Atomic || result.is_err() {
                break result;
            }
            match self.kv.commit(&caps.grants.kv) {
                Err(KvError::Conflict) => continue,
                Err(error) => break Err(error),
                Ok(()) => break result,
            }
        };
        if let Err(error) = &result {
            self.kv_error(error);
        }
        result
    }

    /// Makes the held effects take effect: kv writes first, all or nothing, then the
    /// publishes in the order they were made.
    pub fn commit(&mut self, caps: &FunctionCaps) -> Result<Unpublished, CommitError> {
        match self.kv.commit(&caps.grants.kv) {
            Ok(()) => {}
            Err(KvError::Conflict) => return Err(CommitError::Conflict),
            Err(error) => return Err(CommitError::Kv(error)),
        }
        let mut unpublished = Unpublished::default();
        for message in self.publishes.drain(..) {
            if let Err(error) = caps.grants.messaging.sink().send(message) {
                unpublished.count += 1;
                unpublished.first_error.get_or_insert(error);
            }
        }
        Ok(unpublished)
    }
}
