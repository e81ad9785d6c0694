//! What one event's outbound requests (HTTP and SNMP) share: the event's deadline, whether a
//! request ran into it (then the event fails with kind `timeout`, whatever the guest makes of
//! the error), and the SNMP requests made against the event's budget. It stands apart from
//! the rest of [`HostState`](super::HostState) because `wasi:http`'s hooks borrow it alone.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use super::FunctionCaps;

pub struct EventRequests {
    pub(super) caps: Arc<FunctionCaps>,
    event_id: String,
    deadline: Instant,
    /// Made on the first request only: most events make none.
    deadline_hit: Option<Arc<AtomicBool>>,
    snmp_requests: u32,
}

impl EventRequests {
    pub fn new(caps: Arc<FunctionCaps>, event_id: String, deadline: Instant) -> Self {
        Self {
            caps,
            event_id,
            deadline,
            deadline_hit: None,
            snmp_requests: 0,
        }
    }

    /// Starts the next event on a kept instance, due by `deadline`.
    pub fn begin(&mut self, deadline: Instant) {
        self.deadline = deadline;
        self.deadline_hit = None;
        self.snmp_requests = 0;
    }

    pub fn event_id(&self) -> &str {
        &self.event_id
    }

    /// When the event must be done, its requests included.
    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// Notes that a request ran into the event's deadline.
    pub fn mark_deadline_hit(&mut self) {
        self.deadline_flag().store(true, Ordering::Relaxed);
    }

    /// Whether a request of this event was cut off by the event's deadline.
    pub fn deadline_hit(&self) -> bool {
        self.deadline_hit
            .as_ref()
            .is_some_and(|hit| hit.load(Ordering::Relaxed))
    }

    /// The flag a request running apart from the event (an HTTP exchange on the runtime)
    /// raises when it runs into the deadline.
    pub(super) fn deadline_flag(&mut self) -> Arc<AtomicBool> {
        self.deadline_hit
            .get_or_insert_with(|| Arc::new(AtomicBool::new(false)))
            .clone()
    }

    /// Counts one SNMP request if the event has fewer than `budget`; `false` when spent.
    pub fn take_snmp_request(&mut self, budget: u32) -> bool {
        if self.snmp_requests >= budget {
            return false;
        }
        self.snmp_requests += 1;
        true
    }
}
