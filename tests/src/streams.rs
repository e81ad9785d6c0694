//! Steady streams of inputs for tests and benches: SNMP traps and MQTT messages at a pace.

use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::mqtt_client::TestClient;

/// One v2c linkDown trap datagram as `snmptrap` sends it.
pub fn v2c_trap(state: &Path) -> Vec<u8> {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.set_read_timeout(Some(crate::PATIENCE)).unwrap();
    let status = Command::new("snmptrap")
        .env("MIBS", "")
        .env("SNMP_PERSISTENT_DIR", state)
        .env("SNMPCONFPATH", state)
        .args(["-v", "2c", "-c", "public"])
        .arg(socket.local_addr().unwrap().to_string())
        .args([
            "0",
            "1.3.6.1.6.3.1.1.5.3",
            "1.3.6.1.2.1.2.2.1.1.2",
            "i",
            "2",
        ])
        .status()
        .unwrap();
    assert!(status.success(), "snmptrap failed");
    let mut buffer = vec![0; 65_535];
    let (length, _) = socket.recv_from(&mut buffer).unwrap();
    buffer.truncate(length);
    buffer
}

/// Sends `count` copies of `datagram` to `target`, one a millisecond.
pub async fn paced_traps(target: SocketAddr, datagram: Vec<u8>, count: u64) {
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut pace = tokio::time::interval(Duration::from_millis(1));
    for _ in 0..count {
        pace.tick().await;
        socket.send_to(&datagram, target).await.unwrap();
    }
}

/// Publishes `count` QoS 0 messages to `topic`, one a millisecond.
pub async fn paced_messages(client: TestClient, topic: &str, count: u64) {
    let mut pace = tokio::time::interval(Duration::from_millis(1));
    for index in 0..count {
        pace.tick().await;
        client.publish(topic, index.to_string(), 0).await;
    }
}

/// An SNMP receiver on `listen` and two echo functions: `traps` on every trap (with the
/// setting `generation`, which a reload in place may change) and `messages` on `load/in` at
/// QoS 0, each with room for a burst.
pub fn trap_and_message_functions(listen: &str, generation: u32) -> String {
    let roomy = Sizes {
        queue: 8192,
        concurrency: 2,
    };
    trap_and_message_functions_sized(listen, generation, roomy, roomy)
}

/// The queue size and concurrency of one function.
#[derive(Debug, Clone, Copy)]
pub struct Sizes {
    pub queue: u32,
    pub concurrency: u32,
}

/// As [`trap_and_message_functions`], with the sizes of `traps` and of `messages`.
pub fn trap_and_message_functions_sized(
    listen: &str,
    generation: u32,
    traps: Sizes,
    messages: Sizes,
) -> String {
    let echo = crate::components().echo.display();
    format!(
        r#"
[snmp]
listen = "{listen}"
communities = ["public"]

[[function]]
name = "traps"
component = "{echo}"
config = {{ generation = {generation} }}
limits = {{ queue = {traps_queue}, concurrency = {traps_concurrency} }}
[[function.trigger]]
snmp_trap = {{}}

[[function]]
name = "messages"
component = "{echo}"
limits = {{ queue = {messages_queue}, concurrency = {messages_concurrency} }}
[[function.trigger]]
mqtt = {{ topic = "load/in", qos = 0 }}
"#,
        traps_queue = traps.queue,
        traps_concurrency = traps.concurrency,
        messages_queue = messages.queue,
        messages_concurrency = messages.concurrency,
    )
}

/// Events the supervisor's running agent has run on `function`, across reloads.
pub fn invocations(supervisor: &fogd::supervisor::Supervisor, function: &str) -> u64 {
    supervisor
        .agent()
        .metrics
        .function(function)
        .invocations
        .get()
}
