//! The embedded broker: fogd serves plain MQTT 3.1.1 on a local address, so devices on the
//! site can publish to the gateway without a separate broker. It is rumqttd running on its
//! own threads for the life of the process; fogd's functions reach it like any other broker,
//! through a `[[broker]]` entry pointing at the same address.

use std::collections::HashMap;
use std::net::TcpListener;

use rumqttd::{Broker, Config, ConnectionSettings, RouterConfig, ServerSettings};
use thiserror::Error;

use crate::config::EmbeddedBrokerSpec;

#[derive(Debug, Error)]
pub enum EmbeddedError {
    #[error("the embedded broker cannot listen on {address}: {source}")]
    Listen {
        address: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot start the embedded broker thread: {0}")]
    Thread(std::io::Error),
}

/// Starts the broker; returns once its address was free to bind.
pub fn start(spec: &EmbeddedBrokerSpec) -> Result<(), EmbeddedError> {
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
    tracing::info!(%listen, "embedded broker listening (MQTT 3.1.1)");
    Ok(())
}
