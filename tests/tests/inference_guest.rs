//! The `inference` interface as guests see it, on the real LiteRT runtime: the probe
//! function's raw and float calls, errors returned to the guest rather than traps, grants,
//! a missing runtime, shape checks at load, the shipped ddos-detector function, and the
//! daemon serving models and swapping a version on reload.

use std::path::PathBuf;
use std::sync::Arc;

use fogd::config::{HttpGrant, InferenceConfig, ModelShapes};
use fogd::host::GrantError;
use fogd::inference::ModelRegistry;
use fogd::runtime::{LoadError, LoadedFunction};
use fogd_tests::certs::Pki;
use fogd_tests::daemon::{Daemon, http_get, metrics_address};
use fogd_tests::nginx::Nginx;
use fogd_tests::{
    Harness, ReferenceVectors, call_json, components, event, flow_anomaly, litert_library,
    model_path, model_registry, spec,
};
use serde_json::{Value, json};

/// A harness with flow-anomaly version 1 active.
fn harness_with_model() -> Harness {
    let registry = model_registry();
    registry
        .activate(&flow_anomaly("1", "flow-anomaly/flow-anomaly.tflite"))
        .expect("the shipped model loads");
    Harness::with_models(Arc::new(registry))
}

fn probe(harness: &Harness, granted: &[&str]) -> LoadedFunction {
    let mut spec = spec("probe", &components().probe);
    spec.grants.models = granted.iter().map(|m| m.to_string()).collect();
    harness.load(&spec).expect("probe loads")
}

/// The guest's error text for a call that must fail.
fn guest_error(function: &LoadedFunction, subject: &str, payload: Value) -> String {
    match function.call(&event(subject, payload.to_string())).outcome {
        Ok(output) => panic!("{subject} succeeded with {output:?}"),
        Err(error) => error.to_string(),
    }
}

fn as_bytes(value: &Value) -> Vec<u8> {
    value
        .as_array()
        .expect("a byte list")
        .iter()
        .map(|b| b.as_u64().expect("a byte") as u8)
        .collect()
}

#[test]
fn guests_see_the_signature_and_get_the_reference_outputs() {
    let harness = harness_with_model();
    let function = probe(&harness, &["flow-anomaly"]);
    let reference = ReferenceVectors::load();

    assert_eq!(call_json(&function, "models", ""), json!(["flow-anomaly"]));
    let signature = call_json(&function, "signature", "flow-anomaly");
    assert_eq!(signature["version"], "1");
    assert_eq!(signature["inputs"][0]["shape"], json!([1, 8]));
    assert_eq!(signature["inputs"][0]["element"], "int8");
    assert_eq!(signature["outputs"][0]["shape"], json!([1, 4]));
    let scale = signature["inputs"][0]["scale"].as_f64().unwrap() as f32;
    assert_eq!(scale, reference.input_scale);

    for (index, case) in reference.cases.iter().enumerate() {
        let request = json!({
            "model": "flow-anomaly",
            "element": "int8",
            "shape": [1, 8],
            "data": case.input,
        });
        let raw = call_json(&function, "infer-raw", &request.to_string());
        assert_eq!(as_bytes(&raw[0]), case.output, "raw call, case {index}");

        let request = json!({
            "model": "flow-anomaly",
            "inputs": [reference.dequantize_input(&case.input)],
        });
        let floats = call_json(&function, "infer", &request.to_string());
        let expected = reference.dequantize_output(&case.output);
        let got: Vec<f32> = floats[0]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap() as f32)
            .collect();
        assert_eq!(got, expected, "float call, case {index} ({})", case.class);
    }
}

#[test]
fn wrong_input_is_an_error_value_and_the_function_keeps_serving() {
    let harness = harness_with_model();
    let function = probe(&harness, &["flow-anomaly"]);
    let raw = |element: &str, shape: Value, data: Vec<u8>| json!({"model": "flow-anomaly", "element": element, "shape": shape, "data": data});

    let wrong_shape = guest_error(
        &function,
        "infer-raw",
        raw("int8", json!([1, 4]), vec![0; 4]),
    );
    assert!(
        wrong_shape.contains("InvalidInput") && wrong_shape.contains("[1, 8]"),
        "{wrong_shape}"
    );
    let wrong_type = guest_error(
        &function,
        "infer-raw",
        raw("float32", json!([1, 8]), vec![0; 32]),
    );
    assert!(wrong_type.contains("InvalidInput"), "{wrong_type}");
    let short = guest_error(
        &function,
        "infer-raw",
        raw("int8", json!([1, 8]), vec![0; 7]),
    );
    assert!(
        short.contains("InvalidInput") && short.contains("8 bytes"),
        "{short}"
    );
    let seven = guest_error(
        &function,
        "infer",
        json!({"model": "flow-anomaly", "inputs": [vec![0.5; 7]]}),
    );
    assert!(seven.contains("InvalidInput"), "{seven}");
    let two_tensors = guest_error(
        &function,
        "infer",
        json!({"model": "flow-anomaly", "inputs": [[0.5, 0.5], [0.1]]}),
    );
    assert!(two_tensors.contains("InvalidInput"), "{two_tensors}");

    let ok = call_json(
        &function,
        "infer",
        &json!({"model": "flow-anomaly", "inputs": [vec![0.3; 8]]}).to_string(),
    );
    assert_eq!(ok[0].as_array().map(Vec::len), Some(4));
}

#[test]
fn a_model_outside_the_grants_is_refused() {
    let harness = harness_with_model();
    let function = probe(&harness, &[]);
    assert_eq!(call_json(&function, "models", ""), json!([]));
    let error = guest_error(
        &function,
        "infer",
        json!({"model": "flow-anomaly", "inputs": [vec![0.3; 8]]}),
    );
    assert!(
        error.contains("NotGranted") && error.contains("grants.models"),
        "{error}"
    );
}

#[test]
fn without_the_runtime_guests_get_unavailable_with_the_reason() {
    let registry = ModelRegistry::new(&InferenceConfig {
        runtime: Some(PathBuf::from("/nonexistent/libLiteRt.so")),
        max_model_mib: 16,
    });
    let harness = Harness::with_models(Arc::new(registry));
    let function = probe(&harness, &["flow-anomaly"]);
    let error = guest_error(
        &function,
        "infer",
        json!({"model": "flow-anomaly", "inputs": [vec![0.3; 8]]}),
    );
    assert!(
        error.contains("Unavailable") && error.contains("/nonexistent/libLiteRt.so"),
        "{error}"
    );
}

#[test]
fn a_function_expecting_other_shapes_is_not_loaded() {
    let harness = harness_with_model();
    let mut mismatched = spec("probe", &components().probe);
    mismatched.grants.models = vec!["flow-anomaly".into()];
    mismatched.model_shapes.insert(
        "flow-anomaly".into(),
        ModelShapes {
            inputs: vec![vec![1, 4]],
            outputs: vec![vec![1, 4]],
        },
    );
    match harness.load(&mismatched) {
        Err(LoadError::Grant(GrantError::Model(reason))) => {
            assert!(reason.to_string().contains("[1, 4]"), "{reason}")
        }
        Err(other) => panic!("refused for another reason: {other}"),
        Ok(_) => panic!("a function expecting [1, 4] inputs loaded against a [1, 8] model"),
    }
    mismatched.model_shapes.insert(
        "flow-anomaly".into(),
        ModelShapes {
            inputs: vec![vec![1, 8]],
            outputs: vec![vec![1, 4]],
        },
    );
    harness.load(&mismatched).expect("matching shapes load");
}

fn syn_flood() -> Value {
    json!({"dst": "192.0.2.10", "window_s": 1, "packets": 50000, "bytes": 3000000,
           "syn": 48000, "udp": 0, "sources": 20000, "dst_ports": 1, "new_flows": 45000})
}

fn normal() -> Value {
    json!({"dst": "192.0.2.10", "window_s": 1, "packets": 800, "bytes": 560000,
           "syn": 40, "udp": 100, "sources": 40, "dst_ports": 3, "new_flows": 16})
}

fn scan() -> Value {
    json!({"dst": "192.0.2.20", "window_s": 1, "packets": 2000, "bytes": 120000,
           "syn": 1800, "udp": 0, "sources": 1, "dst_ports": 1500, "new_flows": 1800,
           "top_source": "198.51.100.7"})
}

fn ddos_detector(harness: &Harness) -> LoadedFunction {
    let mut spec = spec("ddos-detector", &components().ddos_detector);
    spec.grants.models = vec!["flow-anomaly".into()];
    spec.grants.publish = vec!["fogd/mitigation".into()];
    harness.load(&spec).expect("ddos-detector loads")
}

#[test]
fn ddos_detector_mitigates_a_confirmed_flood_and_clears_it_when_it_ends() {
    let mut harness = harness_with_model();
    let function = ddos_detector(&harness);
    let verdict = |window: Value| call_json(&function, "flows/edge-1", &window.to_string());

    let first = verdict(syn_flood());
    assert_eq!(first["class"], "syn_flood");
    assert_eq!(first["transition"], Value::Null);
    assert!(
        harness.drain_published().is_empty(),
        "one window does not confirm an attack"
    );
    let second = verdict(syn_flood());
    assert_eq!(second["transition"], "started");
    let published = harness.drain_published();
    assert_eq!(published.len(), 1);
    assert_eq!(published[0].topic, "fogd/mitigation");
    let action: Value = serde_json::from_slice(&published[0].payload).unwrap();
    assert_eq!(action["action"], "mitigate");
    assert_eq!(action["attack"], "syn_flood");
    assert_eq!(action["rule"]["type"], "rate-limit");
    assert_eq!(action["rule"]["match"]["dst"], "192.0.2.10");
    assert_eq!(action["rule"]["match"]["proto"], "tcp");
    assert_eq!(verdict(syn_flood())["attack"], "syn_flood");
    assert!(harness.drain_published().is_empty(), "one rule per attack");

    for _ in 0..2 {
        let calm = verdict(normal());
        assert_eq!(calm["class"], "normal");
        assert_eq!(calm["attack"], "syn_flood", "still mitigating: {calm}");
    }
    assert!(harness.drain_published().is_empty());
    let ended = verdict(normal());
    assert_eq!(ended["transition"], "ended");
    assert_eq!(ended["attack"], Value::Null);
    let published = harness.drain_published();
    assert_eq!(published.len(), 1);
    let clear: Value = serde_json::from_slice(&published[0].payload).unwrap();
    assert_eq!(clear["action"], "clear");
    assert_eq!(clear["attack"], "syn_flood");
    assert!(
        clear["message"].as_str().unwrap().contains("192.0.2.10"),
        "{clear}"
    );
}

#[test]
fn ddos_detector_posts_the_mitigation_to_a_granted_api_and_withdraws_it() {
    let pki = Pki::generate("scrubber");
    let files = tempfile::tempdir().unwrap();
    pki.write_server_files(files.path());
    let nginx = Nginx::api(files.path(), &pki, false);
    let origin = format!("https://127.0.0.1:{}", nginx.port);
    let mut harness = harness_with_model();
    let mut spec = spec("ddos-detector", &components().ddos_detector);
    spec.grants.models = vec!["flow-anomaly".into()];
    spec.grants.publish = vec!["fogd/mitigation".into()];
    spec.grants.outbound_http = vec![HttpGrant {
        ca_file: Some(files.path().join("ca.pem")),
        ..HttpGrant::for_origin(&origin)
    }];
    spec.config.insert(
        "mitigation_url".into(),
        json!(format!("{origin}/api/mitigations")),
    );
    let function = harness.load(&spec).expect("ddos-detector loads");
    let verdict = |window: Value| call_json(&function, "flows/edge-1", &window.to_string());

    verdict(syn_flood());
    assert_eq!(verdict(syn_flood())["transition"], "started");
    let published = harness.drain_published();
    let action: Value = serde_json::from_slice(&published[0].payload).unwrap();
    assert_eq!(action["api"], json!({"status": 201}), "{action}");
    for _ in 0..3 {
        verdict(normal());
    }
    let published = harness.drain_published();
    let clear: Value = serde_json::from_slice(&published[0].payload).unwrap();
    assert_eq!(clear["api"], json!({"status": 201}), "{clear}");

    // nginx logs each body with its quotes escaped.
    let posted = |needle: &str| {
        let needle = needle.replace('"', "\\x22");
        nginx
            .requests()
            .iter()
            .filter(|line| line.starts_with("POST /api/mitigations 201") && line.contains(&needle))
            .count()
    };
    fogd_tests::wait_until_blocking("nginx logs both POSTs", || nginx.requests().len() == 2);
    assert_eq!(posted(r#""prefix":"192.0.2.10/32""#), 2);
    assert_eq!(posted(r#""action":"rate-limit""#), 1);
    assert_eq!(posted(r#""action":"withdraw""#), 1);
    assert_eq!(posted(r#""rate_pps":1000"#), 1);
    assert_eq!(posted(r#""expiry_s":300"#), 2);
}

#[test]
fn ddos_detector_blocks_a_scanner_and_keeps_destinations_apart() {
    let mut harness = harness_with_model();
    let function = ddos_detector(&harness);
    let verdict = |window: Value| call_json(&function, "flows/edge-1", &window.to_string());

    assert_eq!(verdict(scan())["class"], "scan");
    assert_eq!(verdict(normal())["class"], "normal");
    assert_eq!(verdict(scan())["transition"], "started");
    let published = harness.drain_published();
    assert_eq!(published.len(), 1);
    let action: Value = serde_json::from_slice(&published[0].payload).unwrap();
    assert_eq!(action["rule"]["type"], "block");
    assert_eq!(action["rule"]["match"]["src"], "198.51.100.7");
    assert_eq!(action["rule"]["match"]["dst"], "192.0.2.20");

    let malformed = function
        .call(&event(
            "flows/edge-1",
            r#"{"dst": "192.0.2.20", "packets": -1, "bytes": 0}"#,
        ))
        .outcome
        .expect_err("a window with a negative counter is refused");
    assert!(
        malformed.to_string().contains("non-negative"),
        "{malformed}"
    );
}

/// A daemon config running ddos-detector on a timer that replays a flood and its end.
fn daemon_config(version: &str, model_file: &str) -> String {
    let windows = [syn_flood(), syn_flood(), normal(), normal(), normal()]
        .iter()
        .map(|w| format!("'{w}'"))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        r#"
state_dir = "state"
[metrics]
address = "127.0.0.1:0"
[inference]
runtime = "{runtime}"

[[model]]
name = "flow-anomaly"
version = "{version}"
path = "{model}"

[[function]]
name = "ddos-detector"
component = "{component}"
grants = {{ models = ["flow-anomaly"], publish = ["fogd/mitigation"] }}
[function.model_shapes.flow-anomaly]
inputs = [[1, 8]]
outputs = [[1, 4]]
[[function.trigger]]
timer = {{ name = "flows/edge-1", every = "20ms", payloads = [{windows}] }}
"#,
        runtime = litert_library().display(),
        model = model_path(model_file).display(),
        component = components().ddos_detector.display(),
    )
}

fn json_body(response: &str) -> Value {
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    let body = response.split("\r\n\r\n").nth(1).unwrap_or_default();
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {response}"))
}

#[test]
fn daemon_serves_models_and_swaps_a_version_on_reload() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("fogd.toml");
    std::fs::write(
        &config,
        daemon_config("1", "flow-anomaly/flow-anomaly.tflite"),
    )
    .unwrap();
    let mut daemon = Daemon::start(&config);
    daemon.wait_for(&["inference runtime loaded", "libLiteRt.so"]);
    let address = metrics_address(&daemon.wait_for(&["fogd ready", "functions=1"]));
    daemon.wait_for(&["publish", "fogd/mitigation", "\"action\":\"mitigate\""]);
    daemon.wait_for(&["publish", "fogd/mitigation", "\"action\":\"clear\""]);

    let body = json_body(&http_get(&address, "/models"));
    assert_eq!(body["models"][0]["name"], "flow-anomaly");
    assert_eq!(body["models"][0]["version"], "1");
    assert_eq!(body["models"][0]["inputs"][0]["shape"], json!([1, 8]));
    let health = http_get(&address, "/healthz");
    assert!(health.contains("model/flow-anomaly"), "{health}");

    std::fs::write(
        &config,
        daemon_config("2", "flow-anomaly/flow-anomaly-v2.tflite"),
    )
    .unwrap();
    // SAFETY: plain kill(2) on our own child's pid.
    unsafe { libc::kill(daemon.pid(), libc::SIGHUP) };
    daemon.wait_for_next(&["model version swapped", "to=2"]);
    let address = metrics_address(&daemon.wait_for_next(&["fogd ready", "functions=1"]));
    daemon.wait_for_next(&["publish", "fogd/mitigation", "\"action\":\"mitigate\""]);
    let body = json_body(&http_get(&address, "/models"));
    assert_eq!(body["models"][0]["version"], "2");
    assert_eq!(body["models"][0]["previous_version"], "1");

    let (status, log) = daemon.terminate();
    assert!(status.success(), "{}", log.join("\n"));
    let failed: Vec<_> = log.iter().filter(|l| l.contains("event failed")).collect();
    assert!(failed.is_empty(), "{failed:?}");
    assert!(
        !log.iter().any(|l| l.contains("XNNPACK")),
        "LiteRT's stderr announcement is a debug line of fogd's, not a raw one: {log:?}"
    );
}

#[test]
fn check_names_the_key_of_a_refused_model_and_of_mismatched_shapes() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("fogd.toml");
    std::fs::write(
        &config,
        format!(
            r#"
state_dir = "state"
[inference]
runtime = "{runtime}"

[[model]]
name = "flow-anomaly"
version = "1"
path = "{model}"

[[model]]
name = "tampered"
version = "1"
path = "{model}"
sha256 = "{zeros}"

[[function]]
name = "ddos-detector"
component = "{component}"
grants = {{ models = ["flow-anomaly"] }}
[function.model_shapes.flow-anomaly]
inputs = [[1, 4]]
"#,
            runtime = litert_library().display(),
            model = model_path("flow-anomaly/flow-anomaly.tflite").display(),
            zeros = "0".repeat(64),
            component = components().ddos_detector.display(),
        ),
    )
    .unwrap();
    let output = std::process::Command::new(fogd_tests::fogd_bin())
        .args(["check", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("fogd.toml:14:1: model[1].path:") && stderr.contains("sha256 mismatch"),
        "{stderr}"
    );
    assert!(
        stderr.contains("function[0].model_shapes:") && stderr.contains("expects [[1, 4]]"),
        "{stderr}"
    );
}
