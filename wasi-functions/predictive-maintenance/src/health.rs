//! What is kept per device (its window, the last counter readings, whether a ticket is open)
//! and the decisions taken on it, in plain Rust so they are tested natively.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::features::{NEUTRAL, SIGNALS, Sample, WINDOW};

/// Where a signal is read in a poll: an OID, with a factor (tenths of a dBm, say) and, for
/// the error and discard rates, whether the OID is a counter to turn into a rate.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum SignalSource {
    Oid(String),
    Detailed {
        oid: String,
        #[serde(default = "one")]
        scale: f64,
        counter: Option<bool>,
    },
}

fn one() -> f64 {
    1.0
}

impl SignalSource {
    fn oid(&self) -> &str {
        match self {
            SignalSource::Oid(oid) | SignalSource::Detailed { oid, .. } => oid,
        }
    }

    fn scale(&self) -> f64 {
        match self {
            SignalSource::Oid(_) => 1.0,
            SignalSource::Detailed { scale, .. } => *scale,
        }
    }

    /// The rates are counters (ifInErrors, ifInDiscards) unless said otherwise.
    fn counter(&self, signal: &str) -> bool {
        let rate = signal.ends_with("_per_s");
        match self {
            SignalSource::Oid(_) => rate,
            SignalSource::Detailed { counter, .. } => counter.unwrap_or(rate),
        }
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct DeviceHealth {
    window: Vec<Sample>,
    /// The last reading of each counter signal and when it was taken (µs).
    counters: BTreeMap<String, (f64, u64)>,
    ticket: bool,
}

impl DeviceHealth {
    /// Adds one poll; the window once it holds [`WINDOW`] polls. A poll that cannot give a
    /// rate yet (the first reading of a counter, or one that went backwards: a reset) is
    /// not added.
    pub fn record(
        &mut self,
        signals: &BTreeMap<String, SignalSource>,
        values: &BTreeMap<&str, f64>,
        at_us: u64,
    ) -> Option<Vec<Sample>> {
        let previous = self.window.last().copied().unwrap_or(NEUTRAL);
        let mut sample = NEUTRAL;
        let mut complete = true;
        for (index, name) in SIGNALS.iter().enumerate() {
            let Some(source) = signals.get(*name) else {
                continue;
            };
            let Some(reading) = values.get(source.oid()).map(|v| v * source.scale()) else {
                sample[index] = previous[index];
                continue;
            };
            if !source.counter(name) {
                sample[index] = reading;
                continue;
            }
            let last = self.counters.insert((*name).to_owned(), (reading, at_us));
            match last {
                Some((before, then)) if reading >= before && at_us > then => {
                    sample[index] = (reading - before) / ((at_us - then) as f64 / 1e6);
                }
                _ => complete = false,
            }
        }
        if !complete {
            return None;
        }
        self.window.push(sample);
        if self.window.len() > WINDOW {
            self.window.remove(0);
        }
        (self.window.len() == WINDOW).then(|| self.window.clone())
    }

    /// Opens a ticket when the risk reaches `open`, clears it when it falls below `clear`.
    pub fn judge(&mut self, risk: &Risk, open: f32, clear: f32) -> Verdict {
        if !self.ticket && risk.failure >= open {
            self.ticket = true;
            Verdict::Open
        } else if self.ticket && risk.failure < clear {
            self.ticket = false;
            Verdict::Clear
        } else {
            Verdict::Unchanged
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    Open,
    Clear,
    Unchanged,
}

/// The model's answer: the probability of a failure within seven days (all failing classes
/// together) and the signal of the likeliest one.
#[derive(Debug)]
pub struct Risk {
    pub failure: f32,
    pub driver: Option<&'static str>,
}

impl Risk {
    pub fn from_scores(scores: &[f32]) -> Self {
        let failure = (1.0 - scores.first().copied().unwrap_or(1.0)).clamp(0.0, 1.0);
        let driver = scores
            .iter()
            .skip(1)
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .and_then(|(index, _)| SIGNALS.get(index).copied());
        Self { failure, driver }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signals() -> BTreeMap<String, SignalSource> {
        serde_json::from_value(serde_json::json!({
            "temperature_c": "1.3.6.1.4.1.99.1",
            "if_errors_per_s": "1.3.6.1.4.1.99.2",
            "rx_power_dbm": {"oid": "1.3.6.1.4.1.99.3", "scale": 0.1},
        }))
        .unwrap()
    }

    #[test]
    fn counters_become_rates_and_the_window_fills_after_six_polls() {
        let signals = signals();
        let mut health = DeviceHealth::default();
        let poll = |health: &mut DeviceHealth, at_s: u64, errors: f64| {
            let values: BTreeMap<&str, f64> = [
                ("1.3.6.1.4.1.99.1", 45.0),
                ("1.3.6.1.4.1.99.2", errors),
                ("1.3.6.1.4.1.99.3", -52.0),
            ]
            .into();
            health.record(&signals, &values, at_s * 1_000_000)
        };
        assert!(
            poll(&mut health, 0, 100.0).is_none(),
            "no rate from one reading"
        );
        for second in 1..6 {
            assert!(poll(&mut health, second * 10, 100.0 + second as f64 * 50.0).is_none());
        }
        let window = poll(&mut health, 60, 400.0).expect("six polls");
        assert_eq!(window.len(), WINDOW);
        let last = window[WINDOW - 1];
        assert_eq!(last[0], 45.0);
        assert!((last[2] - 5.0).abs() < 1e-9, "50 errors in 10 s: {last:?}");
        assert!((last[4] + 5.2).abs() < 1e-9, "tenths of a dBm");
        assert_eq!(last[1], NEUTRAL[1], "a signal not polled is neutral");
        assert!(
            poll(&mut health, 70, 10.0).is_none(),
            "a counter reset is skipped"
        );
    }

    #[test]
    fn a_ticket_opens_once_and_clears_below_the_lower_threshold() {
        let mut health = DeviceHealth::default();
        let risk = |failure| Risk {
            failure,
            driver: Some("fan_rpm"),
        };
        assert_eq!(health.judge(&risk(0.5), 0.8, 0.3), Verdict::Unchanged);
        assert_eq!(health.judge(&risk(0.9), 0.8, 0.3), Verdict::Open);
        assert_eq!(health.judge(&risk(0.95), 0.8, 0.3), Verdict::Unchanged);
        assert_eq!(health.judge(&risk(0.5), 0.8, 0.3), Verdict::Unchanged);
        assert_eq!(health.judge(&risk(0.1), 0.8, 0.3), Verdict::Clear);
        let scores = [0.1, 0.05, 0.7, 0.05, 0.02, 0.03, 0.03, 0.02];
        let driven = Risk::from_scores(&scores);
        assert!((driven.failure - 0.9).abs() < 1e-6);
        assert_eq!(driven.driver, Some("fan_rpm"));
    }
}
