//! A device's health window and the scaling the equipment-health model was trained with
//! (models/equipment-health/features.py `scale`; the two must stay in step).

/// Polls in a window.
pub const WINDOW: usize = 6;

/// The signals, in the model's order.
pub const SIGNALS: [&str; 7] = [
    "temperature_c",
    "fan_rpm",
    "if_errors_per_s",
    "if_discards_per_s",
    "rx_power_dbm",
    "cpu_pct",
    "memory_pct",
];

/// What a signal that is not polled counts as: a healthy, idle value, so that it neither
/// raises nor hides a risk.
pub const NEUTRAL: [f64; 7] = [40.0, 5000.0, 0.0, 0.0, -5.0, 20.0, 40.0];

/// One poll of every signal, in [`SIGNALS`] order.
pub type Sample = [f64; 7];

/// The model's 14 inputs: each signal's latest level and its mean change per poll, scaled.
pub fn scale(window: &[Sample]) -> Vec<f32> {
    let (Some(first), Some(last)) = (window.first(), window.last()) else {
        return vec![0.0; 14];
    };
    let polls = (window.len().max(2) - 1) as f64;
    let trend = |index: usize| (last[index] - first[index]) / polls;
    let log = |value: f64| value.max(0.0).ln_1p();
    let log_trend = |index: usize| (log(last[index]) - log(first[index])) / polls;
    let columns = [
        (last[0] / 100.0, trend(0) / 5.0),
        (last[1] / 10000.0, trend(1) / 1000.0),
        (log(last[2]) / 8.0, log_trend(2) / 2.0),
        (log(last[3]) / 8.0, log_trend(3) / 2.0),
        ((last[4] + 40.0) / 40.0, trend(4) / 2.0),
        (last[5] / 100.0, trend(5) / 20.0),
        (last[6] / 100.0, trend(6) / 10.0),
    ];
    columns
        .iter()
        .flat_map(|(level, trend)| [*level, *trend])
        .map(|value| value.clamp(-1.0, 1.5) as f32)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The same window through features.py `scale` gives these (computed by hand from its
    /// formulas).
    #[test]
    fn scaling_matches_the_training_script() {
        let mut window = [NEUTRAL; WINDOW];
        for (poll, sample) in window.iter_mut().enumerate() {
            sample[0] = 60.0 + 2.0 * poll as f64;
            sample[2] = 1.0 * 2f64.powi(poll as i32);
        }
        let features = scale(&window);
        assert_eq!(features.len(), 14);
        assert!((features[0] - 0.70).abs() < 1e-6);
        assert!((features[1] - 0.40).abs() < 1e-6);
        let errors_level = (33f64.ln() / 8.0) as f32;
        assert!((features[4] - errors_level).abs() < 1e-6);
        let errors_trend = ((33f64.ln() - 2f64.ln()) / 5.0 / 2.0) as f32;
        assert!((features[5] - errors_trend).abs() < 1e-6);
        assert!((features[8] - 0.875).abs() < 1e-6, "rx power level");
        assert_eq!(features[9], 0.0);
    }
}
