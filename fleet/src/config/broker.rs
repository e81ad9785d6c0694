//! MQTT connections, triggers and the embedded broker, as configured.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::Millis;

/// MQTT protocol version of a connection.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub enum MqttProtocol {
    #[default]
    #[serde(rename = "5")]
    V5,
    #[serde(rename = "3.1.1")]
    V311,
}

/// One broker connection (`[[broker]]`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BrokerSpec {
    /// Name that triggers and functions use to pick this connection, e.g. `local`, `cloud`.
    pub name: String,
    /// `host:port`.
    pub address: String,
    /// `"5"` (default) or `"3.1.1"`.
    #[serde(default)]
    pub protocol: MqttProtocol,
    /// Defaults to `fogd-<hostname>-<name>`, with a short hash of the state directory added
    /// when that is not the default `/var/lib/fogd` (two daemons on one host then differ).
    pub client_id: Option<String>,
    pub username: Option<String>,
    /// File holding the password (read at start, never logged).
    pub password_file: Option<PathBuf>,
    /// TLS settings; without them the connection is plain TCP.
    pub tls: Option<TlsSpec>,
    #[serde(default = "default_keep_alive")]
    pub keep_alive: Millis,
    /// How long the broker keeps this client's session (subscriptions, queued QoS 1/2
    /// messages) while it is away. The session is never started clean.
    #[serde(default = "default_session_expiry")]
    pub session_expiry: Millis,
    /// Largest inbound payload accepted; larger messages are acknowledged, rejected and counted.
    #[serde(default = "default_max_message_bytes")]
    pub max_message_bytes: u32,
    /// Outbound QoS 1/2 messages awaiting the broker's acknowledgement at once.
    #[serde(default = "default_inflight")]
    pub inflight: u16,
    /// First reconnect delay; doubles (with jitter) up to `reconnect_max`.
    #[serde(default = "default_reconnect_min")]
    pub reconnect_min: Millis,
    /// Longest reconnect delay. Default: 2 s for a broker on this host (`localhost`,
    /// loopback addresses), which is cheap to probe and usually back quickly; 30 s otherwise.
    reconnect_max: Option<Millis>,
    /// A connection whose outbound messages wait this long with none completed is reported
    /// unhealthy and reconnected.
    #[serde(default = "default_publish_timeout")]
    pub publish_timeout: Millis,
    #[serde(default)]
    pub outbox: OutboxLimits,
    /// Publish on a second connection (client id `<client_id>-publish`), so that
    /// acknowledging a stream of trigger messages never waits behind publishing results.
    /// Turn off for brokers that allow a device a single connection.
    #[serde(default = "default_separate_publisher")]
    pub separate_publisher: bool,
}

fn default_keep_alive() -> Millis {
    Millis(30_000)
}
fn default_session_expiry() -> Millis {
    Millis(3_600_000)
}
fn default_max_message_bytes() -> u32 {
    1024 * 1024
}
fn default_inflight() -> u16 {
    100
}
fn default_separate_publisher() -> bool {
    true
}
fn default_reconnect_min() -> Millis {
    Millis(100)
}
const LOCAL_RECONNECT_MAX: Millis = Millis(2_000);
const REMOTE_RECONNECT_MAX: Millis = Millis(30_000);

impl BrokerSpec {
    /// The longest delay between reconnect attempts.
    pub fn reconnect_max(&self) -> Millis {
        self.reconnect_max.unwrap_or(if self.is_local() {
            LOCAL_RECONNECT_MAX
        } else {
            REMOTE_RECONNECT_MAX
        })
    }

    /// The host (without IPv6 brackets) and port of `address`; the whole address and 1883
    /// when it names no port.
    pub fn host_and_port(&self) -> (&str, u16) {
        self.address
            .rsplit_once(':')
            .and_then(|(host, port)| Some((host.trim_matches(['[', ']']), port.parse().ok()?)))
            .unwrap_or((self.address.as_str(), 1883))
    }

    /// Whether the broker runs on this host.
    fn is_local(&self) -> bool {
        let (host, _) = self.host_and_port();
        host.eq_ignore_ascii_case("localhost")
            || host
                .parse::<std::net::IpAddr>()
                .is_ok_and(|address| address.is_loopback())
    }
}
fn default_publish_timeout() -> Millis {
    Millis(10_000)
}

/// TLS for a broker connection (rustls).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSpec {
    /// PEM file of the CA(s) that sign the broker's certificate.
    pub ca_file: PathBuf,
    /// PEM client certificate (chain) for mutual TLS; needs `key_file`.
    pub cert_file: Option<PathBuf>,
    /// PEM private key of the client certificate.
    pub key_file: Option<PathBuf>,
}

/// Bounds of a connection's outbox; the oldest messages are dropped (and counted) first.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutboxLimits {
    #[serde(default = "default_outbox_messages")]
    pub max_messages: u64,
    #[serde(default = "default_outbox_bytes")]
    pub max_bytes: u64,
    /// Messages older than this are dropped instead of sent.
    #[serde(default = "default_outbox_age")]
    pub max_age: Millis,
}

fn default_outbox_messages() -> u64 {
    1_000_000
}
fn default_outbox_bytes() -> u64 {
    256 * 1024 * 1024
}
fn default_outbox_age() -> Millis {
    Millis(7 * 24 * 3_600_000)
}

impl Default for OutboxLimits {
    fn default() -> Self {
        Self {
            max_messages: default_outbox_messages(),
            max_bytes: default_outbox_bytes(),
            max_age: default_outbox_age(),
        }
    }
}

/// `mqtt = { ... }` trigger of a function.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MqttTrigger {
    /// Topic filter (`+`, `#`); `$share/<group>/<filter>` splits a stream between gateways.
    pub topic: String,
    /// Subscription QoS: 0, 1 (default) or 2. QoS 1/2 messages are acknowledged only after
    /// the function finished and its messages are durably in the outbox.
    #[serde(default = "default_qos")]
    pub qos: u8,
    /// Connection to subscribe on; defaults to the first `[[broker]]`.
    pub broker: Option<String>,
    /// Further attempts after a failed event (QoS 1/2 only).
    #[serde(default = "default_retries")]
    pub retries: u32,
    /// First delay between attempts; doubles each time.
    #[serde(default = "default_retry_backoff")]
    pub retry_backoff: Millis,
    /// Topic template (`{function}`, `{subject}`, `{1}`...) that receives an event's message
    /// once every attempt failed, with the error in the `fogd-error` user property.
    pub dead_letter: Option<String>,
    /// Which retained messages run the function.
    #[serde(default)]
    pub retained: Retained,
}

/// Whether the retained message a broker sends on subscribing runs the function.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Retained {
    /// Never: only messages published while the trigger is subscribed (and those queued for
    /// it while fogd was away). A restart does not replay old state as a new event.
    #[default]
    New,
    /// When the subscription is first made, not at each reconnect or restart (MQTT v5
    /// Retain Handling 1; over 3.1.1, as `always`).
    Once,
    /// At every subscribe, including each reconnect and restart: for functions that
    /// rebuild their state from the retained message.
    Always,
}

fn default_qos() -> u8 {
    1
}
fn default_retries() -> u32 {
    2
}
fn default_retry_backoff() -> Millis {
    Millis(100)
}

/// The embedded broker (`[embedded_broker]`): plain MQTT 3.1.1 on a local address.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmbeddedBrokerSpec {
    pub listen: SocketAddr,
    /// Largest packet it accepts.
    #[serde(default = "default_max_message_bytes")]
    pub max_message_bytes: u32,
}

/// The client id of a broker connection whose config names none: unique per host, broker
/// name and state directory, and unchanged for the packaged daemon's default state directory.
pub fn default_client_id(hostname: &str, broker: &str, state_dir: &Path) -> String {
    use sha2::{Digest, Sha256};
    if state_dir == super::default_state_dir() {
        return format!("fogd-{hostname}-{broker}");
    }
    let absolute = std::path::absolute(state_dir).unwrap_or_else(|_| state_dir.to_owned());
    let digest = Sha256::digest(absolute.as_os_str().as_encoded_bytes());
    let short: String = digest[..4]
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect();
    format!("fogd-{hostname}-{broker}-{short}")
}

#[cfg(test)]
mod reconnect_tests {
    #[test]
    fn a_local_broker_is_retried_sooner() {
        let spec = |address: &str, extra: &str| -> super::BrokerSpec {
            toml::from_str(&format!("name = \"b\"\naddress = \"{address}\"\n{extra}")).unwrap()
        };
        assert_eq!(spec("127.0.0.1:1883", "").reconnect_max().0, 2_000);
        assert_eq!(spec("localhost:1883", "").reconnect_max().0, 2_000);
        assert_eq!(spec("[::1]:1883", "").reconnect_max().0, 2_000);
        assert_eq!(
            spec("broker.example.net:8883", "").reconnect_max().0,
            30_000
        );
        assert_eq!(spec("10.0.0.2:1883", "").reconnect_max().0, 30_000);
        let set = spec("127.0.0.1:1883", "reconnect_max = \"10s\"");
        assert_eq!(set.reconnect_max().0, 10_000);
    }
}

#[cfg(test)]
mod client_id_tests {
    use super::*;

    #[test]
    fn the_default_client_id_differs_per_state_directory() {
        let default = super::super::default_state_dir();
        assert_eq!(default_client_id("gw", "local", &default), "fogd-gw-local");
        let one = default_client_id("gw", "local", Path::new("/srv/a/state"));
        let two = default_client_id("gw", "local", Path::new("/srv/b/state"));
        assert!(one.starts_with("fogd-gw-local-") && one.len() == "fogd-gw-local-".len() + 8);
        assert_ne!(one, two);
        assert_eq!(
            one,
            default_client_id("gw", "local", Path::new("/srv/a/state"))
        );
    }
}
