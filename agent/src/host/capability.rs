//! What every capability is: a unit that resolves one function's grants when the function
//! loads and registers its imports with the linker, as Spin's factors do.

use std::sync::Arc;

use thiserror::Error;
use wasmtime::component::Linker;

use super::HostState;
use crate::config::FunctionSpec;
use crate::inference::{ModelError, ModelRegistry};
use crate::outbound::OutboundSink;
use crate::snmp_client::SnmpTargets;
use crate::state::{StateDb, StateError};
use crate::telemetry::Metrics;
use crate::topic::TopicError;

/// What the agent lends the capabilities of a function that loads.
pub struct HostResources<'a> {
    pub state: &'a StateDb,
    /// Where the function's messages go.
    pub sink: Arc<dyn OutboundSink>,
    /// The models functions may be granted.
    pub models: &'a Arc<ModelRegistry>,
    /// Where the function's outbound requests are counted.
    pub metrics: &'a Metrics,
    /// The SNMP agents functions may be granted.
    pub snmp_targets: &'a SnmpTargets,
}

/// One host capability as a function holds it.
pub trait Capability: Sized + Send + Sync + 'static {
    /// Resolves the function's grant, refusing one it may not have.
    fn prepare(spec: &FunctionSpec, resources: &HostResources) -> Result<Self, GrantError>;

    /// Adds the capability's imports, served from each instance's [`HostState`].
    fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()>;
}

/// A function's grant could not be resolved; the function is not loaded.
#[derive(Debug, Error)]
pub enum GrantError {
    #[error("cannot open the kv namespace: {0}")]
    Kv(#[from] StateError),
    #[error("invalid grant: {0}")]
    Publish(#[from] TopicError),
    #[error("{0}")]
    Model(#[from] ModelError),
    #[error("grants.snmp: no [[snmp.target]] named {0:?}")]
    Snmp(String),
    #[error("grants.outbound_http[{index}]: {reason}")]
    Http { index: usize, reason: String },
}
