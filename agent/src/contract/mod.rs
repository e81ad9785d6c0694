//! The guest/host contract, generated from the WIT package in `agent/wit/` (the single source
//! of truth; the guest SDK reads the same files). A function built against an earlier version
//! of the package still loads: [`HandlePre`] binds whichever `handle` it exports.

mod v0_1;

use wasmtime::component::{HasSelf, InstancePre, Linker};
use wasmtime::{AsContextMut, Store};

wasmtime::component::bindgen!({
    path: "wit",
    world: "network-function",
});

pub use self::fogd::function::events::Source;
pub use self::fogd::function::{config, inference, kv, log, messaging, response, snmp};

impl Source {
    /// The lower-case name used in logs, metrics and config.
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Mqtt => "mqtt",
            Source::SnmpTrap => "snmp-trap",
            Source::SnmpPoll => "snmp-poll",
            Source::Timer => "timer",
            Source::Invoke => "invoke",
            Source::Flow => "flow",
            Source::Syslog => "syslog",
        }
    }
}

/// The contract version a component was built against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContractVersion {
    V0_1_0,
    Current,
}

impl ContractVersion {
    /// The package version, as in the WIT files.
    pub fn as_str(self) -> &'static str {
        match self {
            ContractVersion::V0_1_0 => "fogd:function@0.1.0",
            ContractVersion::Current => "fogd:function@0.1.1",
        }
    }

    /// Whether a function of this version can be handed events from `source`.
    pub fn knows(self, source: Source) -> bool {
        match self {
            ContractVersion::Current => true,
            ContractVersion::V0_1_0 => v0_1::source(source).is_some(),
        }
    }
}

/// A component's `handle` export, bound once at load.
pub enum HandlePre<T: 'static> {
    Current(NetworkFunctionPre<T>),
    V0_1(v0_1::NetworkFunction01Pre<T>),
}

impl<T: Send + 'static> HandlePre<T> {
    /// Binds the `handle` of the current contract or, failing that, of an earlier one; the
    /// error is the current contract's, which is what a function should be rebuilt against.
    pub fn new(instance_pre: InstancePre<T>) -> wasmtime::Result<Self> {
        match NetworkFunctionPre::new(instance_pre.clone()) {
            Ok(pre) => Ok(HandlePre::Current(pre)),
            Err(error) => v0_1::NetworkFunction01Pre::new(instance_pre)
                .map(HandlePre::V0_1)
                .map_err(|_| error),
        }
    }

    pub fn version(&self) -> ContractVersion {
        match self {
            HandlePre::Current(_) => ContractVersion::Current,
            HandlePre::V0_1(_) => ContractVersion::V0_1_0,
        }
    }

    pub fn instantiate(&self, store: &mut Store<T>) -> wasmtime::Result<Handle> {
        Ok(match self {
            HandlePre::Current(pre) => Handle::Current(pre.instantiate(store)?),
            HandlePre::V0_1(pre) => Handle::V0_1(pre.instantiate(store)?),
        })
    }
}

/// One instance's `handle`.
pub enum Handle {
    Current(NetworkFunction),
    V0_1(v0_1::NetworkFunction01),
}

impl Handle {
    pub fn call_handle<S: AsContextMut<Data: Send>>(
        &self,
        store: S,
        event: &Event,
    ) -> wasmtime::Result<Result<Option<Vec<u8>>, String>> {
        match self {
            Handle::Current(instance) => instance.call_handle(store, event),
            Handle::V0_1(instance) => instance.call_handle(store, &v0_1::event(event)?),
        }
    }
}

/// The host side of the interfaces that hold only types, in every contract version.
pub trait TypesHost: self::fogd::function::events::Host + v0_1::TypesHost {}

impl<T: self::fogd::function::events::Host + v0_1::TypesHost> TypesHost for T {}

pub use self::fogd::function::events::Host as EventsHost;
pub use v0_1::TypesHost as TypesV0_1Host;

/// Links the type-only interfaces of every contract version.
pub fn add_types_to_linker<T: TypesHost + Send + 'static>(
    linker: &mut Linker<T>,
) -> wasmtime::Result<()> {
    self::fogd::function::events::add_to_linker::<T, HasSelf<T>>(linker, |state| state)?;
    v0_1::add_types_to_linker(linker)
}
