//! Measurements behind `fogd bench`: latency percentiles and throughput, as JSON or text.

use std::time::Duration;

use serde::Serialize;

/// The summary every `fogd bench` prints.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Summary {
    pub iterations: u64,
    pub p50_us: f64,
    pub p99_us: f64,
    pub mean_us: f64,
    /// Operations per second over the whole measured run.
    pub per_second: f64,
}

impl Summary {
    /// Summarises per-operation latencies (nanoseconds) measured over `elapsed` in total.
    pub fn from_latencies(latencies_ns: &mut [u64], elapsed: Duration) -> Self {
        latencies_ns.sort_unstable();
        let count = latencies_ns.len() as u64;
        let total: u128 = latencies_ns.iter().map(|&ns| u128::from(ns)).sum();
        let mean_ns = if count == 0 {
            0.0
        } else {
            total as f64 / count as f64
        };
        let seconds = elapsed.as_secs_f64();
        Self {
            iterations: count,
            p50_us: percentile(latencies_ns, 50.0) as f64 / 1000.0,
            p99_us: percentile(latencies_ns, 99.0) as f64 / 1000.0,
            mean_us: mean_ns / 1000.0,
            per_second: if seconds > 0.0 {
                count as f64 / seconds
            } else {
                0.0
            },
        }
    }

    pub fn to_text(&self, what: &str) -> String {
        format!(
            "{what}: {} iterations, p50 {:.2} µs, p99 {:.2} µs, mean {:.2} µs, {:.0}/s",
            self.iterations, self.p50_us, self.p99_us, self.mean_us, self.per_second
        )
    }
}

/// Nearest-rank percentile of sorted values (0 when empty).
pub fn percentile(sorted: &[u64], pct: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((pct / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_nearest_rank() {
        let values: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&values, 50.0), 50);
        assert_eq!(percentile(&values, 99.0), 99);
        assert_eq!(percentile(&values, 100.0), 100);
        assert_eq!(percentile(&[], 50.0), 0);
        assert_eq!(percentile(&[7], 99.0), 7);
    }

    #[test]
    fn summary_reports_microseconds_and_rate() {
        let mut latencies = vec![3000, 1000, 2000, 4000];
        let summary = Summary::from_latencies(&mut latencies, Duration::from_millis(2));
        assert_eq!(summary.iterations, 4);
        assert_eq!(summary.p50_us, 2.0);
        assert_eq!(summary.p99_us, 4.0);
        assert_eq!(summary.mean_us, 2.5);
        assert_eq!(summary.per_second, 2000.0);
    }
}
