//! The shipped threshold-alert function: learns each key's level, alerts after N samples
//! above mean × factor, clears when the value returns.

use fogd_tests::{Harness, components, event, spec};
use serde_json::{Value, json};

#[test]
fn alerts_after_consecutive_excursions_and_clears() {
    let mut harness = Harness::new();
    let mut spec = spec("threshold-alert", &components().threshold_alert);
    spec.grants.publish = vec!["alerts/#".into()];
    spec.config.insert("samples".into(), json!(2));
    spec.config.insert("warmup".into(), json!(3));
    spec.config.insert("factor".into(), json!(1.5));
    spec.config.insert("keys".into(), json!(["cpu"]));
    let function = harness.load(&spec).unwrap();
    let send = |cpu: f64| {
        let payload = json!({"cpu": cpu, "fan": 9000, "label": "x"}).to_string();
        function.call(&event("router-1", payload)).outcome.unwrap();
    };
    for cpu in [40.0, 42.0, 38.0, 40.0] {
        send(cpu);
    }
    assert!(
        harness.drain_published().is_empty(),
        "normal values publish nothing"
    );
    send(80.0);
    assert!(
        harness.drain_published().is_empty(),
        "one sample is not enough"
    );
    send(85.0);
    let alert = harness.drain_published();
    assert_eq!(alert.len(), 1);
    assert_eq!(alert[0].topic, "alerts/cpu");
    let body: Value = serde_json::from_slice(&alert[0].payload).unwrap();
    assert_eq!(body["state"], "alert");
    assert_eq!(body["subject"], "router-1");
    assert_eq!(body["value"], 85.0);
    send(90.0);
    assert!(
        harness.drain_published().is_empty(),
        "one alert per excursion"
    );
    send(41.0);
    let clear = harness.drain_published();
    assert_eq!(clear.len(), 1);
    let body: Value = serde_json::from_slice(&clear[0].payload).unwrap();
    assert_eq!(body["state"], "clear");
}

#[test]
fn non_json_payload_fails_the_event_clearly() {
    let harness = Harness::new();
    let function = harness
        .load(&spec("threshold-alert", &components().threshold_alert))
        .unwrap();
    let error = function
        .call(&event("x", vec![0xff, 0xfe]))
        .outcome
        .unwrap_err();
    assert!(
        error.to_string().contains("payload is not a JSON object"),
        "{error}"
    );
}

#[test]
fn publishing_without_a_grant_fails_the_event() {
    let harness = Harness::new();
    let mut spec = spec("ungranted-alert", &components().threshold_alert);
    spec.config.insert("warmup".into(), json!(1));
    spec.config.insert("samples".into(), json!(1));
    let function = harness.load(&spec).unwrap();
    function
        .call(&event("r", r#"{"cpu": 10}"#))
        .outcome
        .unwrap();
    let error = function
        .call(&event("r", r#"{"cpu": 100}"#))
        .outcome
        .unwrap_err();
    assert!(
        error.to_string().contains("NotGranted(\"alerts/cpu\")"),
        "{error}"
    );
}

/// Ten devices, each sending cycles of nine normal CPU values and three high ones, through a
/// real Mosquitto at about 5,000 messages a second into the function at its default limits
/// (two events at once): every cycle must give exactly one alert and one clear.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_alert_and_clear_arrives_at_5000_messages_a_second_with_default_limits() {
    use fogd_tests::agent::{broker, connected, function, start};
    use fogd_tests::mosquitto::Mosquitto;
    use fogd_tests::mqtt_client::TestClient;
    use std::time::Duration;

    const DEVICES: usize = 10;
    const CYCLES: usize = 250;
    let mosquitto = Mosquitto::start();
    let mut observer = TestClient::connect(mosquitto.port, "alert-observer", &["alerts/#"]).await;
    let sender = TestClient::connect(mosquitto.port, "telemetry-sender", &[]).await;
    let running = start(&format!(
        "{}{}",
        broker("local", &mosquitto.address(), ""),
        function(
            "threshold-alert",
            &components().threshold_alert,
            r#"grants = { publish = ["alerts/#"] }
config = { samples = 3, warmup = 5, factor = 1.5, keys = ["cpu"], alert_topic = "alerts/{subject}/{key}" }
[[function.trigger]]
mqtt = { topic = "telemetry/+", qos = 1 }"#
        ),
    ))
    .await;
    connected(&running.agent, "local").await;

    let cycle: Vec<u32> = [10; 9].into_iter().chain([90; 3]).collect();
    let values: Vec<u32> = (0..CYCLES)
        .flat_map(|_| cycle.clone())
        .chain([10])
        .collect();
    let mut pace = tokio::time::interval(Duration::from_millis(10));
    let mut sent = 0;
    for value in &values {
        for device in 0..DEVICES {
            if sent % 50 == 0 {
                pace.tick().await;
            }
            let payload = json!({ "cpu": value }).to_string();
            sender
                .publish(&format!("telemetry/dev-{device}"), payload, 1)
                .await;
            sent += 1;
        }
    }
    let expected = DEVICES * CYCLES;
    let function = running.agent.metrics.function("threshold-alert");
    fogd_tests::wait_until("every sample ran", || {
        function.invocations.get() == sent as u64
    })
    .await;
    let state_count = |seen: &[fogd_tests::mqtt_client::Received], state: &str| {
        seen.iter()
            .filter(|m| m.text().contains(&format!("\"state\":\"{state}\"")))
            .count()
    };
    let received = observer
        .collect_until(Duration::from_secs(60), |seen| {
            state_count(seen, "alert") >= expected && state_count(seen, "clear") >= expected
        })
        .await;
    let broker = running.agent.metrics.broker("local");
    fogd_tests::wait_until("the broker took every alert and clear", || {
        broker.published.get() >= 2 * expected as u64
    })
    .await;
    assert_eq!(
        broker.published.get(),
        2 * expected as u64,
        "nothing more was published"
    );
    assert_eq!(state_count(&received, "alert"), expected);
    assert_eq!(state_count(&received, "clear"), expected);
    assert_eq!(function.error_count("failed"), 0);
    running.agent.shutdown().await;
}
