//! Links, their utilization from counter readings, and the rebalancing decision with its
//! hysteresis, in plain Rust so they are tested natively.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Readings the link-forecast model takes (models/link-forecast/features.py `WINDOW`).
pub const WINDOW: usize = 8;
/// Utilization the model was trained up to (`CEILING`).
pub const CEILING: f64 = 1.2;

/// Where one link's counters are: its octet counter and its speed, by OID, or by `ifIndex`
/// (IF-MIB `ifHCOutOctets`/`ifHCInOctets` and `ifHighSpeed`).
#[derive(Debug, Clone, Deserialize)]
pub struct LinkSource {
    pub index: Option<u32>,
    pub octets: Option<String>,
    pub speed: Option<String>,
    /// The speed in Mbit/s, when it is not polled.
    pub speed_mbps: Option<f64>,
}

impl LinkSource {
    pub fn octets_oid(&self, inbound: bool) -> Option<String> {
        let column = if inbound { 6 } else { 10 };
        self.octets.clone().or_else(|| {
            self.index
                .map(|index| format!("1.3.6.1.2.1.31.1.1.1.{column}.{index}"))
        })
    }

    pub fn speed_oid(&self) -> Option<String> {
        self.speed.clone().or_else(|| {
            self.index
                .map(|index| format!("1.3.6.1.2.1.31.1.1.1.15.{index}"))
        })
    }
}

/// What is kept per link.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct LinkState {
    last: Option<(f64, u64)>,
    pub window: Vec<f64>,
}

impl LinkState {
    /// Adds the utilization between the last reading and this one (octets, at µs, on a link
    /// of `speed_mbps`); a first reading or a counter that went backwards adds nothing.
    pub fn record(&mut self, octets: f64, at_us: u64, speed_mbps: f64) {
        let last = self.last.replace((octets, at_us));
        let Some((before, then)) = last else { return };
        if octets < before || at_us <= then || speed_mbps <= 0.0 {
            return;
        }
        let seconds = (at_us - then) as f64 / 1e6;
        let utilization = (octets - before) * 8.0 / seconds / (speed_mbps * 1e6);
        self.window.push(utilization.clamp(0.0, CEILING));
        if self.window.len() > WINDOW {
            self.window.remove(0);
        }
    }

    pub fn full(&self) -> bool {
        self.window.len() == WINDOW
    }
}

/// One link's forecast.
#[derive(Debug, Clone)]
pub struct Forecast {
    pub link: String,
    pub utilization: f64,
    pub next: f64,
}

/// What to do with a group of parallel links.
#[derive(Debug, PartialEq)]
pub enum Decision {
    /// Move traffic: ECMP weights (summing to 100) in proportion to each link's forecast
    /// headroom.
    Rebalance(BTreeMap<String, u32>),
    /// Every link is forecast comfortably below the threshold again: equal weights.
    Restore(BTreeMap<String, u32>),
    Keep,
}

/// Thresholds on the forecast utilization.
#[derive(Debug, Clone, Copy)]
pub struct Thresholds {
    /// A link forecast above this is congested...
    pub high: f64,
    /// ...and traffic moves if another is forecast below this.
    pub room: f64,
    /// Once rebalanced, weights go back only when every link is forecast below this.
    pub release: f64,
}

/// The decision for a group, given whether it is rebalanced now: hysteresis keeps a group
/// from flapping between the two.
pub fn decide(forecasts: &[Forecast], rebalanced: bool, thresholds: Thresholds) -> Decision {
    if forecasts.len() < 2 {
        return Decision::Keep;
    }
    if rebalanced {
        if forecasts.iter().all(|f| f.next < thresholds.release) {
            return Decision::Restore(equal_weights(forecasts));
        }
        return Decision::Keep;
    }
    let congested = forecasts.iter().any(|f| f.next > thresholds.high);
    let room = forecasts.iter().any(|f| f.next < thresholds.room);
    if congested && room {
        Decision::Rebalance(headroom_weights(forecasts))
    } else {
        Decision::Keep
    }
}

fn equal_weights(forecasts: &[Forecast]) -> BTreeMap<String, u32> {
    distribute(forecasts, |_| 1.0)
}

fn headroom_weights(forecasts: &[Forecast]) -> BTreeMap<String, u32> {
    distribute(forecasts, |f| (1.0 - f.next).max(0.05))
}

/// Integer weights summing to 100 in proportion to `share`, the remainder to the largest.
fn distribute(forecasts: &[Forecast], share: impl Fn(&Forecast) -> f64) -> BTreeMap<String, u32> {
    let total: f64 = forecasts.iter().map(&share).sum();
    let mut weights: BTreeMap<String, u32> = forecasts
        .iter()
        .map(|f| (f.link.clone(), (share(f) / total * 100.0).floor() as u32))
        .collect();
    let assigned: u32 = weights.values().sum();
    if let Some(largest) = forecasts
        .iter()
        .max_by(|a, b| share(a).total_cmp(&share(b)))
        .and_then(|f| weights.get_mut(&f.link))
    {
        *largest += 100 - assigned;
    }
    weights
}

#[cfg(test)]
mod tests {
    use super::*;

    fn forecast(link: &str, next: f64) -> Forecast {
        Forecast {
            link: link.into(),
            utilization: next,
            next,
        }
    }

    const THRESHOLDS: Thresholds = Thresholds {
        high: 0.8,
        room: 0.6,
        release: 0.65,
    };

    #[test]
    fn counters_become_utilization_and_resets_are_skipped() {
        let mut link = LinkState::default();
        link.record(1_000_000.0, 0, 100.0);
        assert!(link.window.is_empty());
        // 6.25 MB in one second on 100 Mbit/s: half the link.
        link.record(7_250_000.0, 1_000_000, 100.0);
        assert!((link.window[0] - 0.5).abs() < 1e-9, "{:?}", link.window);
        link.record(10.0, 2_000_000, 100.0);
        assert_eq!(link.window.len(), 1, "a reset adds nothing");
        for second in 3..12 {
            link.record(10.0 + second as f64, second * 1_000_000, 100.0);
        }
        assert!(link.full() && link.window.len() == WINDOW);
    }

    #[test]
    fn a_congested_link_with_a_roomy_neighbour_is_rebalanced_once_and_restored_below_release() {
        let busy = [forecast("a", 0.9), forecast("b", 0.3)];
        let Decision::Rebalance(weights) = decide(&busy, false, THRESHOLDS) else {
            panic!("rebalance expected")
        };
        assert_eq!(weights.values().sum::<u32>(), 100);
        assert!(weights["b"] > weights["a"], "{weights:?}");
        assert_eq!(
            decide(&busy, true, THRESHOLDS),
            Decision::Keep,
            "no flapping"
        );
        let easing = [forecast("a", 0.7), forecast("b", 0.4)];
        assert_eq!(decide(&easing, true, THRESHOLDS), Decision::Keep);
        let calm = [forecast("a", 0.5), forecast("b", 0.4)];
        let Decision::Restore(weights) = decide(&calm, true, THRESHOLDS) else {
            panic!("restore expected")
        };
        assert_eq!(weights["a"] + weights["b"], 100);
        assert!(weights["a"].abs_diff(weights["b"]) <= 1);
        let both_busy = [forecast("a", 0.9), forecast("b", 0.85)];
        assert_eq!(
            decide(&both_busy, false, THRESHOLDS),
            Decision::Keep,
            "no room"
        );
    }
}
