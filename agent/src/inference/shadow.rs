//! Shadow mode bookkeeping: how often a candidate version agrees with the active one on
//! the same inputs, and how long each takes, so an operator can promote it with evidence.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::Serialize;

use super::tensor::{TensorSpec, argmax};

#[derive(Default)]
pub struct ShadowStats {
    runs: AtomicU64,
    agreements: AtomicU64,
    shadow_errors: AtomicU64,
    active_nanos: AtomicU64,
    shadow_nanos: AtomicU64,
    active_max_nanos: AtomicU64,
    shadow_max_nanos: AtomicU64,
}

/// The JSON report for one shadowed model.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ShadowReport {
    pub active_version: String,
    pub shadow_version: String,
    pub runs: u64,
    pub agreements: u64,
    pub shadow_errors: u64,
    /// Share of runs whose top class (argmax of the first output) was the same.
    pub agreement_rate: f64,
    pub active_mean_us: f64,
    pub shadow_mean_us: f64,
    pub active_max_us: f64,
    pub shadow_max_us: f64,
}

impl ShadowStats {
    /// Records one side-by-side run; returns whether the two agreed.
    pub fn record(
        &self,
        specs: &[TensorSpec],
        active: &[Vec<u8>],
        shadow: Option<&[Vec<u8>]>,
        active_time: Duration,
        shadow_time: Duration,
    ) -> bool {
        self.runs.fetch_add(1, Ordering::Relaxed);
        add_time(&self.active_nanos, &self.active_max_nanos, active_time);
        add_time(&self.shadow_nanos, &self.shadow_max_nanos, shadow_time);
        let Some(shadow) = shadow else {
            self.shadow_errors.fetch_add(1, Ordering::Relaxed);
            return false;
        };
        let top = |outputs: &[Vec<u8>]| {
            let spec = specs.first()?;
            let values = spec.decode_f32(outputs.first()?).ok()?;
            argmax(&values)
        };
        let agreed = top(active).is_some() && top(active) == top(shadow);
        if agreed {
            self.agreements.fetch_add(1, Ordering::Relaxed);
        }
        agreed
    }

    pub fn report(&self, active_version: &str, shadow_version: &str) -> ShadowReport {
        let runs = self.runs.load(Ordering::Relaxed);
        let agreements = self.agreements.load(Ordering::Relaxed);
        let mean = |total: &AtomicU64| {
            if runs == 0 {
                0.0
            } else {
                total.load(Ordering::Relaxed) as f64 / runs as f64 / 1e3
            }
        };
        ShadowReport {
            active_version: active_version.to_owned(),
            shadow_version: shadow_version.to_owned(),
            runs,
            agreements,
            shadow_errors: self.shadow_errors.load(Ordering::Relaxed),
            agreement_rate: if runs == 0 {
                0.0
            } else {
                agreements as f64 / runs as f64
            },
            active_mean_us: mean(&self.active_nanos),
            shadow_mean_us: mean(&self.shadow_nanos),
            active_max_us: self.active_max_nanos.load(Ordering::Relaxed) as f64 / 1e3,
            shadow_max_us: self.shadow_max_nanos.load(Ordering::Relaxed) as f64 / 1e3,
        }
    }
}

fn add_time(total: &AtomicU64, max: &AtomicU64, time: Duration) {
    let nanos = u64::try_from(time.as_nanos()).unwrap_or(u64::MAX);
    total.fetch_add(nanos, Ordering::Relaxed);
    max.fetch_max(nanos, Ordering::Relaxed);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inference::tensor::{ElementType, Quantization};

    fn spec() -> TensorSpec {
        TensorSpec {
            name: "scores".into(),
            shape: vec![1, 3],
            element: ElementType::Int8,
            quantization: Some(Quantization {
                scale: 1.0 / 256.0,
                zero_point: -128,
            }),
        }
    }

    #[test]
    fn counts_agreement_on_the_top_class() {
        let stats = ShadowStats::default();
        let specs = [spec()];
        let a = vec![vec![0u8, 100, 50]];
        let same_top = vec![vec![10u8, 90, 20]];
        let other_top = vec![vec![120u8, 90, 20]];
        let ms = Duration::from_micros;
        assert!(stats.record(&specs, &a, Some(&same_top), ms(2), ms(4)));
        assert!(!stats.record(&specs, &a, Some(&other_top), ms(2), ms(4)));
        assert!(!stats.record(&specs, &a, None, ms(2), ms(4)));
        let report = stats.report("1", "2");
        assert_eq!(
            (report.runs, report.agreements, report.shadow_errors),
            (3, 1, 1)
        );
        assert!((report.agreement_rate - 1.0 / 3.0).abs() < 1e-9);
        assert_eq!(report.active_mean_us, 2.0);
        assert_eq!(report.shadow_max_us, 4.0);
    }
}
