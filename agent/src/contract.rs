//! The guest/host contract, generated from the WIT package in `agent/wit/` (the single source
//! of truth; the guest SDK reads the same files).

wasmtime::component::bindgen!({
    path: "wit",
    world: "network-function",
});

pub use self::fogd::function::types::Source;
pub use self::fogd::function::{config, inference, kv, log, messaging};

impl Source {
    /// The lower-case name used in logs, metrics and config.
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Mqtt => "mqtt",
            Source::SnmpTrap => "snmp-trap",
            Source::SnmpPoll => "snmp-poll",
            Source::Timer => "timer",
            Source::Invoke => "invoke",
        }
    }
}
