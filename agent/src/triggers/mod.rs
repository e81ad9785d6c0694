//! Inputs that become events. Each trigger owns its config and its run loop and hands
//! events to the [`Dispatch`](crate::router::Dispatch).

pub mod mqtt;
pub mod snmp;
pub mod timer;
