//! Inputs that become events. Each trigger owns its run loop and hands events to the
//! [`Dispatch`]; the agent sees every running trigger through one trait, [`Trigger`], and
//! builds them all in one place, [`start`].

pub mod flow;
pub mod mqtt;
pub mod snmp;
pub mod syslog;
pub mod timer;
mod udp_socket;

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use fogd_fleet::mqtt::ConnectionSettings;

use crate::config::{Config, FunctionSpec};
use crate::outbound::Outboxes;
use crate::router::Dispatch;
use crate::state::StateDb;
use crate::telemetry::Health;

use flow::FlowError;
use mqtt::{MqttContext, MqttTriggers};
use snmp::SnmpError;
use syslog::SyslogError;

/// A step of a trigger's shutdown.
pub type Stopping<'a> = Pin<Box<dyn Future<Output = ()> + Send + 'a>>;

/// What the agent asks of every running trigger.
pub trait Trigger: Send {
    /// What it is, in logs (`timer`, `snmp`, `snmp-poll`, `mqtt`).
    fn kind(&self) -> &'static str;
    /// The addresses it receives on, for those that listen, in config order.
    fn listening(&self) -> &[SocketAddr] {
        &[]
    }
    /// Whether its tasks still run.
    fn is_alive(&self) -> bool;
    /// Follows a reconfiguration in place: what the functions now ask of it. Triggers that
    /// do not depend on the functions ignore it.
    fn follow<'a>(&'a mut self, _functions: &'a [FunctionSpec]) -> Stopping<'a> {
        Box::pin(async {})
    }
    /// Stops taking inputs; resolves once it will offer the executor nothing more.
    fn drain(&mut self) -> Stopping<'_>;
    /// Called once the executor has finished every admitted event: settles what the trigger
    /// owes its senders (MQTT acknowledgements) until `deadline`, then disconnects.
    fn stop(self: Box<Self>, deadline: Instant) -> Stopping<'static>;
}

/// What the triggers need from the rest of the agent.
pub struct Inputs<'a> {
    pub config: &'a Config,
    /// The functions that loaded; only their triggers run.
    pub functions: &'a [FunctionSpec],
    /// Loaded broker connection settings, in config order.
    pub brokers: Vec<ConnectionSettings>,
    pub dispatch: &'a Dispatch,
    pub outboxes: &'a Arc<Outboxes>,
    pub state: &'a StateDb,
    pub health: &'a Arc<Health>,
}

/// A trigger that could not start.
#[derive(Debug, thiserror::Error)]
pub enum TriggerError {
    #[error(transparent)]
    Snmp(#[from] SnmpError),
    #[error(transparent)]
    Syslog(#[from] SyslogError),
    #[error(transparent)]
    Flow(#[from] FlowError),
}

/// Starts every trigger the config and the loaded functions ask for.
pub async fn start(inputs: Inputs<'_>) -> Result<Vec<Box<dyn Trigger>>, TriggerError> {
    let mut triggers: Vec<Box<dyn Trigger>> =
        vec![Box::new(timer::start(inputs.functions, inputs.dispatch))];
    if let Some(snmp) = &inputs.config.snmp {
        if let Some(listen) = &snmp.listen {
            triggers.push(Box::new(
                snmp::start_receiver(
                    snmp,
                    listen,
                    &inputs.config.state_dir,
                    inputs.dispatch.clone(),
                    inputs.health.clone(),
                )
                .await?,
            ));
        }
        triggers.push(Box::new(snmp::start_polls(
            snmp,
            inputs.dispatch,
            inputs.health,
        )?));
    }
    if let Some(config) = &inputs.config.syslog {
        triggers.push(Box::new(
            syslog::start(config, inputs.dispatch.clone(), inputs.health.clone()).await?,
        ));
    }
    if let Some(config) = &inputs.config.flow {
        triggers.push(Box::new(
            flow::start(
                config,
                inputs.functions,
                inputs.dispatch.clone(),
                inputs.health.clone(),
            )
            .await?,
        ));
    }
    triggers.push(Box::new(MqttTriggers::start(MqttContext {
        brokers: inputs.brokers,
        functions: inputs.functions,
        dispatch: inputs.dispatch,
        outboxes: inputs.outboxes,
        state: inputs.state,
        health: inputs.health,
    })));
    Ok(triggers)
}

/// A trigger made of tasks that stop when told and owe their senders nothing afterwards
/// (timers, the SNMP receiver and polls).
pub struct Tasks {
    kind: &'static str,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    listening: Vec<SocketAddr>,
}

impl Tasks {
    pub fn new(kind: &'static str) -> Self {
        Self {
            kind,
            shutdown: watch::channel(false).0,
            tasks: Vec::new(),
            listening: Vec::new(),
        }
    }

    /// What the tasks watch to know when to stop.
    pub fn shutdown_signal(&self) -> watch::Receiver<bool> {
        self.shutdown.subscribe()
    }

    pub fn push(&mut self, task: JoinHandle<()>) {
        self.tasks.push(task);
    }

    pub fn listening_on(&mut self, address: SocketAddr) {
        self.listening.push(address);
    }
}

impl Trigger for Tasks {
    fn kind(&self) -> &'static str {
        self.kind
    }

    fn listening(&self) -> &[SocketAddr] {
        &self.listening
    }

    fn is_alive(&self) -> bool {
        self.tasks.iter().all(|task| !task.is_finished())
    }

    fn drain(&mut self) -> Stopping<'_> {
        self.shutdown.send_replace(true);
        let tasks = std::mem::take(&mut self.tasks);
        Box::pin(async move {
            for task in tasks {
                let _ = task.await;
            }
        })
    }

    fn stop(self: Box<Self>, _deadline: Instant) -> Stopping<'static> {
        Box::pin(async {})
    }
}
