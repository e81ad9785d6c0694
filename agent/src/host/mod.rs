//! The capabilities a function imports. Each is a unit in its own module, the way Spin's
//! factors are: it resolves a function's grants once, when the function loads
//! ([`Capability::prepare`]), and registers its imports ([`Capability::add_to_linker`]).
//! [`FunctionCaps`] holds what was prepared; each event's [`HostState`] only clones an `Arc`.
//! Adding a capability is its module and one line in [`capabilities!`].

mod capability;
mod config;
mod effects;
mod http;
mod inference;
mod kv;
mod log;
mod messaging;
mod requests;
mod response;
mod snmp;
mod wasi;

use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmtime::component::{Linker, ResourceTable};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::WasiHttpCtx;

use crate::config::{Effects, FunctionSpec};
use crate::contract::{self, EventsHost, TypesV0_1Host};
use crate::outbound::MessageProperties;
use crate::state::KvStore;

pub use capability::{Capability, GrantError, HostResources};
pub use config::FunctionConfig;
pub use effects::{CommitError, EventEffects, LimitHit, OutputLimits, Unpublished};
pub use http::HttpGrants;
pub use inference::ModelAccess;
pub use log::GuestLog;
pub use messaging::PublishGrants;
use requests::EventRequests;
pub use response::ResultProperties;
pub use snmp::SnmpGrants;
pub use wasi::WasiGrant;

/// Declares the capabilities: one field of [`Grants`] each, prepared and linked in order.
macro_rules! capabilities {
    ($($(#[$doc:meta])* $field:ident: $capability:ty,)*) => {
        /// One prepared grant per capability.
        pub struct Grants {
            $($(#[$doc])* pub $field: $capability,)*
        }

        impl Grants {
            fn prepare(spec: &FunctionSpec, resources: &HostResources) -> Result<Self, GrantError> {
                Ok(Self {
                    $($field: <$capability as Capability>::prepare(spec, resources)?,)*
                })
            }

            fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
                $(<$capability as Capability>::add_to_linker(linker)?;)*
                Ok(())
            }
        }
    };
}

capabilities! {
    /// WASI: granted environment variables, stdout and stderr.
    wasi: WasiGrant,
    /// The function's own kv namespace, within its quota.
    kv: KvStore,
    /// The topics it may publish to, and where its messages go.
    messaging: PublishGrants,
    /// The MQTT v5 properties of its result.
    response: ResultProperties,
    /// Its log records.
    log: GuestLog,
    /// Its settings.
    config: FunctionConfig,
    /// The models it may run.
    inference: ModelAccess,
    /// The HTTP origins it may send requests to.
    http: HttpGrants,
    /// The SNMP targets it may query or set.
    snmp: SnmpGrants,
}

/// What one function may reach, prepared once when it is loaded.
pub struct FunctionCaps {
    pub name: Arc<str>,
    pub grants: Grants,
    pub limits: EventLimits,
}

/// What an instance and its event are held to, beyond the sandbox's own limits.
pub struct EventLimits {
    /// Largest linear memory, in bytes.
    pub memory: usize,
    /// Wall-clock time one event may take, its outbound requests included.
    pub timeout: Duration,
    /// What one event may publish.
    pub output: OutputLimits,
    /// Whether a failed event's publishes and kv writes are discarded.
    pub effects: Effects,
}

impl FunctionCaps {
    /// Resolves every grant of `spec`; `memory` is the largest linear memory, in bytes, its
    /// instances may have.
    pub fn prepare(
        spec: &FunctionSpec,
        resources: &HostResources,
        memory: usize,
    ) -> Result<Self, GrantError> {
        Ok(Self {
            name: Arc::from(spec.name.as_str()),
            grants: Grants::prepare(spec, resources)?,
            limits: EventLimits {
                memory,
                timeout: spec.limits.timeout.as_duration(),
                output: OutputLimits::from(&spec.limits),
                effects: spec.effects,
            },
        })
    }
}

/// The state of one instance: lives exactly as long as the event it handles.
pub struct HostState {
    caps: Arc<FunctionCaps>,
    wasi: WasiCtx,
    table: ResourceTable,
    memory_limit_hit: bool,
    effects: EventEffects,
    result_properties: MessageProperties,
    http_context: WasiHttpCtx,
    requests: EventRequests,
}

impl HostState {
    pub fn new(caps: Arc<FunctionCaps>, event_id: String) -> Self {
        let deadline = Instant::now() + caps.limits.timeout;
        Self {
            wasi: caps.grants.wasi.context(&caps.name),
            table: ResourceTable::new(),
            http_context: WasiHttpCtx::new(),
            requests: EventRequests::new(caps.clone(), event_id, deadline),
            caps,
            memory_limit_hit: false,
            effects: EventEffects::default(),
            result_properties: MessageProperties::default(),
        }
    }

    /// The event this instance handles.
    pub fn event_id(&self) -> &str {
        self.requests.event_id()
    }

    /// The properties the guest set on its result, taken once it has returned.
    pub fn take_result_properties(&mut self) -> MessageProperties {
        std::mem::take(&mut self.result_properties)
    }

    /// Whether the guest tried to grow its memory past the function's limit.
    pub fn memory_limit_hit(&self) -> bool {
        self.memory_limit_hit
    }

    /// Whether an outbound request ran into the event's deadline.
    pub fn deadline_hit(&self) -> bool {
        self.requests.deadline_hit()
    }

    /// The first output or storage limit the event ran into.
    pub fn limit_hit(&self) -> Option<&LimitHit> {
        self.effects.limit_hit()
    }

    /// Starts the next event on a kept instance: its limits and effects are its own.
    pub fn begin_event(&mut self) {
        self.requests
            .begin(Instant::now() + self.caps.limits.timeout);
        self.effects = EventEffects::default();
        self.memory_limit_hit = false;
        self.result_properties = MessageProperties::default();
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

impl EventsHost for HostState {}
impl TypesV0_1Host for HostState {}

impl wasmtime::ResourceLimiter for HostState {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.caps.limits.memory {
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

/// Links every capability's imports (WASI restricted by each store's context: no files,
/// sockets or stdin).
pub fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    contract::add_types_to_linker(linker)?;
    Grants::add_to_linker(linker)
}
