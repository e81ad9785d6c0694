//! Inference metrics. They live with the model registry, which outlives a config reload,
//! and are added to each agent's `/metrics`.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RunLabel {
    model: String,
    version: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ModelLabel {
    model: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ShadowLabel {
    model: String,
    shadow_version: String,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    // 500 ns to ~1 s.
    Histogram::new(exponential_buckets(5e-7, 2.0, 22))
}

#[derive(Clone)]
pub struct InferenceMetrics {
    available: Gauge,
    runs: Family<RunLabel, Counter>,
    latency: HistogramFamily<ModelLabel>,
    shadow_runs: Family<ShadowLabel, Counter>,
    shadow_agreements: Family<ShadowLabel, Counter>,
}

impl Default for InferenceMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl InferenceMetrics {
    pub fn new() -> Self {
        Self {
            available: Gauge::default(),
            runs: Family::default(),
            latency: Family::new_with_constructor(latency_histogram),
            shadow_runs: Family::default(),
            shadow_agreements: Family::default(),
        }
    }

    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "inference_available",
            "1 when the LiteRT runtime is loaded",
            self.available.clone(),
        );
        registry.register(
            "inference_runs",
            "Model runs, per model, version and outcome",
            self.runs.clone(),
        );
        registry.register(
            "inference_seconds",
            "Time of one run of the active version, per model",
            self.latency.clone(),
        );
        registry.register(
            "shadow_runs",
            "Runs of a shadow version beside the active one",
            self.shadow_runs.clone(),
        );
        registry.register(
            "shadow_agreements",
            "Shadow runs whose top class matched the active version's",
            self.shadow_agreements.clone(),
        );
    }

    pub fn set_available(&self, available: bool) {
        self.available.set(i64::from(available));
    }

    pub fn record(&self, model: &str, version: &str, outcome: &str, time: Option<Duration>) {
        self.runs
            .get_or_create(&RunLabel {
                model: model.to_owned(),
                version: version.to_owned(),
                outcome: outcome.to_owned(),
            })
            .inc();
        if let Some(time) = time {
            self.latency
                .get_or_create(&ModelLabel {
                    model: model.to_owned(),
                })
                .observe(time.as_secs_f64());
        }
    }

    pub fn record_shadow(&self, model: &str, shadow_version: &str, agreed: bool) {
        let label = ShadowLabel {
            model: model.to_owned(),
            shadow_version: shadow_version.to_owned(),
        };
        self.shadow_runs.get_or_create(&label).inc();
        if agreed {
            self.shadow_agreements.get_or_create(&label).inc();
        }
    }
}
