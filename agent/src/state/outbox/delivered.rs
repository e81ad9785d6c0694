//! Waiters for "every record pushed before now has left the outbox": an MQTT input whose
//! function wrote no kv can be acknowledged as soon as the broker has its results, without a
//! flush of the state database.

use std::collections::BTreeMap;

use tokio::sync::oneshot;

/// Waiters by the sequence number every record below which must be gone.
#[derive(Default)]
pub(super) struct DeliveryWaiters {
    by_bound: BTreeMap<u64, Vec<oneshot::Sender<()>>>,
}

/// Waiters given up on (their receiver dropped) are swept once this many bounds are held.
const SWEEP_AT: usize = 1024;

impl DeliveryWaiters {
    /// A receiver that resolves once the lowest record left is at or above `bound`.
    pub(super) fn wait(&mut self, bound: u64) -> oneshot::Receiver<()> {
        if self.by_bound.len() >= SWEEP_AT {
            self.by_bound.retain(|_, senders| {
                senders.retain(|sender| !sender.is_closed());
                !senders.is_empty()
            });
        }
        let (sender, receiver) = oneshot::channel();
        self.by_bound.entry(bound).or_default().push(sender);
        receiver
    }

    /// Wakes every waiter whose bound `lowest_left` (the lowest record still queued, or the
    /// next sequence number) has reached.
    pub(super) fn wake(&mut self, lowest_left: u64) {
        if self
            .by_bound
            .first_key_value()
            .is_none_or(|(&bound, _)| bound > lowest_left)
        {
            return;
        }
        let waiting = match lowest_left.checked_add(1) {
            Some(above) => self.by_bound.split_off(&above),
            None => BTreeMap::new(),
        };
        for sender in std::mem::replace(&mut self.by_bound, waiting)
            .into_values()
            .flatten()
        {
            let _ = sender.send(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wakes_waiters_whose_bound_was_reached_and_keeps_the_others() {
        let mut waiters = DeliveryWaiters::default();
        let mut first = waiters.wait(3);
        let mut second = waiters.wait(5);
        waiters.wake(2);
        assert!(first.try_recv().is_err());
        waiters.wake(3);
        assert_eq!(first.try_recv(), Ok(()));
        assert!(second.try_recv().is_err());
        waiters.wake(9);
        assert_eq!(second.try_recv(), Ok(()));
    }

    #[test]
    fn abandoned_waiters_are_swept() {
        let mut waiters = DeliveryWaiters::default();
        for bound in 0..SWEEP_AT as u64 {
            drop(waiters.wait(bound + 10));
        }
        let _kept = waiters.wait(5);
        assert_eq!(waiters.by_bound.len(), 1);
    }
}
