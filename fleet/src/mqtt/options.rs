//! Everything needed to open a connection, read once at start: TLS material and the
//! password are loaded here so a bad file is a clear start-up error, and never logged.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rumqttc::{NetworkOptions, TlsConfiguration, Transport};
use rustls::RootCertStore;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use thiserror::Error;

use super::client::{MqttClient, MqttEventLoop};
use crate::config::{BrokerSpec, MqttProtocol, TlsSpec};

/// Room above the payload limit for the topic and properties of a packet.
const PACKET_OVERHEAD: u32 = 64 * 1024;

/// Packets are read up to this multiple of `max_message_bytes`, so that a message over the
/// limit reaches fogd to be rejected and counted instead of breaking the connection (3.1.1)
/// or vanishing at the broker (v5 brokers drop what exceeds the advertised maximum).
const READ_LIMIT_FACTOR: u32 = 4;

/// QoS 1/2 messages the broker may send before fogd acknowledges any, unless the
/// connection asks for another number.
const RECEIVE_MAXIMUM: u16 = 1000;

/// Time allowed for the TCP/TLS connect and the CONNACK.
const CONNECTION_TIMEOUT_SECS: u64 = 10;

#[derive(Debug, Error)]
pub enum SetupError {
    #[error("broker {broker}: cannot read {what} {path}: {source}")]
    Read {
        broker: String,
        what: &'static str,
        path: String,
        source: std::io::Error,
    },
    #[error("broker {broker}: {path} holds no usable {what}")]
    Empty {
        broker: String,
        what: &'static str,
        path: String,
    },
    #[error("broker {broker}: TLS setup failed: {reason}")]
    Tls { broker: String, reason: String },
}

/// A broker connection's settings, ready to connect any number of times.
pub struct ConnectionSettings {
    pub name: Arc<str>,
    pub spec: BrokerSpec,
    host: String,
    port: u16,
    client_id: String,
    password: Option<String>,
    tls: Option<Arc<rustls::ClientConfig>>,
    receive_maximum: u16,
}

impl std::fmt::Debug for ConnectionSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The password and keys are deliberately left out.
        f.debug_struct("ConnectionSettings")
            .field("name", &self.name)
            .field("address", &self.spec.address)
            .field("client_id", &self.client_id)
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

impl ConnectionSettings {
    pub fn load(spec: &BrokerSpec) -> Result<Self, SetupError> {
        let (host, port) = spec.host_and_port();
        let host = host.to_owned();
        let password = match &spec.password_file {
            Some(path) => Some(read(spec, "password file", path).map(|bytes| {
                String::from_utf8_lossy(&bytes)
                    .trim_end_matches(['\r', '\n'])
                    .to_owned()
            })?),
            None => None,
        };
        let tls = spec
            .tls
            .as_ref()
            .map(|tls| tls_config(spec, tls))
            .transpose()?;
        Ok(Self {
            name: Arc::from(spec.name.as_str()),
            // Config parsing names every connection; a spec built otherwise gets the
            // packaged daemon's default.
            client_id: spec.client_id.clone().unwrap_or_else(|| {
                crate::config::default_client_id(
                    &crate::config::hostname(),
                    &spec.name,
                    &crate::config::default_state_dir(),
                )
            }),
            spec: spec.clone(),
            host,
            port,
            password,
            tls,
            receive_maximum: RECEIVE_MAXIMUM,
        })
    }

    /// The same broker and credentials for a second connection: the client id gets
    /// `suffix`, as the broker allows one connection per client id.
    pub fn second_connection(&self, suffix: &str) -> Self {
        Self {
            name: self.name.clone(),
            spec: self.spec.clone(),
            host: self.host.clone(),
            port: self.port,
            client_id: format!("{}-{suffix}", self.client_id),
            password: self.password.clone(),
            tls: self.tls.clone(),
            receive_maximum: self.receive_maximum,
        }
    }

    /// The same settings, letting the broker send up to `messages` QoS 1/2 messages before
    /// any is acknowledged (MQTT v5 Receive Maximum; over 3.1.1 the broker decides).
    pub fn with_receive_maximum(mut self, messages: u16) -> Self {
        self.receive_maximum = messages.max(1);
        self
    }

    /// A fresh client and event loop (no state carried over from earlier connections).
    pub fn connect(&self) -> (MqttClient, MqttEventLoop) {
        let spec = &self.spec;
        let keep_alive = spec.keep_alive.as_duration().max(Duration::from_secs(1));
        let max_packet = spec
            .max_message_bytes
            .saturating_mul(READ_LIMIT_FACTOR)
            .saturating_add(PACKET_OVERHEAD);
        let capacity = usize::from(spec.inflight) + usize::from(self.receive_maximum) + 64;
        let transport = match &self.tls {
            Some(config) => Transport::tls_with_config(TlsConfiguration::Rustls(config.clone())),
            None => Transport::Tcp,
        };
        // Without TCP_NODELAY, an acknowledgement written right after a publish (or the
        // reverse) waits for the broker's delayed ACK: tens of milliseconds per message.
        let mut network = NetworkOptions::new();
        network.set_tcp_nodelay(true);
        network.set_connection_timeout(CONNECTION_TIMEOUT_SECS);
        match spec.protocol {
            MqttProtocol::V5 => {
                let mut options =
                    rumqttc::v5::MqttOptions::new(&self.client_id, &self.host, self.port);
                options
                    .set_keep_alive(keep_alive)
                    .set_clean_start(false)
                    .set_session_expiry_interval(Some(
                        (spec.session_expiry.0 / 1000).min(u64::from(u32::MAX)) as u32,
                    ))
                    .set_manual_acks(true)
                    .set_max_packet_size(Some(max_packet))
                    .set_receive_maximum(Some(self.receive_maximum))
                    .set_outgoing_inflight_upper_limit(spec.inflight)
                    .set_request_channel_capacity(capacity)
                    .set_connection_timeout(CONNECTION_TIMEOUT_SECS)
                    .set_network_options(network)
                    .set_transport(transport);
                if let Some(username) = &spec.username {
                    options.set_credentials(username, self.password.clone().unwrap_or_default());
                }
                let (client, eventloop) = rumqttc::v5::AsyncClient::new(options, capacity);
                (
                    MqttClient::V5(client),
                    MqttEventLoop::V5(Box::new(eventloop)),
                )
            }
            MqttProtocol::V311 => {
                let mut options = rumqttc::MqttOptions::new(&self.client_id, &self.host, self.port);
                options
                    .set_keep_alive(keep_alive)
                    .set_clean_session(false)
                    .set_manual_acks(true)
                    .set_max_packet_size(max_packet as usize, max_packet as usize)
                    .set_inflight(spec.inflight)
                    .set_request_channel_capacity(capacity)
                    .set_transport(transport);
                if let Some(username) = &spec.username {
                    options.set_credentials(username, self.password.clone().unwrap_or_default());
                }
                let (client, mut eventloop) = rumqttc::AsyncClient::new(options, capacity);
                eventloop.set_network_options(network);
                (
                    MqttClient::V311(client),
                    MqttEventLoop::V311(Box::new(eventloop)),
                )
            }
        }
    }
}

fn read(spec: &BrokerSpec, what: &'static str, path: &Path) -> Result<Vec<u8>, SetupError> {
    std::fs::read(path).map_err(|source| SetupError::Read {
        broker: spec.name.clone(),
        what,
        path: path.display().to_string(),
        source,
    })
}

fn tls_config(spec: &BrokerSpec, tls: &TlsSpec) -> Result<Arc<rustls::ClientConfig>, SetupError> {
    let empty = |what, path: &Path| SetupError::Empty {
        broker: spec.name.clone(),
        what,
        path: path.display().to_string(),
    };
    let tls_error = |reason: String| SetupError::Tls {
        broker: spec.name.clone(),
        reason,
    };
    let mut roots = RootCertStore::empty();
    let ca = read(spec, "CA file", &tls.ca_file)?;
    for certificate in CertificateDer::pem_slice_iter(&ca).flatten() {
        roots
            .add(certificate)
            .map_err(|e| tls_error(e.to_string()))?;
    }
    if roots.is_empty() {
        return Err(empty("CA certificate", &tls.ca_file));
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| tls_error(e.to_string()))?
    .with_root_certificates(roots);
    let config = match (&tls.cert_file, &tls.key_file) {
        (Some(cert_file), Some(key_file)) => {
            let chain: Vec<_> =
                CertificateDer::pem_slice_iter(&read(spec, "certificate file", cert_file)?)
                    .flatten()
                    .collect();
            if chain.is_empty() {
                return Err(empty("certificate", cert_file));
            }
            let key = PrivateKeyDer::from_pem_slice(&read(spec, "key file", key_file)?)
                .map_err(|_| empty("private key", key_file))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| tls_error(format!("client certificate and key: {e}")))?
        }
        _ => builder.with_no_client_auth(),
    };
    Ok(Arc::new(config))
}
