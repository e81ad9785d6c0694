//! Log lines for repeated occurrences, spaced out: a flood of the same drop or refusal writes
//! one line a second with the count since the last line, not one line each.

use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Default)]
pub struct SpacedLog {
    /// When the last line was written, in milliseconds since the epoch.
    last_line_ms: AtomicU64,
    /// Occurrences since that line.
    unreported: AtomicU64,
}

impl SpacedLog {
    const EVERY_MS: u64 = 1000;

    /// Counts an occurrence; returns how many to report if a line is due now.
    pub fn report(&self) -> Option<u64> {
        self.unreported.fetch_add(1, Ordering::AcqRel);
        let now = crate::event::now_millis();
        let last = self.last_line_ms.load(Ordering::Acquire);
        let due = now.saturating_sub(last) >= Self::EVERY_MS
            && self
                .last_line_ms
                .compare_exchange(last, now, Ordering::AcqRel, Ordering::Acquire)
                .is_ok();
        due.then(|| self.unreported.swap(0, Ordering::AcqRel))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flood_writes_a_line_a_second_with_the_count() {
        let log = SpacedLog::default();
        assert_eq!(
            log.report(),
            Some(1),
            "the first occurrence is reported at once"
        );
        for _ in 0..99 {
            assert_eq!(log.report(), None);
        }
        log.last_line_ms
            .fetch_sub(SpacedLog::EVERY_MS, Ordering::AcqRel);
        assert_eq!(
            log.report(),
            Some(100),
            "the next line counts every occurrence since"
        );
        assert_eq!(log.report(), None);
    }
}
