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
