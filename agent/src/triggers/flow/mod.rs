//! The flow trigger: UDP listeners for NetFlow v5, v9, IPFIX and sFlow v5 whose records
//! feed each `flow` trigger's windows or batches. Refused datagrams are counted in
//! `fogd_inputs_rejected_total{source="flow"}` (malformed, source_not_allowed,
//! template_missing per data set, kernel_buffer_full), decoded records in
//! `fogd_flow_records_total`.

pub mod aggregate;
pub mod decode;
mod distinct;
pub mod record;
mod sink;

use std::net::SocketAddr;
use std::sync::{Arc, RwLock};

use thiserror::Error;
use tokio::net::UdpSocket;
use tokio::sync::watch;
use tokio::time::{Instant, interval_at};

use super::udp_socket::{self, BoundSocket};
use super::{Stopping, Tasks, Trigger};
use crate::config::{FlowConfig, FunctionSpec, Network, TriggerSpec, source_allowed};
use crate::event::Source;
use crate::router::{Dispatch, flow_key};
use crate::telemetry::{Health, Metrics, Rejection};

use decode::Decoder;
use record::FlowRecord;
use sink::Sink;

#[derive(Debug, Error)]
#[error("cannot listen for flows on udp {address}: {source}")]
pub struct FlowError {
    address: SocketAddr,
    source: std::io::Error,
}

/// The running functions' flow triggers; replaced whole when they change.
type Sinks = Arc<RwLock<Arc<[Arc<Sink>]>>>;

/// The listeners and the flushing of every flow trigger's windows and batches.
pub struct Flows {
    listeners: Tasks,
    flushers: Tasks,
    sinks: Sinks,
    dispatch: Dispatch,
}

/// Binds every listener and starts their tasks, and one flush task per windowed or
/// batched trigger of `functions`.
pub async fn start(
    config: &FlowConfig,
    functions: &[FunctionSpec],
    dispatch: Dispatch,
    health: Arc<Health>,
) -> Result<Flows, FlowError> {
    let sinks: Sinks = Arc::new(RwLock::new(sinks_of(functions)));
    let mut listeners = Tasks::new("flow");
    let mut listening = Vec::new();
    for &address in &config.udp {
        let buffer = config.receive_buffer_kib as usize * 1024;
        let (socket, local, bound) = udp_socket::bind(address, buffer, "flow collector on UDP")
            .await
            .map_err(|source| FlowError { address, source })?;
        listening.push(local.to_string());
        listeners.listening_on(local);
        let listener = Listener {
            allowed: config.allowed_sources.clone(),
            decoder: Decoder::new(config.template_timeout.as_duration()),
            sinks: sinks.clone(),
            metrics: dispatch.metrics().clone(),
            dispatch: dispatch.clone(),
        };
        listeners.push(tokio::spawn(listener.run(
            socket,
            bound,
            listeners.shutdown_signal(),
        )));
    }
    health.set(
        "flow",
        true,
        format!("listening on udp {}", listening.join(", ")),
    );
    let flushers = start_flushers(&current(&sinks), &dispatch);
    Ok(Flows {
        listeners,
        flushers,
        sinks,
        dispatch,
    })
}

fn sinks_of(functions: &[FunctionSpec]) -> Arc<[Arc<Sink>]> {
    functions
        .iter()
        .flat_map(|function| {
            function
                .triggers
                .iter()
                .enumerate()
                .filter_map(|(index, trigger)| match trigger {
                    TriggerSpec::Flow(flow) => {
                        Some(Arc::new(Sink::new(flow_key(&function.name, index), flow)))
                    }
                    _ => None,
                })
        })
        .collect()
}

fn current(sinks: &Sinks) -> Arc<[Arc<Sink>]> {
    match sinks.read() {
        Ok(sinks) => sinks.clone(),
        Err(poisoned) => poisoned.into_inner().clone(),
    }
}

/// One task per trigger with a period: it closes windows or flushes batches on time, and
/// once more when told to stop, so nothing gathered is left behind.
fn start_flushers(sinks: &[Arc<Sink>], dispatch: &Dispatch) -> Tasks {
    let mut tasks = Tasks::new("flow-flush");
    for sink in sinks {
        let Some(period) = sink.period() else {
            continue;
        };
        let sink = sink.clone();
        let dispatch = dispatch.clone();
        let mut shutdown = tasks.shutdown_signal();
        tasks.push(tokio::spawn(async move {
            let mut ticks = interval_at(Instant::now() + period, period);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = ticks.tick() => sink.flush(&dispatch),
                    _ = shutdown.changed() => {
                        sink.flush(&dispatch);
                        return;
                    }
                }
            }
        }));
    }
    tasks
}

impl Trigger for Flows {
    fn kind(&self) -> &'static str {
        self.listeners.kind()
    }

    fn listening(&self) -> &[SocketAddr] {
        self.listeners.listening()
    }

    fn is_alive(&self) -> bool {
        self.listeners.is_alive() && self.flushers.is_alive()
    }

    /// Gathers for the triggers `functions` now have; what the old ones gathered is sent.
    fn follow<'a>(&'a mut self, functions: &'a [FunctionSpec]) -> Stopping<'a> {
        Box::pin(async move {
            let sinks = sinks_of(functions);
            match self.sinks.write() {
                Ok(mut current) => *current = sinks.clone(),
                Err(poisoned) => *poisoned.into_inner() = sinks.clone(),
            }
            let mut old =
                std::mem::replace(&mut self.flushers, start_flushers(&sinks, &self.dispatch));
            old.drain().await;
        })
    }

    fn drain(&mut self) -> Stopping<'_> {
        Box::pin(async move {
            self.listeners.drain().await;
            self.flushers.drain().await;
        })
    }

    fn stop(self: Box<Self>, _deadline: Instant) -> Stopping<'static> {
        Box::pin(async {})
    }
}

/// One UDP listener: its exporters' templates and where their records go.
struct Listener {
    allowed: Vec<Network>,
    decoder: Decoder,
    sinks: Sinks,
    metrics: Arc<Metrics>,
    dispatch: Dispatch,
}

impl Listener {
    async fn run(
        mut self,
        socket: UdpSocket,
        bound: Option<BoundSocket>,
        shutdown: watch::Receiver<bool>,
    ) {
        let metrics = self.metrics.clone();
        let mut records = Vec::new();
        udp_socket::receive_datagrams(
            &socket,
            bound,
            Source::Flow,
            metrics,
            shutdown,
            |datagram, exporter| self.receive(datagram, exporter, &mut records),
        )
        .await;
    }

    fn receive(&mut self, datagram: &[u8], exporter: SocketAddr, records: &mut Vec<FlowRecord>) {
        if !source_allowed(&self.allowed, exporter.ip()) {
            self.metrics
                .input_rejected(Source::Flow, Rejection::SourceNotAllowed);
            return;
        }
        records.clear();
        let decoded = self.decoder.decode(datagram, exporter, records);
        if decoded.template_misses > 0 {
            self.metrics.inputs_rejected_by(
                Source::Flow,
                Rejection::TemplateMissing,
                decoded.template_misses,
            );
        }
        if let Some(reason) = &decoded.malformed {
            self.metrics
                .input_rejected(Source::Flow, Rejection::Malformed);
            tracing::debug!(%exporter, reason, "flow datagram malformed");
        }
        self.metrics.flow_records_decoded(records.len() as u64);
        let sinks = current(&self.sinks);
        for sink in sinks.iter() {
            if !records.is_empty() {
                sink.add(records, &self.dispatch);
            }
            if !decoded.counters.is_empty() {
                sink.add_counters(&decoded.counters, &self.dispatch);
            }
        }
    }
}
