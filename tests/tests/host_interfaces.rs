//! Each host interface exercised from a real guest component (the probe function).

use fogd::config::StateConfig;
use fogd::outbound::Qos;
use fogd_tests::{Harness, call_json, call_text, components, logs, spec};
use serde_json::json;

#[test]
fn kv_operations_from_a_guest() {
    let harness = Harness::new();
    let function = harness
        .load(&spec("kv-probe", &components().probe))
        .unwrap();
    let steps = json!([
        {"op": "get", "key": "a"},
        {"op": "set", "key": "a", "value": "one"},
        {"op": "get", "key": "a"},
        {"op": "incr", "key": "n", "delta": 5},
        {"op": "incr", "key": "n", "delta": -2},
        {"op": "incr", "key": "a"},
        {"op": "cas", "key": "a", "expected": "one", "new": "two"},
        {"op": "cas", "key": "a", "expected": "one", "new": "three"},
        {"op": "set", "key": "p/1", "value": "x"},
        {"op": "set", "key": "p/2", "value": "y"},
        {"op": "scan", "prefix": "p/", "limit": 10},
        {"op": "delete", "key": "a"},
        {"op": "get", "key": "a"},
    ]);
    let results = call_json(&function, "kv", &steps.to_string());
    assert_eq!(
        results,
        json!([
            {"ok": null},
            {"ok": null},
            {"ok": "one"},
            {"ok": 5},
            {"ok": 3},
            {"error": "Error::NotACounter"},
            {"ok": true},
            {"ok": false},
            {"ok": null},
            {"ok": null},
            {"ok": [["p/1", "x"], ["p/2", "y"]]},
            {"ok": true},
            {"ok": null},
        ])
    );
}

#[test]
fn kv_state_survives_between_events_but_instance_state_does_not() {
    let harness = Harness::new();
    let function = harness.load(&spec("fresh", &components().probe)).unwrap();
    for expected in 1..=3 {
        let counter = call_json(&function, "kv", r#"[{"op": "incr", "key": "c"}]"#);
        assert_eq!(counter, json!([{"ok": expected}]));
        // A static counter inside the guest: a fresh instance per event always sees 1.
        assert_eq!(call_text(&function, "calls", ""), "1");
    }
}

#[test]
fn kv_namespaces_are_private_to_each_function() {
    let harness = Harness::new();
    let writer = harness.load(&spec("writer", &components().probe)).unwrap();
    let reader = harness.load(&spec("reader", &components().probe)).unwrap();
    call_json(
        &writer,
        "kv",
        r#"[{"op": "set", "key": "secret", "value": "w"}]"#,
    );
    assert_eq!(
        call_json(&reader, "kv", r#"[{"op": "get", "key": "secret"}]"#),
        json!([{"ok": null}])
    );
}

#[test]
fn kv_values_with_ttl_expire() {
    let harness = Harness::new();
    let function = harness.load(&spec("ttl", &components().probe)).unwrap();
    let set = r#"[{"op": "set", "key": "short", "value": "v", "ttl_ms": 1}, {"op": "set", "key": "long", "value": "v", "ttl_ms": 600000}]"#;
    call_json(&function, "kv", set);
    // Wait on the condition itself: the short key must disappear, the long one stay.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let got = call_json(
            &function,
            "kv",
            r#"[{"op": "get", "key": "short"}, {"op": "get", "key": "long"}]"#,
        );
        assert_eq!(got[1], json!({"ok": "v"}));
        if got[0] == json!({"ok": null}) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "a 1 ms TTL did not expire within 5 s"
        );
    }
    let scan = call_json(
        &function,
        "kv",
        r#"[{"op": "scan", "prefix": "", "limit": 10}]"#,
    );
    assert_eq!(scan, json!([{"ok": [["long", "v"]]}]));
}

#[test]
fn oversized_kv_value_is_a_clear_error_and_the_function_keeps_serving() {
    let harness = Harness::with_state(StateConfig {
        max_value_bytes: 1024,
        ..StateConfig::default()
    });
    let function = harness.load(&spec("big", &components().probe)).unwrap();
    let result = call_json(
        &function,
        "kv",
        r#"[{"op": "set_size", "key": "k", "size": 1025}, {"op": "set_size", "key": "k", "size": 1024}]"#,
    );
    assert_eq!(
        result,
        json!([{"error": "Error::ValueTooLarge(1024)"}, {"ok": null}])
    );
    let long_key = "k".repeat(600);
    let result = call_json(
        &function,
        "kv",
        &json!([{"op": "get", "key": long_key}]).to_string(),
    );
    assert_eq!(result, json!([{"error": "Error::KeyTooLarge(512)"}]));
    assert_eq!(call_text(&function, "echo", "still here"), "still here");
}

#[test]
fn publish_is_checked_against_grants() {
    let mut harness = Harness::new();
    let mut spec = spec("publisher", &components().probe);
    spec.grants.publish = vec!["alerts/+/cpu".into(), "status/#".into()];
    let function = harness.load(&spec).unwrap();

    let granted = json!({"topic": "alerts/r1/cpu", "payload": "hot", "qos": 2, "retain": true});
    assert_eq!(
        call_text(&function, "publish", &granted.to_string()),
        "\"published\""
    );
    let messages = harness.drain_published();
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0].topic, "alerts/r1/cpu");
    assert_eq!(messages[0].payload, b"hot");
    assert_eq!(messages[0].qos, Qos::ExactlyOnce);
    assert!(messages[0].retain);
    assert_eq!(&*messages[0].origin, "publisher");

    for (topic, expected) in [
        ("alerts/r1/mem", "NotGranted(\"alerts/r1/mem\")"),
        ("other", "NotGranted(\"other\")"),
        ("status/+", "InvalidTopic(\"status/+\")"),
    ] {
        let request = json!({"topic": topic, "payload": "x"});
        let error = function
            .call(&fogd_tests::event("publish", request.to_string()))
            .outcome
            .unwrap_err();
        assert!(error.to_string().contains(expected), "{topic}: {error}");
    }
    assert!(
        harness.drain_published().is_empty(),
        "refused messages must not leave"
    );
    assert_eq!(call_text(&function, "echo", "ok"), "ok");
    assert!(!logs::lines_with(&["publish refused", "publisher", "alerts/r1/mem"]).is_empty());
}

#[test]
fn config_reaches_the_guest_as_text() {
    let harness = Harness::new();
    let mut spec = spec("configured", &components().probe);
    spec.config.insert("factor".into(), json!(1.5));
    spec.config.insert("name".into(), json!("cpu"));
    let function = harness.load(&spec).unwrap();
    let config = call_json(&function, "config", "");
    assert_eq!(
        config,
        json!({"entries": [["factor", "1.5"], ["name", "cpu"]], "factor": "1.5"})
    );
}

#[test]
fn log_records_carry_function_and_event() {
    let harness = Harness::new();
    let function = harness.load(&spec("logger", &components().probe)).unwrap();
    let event = fogd_tests::event("log", "");
    function.call(&event).outcome.unwrap();
    for level in ["INFO", "WARN", "ERROR"] {
        let lines = logs::lines_with(&[level, "logger", &event.id, "level="]);
        assert_eq!(lines.len(), 1, "one {level} record expected");
    }
}

#[test]
fn guest_stdout_and_stderr_go_to_the_log_with_the_function_name() {
    let harness = Harness::new();
    let function = harness.load(&spec("printer", &components().probe)).unwrap();
    call_text(&function, "stdout", "");
    assert_eq!(
        logs::lines_with(&["probe says hello on stdout", "printer", "stdout"]).len(),
        1
    );
    assert_eq!(
        logs::lines_with(&["probe says hello on stderr", "printer", "stderr"]).len(),
        1
    );
}

#[test]
fn no_filesystem_environment_or_stdin_unless_granted() {
    let harness = Harness::new();
    let function = harness
        .load(&spec("sandboxed", &components().probe))
        .unwrap();
    let fs = call_json(&function, "fs", "");
    assert!(fs["read"]["Err"].is_string(), "{fs}");
    assert!(fs["list"]["Err"].is_string(), "{fs}");
    assert_eq!(call_json(&function, "env", ""), json!([]));
    assert_eq!(call_json(&function, "stdin", ""), json!({"bytes": 0}));

    let mut granted = spec("with-env", &components().probe);
    granted.grants.env.insert("SITE".into(), "north".into());
    let function = harness.load(&granted).unwrap();
    assert_eq!(call_json(&function, "env", ""), json!([["SITE", "north"]]));
}

#[test]
fn event_fields_reach_the_guest() {
    let harness = Harness::new();
    let function = harness.load(&spec("events", &components().probe)).unwrap();
    let mut event = fogd_tests::event("event", "payload bytes");
    event.attributes.push(("k".into(), "v".into()));
    let output = function.call(&event).outcome.unwrap().unwrap();
    let seen: serde_json::Value = serde_json::from_slice(&output).unwrap();
    assert_eq!(seen["id"], json!(event.id));
    assert_eq!(seen["source"], json!("Source::Invoke"));
    assert_eq!(seen["payload"], json!("payload bytes"));
    assert_eq!(seen["attributes"], json!([["k", "v"]]));
    assert_eq!(seen["received_at"], json!(event.received_at));
}
