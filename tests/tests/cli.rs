//! The `fogd` command line: check, invoke, bench, help and version.

use std::io::Write;
use std::process::{Command, Output, Stdio};

use fogd_tests::{components, fogd_bin};
use serde_json::Value;

fn fogd(args: &[&str]) -> Output {
    Command::new(fogd_bin())
        .args(args)
        .env("NO_COLOR", "1")
        .output()
        .expect("fogd runs")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Asserts that the command's stderr contains `needle`, showing stderr otherwise.
fn assert_stderr_has(output: &Output, needle: &str) {
    let text = stderr(output);
    assert!(text.contains(needle), "stderr lacks {needle:?}:\n{text}");
}

fn write_config(dir: &tempfile::TempDir, text: &str) -> String {
    let path = dir.path().join("fogd.toml");
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

#[test]
fn check_reports_file_line_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        &dir,
        r#"state_dir = "s"

[[function]]
name = "echo"
component = "echo.wasm"
limits = { memory_mib = 16, timeout = "1 fortnight" }
"#,
    );
    let output = fogd(&["check", "--config", &config]);
    assert_eq!(output.status.code(), Some(1));
    let message = stderr(&output);
    assert!(
        message.contains(&format!("{config}:6:")) && message.contains("function[0].limits.timeout"),
        "{message}"
    );

    let config = write_config(
        &dir,
        r#"[metrics]
address = "127.0.0.1:9464"
port = 1
"#,
    );
    let output = fogd(&["check", "--config", &config]);
    assert_stderr_has(
        &output,
        &format!("{config}:3:1: metrics.port: unknown field `port`"),
    );
}

#[test]
fn check_compiles_components_and_names_the_broken_one() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("bad.wasm"), b"not wasm").unwrap();
    let config = write_config(
        &dir,
        &format!(
            r#"[[function]]
name = "good"
component = "{}"

[[function]]
name = "bad"
component = "bad.wasm"
"#,
            components().echo.display()
        ),
    );
    let output = fogd(&["check", "--config", &config]);
    assert_eq!(output.status.code(), Some(1));
    assert_stderr_has(
        &output,
        &format!("{config}:7:1: function[1].component: invalid component"),
    );
    assert_stderr_has(&output, "bad.wasm");

    let config = write_config(
        &dir,
        &format!(
            r#"[[function]]
name = "good"
component = "{}"
"#,
            components().echo.display()
        ),
    );
    let output = fogd(&["check", "--config", &config]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(stdout(&output).contains("ok (1 function)"));
}

#[test]
fn check_reads_outbound_grants_and_names_the_file_it_cannot_use() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        &dir,
        &format!(
            r#"[snmp]
[[snmp.target]]
name = "core-1"
address = "192.0.2.1:161"
community_file = "missing-community"

[[function]]
name = "acts"
component = "{}"
grants.outbound_http = ["https://api.example.net", {{ url = "https://scrubber.example.net", ca_file = "missing-ca.pem" }}]
grants.snmp = {{ core-1 = "write" }}
"#,
            components().probe.display()
        ),
    );
    let output = fogd(&["check", "--config", &config]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    assert_stderr_has(&output, &format!("{config}:2:1: snmp.target[0]:"));
    assert_stderr_has(&output, "missing-community");
    assert_stderr_has(
        &output,
        &format!(
            "{config}:10:52: function[0].grants.outbound_http[1]: https://scrubber.example.net:"
        ),
    );
    assert_stderr_has(&output, "missing-ca.pem");
}

#[test]
fn invoke_component_with_payload_from_stdin() {
    let mut child = Command::new(fogd_bin())
        .args(["invoke", "--component"])
        .arg(&components().echo)
        .args(["--payload", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"bytes from stdin")
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(stdout(&output), "bytes from stdin\n");
    assert_stderr_has(&output, "µs");
}

#[test]
fn invoke_by_name_uses_the_config_and_reports_json() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        &dir,
        &format!(
            r#"state_dir = "state"
[[function]]
name = "probe"
component = "{}"
grants = {{ publish = ["out/#"] }}
"#,
            components().probe.display()
        ),
    );
    let output = fogd(&[
        "invoke",
        "--config",
        &config,
        "probe",
        "--subject",
        "publish",
        "--payload",
        r#"{"topic": "out/x", "payload": "hi"}"#,
        "--json",
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    let report: Value = serde_json::from_str(&stdout(&output)).unwrap();
    assert_eq!(report["ok"], true);
    assert_eq!(report["published"][0]["topic"], "out/x");
    assert_eq!(report["published"][0]["payload"], "hi");
    assert!(report["elapsed_us"].as_f64().unwrap() > 0.0);

    let output = fogd(&[
        "invoke",
        "--config",
        &config,
        "probe",
        "--subject",
        "fail",
        "--json",
    ]);
    assert_eq!(output.status.code(), Some(1));
    let report: Value = serde_json::from_str(&stdout(&output)).unwrap();
    assert_eq!(report["ok"], false);
    assert_eq!(report["kind"], "failed");

    let output = fogd(&["invoke", "--config", &config, "nope"]);
    assert_eq!(output.status.code(), Some(2));
    assert_stderr_has(&output, "no function named \"nope\"");
}

#[test]
fn bench_prints_the_documented_json_keys() {
    let echo = components().echo.display().to_string();
    let probe = components().probe.display().to_string();
    for (kind, component) in [("cold-start", &echo), ("warm", &echo), ("kv", &probe)] {
        let output = fogd(&[
            "bench",
            kind,
            "--component",
            component,
            "--iterations",
            "200",
            "--warmup",
            "10",
            "--json",
        ]);
        assert!(output.status.success(), "{kind}: {}", stderr(&output));
        let summary: Value = serde_json::from_str(stdout(&output).trim()).unwrap();
        for key in ["p50_us", "p99_us", "mean_us", "per_second"] {
            assert!(
                summary[key].as_f64().is_some_and(|v| v > 0.0),
                "{kind}: {key} in {summary}"
            );
        }
        assert_eq!(summary["iterations"], 200, "{kind}");
    }
    // A function that parses its payload is measured on a payload it accepts; one it
    // refuses fails the bench, naming why.
    let threshold = components().threshold_alert.display().to_string();
    let bench = |payload: &str| {
        fogd(&[
            "bench",
            "cold-start",
            "--component",
            &threshold,
            "--payload",
            payload,
            "--iterations",
            "50",
            "--warmup",
            "5",
            "--json",
        ])
    };
    let accepted = bench(r#"{"cpu": 31, "temp_c": 48}"#);
    assert!(accepted.status.success(), "{}", stderr(&accepted));
    let refused = bench("not json");
    assert!(!refused.status.success());
    assert!(
        stderr(&refused).contains("the function failed"),
        "{}",
        stderr(&refused)
    );
}

#[test]
fn help_and_version() {
    let output = fogd(&["--version"]);
    assert_eq!(
        stdout(&output).trim(),
        format!("fogd {}", env!("CARGO_PKG_VERSION"))
    );
    let help = stdout(&fogd(&["--help"]));
    for command in ["run", "check", "invoke", "bench"] {
        assert!(help.contains(command), "{help}");
    }
    let help = stdout(&fogd(&["bench", "cold-start", "--help"]));
    assert!(
        help.contains("--iterations") && help.contains("--json"),
        "{help}"
    );
}
