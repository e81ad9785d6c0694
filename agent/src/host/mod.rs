//! The capabilities a function imports. Following the prepare-once pattern, everything a
//! function may use (its kv tree, publish grants, config, env) is resolved when the function
//! is loaded into a [`FunctionCaps`]; each event's [`HostState`] only clones an `Arc`.

mod config;
mod effects;
mod inference;
mod kv;
mod log;
mod messaging;
mod stdio;

use std::sync::Arc;

use wasmtime::component::{HasSelf, Linker, ResourceTable};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::config::Effects;
use crate::contract::NetworkFunction;
use crate::state::KvStore;

pub use config::FunctionConfig;
pub use effects::{CommitError, EventEffects, LimitHit, OutputLimits, Unpublished};
pub use inference::ModelAccess;
pub use messaging::PublishGrants;
use stdio::GuestOutput;

/// What one function may reach, prepared once when it is loaded.
pub struct FunctionCaps {
    pub name: Arc<str>,
    pub kv: KvStore,
    pub publish: PublishGrants,
    pub config: FunctionConfig,
    /// Models the function may run.
    pub models: ModelAccess,
    /// Environment variables granted to the guest.
    pub env: Vec<(String, String)>,
    /// Largest linear memory, in bytes.
    pub memory_limit: usize,
    /// What one event may publish and return.
    pub output: OutputLimits,
    /// Whether a failed event's publishes and kv writes are discarded.
    pub effects: Effects,
}

/// The state of one instance: lives exactly as long as the event it handles.
pub struct HostState {
    caps: Arc<FunctionCaps>,
    event_id: String,
    wasi: WasiCtx,
    table: ResourceTable,
    memory_limit_hit: bool,
    effects: EventEffects,
}

impl HostState {
    pub fn new(caps: Arc<FunctionCaps>, event_id: String) -> Self {
        let mut builder = WasiCtx::builder();
        builder
            .stdout(GuestOutput::stdout(caps.name.clone()))
            .stderr(GuestOutput::stderr(caps.name.clone()));
        for (key, value) in &caps.env {
            builder.env(key, value);
        }
        Self {
            wasi: builder.build(),
            table: ResourceTable::new(),
            caps,
            event_id,
            memory_limit_hit: false,
            effects: EventEffects::default(),
        }
    }

    /// Whether the guest tried to grow its memory past the function's limit.
    pub fn memory_limit_hit(&self) -> bool {
        self.memory_limit_hit
    }

    /// The first output or storage limit the event ran into.
    pub fn limit_hit(&self) -> Option<&LimitHit> {
        self.effects.limit_hit()
    }

    /// Starts the next event on a kept instance: its limits and effects are its own.
    pub fn begin_event(&mut self) {
        self.effects = EventEffects::default();
        self.memory_limit_hit = false;
    }

    /// Says that this instance runs holding its namespace's commits alone.
    pub fn run_exclusive(&mut self) {
        self.effects.kv.set_exclusive();
    }

    /// Makes the event's held publishes and kv writes take effect.
    pub fn commit(&mut self) -> Result<Unpublished, CommitError> {
        self.effects.commit(&self.caps)
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl crate::contract::fogd::function::types::Host for HostState {}

impl wasmtime::ResourceLimiter for HostState {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.caps.memory_limit {
            self.memory_limit_hit = true;
            return Ok(false);
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= MAX_TABLE_ELEMENTS)
    }
}

/// Table elements an instance may grow to (function pointers for indirect calls).
pub const MAX_TABLE_ELEMENTS: usize = 20_000;

/// Links WASI (restricted by each store's context: no files, sockets or stdin) and the
/// fogd interfaces.
pub fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    wasmtime_wasi::p2::add_to_linker_sync(linker)?;
    NetworkFunction::add_to_linker::<_, HasSelf<_>>(linker, |state| state)
}
