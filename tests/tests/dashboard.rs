//! The Grafana dashboard and the Prometheus rules query only metrics a running daemon serves:
//! a real `fogd` with functions that succeed, fail, overflow their queue, publish past the
//! broker's packet limit, run a model with a shadow and ask for an ungranted origin, and a
//! malformed flow datagram, so that every series they name exists in `/metrics`. A renamed
//! metric fails here, not on a dashboard.

use std::collections::BTreeSet;

use fogd_tests::daemon::{Daemon, http_get, metrics_address};
use fogd_tests::mosquitto::{BrokerOptions, Mosquitto, free_port};
use fogd_tests::{PATIENCE, components, litert_library, root};

/// Every `fogd_…` series name in a dashboard or rules file (recording rules' own names,
/// `fogd:…`, are not metrics).
fn queried(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = text;
    while let Some(start) = rest.find("fogd_") {
        let tail = &rest[start..];
        let end = tail
            .find(|c: char| !(c.is_ascii_lowercase() || c == '_'))
            .unwrap_or(tail.len());
        names.insert(tail[..end].to_owned());
        rest = &tail[end..];
    }
    names
}

fn served(metrics: &str) -> BTreeSet<String> {
    metrics
        .lines()
        .filter(|line| line.starts_with("fogd_"))
        .filter_map(|line| line.split(['{', ' ']).next())
        .map(str::to_owned)
        .collect()
}

#[test]
fn every_metric_the_dashboard_and_the_rules_query_is_served() {
    let dashboard = std::fs::read_to_string(root().join("provisioning/grafana/fogd.json")).unwrap();
    let rules = std::fs::read_to_string(root().join("provisioning/fogd-rules.yml")).unwrap();
    serde_json::from_str::<serde_json::Value>(&dashboard).expect("the dashboard is JSON");
    let mut wanted = queried(&dashboard);
    wanted.extend(queried(&rules));
    assert!(wanted.len() > 15, "{wanted:?}");

    let mosquitto = Mosquitto::with(BrokerOptions {
        extra: "max_packet_size 2000\n".into(),
        ..BrokerOptions::default()
    });
    let flow_port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let probe = components().probe.display().to_string();
    let model = root().join("models/flow-anomaly");
    let inputs = "[[0.5, 0.5, 0.1, 0.1, 0.3, 0.1, 0.4, 0.3]]";
    let config = format!(
        r#"
state_dir = "{state}"
[metrics]
address = "127.0.0.1:0"
[flow]
udp = ["127.0.0.1:{flow_port}"]
[inference]
runtime = "{runtime}"
[[model]]
name = "flow-anomaly"
version = "1"
path = "{model}/flow-anomaly.tflite"
[[model]]
name = "flow-anomaly"
version = "2"
path = "{model}/flow-anomaly-v2.tflite"
shadow = true
[[broker]]
name = "local"
address = "127.0.0.1:{port}"
[[function]]
name = "fails"
component = "{probe}"
[[function.trigger]]
timer = {{ name = "fail", every = "50ms" }}
[[function]]
name = "publishes"
component = "{probe}"
output = "out/{{subject}}"
[[function.trigger]]
timer = {{ name = "echo", every = "50ms", payloads = ["hello"] }}
[[function]]
name = "oversized"
component = "{probe}"
output = "big/{{subject}}"
[[function.trigger]]
timer = {{ name = "big", every = "200ms", payloads = ["5000"] }}
[[function]]
name = "crowded"
component = "{probe}"
limits = {{ queue = 1, concurrency = 1 }}
[[function.trigger]]
timer = {{ name = "busy", every = "1ms", payloads = ["20"] }}
[[function]]
name = "infers"
component = "{probe}"
grants = {{ models = ["flow-anomaly"] }}
[[function.trigger]]
timer = {{ name = "infer", every = "50ms", payloads = ['{{"model": "flow-anomaly", "inputs": {inputs}}}'] }}
[[function]]
name = "asks"
component = "{probe}"
[[function.trigger]]
timer = {{ name = "http", every = "200ms", payloads = ['{{"url": "http://127.0.0.1:9/"}}'] }}
"#,
        state = dir.path().join("state").display(),
        runtime = litert_library().display(),
        model = model.display(),
        port = mosquitto.port,
    );
    let config_path = dir.path().join("fogd.toml");
    std::fs::write(&config_path, config).unwrap();
    let mut daemon = Daemon::start(&config_path);
    let address = metrics_address(&daemon.wait_for(&["fogd ready"]));
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .send_to(b"not a flow export", ("127.0.0.1", flow_port))
        .unwrap();

    let mut missing = wanted.clone();
    let deadline = std::time::Instant::now() + PATIENCE;
    while !missing.is_empty() && std::time::Instant::now() < deadline {
        let served = served(&http_get(&address, "/metrics"));
        missing.retain(|name| !served.contains(name));
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    assert!(missing.is_empty(), "queried but not served: {missing:?}");
    let (status, log) = daemon.terminate();
    assert!(status.success(), "{}", log.join("\n"));
}
