//! What a fogd device and its controller share, with nothing of the runtime in it: the
//! configuration ([`config`], with the [`topic`] patterns it checks), the signed deployment
//! document and the fleet's topics and reports ([`deployment`]), and the MQTT transport both
//! ends speak ([`mqtt`]).

pub mod config;
pub mod deployment;
pub mod mqtt;
pub mod topic;
