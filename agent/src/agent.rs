//! The daemon assembled from its parts: state, runtime, executor, triggers, telemetry.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::config::Config;
use crate::inference::{Availability, ModelRegistry};
use crate::outbound::{ChannelSink, OutboundMessage, OutboundSink, OutboxSink, Outboxes};
use crate::router::{Dispatch, Router};
use crate::runtime::RuntimeError;
use crate::runtime::{Executor, Runtime, RuntimeSettings};
use crate::snmp_client::{SnmpTargets, TargetError};
use crate::state::{StateDb, StateError};
use crate::telemetry::{self, Health, JsonPage, Metrics};
use crate::triggers;
use crate::triggers::TriggerError;
use crate::triggers::mqtt::embedded::EmbeddedError;
use crate::triggers::{Inputs, Trigger};
use fogd_fleet::mqtt::{ConnectionSettings, SetupError};

/// Outbound messages that may wait in memory for the log when no broker is configured.
const OUTBOUND_CAPACITY: usize = 4096;

/// How long shutdown waits for admitted messages to be settled with their senders (MQTT
/// acknowledgements).
const ACK_GRACE: Duration = Duration::from_secs(10);

/// The metrics of an agent, with the model registry's.
pub fn metrics_for(models: &ModelRegistry) -> Metrics {
    let mut metrics = Metrics::new();
    models.metrics().register(metrics.registry_mut());
    metrics
}

/// Why the agent could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot create the state directory {path}: {source}")]
    StateDir {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    #[error(transparent)]
    EmbeddedBroker(#[from] EmbeddedError),
    #[error(transparent)]
    Connection(#[from] SetupError),
    #[error(transparent)]
    Trigger(#[from] TriggerError),
    #[error(transparent)]
    SnmpTarget(#[from] TargetError),
    #[error("cannot serve metrics on {address}: {source}")]
    Metrics {
        address: SocketAddr,
        source: std::io::Error,
    },
}

/// The addresses the triggers of `kind` listen on.
fn listening(triggers: &[Box<dyn Trigger>], kind: &str) -> Vec<SocketAddr> {
    triggers
        .iter()
        .filter(|trigger| trigger.kind() == kind)
        .flat_map(|trigger| trigger.listening().iter().copied())
        .collect()
}

/// A running agent.
pub struct Agent {
    executor: Executor,
    state: StateDb,
    shutdown: watch::Sender<bool>,
    /// The agent's own background tasks (heap trimming, sweeping, the metrics endpoint).
    tasks: Vec<JoinHandle<()>>,
    outbound_task: Option<JoinHandle<()>>,
    triggers: Vec<Box<dyn Trigger>>,
    /// What a reconfiguration in place works from: the running config, the runtime, the
    /// routing every trigger uses, and where output goes.
    config: Config,
    runtime: Runtime,
    dispatch: Dispatch,
    sinks: Sinks,
    pub metrics: Arc<Metrics>,
    pub health: Arc<Health>,
    /// Where `/metrics` and `/healthz` are served, if enabled.
    pub metrics_address: Option<SocketAddr>,
    /// Where SNMP traps and informs are received, if enabled.
    pub snmp_address: Option<SocketAddr>,
    /// Where the syslog receiver listens: its UDP addresses, then its TCP ones, as bound.
    pub syslog_addresses: Vec<SocketAddr>,
    /// Where the flow collector listens, in config order.
    pub flow_addresses: Vec<SocketAddr>,
    brokers: usize,
}

impl Agent {
    /// Opens state, loads every function (reporting, not failing on, those that cannot load),
    /// and starts the triggers. `models` is the registry the caller keeps across reloads.
    pub async fn start(config: Config, models: Arc<ModelRegistry>) -> Result<Self, StartError> {
        let metrics = Arc::new(metrics_for(&models));
        Self::start_with(config, models, metrics).await
    }

    /// As [`Agent::start`], counting into `metrics`, which the caller keeps across restarts
    /// (made by [`metrics_for`]) so that counters and histograms carry on.
    pub async fn start_with(
        config: Config,
        models: Arc<ModelRegistry>,
        metrics: Arc<Metrics>,
    ) -> Result<Self, StartError> {
        let health = Arc::new(Health::default());
        report_models(&config, &models, &health);
        std::fs::create_dir_all(&config.state_dir).map_err(|source| StartError::StateDir {
            path: config.state_dir.clone(),
            source,
        })?;
        let state = StateDb::open(&config.state_dir.join("db"), &config.state)?;
        let runtime = Runtime::new(RuntimeSettings::from_config(&config))?
            .with_models(models.clone())
            .with_metrics(metrics.clone())
            .with_snmp_targets(Arc::new(SnmpTargets::from_config(config.snmp.as_ref())?));
        if let Some(embedded) = &config.embedded_broker {
            triggers::mqtt::embedded::start(embedded)?;
        }
        let brokers = config
            .brokers
            .iter()
            .map(ConnectionSettings::load)
            .collect::<Result<Vec<_>, _>>()?;
        let default_broker: Option<Arc<str>> = brokers.first().map(|broker| broker.name.clone());

        let mut outbox_map = std::collections::HashMap::new();
        for settings in &brokers {
            outbox_map.insert(
                settings.name.clone(),
                state.fair_outbox(&settings.name, settings.spec.outbox)?,
            );
        }
        let outboxes = Arc::new(Outboxes::new(outbox_map, metrics.clone()));
        // Without a broker, messages are written to the log instead.
        let (log_sink, outbound_task) = if brokers.is_empty() {
            let (sink, outbound) = ChannelSink::new(OUTBOUND_CAPACITY);
            let sink: Arc<dyn OutboundSink> = Arc::new(sink);
            (Some(sink), Some(tokio::spawn(log_outbound(outbound))))
        } else {
            (None, None)
        };

        let sinks = Sinks {
            default_broker: default_broker.clone(),
            outboxes: outboxes.clone(),
            log: log_sink,
        };
        let mut functions = Vec::new();
        let mut loaded_specs = Vec::new();
        for spec in &config.functions {
            let started = std::time::Instant::now();
            let component = format!("function/{}", spec.name);
            match runtime.load(spec, &state, sinks.for_function(spec)) {
                Ok(function) => {
                    tracing::info!(
                        function = %spec.name,
                        source = function.load_source().as_str(),
                        elapsed_ms = started.elapsed().as_millis() as u64,
                        "function loaded"
                    );
                    health.set(component, true, "loaded");
                    functions.push(function);
                    loaded_specs.push(spec.clone());
                }
                Err(error) => {
                    tracing::error!(function = %spec.name, %error, "function not loaded");
                    health.set(component, false, error.to_string());
                }
            }
        }

        let executor = Executor::start(functions, config.workers(), &metrics);
        let router = Router::new(&loaded_specs, default_broker.as_deref());
        let dispatch = Dispatch::new(router, &executor, metrics.clone());
        let (shutdown, shutdown_rx) = watch::channel(false);
        let broker_count = brokers.len();
        let triggers = triggers::start(Inputs {
            config: &config,
            functions: &loaded_specs,
            brokers,
            dispatch: &dispatch,
            outboxes: &outboxes,
            state: &state,
            health: &health,
        })
        .await?;
        let tasks = vec![
            spawn_heap_trimmer(shutdown_rx.clone()),
            spawn_sweeper(
                state.clone(),
                config.state.sweep_every.as_duration(),
                shutdown_rx.clone(),
            ),
        ];
        let metrics_address = match config.metrics.address {
            Some(address) => Some(
                telemetry::serve(
                    address,
                    metrics.clone(),
                    health.clone(),
                    vec![("/models", models.clone() as Arc<dyn JsonPage>)],
                    shutdown_rx.clone(),
                )
                .await
                .map_err(|source| StartError::Metrics { address, source })?,
            ),
            None => None,
        };
        Ok(Self {
            executor,
            state,
            shutdown,
            tasks,
            outbound_task,
            snmp_address: listening(&triggers, "snmp").first().copied(),
            syslog_addresses: listening(&triggers, "syslog"),
            flow_addresses: listening(&triggers, "flow"),
            triggers,
            config,
            runtime,
            dispatch,
            sinks,
            metrics,
            health,
            metrics_address,
            brokers: broker_count,
        })
    }

    /// Runs `config` without a restart when it differs from the running one only in its
    /// functions and models: the triggers keep their sockets and broker sessions (which
    /// subscribe to what the functions now name and unsubscribe from the rest). A function
    /// that stays keeps its queue and the events in it (they run on the version they were
    /// queued for), and its new version (with its new limits and ordering) takes the events
    /// queued from then on; an added one gets a queue; a removed one stops taking events and
    /// finishes those it has. Anything else (any other setting, a version that does not load)
    /// leaves the agent untouched and is returned as the reason to restart.
    pub async fn reconfigure(&mut self, config: &Config) -> Result<(), NeedsRestart> {
        let refuse = |reason: String| Err(NeedsRestart(reason));
        if fixed_part(&self.config) != fixed_part(config) {
            return refuse("settings other than the functions and models changed".into());
        }
        let mut versions = Vec::with_capacity(config.functions.len());
        for spec in &config.functions {
            match self
                .runtime
                .load(spec, &self.state, self.sinks.for_function(spec))
            {
                Ok(function) => versions.push(function),
                Err(error) => {
                    return refuse(format!("function {} does not load: {error}", spec.name));
                }
            }
        }
        let mut added = 0;
        for function in versions {
            let name = function.name().clone();
            if self.executor.queue(&name).is_some() {
                self.executor.swap(function);
            } else {
                self.executor.add(function, &self.metrics);
                added += 1;
            }
            self.health.set(format!("function/{name}"), true, "loaded");
        }
        self.dispatch.set_routing(
            Router::new(&config.functions, self.sinks.default_broker.as_deref()),
            &self.executor,
        );
        for trigger in &mut self.triggers {
            trigger.follow(&config.functions).await;
        }
        // Only once no route leads to them do removed functions stop taking events. Those
        // that had not loaded leave `/healthz` too.
        let removed: Vec<_> = self
            .config
            .functions
            .iter()
            .filter(|old| !config.functions.iter().any(|spec| spec.name == old.name))
            .map(|old| old.name.clone())
            .collect();
        for name in &removed {
            self.executor.retire(name);
            self.health.remove(&format!("function/{name}"));
        }
        self.config = config.clone();
        tracing::info!(
            functions = self.executor.queues().count(),
            added,
            removed = removed.len(),
            "reconfigured in place: triggers and queues kept"
        );
        Ok(())
    }

    /// Says the agent serves. The caller logs it once everything a user may act on next (the
    /// pid file `fogd reload` reads) is in place.
    pub fn announce_ready(&self) {
        tracing::info!(
            functions = self.executor.queues().count(),
            brokers = self.brokers,
            metrics = ?self.metrics_address,
            "fogd ready"
        );
    }

    /// Whether the executor, the triggers and the guest worker pool all still work: what
    /// the systemd watchdog is fed on.
    pub async fn is_alive(&self) -> bool {
        let tasks_alive = self.executor.is_alive()
            && self.triggers.iter().all(|trigger| trigger.is_alive())
            && self.tasks.iter().all(|task| !task.is_finished());
        let pool_answers = matches!(
            tokio::time::timeout(Duration::from_secs(5), tokio::task::spawn_blocking(|| ())).await,
            Ok(Ok(()))
        );
        tasks_alive && pool_answers
    }

    /// Stops intake, lets queued and in-flight events finish and their MQTT messages be
    /// acknowledged, disconnects, flushes state.
    pub async fn shutdown(mut self) {
        tracing::info!("shutting down: draining events");
        let _ = self.shutdown.send(true);
        // Every trigger stops taking inputs at once; then each is waited for.
        let drains: Vec<_> = self
            .triggers
            .iter_mut()
            .map(|trigger| trigger.drain())
            .collect();
        for drain in drains {
            drain.await;
        }
        for task in self.tasks {
            let _ = task.await;
        }
        self.executor.shutdown().await;
        let deadline = tokio::time::Instant::now() + ACK_GRACE;
        for trigger in self.triggers {
            trigger.stop(deadline).await;
        }
        // The functions (held by the executor and the dispatch) and the sinks held the last
        // senders; the outbound log ends once it has drained.
        drop(self.dispatch);
        drop(self.sinks);
        if let Some(task) = self.outbound_task {
            let _ = task.await;
        }
        if let Err(error) = self.state.flush() {
            tracing::error!(%error, "flushing state failed");
        }
        tracing::info!("stopped");
    }
}

/// Where each function's output goes: its broker's durable outbox, or the log when no
/// broker is configured.
struct Sinks {
    default_broker: Option<Arc<str>>,
    outboxes: Arc<Outboxes>,
    log: Option<Arc<dyn OutboundSink>>,
}

impl Sinks {
    fn for_function(&self, spec: &crate::config::FunctionSpec) -> Arc<dyn OutboundSink> {
        match (&self.default_broker, &self.log) {
            (Some(default), _) => {
                let broker = spec
                    .broker
                    .as_deref()
                    .map_or_else(|| default.clone(), Arc::from);
                Arc::new(OutboxSink::new(self.outboxes.clone(), broker))
            }
            (None, Some(log)) => log.clone(),
            (None, None) => Arc::new(crate::outbound::DiscardSink),
        }
    }
}

/// Why a new configuration needs the agent restarted rather than changed in place.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct NeedsRestart(String);

/// The config with what a reconfiguration in place may change left out.
fn fixed_part(config: &Config) -> Config {
    let mut fixed = config.clone();
    fixed.functions.clear();
    fixed.models.clear();
    // Fleet sync is the supervisor's; the agent does not use it.
    fixed.sync = Default::default();
    fixed
}

/// Puts the runtime and each configured model into `/healthz`.
fn report_models(config: &Config, models: &ModelRegistry, health: &Health) {
    if config.models.is_empty() {
        return;
    }
    match models.availability() {
        Availability::Available(path) => {
            health.set("inference", true, format!("LiteRT from {}", path.display()))
        }
        Availability::Unavailable(reason) => health.set("inference", false, reason),
    }
    let failures = models.failures();
    let statuses = models.status();
    for status in &statuses {
        let detail = match failures.get(&status.name) {
            Some(error) => format!(
                "version {} active; the configured one was refused: {error}",
                status.version
            ),
            None => format!("version {}", status.version),
        };
        health.set(
            format!("model/{}", status.name),
            !failures.contains_key(&status.name),
            detail,
        );
    }
    for (name, error) in failures {
        if !statuses.iter().any(|s| s.name == name) {
            health.set(format!("model/{name}"), false, error);
        }
    }
}

/// Until a broker connection exists, outbound messages are written to the log.
async fn log_outbound(mut outbound: mpsc::Receiver<OutboundMessage>) {
    while let Some(message) = outbound.recv().await {
        let payload = String::from_utf8_lossy(&message.payload);
        tracing::info!(
            function = %message.origin,
            topic = %message.topic,
            bytes = message.payload.len(),
            "publish {payload}"
        );
    }
}

/// How often freed heap memory is handed back to the kernel.
const HEAP_TRIM_EVERY: Duration = Duration::from_secs(10);

/// Hands freed heap memory back every [`HEAP_TRIM_EVERY`], so that a burst (a queue that
/// filled, large results) does not leave the daemon's footprint at its peak.
fn spawn_heap_trimmer(mut shutdown: watch::Receiver<bool>) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(HEAP_TRIM_EVERY) => {}
                _ = shutdown.changed() => return,
            }
            if let Ok(Some((before, after))) =
                tokio::task::spawn_blocking(crate::residency::trim_heap).await
                && before > after + 1024
            {
                tracing::debug!(
                    resident_before_kib = before,
                    resident_after_kib = after,
                    "freed heap memory handed back"
                );
            }
        }
    })
}

fn spawn_sweeper(
    state: StateDb,
    every: Duration,
    mut shutdown: watch::Receiver<bool>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = shutdown.changed() => return,
            }
            let state = state.clone();
            match tokio::task::spawn_blocking(move || state.sweep_expired()).await {
                Ok(Ok(removed)) if removed > 0 => {
                    tracing::debug!(removed, "expired kv keys removed")
                }
                Ok(Err(error)) => tracing::warn!(%error, "kv sweep failed"),
                _ => {}
            }
        }
    })
}
