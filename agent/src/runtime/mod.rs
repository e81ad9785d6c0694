//! Running functions: the wasmtime engine, the compiled-component cache, loaded functions
//! with their limits, and the executor that queues events for them.

mod cache;
mod engine;
mod error;
mod executor;
mod function;
mod order;

use std::path::PathBuf;
use std::sync::Arc;

use thiserror::Error;
use wasmtime::Engine;
use wasmtime::component::Linker;

use crate::config::{Config, FunctionSpec, RuntimeConfig, TriggerSpec};
use crate::contract::HandlePre;
use crate::event::Source;
use crate::host::{self, FunctionCaps, HostResources, HostState};
use crate::inference::ModelRegistry;
use crate::outbound::OutboundSink;
use crate::snmp_client::SnmpTargets;
use crate::state::StateDb;
use crate::telemetry::Metrics;

pub use cache::{ComponentCache, LoadSource};
pub use engine::EngineSettings;
pub use error::{InvokeError, LoadError};
pub use executor::{Executor, FunctionQueue, SubmitError};
pub use function::{CallReport, LoadedFunction, Outcome, WarmInstance};

pub use crate::config::MAX_PUBLISH_BYTES;

const MIB: usize = 1024 * 1024;

#[derive(Debug, Error)]
pub enum RuntimeError {
    #[error("cannot create the wasm engine: {0}")]
    Engine(String),
    #[error("cannot start the epoch ticker: {0}")]
    Ticker(#[from] std::io::Error),
}

/// Engine, linker and cache settings.
#[derive(Debug, Clone)]
pub struct RuntimeSettings {
    pub engine: EngineSettings,
    pub cache_dir: PathBuf,
}

impl RuntimeSettings {
    /// Sizes the engine for the functions in `config` (at least 16 MiB per instance).
    pub fn from_config(config: &Config) -> Self {
        Self::new(&config.runtime, &config.functions, config.cache_dir())
    }

    /// Sizes the engine for `functions` with the given runtime settings.
    pub fn new(runtime: &RuntimeConfig, functions: &[FunctionSpec], cache_dir: PathBuf) -> Self {
        let largest = functions
            .iter()
            .map(|f| f.limits.memory_mib)
            .max()
            .unwrap_or(0)
            .max(16);
        Self {
            engine: EngineSettings {
                max_instances: runtime.max_instances,
                max_memory_bytes: largest as usize * MIB,
                epoch_tick: runtime.epoch_tick.as_duration(),
            },
            cache_dir,
        }
    }
}

/// The engine and everything shared by all functions.
pub struct Runtime {
    engine: Engine,
    linker: Linker<HostState>,
    cache: ComponentCache,
    settings: RuntimeSettings,
    models: Arc<ModelRegistry>,
    metrics: Arc<Metrics>,
    snmp_targets: Arc<SnmpTargets>,
}

impl Runtime {
    pub fn new(settings: RuntimeSettings) -> Result<Self, RuntimeError> {
        let engine =
            engine::build(settings.engine).map_err(|e| RuntimeError::Engine(format!("{e:#}")))?;
        let mut linker = Linker::new(&engine);
        host::add_to_linker(&mut linker).map_err(|e| RuntimeError::Engine(format!("{e:#}")))?;
        engine::start_epoch_ticker(&engine, settings.engine.epoch_tick)?;
        Ok(Self {
            cache: ComponentCache::new(settings.cache_dir.clone()),
            engine,
            linker,
            settings,
            models: Arc::new(ModelRegistry::none()),
            metrics: Arc::new(Metrics::new()),
            snmp_targets: Arc::default(),
        })
    }

    /// The SNMP agents functions may be granted.
    pub fn with_snmp_targets(mut self, targets: Arc<SnmpTargets>) -> Self {
        self.snmp_targets = targets;
        self
    }

    /// Where functions' outbound requests are counted.
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = metrics;
        self
    }

    /// The models functions may be granted.
    pub fn with_models(mut self, models: Arc<ModelRegistry>) -> Self {
        self.models = models;
        self
    }

    /// Compiles (or loads from cache) and links one function, resolving its grants.
    pub fn load(
        &self,
        spec: &FunctionSpec,
        state: &StateDb,
        sink: Arc<dyn OutboundSink>,
    ) -> Result<LoadedFunction, LoadError> {
        let path = &spec.component;
        let (component, load_source) = self.cache.load(&self.engine, path)?;
        let link_error = |error: wasmtime::Error| LoadError::Link {
            path: path.clone(),
            reason: format!("{error:#}"),
        };
        let instance_pre = self
            .linker
            .instantiate_pre(&component)
            .map_err(link_error)?;
        let pre = HandlePre::new(instance_pre).map_err(link_error)?;
        let contract = pre.version();
        if let Some(source) = spec
            .triggers
            .iter()
            .map(trigger_source)
            .find(|&source| !contract.knows(source))
        {
            return Err(LoadError::Contract {
                path: path.clone(),
                contract,
                events: source,
            });
        }
        let resources = HostResources {
            state,
            sink,
            models: &self.models,
            metrics: &self.metrics,
            snmp_targets: &self.snmp_targets,
        };
        let memory =
            (spec.limits.memory_mib as usize * MIB).min(self.settings.engine.max_memory_bytes);
        let caps = FunctionCaps::prepare(spec, &resources, memory)?;
        Ok(LoadedFunction::new(
            self.engine.clone(),
            pre,
            Arc::new(caps),
            spec,
            self.settings.engine.epoch_tick,
            load_source,
        ))
    }
}

/// The source of the events a trigger produces.
fn trigger_source(trigger: &TriggerSpec) -> Source {
    match trigger {
        TriggerSpec::Timer(_) => Source::Timer,
        TriggerSpec::Mqtt(_) => Source::Mqtt,
        TriggerSpec::SnmpTrap(_) => Source::SnmpTrap,
        TriggerSpec::SnmpPoll(_) => Source::SnmpPoll,
        TriggerSpec::Syslog(_) => Source::Syslog,
        TriggerSpec::Flow(_) => Source::Flow,
    }
}
