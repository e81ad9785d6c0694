//! The decision for one value of one (subject, key) pair: pure logic, tested natively.

use serde::{Deserialize, Serialize};

/// Per-(subject, key) state kept in kv between events.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct Track {
    /// Exponentially weighted mean of the normal values seen so far.
    pub mean: f64,
    /// Normal values folded into the mean.
    pub seen: u64,
    /// Consecutive values above the threshold.
    pub over: u32,
    /// Whether an alert is active.
    pub alerting: bool,
}

pub struct Rules {
    pub factor: f64,
    pub samples: u32,
    pub alpha: f64,
    pub warmup: u64,
}

/// What a value changed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Change {
    /// The value stayed above `threshold` for `samples` values in a row.
    Alert { threshold: f64 },
    /// The value came back below the threshold after an alert.
    Clear,
}

impl Track {
    /// Folds `value` in and says whether an alert starts or ends.
    pub fn observe(&mut self, value: f64, rules: &Rules) -> Option<Change> {
        let threshold = self.mean * rules.factor;
        if self.seen >= rules.warmup && value > threshold {
            self.over += 1;
            if self.over == rules.samples && !self.alerting {
                self.alerting = true;
                return Some(Change::Alert { threshold });
            }
            return None;
        }
        let change = self.alerting.then_some(Change::Clear);
        self.over = 0;
        self.alerting = false;
        // Anomalous values stay out of the mean so a sustained excursion stays visible.
        self.mean = if self.seen == 0 {
            value
        } else {
            self.mean + rules.alpha * (value - self.mean)
        };
        self.seen += 1;
        change
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RULES: Rules = Rules {
        factor: 1.5,
        samples: 3,
        alpha: 0.2,
        warmup: 5,
    };

    fn run(track: &mut Track, values: &[f64]) -> Vec<Option<Change>> {
        values.iter().map(|&v| track.observe(v, &RULES)).collect()
    }

    #[test]
    fn alerts_once_after_samples_values_above_the_threshold_and_clears_on_return() {
        let mut track = Track::default();
        assert!(run(&mut track, &[10.0; 5]).iter().all(Option::is_none));
        assert_eq!(track.mean, 10.0);
        let excursion = run(&mut track, &[20.0, 20.0, 20.0, 20.0]);
        assert_eq!(
            excursion,
            vec![None, None, Some(Change::Alert { threshold: 15.0 }), None]
        );
        assert_eq!(track.mean, 10.0, "anomalous values stay out of the mean");
        assert_eq!(track.observe(10.0, &RULES), Some(Change::Clear));
        assert_eq!(track.observe(10.0, &RULES), None);
    }

    #[test]
    fn nothing_alerts_during_warmup_or_on_a_short_spike() {
        let mut track = Track::default();
        assert!(
            run(&mut track, &[10.0, 100.0, 100.0, 100.0])
                .iter()
                .all(Option::is_none)
        );
        let mut warmed = Track::default();
        run(&mut warmed, &[10.0; 5]);
        assert!(
            run(&mut warmed, &[20.0, 20.0, 10.0, 20.0])
                .iter()
                .all(Option::is_none)
        );
    }
}
