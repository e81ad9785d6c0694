//! fogd: an edge node agent that runs WASI network functions when events arrive.
//!
//! The modules follow the flow of an event: [`triggers`] produce events, the [`router`]
//! matches them to functions, the [`runtime`] runs them with the capabilities in [`host`],
//! which keep their data in [`state`]; [`telemetry`] watches all of it. The [`agent`]
//! assembles these parts; the [`supervisor`] runs, reloads and replaces agents as the config
//! file and the fleet ([`sync`]) say.

pub mod agent;
pub mod bench;
pub mod contract;
pub mod event;
pub mod host;
pub mod identity;
pub mod inference;
pub mod outbound;
pub mod residency;
pub mod router;
pub mod runtime;
pub mod snmp_client;
pub mod state;
pub mod supervisor;
pub mod sync;
pub mod telemetry;
pub mod tls;
pub mod triggers;

pub use fogd_fleet::{config, topic};
