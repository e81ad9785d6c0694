//! The embedded broker: fogd serves plain MQTT 3.1.1 on a local address, so devices on the
//! site can publish to the gateway without a separate broker. It is rumqttd running on its
//! own threads for the life of the process; fogd's functions reach it like any other broker,
//! through a `[[broker]]` entry pointing at the same address.

use std::collections::{BTreeSet, HashMap};
use std::net::{SocketAddr, TcpListener};
use std::sync::Mutex;

use rumqttd::{Broker, Config, ConnectionSettings, RouterConfig, ServerSettings};
use thiserror::Error;

use crate::config::EmbeddedBrokerSpec;

#[derive(Debug, Error)]
pub enum EmbeddedError {
    #[error("the embedded broker cannot listen on {address}: {source}")]
    Listen {
        address: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot start the embedded broker thread: {0}")]
    Thread(std::io::Error),
}

/// Addresses an embedded broker already serves in this process.
static SERVING: Mutex<BTreeSet<SocketAddr>> = Mutex::new(BTreeSet::new());

/// Starts the broker; returns once its address was free to bind. Does nothing when this
/// process already serves one there: the agent restarts on reload and on a new deployment,
/// rumqttd cannot be stopped, and its clients stay connected across the restart.
pub fn start(spec: &EmbeddedBrokerSpec) -> Result<(), EmbeddedError> {
    let mut serving = SERVING
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if serving.contains(&spec.listen) {
        tracing::debug!(listen = %spec.listen, "embedded broker already serving");
        return Ok(());
    }
    // Checked here, so a taken port is a clear start-up error rather than a log line from
    // the broker's thread.
    drop(
        TcpListener::bind(spec.listen).map_err(|source| EmbeddedError::Listen {
            address: spec.listen,
            source,
        })?,
    );
    let server = ServerSettings {
        name: "fogd-embedded".to_owned(),
        listen: spec.listen,
        tls: None,
        next_connection_delay_ms: 1,
        connections: ConnectionSettings {
            connection_timeout_ms: 60_000,
            max_payload_size: spec.max_message_bytes as usize,
            max_inflight_count: 100,
            auth: None,
            external_auth: None,
            dynamic_filters: true,
        },
    };
    let config = Config {
        id: 0,
        router: RouterConfig {
            max_connections: 1024,
            max_outgoing_packet_count: 200,
            max_segment_size: 16 * 1024 * 1024,
            max_segment_count: 4,
            custom_segment: None,
            initialized_filters: None,
            shared_subscriptions_strategy: Default::default(),
        },
        v4: Some(HashMap::from([("local".to_owned(), server)])),
        v5: None,
        ws: None,
        cluster: None,
        console: None,
        bridge: None,
        prometheus: None,
        metrics: None,
    };
    let listen = spec.listen;
    std::thread::Builder::new()
        .name("fogd-broker".into())
        .spawn(move || {
            let mut broker = Broker::new(config);
            if let Err(error) = broker.start() {
                tracing::error!(%error, "embedded broker stopped");
            }
        })
        .map_err(EmbeddedError::Thread)?;
    serving.insert(listen);
    tracing::info!(%listen, "embedded broker listening (MQTT 3.1.1)");
    Ok(())
}
