//! Each model version's top-class confidence (the highest value of its first output,
//! dequantized), so a new version can be compared with the one it replaced while it is
//! being watched after a deployment.

use std::sync::Mutex;

use super::tensor::TensorSpec;

#[derive(Default)]
pub struct ConfidenceRecord {
    totals: Mutex<ConfidenceSnapshot>,
}

/// Runs and the sum of their top-class confidences up to one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ConfidenceSnapshot {
    pub runs: u64,
    sum: f64,
}

impl ConfidenceRecord {
    /// Adds one run's outputs; outputs that cannot be decoded are left out.
    pub fn record(&self, specs: &[TensorSpec], outputs: &[Vec<u8>]) {
        let Some(top) = top_confidence(specs, outputs) else {
            return;
        };
        if let Ok(mut totals) = self.totals.lock() {
            totals.runs += 1;
            totals.sum += f64::from(top);
        }
    }

    pub fn snapshot(&self) -> ConfidenceSnapshot {
        self.totals.lock().map(|t| *t).unwrap_or_default()
    }
}

impl ConfidenceSnapshot {
    /// What was recorded between `earlier` and this snapshot.
    pub fn since(&self, earlier: &ConfidenceSnapshot) -> ConfidenceSnapshot {
        ConfidenceSnapshot {
            runs: self.runs.saturating_sub(earlier.runs),
            sum: self.sum - earlier.sum,
        }
    }

    pub fn mean(&self) -> Option<f64> {
        (self.runs > 0).then(|| self.sum / self.runs as f64)
    }
}

fn top_confidence(specs: &[TensorSpec], outputs: &[Vec<u8>]) -> Option<f32> {
    let values = specs.first()?.decode_f32(outputs.first()?).ok()?;
    values
        .into_iter()
        .filter(|v| v.is_finite())
        .reduce(f32::max)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inference::ElementType;

    #[test]
    fn means_the_top_value_of_the_first_output_over_a_window() {
        let spec = TensorSpec {
            name: "scores".into(),
            shape: vec![3],
            element: ElementType::Float32,
            quantization: None,
        };
        let outputs = |values: &[f32]| vec![spec.encode_f32(values).unwrap()];
        let record = ConfidenceRecord::default();
        let specs = std::slice::from_ref(&spec);
        record.record(specs, &outputs(&[0.1, 0.9, 0.0]));
        let before = record.snapshot();
        record.record(specs, &outputs(&[0.6, 0.2, 0.2]));
        record.record(specs, &outputs(&[0.1, 0.1, 0.4]));
        record.record(specs, &[vec![1, 2]]);
        let window = record.snapshot().since(&before);
        assert_eq!(window.runs, 2);
        assert!((window.mean().unwrap() - 0.5).abs() < 1e-6);
        assert_eq!(ConfidenceSnapshot::default().mean(), None);
    }
}
