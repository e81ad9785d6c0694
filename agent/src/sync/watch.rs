//! The watch window after a revision is activated: each function's share of failed events
//! (faults of the function itself, not backpressure) is compared with the document's gate,
//! often enough that a tripped gate is seen within [`CHECK_EVERY`].

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::config::FunctionSpec;
use crate::runtime::InvokeError;
use crate::telemetry::{FunctionMetrics, Metrics};

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
    /// Each function's metrics with its invocation and fault counts at activation.
    functions: Vec<(FunctionMetrics, u64, u64)>,
}

impl Watch {
    /// Starts watching `functions` from their counts now.
    pub fn start(gates: HealthGates, metrics: &Metrics, functions: &[FunctionSpec]) -> Self {
        let functions = functions
            .iter()
            .map(|spec| {
                let function = metrics.function(&spec.name);
                let (invocations, faults) = counts(&function);
                (function, invocations, faults)
            })
            .collect();
        Self { gates, functions }
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
            .find_map(|(function, invocations_before, faults_before)| {
                let (invocations, faults) = counts(function);
                let events = invocations.saturating_sub(*invocations_before);
                let failed = faults.saturating_sub(*faults_before);
                let rate = failed as f64 / events.max(1) as f64;
                (events >= self.gates.min_events && rate > self.gates.max_error_rate).then(|| {
                    format!(
                        "function {}: {failed} of {events} events failed ({:.0}%, the gate is {:.0}%)",
                        function.name(),
                        rate * 100.0,
                        self.gates.max_error_rate * 100.0
                    )
                })
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
