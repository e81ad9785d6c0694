//! The watch window after a revision is activated. Each function's share of failed events
//! (faults of the function itself, not backpressure) and the 99th percentile of its event
//! time, and each replaced model's mean top-class confidence against the version it
//! replaced, are compared with the document's gates often enough that a tripped gate is seen
//! within [`CHECK_EVERY`]. Everything is measured from activation on.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::config::FunctionSpec;
use crate::inference::{ConfidenceSnapshot, ModelRegistry};
use crate::runtime::InvokeError;
use crate::telemetry::{FunctionMetrics, LatencySnapshot, Metrics};

use super::HealthGates;
use super::report::FunctionHealth;

/// How often the gates are evaluated during the window.
pub const CHECK_EVERY: Duration = Duration::from_millis(20);

/// How a watch window ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Healthy,
    /// A gate tripped; why, and when it was seen.
    Tripped {
        reason: String,
        at: Instant,
    },
}

pub struct Watch {
    gates: HealthGates,
    functions: Vec<FunctionAtStart>,
    models: Arc<ModelRegistry>,
    replaced_models: Vec<ModelAtStart>,
}

/// A function's metrics and its counts when the revision was activated.
struct FunctionAtStart {
    metrics: FunctionMetrics,
    invocations: u64,
    faults: u64,
    latency: LatencySnapshot,
}

/// A model this revision gave a new version: its record at activation and the mean
/// confidence of the version it replaced.
struct ModelAtStart {
    name: String,
    version: String,
    confidence: ConfidenceSnapshot,
    previous_version: String,
    previous_mean: f64,
}

impl Watch {
    /// Starts watching `functions`, and the models named in `replaced_models` whose previous
    /// version served at least the gate's minimum of runs (below that it is no baseline).
    pub fn start(
        gates: HealthGates,
        metrics: &Metrics,
        functions: &[FunctionSpec],
        models: &Arc<ModelRegistry>,
        replaced_models: &[String],
    ) -> Self {
        let functions = functions
            .iter()
            .map(|spec| {
                let metrics = metrics.function(&spec.name);
                let (invocations, faults) = counts(&metrics);
                let latency = metrics.latency.snapshot();
                FunctionAtStart {
                    metrics,
                    invocations,
                    faults,
                    latency,
                }
            })
            .collect();
        let replaced_models = replaced_models
            .iter()
            .filter_map(|name| {
                let confidence = models.confidence(name)?;
                let previous = confidence.previous?;
                if previous.confidence.runs < gates.min_events.max(1) {
                    return None;
                }
                Some(ModelAtStart {
                    name: name.clone(),
                    version: confidence.active.version,
                    confidence: confidence.active.confidence,
                    previous_version: previous.version,
                    previous_mean: previous.confidence.mean()?,
                })
            })
            .collect();
        Self {
            gates,
            functions,
            models: models.clone(),
            replaced_models,
        }
    }

    /// Evaluates the gates every [`CHECK_EVERY`] until one trips or the window ends.
    pub async fn run(self) -> Verdict {
        let ends = Instant::now() + self.gates.window.as_duration();
        loop {
            if let Some(reason) = self.tripped() {
                return Verdict::Tripped {
                    reason,
                    at: Instant::now(),
                };
            }
            let now = Instant::now();
            if now >= ends {
                return Verdict::Healthy;
            }
            tokio::time::sleep(CHECK_EVERY.min(ends - now)).await;
        }
    }

    fn tripped(&self) -> Option<String> {
        self.functions
            .iter()
            .find_map(|function| self.function_tripped(function))
            .or_else(|| {
                self.replaced_models
                    .iter()
                    .find_map(|model| self.model_tripped(model))
            })
    }

    fn function_tripped(&self, start: &FunctionAtStart) -> Option<String> {
        let name = start.metrics.name();
        let (invocations, faults) = counts(&start.metrics);
        let events = invocations.saturating_sub(start.invocations);
        if events < self.gates.min_events {
            return None;
        }
        let failed = faults.saturating_sub(start.faults);
        let rate = failed as f64 / events.max(1) as f64;
        if rate > self.gates.max_error_rate {
            return Some(format!(
                "function {name}: {failed} of {events} events failed ({:.0}%, the gate is {:.0}%)",
                rate * 100.0,
                self.gates.max_error_rate * 100.0
            ));
        }
        let limit = self.gates.max_p99_latency?.as_duration();
        let window = start.metrics.latency.snapshot().since(&start.latency);
        let p99 = window.quantile(0.99)?;
        (p99 > limit).then(|| {
            format!(
                "function {name}: p99 event time {:.1} ms over {} events (the gate is {} ms)",
                p99.as_secs_f64() * 1e3,
                window.count(),
                limit.as_millis()
            )
        })
    }

    fn model_tripped(&self, start: &ModelAtStart) -> Option<String> {
        let limit = self.gates.max_confidence_drift?;
        let now = self.models.confidence(&start.name)?.active;
        if now.version != start.version {
            return None;
        }
        let window = now.confidence.since(&start.confidence);
        if window.runs < self.gates.min_events.max(1) {
            return None;
        }
        let mean = window.mean()?;
        let drift = (mean - start.previous_mean).abs();
        (drift > limit).then(|| {
            format!(
                "model {}: mean confidence {mean:.2} over {} runs of version {} against {:.2} for version {} (drift {drift:.2}, the gate is {limit:.2})",
                start.name, window.runs, start.version, start.previous_mean, start.previous_version
            )
        })
    }
}

/// Each function's events and faults since the agent started, for the device report.
pub fn function_health(
    metrics: &Metrics,
    functions: &[FunctionSpec],
) -> BTreeMap<String, FunctionHealth> {
    functions
        .iter()
        .map(|spec| {
            let (events, failures) = counts(&metrics.function(&spec.name));
            (spec.name.clone(), FunctionHealth { events, failures })
        })
        .collect()
}

fn counts(function: &FunctionMetrics) -> (u64, u64) {
    let faults = InvokeError::FAULT_KINDS
        .iter()
        .map(|kind| function.error_count(kind))
        .sum();
    (function.invocations.get(), faults)
}
