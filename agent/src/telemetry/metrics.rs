//! Prometheus metrics. Per-function handles are resolved once when a function is loaded, so
//! the event path only touches atomics.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use super::labels::{EventDrop, OutboxDrop, Rejection, RequestOutcome};
use super::latency::LatencyRecord;
use crate::event::Source;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FunctionLabel {
    function: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FunctionKindLabel {
    function: String,
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FunctionReasonLabel {
    function: String,
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BrokerLabel {
    broker: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BrokerReasonLabel {
    broker: String,
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BrokerAfterLabel {
    broker: String,
    after: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabel {
    function: String,
    protocol: &'static str,
    target: String,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestTargetLabel {
    function: String,
    protocol: &'static str,
    target: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RevisionLabel {
    revision: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SourceLabel {
    source: String,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    // 5 µs to ~10 s.
    Histogram::new(exponential_buckets(5e-6, 2.0, 22))
}

/// All of fogd's metrics.
pub struct Metrics {
    registry: Registry,
    invocations: Family<FunctionLabel, Counter>,
    errors: Family<FunctionKindLabel, Counter>,
    dropped: Family<FunctionReasonLabel, Counter>,
    duration: HistogramFamily<FunctionLabel>,
    cold_start: HistogramFamily<FunctionLabel>,
    queue_depth: Family<FunctionLabel, Gauge>,
    received: Family<SourceLabel, Counter>,
    datagrams: Family<SourceLabel, Counter>,
    snmp_discoveries: Counter,
    rejected: Family<SourceReasonLabel, Counter>,
    truncated: Family<SourceLabel, Counter>,
    flow_records: Counter,
    broker_connected: Family<BrokerLabel, Gauge>,
    broker_connects: Family<BrokerLabel, Counter>,
    published: Family<BrokerLabel, Counter>,
    outbox_depth: Family<BrokerLabel, Gauge>,
    outbox_dropped: Family<BrokerReasonLabel, Counter>,
    messages_dropped: Family<FunctionReasonLabel, Counter>,
    acknowledged: Family<BrokerAfterLabel, Counter>,
    requests: Family<RequestLabel, Counter>,
    request_duration: HistogramFamily<RequestTargetLabel>,
    responses_cut: Family<RequestTargetLabel, Counter>,
    deployment: Family<RevisionLabel, Gauge>,
    /// Per function, for percentiles over a window (the watch after a deployment).
    latencies: Mutex<HashMap<String, Arc<LatencyRecord>>>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SourceReasonLabel {
    source: String,
    reason: String,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("fogd");
        let invocations = Family::default();
        let errors = Family::default();
        let dropped = Family::default();
        let duration: HistogramFamily<FunctionLabel> =
            Family::new_with_constructor(latency_histogram);
        let cold_start: HistogramFamily<FunctionLabel> =
            Family::new_with_constructor(latency_histogram);
        let queue_depth = Family::default();
        let received = Family::default();
        let datagrams = Family::default();
        let snmp_discoveries = Counter::default();
        let rejected = Family::default();
        let truncated = Family::default();
        let flow_records = Counter::default();
        let broker_connected = Family::default();
        let broker_connects = Family::default();
        let published = Family::default();
        let outbox_depth = Family::default();
        let outbox_dropped = Family::default();
        let messages_dropped = Family::default();
        let acknowledged = Family::default();
        let requests = Family::default();
        let request_duration: HistogramFamily<RequestTargetLabel> =
            Family::new_with_constructor(latency_histogram);
        let responses_cut = Family::default();
        let deployment = Family::default();
        registry.register(
            "deployment_revision",
            "The fleet deployment's revisions on this device: the one running (\"running\"; 0 \
             for the config file's own functions), the last committed (\"committed\"), and the \
             one in its watch window before it may commit (\"watching\"; 0 when none)",
            deployment.clone(),
        );
        registry.register(
            "outbound_requests",
            "Requests functions made (HTTP, SNMP), per function, protocol, granted target \
             (an HTTP origin, an SNMP target; \"none\" when nothing granted matched) and outcome",
            requests.clone(),
        );
        registry.register(
            "outbound_request_duration_seconds",
            "Time from a function's request to its answer (HTTP: the response head), per \
             function, protocol and target",
            request_duration.clone(),
        );
        registry.register(
            "http_responses_cut",
            "HTTP response bodies cut at the function's limits.http_response_bytes",
            responses_cut.clone(),
        );
        registry.register(
            "mqtt_acknowledged",
            "QoS 1/2 messages acknowledged, per broker and by what made their results safe: \
             the broker receiving them (delivery) or a flush to disk (flush)",
            acknowledged.clone(),
        );
        registry.register(
            "broker_connected",
            "1 while the broker connection is up",
            broker_connected.clone(),
        );
        registry.register(
            "broker_connects",
            "Connections established, per broker (more than one means it reconnected)",
            broker_connects.clone(),
        );
        registry.register(
            "messages_published",
            "Messages the broker accepted, per connection",
            published.clone(),
        );
        registry.register(
            "outbox_depth",
            "Messages waiting in the outbox, per connection",
            outbox_depth.clone(),
        );
        registry.register(
            "outbox_dropped",
            "Outbox messages dropped, per connection and reason",
            outbox_dropped.clone(),
        );
        registry.register(
            "messages_dropped",
            "A function's outbound messages dropped from its outbox queue, per function and reason",
            messages_dropped.clone(),
        );
        registry.register(
            "invocations",
            "Events handled, per function",
            invocations.clone(),
        );
        registry.register(
            "invocation_errors",
            "Failed events, per function and kind",
            errors.clone(),
        );
        registry.register(
            "events_dropped",
            "Events dropped before running, per function and reason",
            dropped.clone(),
        );
        registry.register(
            "invocation_duration_seconds",
            "Time from instance creation to result, per function",
            duration.clone(),
        );
        registry.register(
            "cold_start_seconds",
            "Store creation and instantiation time, per function",
            cold_start.clone(),
        );
        registry.register(
            "queue_depth",
            "Events waiting, per function",
            queue_depth.clone(),
        );
        registry.register(
            "events_received",
            "Events produced by triggers, per source",
            received.clone(),
        );
        registry.register(
            "inputs_rejected",
            "Inputs rejected before becoming events, per source and reason",
            rejected.clone(),
        );
        registry.register(
            "inputs_truncated",
            "Inputs longer than their limit, cut there and delivered, per source",
            truncated.clone(),
        );
        registry.register(
            "datagrams_received",
            "UDP datagrams read by a receiver, per source: each becomes events, is answered \
             (an SNMP discovery) or is counted in inputs_rejected",
            datagrams.clone(),
        );
        registry.register(
            "snmp_discoveries",
            "SNMPv3 discovery probes the trap receiver answered with its engine ID",
            snmp_discoveries.clone(),
        );
        registry.register(
            "flow_records",
            "Flow records decoded from NetFlow, IPFIX and sFlow exports",
            flow_records.clone(),
        );
        Self {
            registry,
            invocations,
            errors,
            dropped,
            duration,
            cold_start,
            queue_depth,
            received,
            datagrams,
            snmp_discoveries,
            rejected,
            truncated,
            flow_records,
            broker_connected,
            broker_connects,
            published,
            outbox_depth,
            outbox_dropped,
            messages_dropped,
            acknowledged,
            requests,
            request_duration,
            responses_cut,
            deployment,
            latencies: Mutex::default(),
        }
    }

    /// Counters of the QoS 1/2 messages from `broker` acknowledged, by what made their
    /// results safe; taken once per connection, not per message.
    pub fn acknowledged(&self, broker: &str) -> AcknowledgedMetrics {
        AcknowledgedMetrics {
            after_delivery: self.acknowledged_counter(broker, "delivery"),
            after_flush: self.acknowledged_counter(broker, "flush"),
        }
    }

    pub fn acknowledged_count(&self, broker: &str, after: &'static str) -> u64 {
        self.acknowledged_counter(broker, after).get()
    }

    fn acknowledged_counter(&self, broker: &str, after: &'static str) -> Counter {
        self.acknowledged.get_or_create_owned(&BrokerAfterLabel {
            broker: broker.to_owned(),
            after,
        })
    }

    /// Handles for one broker: its main connection's state and what its outbox delivered.
    pub fn broker(&self, name: &str) -> BrokerMetrics {
        let label = BrokerLabel {
            broker: name.to_owned(),
        };
        BrokerMetrics {
            name: name.to_owned(),
            connection: self.connection(name),
            published: self.published.get_or_create_owned(&label),
            outbox_depth: self.outbox_depth.get_or_create_owned(&label),
            dropped: self.outbox_dropped.clone(),
            messages_dropped: self.messages_dropped.clone(),
        }
    }

    /// Handles for the state of one connection to a broker (`<broker>` or `<broker>/publish`).
    pub fn connection(&self, name: &str) -> ConnectionMetrics {
        let label = BrokerLabel {
            broker: name.to_owned(),
        };
        ConnectionMetrics {
            connected: self.broker_connected.get_or_create_owned(&label),
            connects: self.broker_connects.get_or_create_owned(&label),
        }
    }

    /// Messages of `function` dropped on their way out, for `reason`.
    pub fn messages_dropped_count(&self, function: &str, reason: &str) -> u64 {
        self.messages_dropped
            .get(&FunctionReasonLabel {
                function: function.to_owned(),
                reason: reason.to_owned(),
            })
            .map_or(0, |counter| counter.get())
    }

    /// Events produced so far by triggers of `source`.
    pub fn events_received_count(&self, source: &str) -> u64 {
        self.received
            .get(&SourceLabel {
                source: source.to_owned(),
            })
            .map_or(0, |counter| counter.get())
    }

    /// A counter's current value, for tests and `/healthz` summaries.
    pub fn input_rejected_count(&self, source: &str, reason: &str) -> u64 {
        self.rejected
            .get(&SourceReasonLabel {
                source: source.to_owned(),
                reason: reason.to_owned(),
            })
            .map_or(0, |counter| counter.get())
    }

    /// Handles for one function.
    pub fn function(&self, name: &str) -> FunctionMetrics {
        let label = FunctionLabel {
            function: name.to_owned(),
        };
        FunctionMetrics {
            name: name.to_owned(),
            invocations: self.invocations.get_or_create_owned(&label),
            duration: self.duration.get_or_create_owned(&label),
            cold_start: self.cold_start.get_or_create_owned(&label),
            queue_depth: self.queue_depth.get_or_create_owned(&label),
            latency: self
                .latencies
                .lock()
                .map(|mut latencies| latencies.entry(name.to_owned()).or_default().clone())
                .unwrap_or_default(),
            errors: self.errors.clone(),
            dropped: self.dropped.clone(),
        }
    }

    /// Handles for the outbound requests of one function over `protocol`.
    pub fn outbound_requests(
        &self,
        function: &str,
        protocol: &'static str,
    ) -> OutboundRequestMetrics {
        OutboundRequestMetrics {
            function: function.to_owned(),
            protocol,
            requests: self.requests.clone(),
            duration: self.request_duration.clone(),
            cut: self.responses_cut.clone(),
        }
    }

    /// Sets the deployment revisions the device runs, has committed and is watching.
    pub fn deployment(&self, running: Option<u64>, committed: Option<u64>, watching: Option<u64>) {
        for (revision, value) in [
            ("running", running),
            ("committed", committed),
            ("watching", watching),
        ] {
            let value = i64::try_from(value.unwrap_or(0)).unwrap_or(i64::MAX);
            self.deployment
                .get_or_create(&RevisionLabel { revision })
                .set(value);
        }
    }

    /// Counts an event produced by a trigger.
    pub fn event_received(&self, source: Source) {
        self.received
            .get_or_create(&SourceLabel {
                source: source.as_str().to_owned(),
            })
            .inc();
    }

    /// Counts an input a trigger refused (malformed, unauthorised, too large...), labelled
    /// with the same source names as the events (`Source::as_str`).
    pub fn input_rejected(&self, source: Source, reason: Rejection) {
        self.inputs_rejected_by(source, reason, 1);
    }

    /// The counter of `source`'s datagrams read, resolved once per receiver.
    pub fn datagrams_received(&self, source: Source) -> Counter {
        self.datagrams
            .get_or_create(&SourceLabel {
                source: source.as_str().to_owned(),
            })
            .clone()
    }

    pub fn datagrams_received_count(&self, source: &str) -> u64 {
        self.datagrams
            .get(&SourceLabel {
                source: source.to_owned(),
            })
            .map_or(0, |counter| counter.get())
    }

    pub fn snmp_discovery(&self) {
        self.snmp_discoveries.inc();
    }

    pub fn snmp_discoveries_count(&self) -> u64 {
        self.snmp_discoveries.get()
    }

    /// Counts an input delivered cut to its size limit.
    pub fn input_truncated(&self, source: Source) {
        self.truncated
            .get_or_create(&SourceLabel {
                source: source.as_str().to_owned(),
            })
            .inc();
    }

    pub fn flow_records_decoded(&self, records: u64) {
        self.flow_records.inc_by(records);
    }

    pub fn flow_records_count(&self) -> u64 {
        self.flow_records.get()
    }

    pub fn input_truncated_count(&self, source: &str) -> u64 {
        self.truncated
            .get(&SourceLabel {
                source: source.to_owned(),
            })
            .map_or(0, |counter| counter.get())
    }

    pub fn inputs_rejected_by(&self, source: Source, reason: Rejection, count: u64) {
        let source = source.as_str();
        self.rejected
            .get_or_create(&SourceReasonLabel {
                source: source.to_owned(),
                reason: reason.as_str().to_owned(),
            })
            .inc_by(count);
    }

    /// The Prometheus text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }
}

/// One function's metrics.
#[derive(Clone)]
pub struct FunctionMetrics {
    name: String,
    pub invocations: Counter,
    pub duration: Histogram,
    pub cold_start: Histogram,
    pub queue_depth: Gauge,
    pub latency: Arc<LatencyRecord>,
    errors: Family<FunctionKindLabel, Counter>,
    dropped: Family<FunctionReasonLabel, Counter>,
}

impl FunctionMetrics {
    /// The function these metrics are labelled with.
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn error(&self, kind: &str) {
        self.errors
            .get_or_create(&FunctionKindLabel {
                function: self.name.clone(),
                kind: kind.to_owned(),
            })
            .inc();
    }

    pub fn dropped(&self, reason: EventDrop) {
        self.dropped_many(reason, 1);
    }

    pub fn dropped_many(&self, reason: EventDrop, count: u64) {
        self.dropped
            .get_or_create(&FunctionReasonLabel {
                function: self.name.clone(),
                reason: reason.as_str().to_owned(),
            })
            .inc_by(count);
    }

    pub fn dropped_count(&self, reason: &str) -> u64 {
        self.dropped
            .get(&FunctionReasonLabel {
                function: self.name.clone(),
                reason: reason.to_owned(),
            })
            .map_or(0, |counter| counter.get())
    }

    pub fn error_count(&self, kind: &str) -> u64 {
        self.errors
            .get(&FunctionKindLabel {
                function: self.name.clone(),
                kind: kind.to_owned(),
            })
            .map_or(0, |counter| counter.get())
    }
}

/// The outbound requests of one function over one protocol.
#[derive(Clone)]
pub struct OutboundRequestMetrics {
    function: String,
    protocol: &'static str,
    requests: Family<RequestLabel, Counter>,
    duration: HistogramFamily<RequestTargetLabel>,
    cut: Family<RequestTargetLabel, Counter>,
}

impl OutboundRequestMetrics {
    fn label(&self, target: &str, outcome: RequestOutcome) -> RequestLabel {
        RequestLabel {
            function: self.function.clone(),
            protocol: self.protocol,
            target: target.to_owned(),
            outcome: outcome.as_str(),
        }
    }

    fn target_label(&self, target: &str) -> RequestTargetLabel {
        RequestTargetLabel {
            function: self.function.clone(),
            protocol: self.protocol,
            target: target.to_owned(),
        }
    }

    /// Counts one request to `target` that ended as `outcome`.
    pub fn request(&self, target: &str, outcome: RequestOutcome) {
        self.requests
            .get_or_create(&self.label(target, outcome))
            .inc();
    }

    /// Records the time a request to `target` waited for its answer.
    pub fn answered_after(&self, target: &str, elapsed: std::time::Duration) {
        self.duration
            .get_or_create(&self.target_label(target))
            .observe(elapsed.as_secs_f64());
    }

    /// Counts a response body cut at the function's limit.
    pub fn response_cut(&self, target: &str) {
        self.cut.get_or_create(&self.target_label(target)).inc();
    }

    pub fn request_count(&self, target: &str, outcome: RequestOutcome) -> u64 {
        self.requests
            .get(&self.label(target, outcome))
            .map_or(0, |counter| counter.get())
    }
}

/// QoS 1/2 acknowledgements of one broker, by what made the message's results safe.
pub struct AcknowledgedMetrics {
    pub after_delivery: Counter,
    pub after_flush: Counter,
}

/// One broker's metrics: its main connection's state and what its outbox did.
#[derive(Clone)]
pub struct BrokerMetrics {
    name: String,
    pub connection: ConnectionMetrics,
    pub published: Counter,
    pub outbox_depth: Gauge,
    dropped: Family<BrokerReasonLabel, Counter>,
    messages_dropped: Family<FunctionReasonLabel, Counter>,
}

#[derive(Clone)]
pub struct ConnectionMetrics {
    pub connected: Gauge,
    pub connects: Counter,
}

impl BrokerMetrics {
    /// Counts `count` messages of `function` dropped from this broker's outbox for `reason`,
    /// under both the broker's and the function's drop counters.
    pub fn outbox_dropped(&self, function: &str, reason: OutboxDrop, count: u64) {
        self.dropped
            .get_or_create(&BrokerReasonLabel {
                broker: self.name.clone(),
                reason: reason.as_str().to_owned(),
            })
            .inc_by(count);
        self.messages_dropped
            .get_or_create(&FunctionReasonLabel {
                function: function.to_owned(),
                reason: reason.as_str().to_owned(),
            })
            .inc_by(count);
    }

    pub fn dropped_count(&self, reason: &str) -> u64 {
        self.dropped
            .get(&BrokerReasonLabel {
                broker: self.name.clone(),
                reason: reason.to_owned(),
            })
            .map_or(0, |counter| counter.get())
    }
}

impl Metrics {
    /// The registry, for metrics kept elsewhere (the model registry's, which outlive an
    /// agent across reloads) to add themselves to.
    pub fn registry_mut(&mut self) -> &mut Registry {
        &mut self.registry
    }
}
