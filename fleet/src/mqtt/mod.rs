//! The MQTT transport below the agent's broker sessions and the fleet's control connections:
//! connection settings (TCP or TLS/mTLS, v5 or 3.1.1), one client over rumqttc's two protocol
//! implementations, reconnect backoff, and the small control connection fleet sync and
//! fogctl use.

pub mod backoff;
pub mod client;
pub mod control;
mod message;
pub mod options;

pub use message::{MessageProperties, OutboundMessage, Qos};
pub use options::{ConnectionSettings, SetupError};
