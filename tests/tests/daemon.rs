//! The real `fogd run` process: timer triggers drive the shipped functions (also after it
//! paged out what start-up touched), metrics and health are served, SIGTERM drains and
//! exits cleanly.

use fogd_tests::components;
use fogd_tests::daemon::{Daemon, http_get, metrics_address};

#[test]
fn daemon_runs_functions_on_timers_serves_metrics_and_drains_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("fogd.toml");
    std::fs::write(
        &config,
        format!(
            r#"
state_dir = "state"
[metrics]
address = "127.0.0.1:0"

[[function]]
name = "threshold-alert"
component = "{alert}"
grants = {{ publish = ["alerts/#"] }}
config = {{ samples = 2, warmup = 3 }}
[[function.trigger]]
timer = {{ name = "router", every = "20ms", payloads = ['{{"cpu": 10}}', '{{"cpu": 11}}', '{{"cpu": 10}}', '{{"cpu": 90}}', '{{"cpu": 95}}', '{{"cpu": 10}}'] }}

[[function]]
name = "echo"
component = "{echo}"
output = "out/{{function}}"
[[function.trigger]]
timer = {{ every = "20ms" }}

[[function]]
name = "broken"
component = "{missing}"
"#,
            alert = components().threshold_alert.display(),
            echo = components().echo.display(),
            missing = dir.path().join("missing.wasm").display(),
        ),
    )
    .unwrap();

    let mut daemon = Daemon::start(&config);
    daemon.wait_for(&["function not loaded", "broken", "missing.wasm"]);
    let ready = daemon.wait_for(&["fogd ready", "functions=2"]);
    let address = metrics_address(&ready);
    daemon.wait_for(&["released the pages start-up touched", "resident_after_kib="]);
    // Code paged out after start-up comes back when events need it.
    daemon.wait_for_next(&["publish", "out/echo", "{\"tick\":"]);

    let alert = daemon.wait_for(&["publish", "alerts/cpu", "\"state\":\"alert\""]);
    assert!(alert.contains("\"value\":95"), "{alert}");
    daemon.wait_for(&["publish", "alerts/cpu", "\"state\":\"clear\""]);
    daemon.wait_for(&["publish", "out/echo", "{\"tick\":"]);

    let metrics = http_get(&address, "/metrics");
    assert!(metrics.starts_with("HTTP/1.1 200"), "{metrics}");
    assert!(
        metrics.contains("fogd_invocations_total{function=\"echo\"}"),
        "{metrics}"
    );
    assert!(
        metrics.contains("fogd_cold_start_seconds_bucket{"),
        "{metrics}"
    );
    assert!(
        metrics.contains("fogd_events_received_total{source=\"timer\"}"),
        "{metrics}"
    );

    let health = http_get(&address, "/healthz");
    assert!(
        health.starts_with("HTTP/1.1 503"),
        "a function failed to load: {health}"
    );
    assert!(health.contains("\"function/broken\""), "{health}");
    assert!(health.contains("\"function/echo\""), "{health}");

    let (status, log) = daemon.terminate();
    assert!(status.success(), "exit status {status:?}");
    let text = log.join("\n");
    assert!(
        text.contains("stop requested") && text.contains("SIGTERM"),
        "{text}"
    );
    assert!(text.contains("stopped"), "{text}");
}

#[test]
fn shipped_demo_config_is_valid_with_each_part_the_site_may_add() {
    components();
    let check = |config: &std::path::Path, functions: &str| {
        let output = std::process::Command::new(fogd_tests::fogd_bin())
            .args(["check", "--config"])
            .arg(config)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(
            String::from_utf8_lossy(&output.stdout)
                .contains(&format!("ok ({functions} functions)"))
        );
    };
    let root = fogd_tests::root();
    let read = |name: &str| std::fs::read_to_string(root.join("provisioning").join(name)).unwrap();
    check(&root.join("provisioning/demo.toml"), "4");
    // What demo.sh runs: the demo, the timer replay without softflowd, the router's SNMP
    // side with snmpd, side by side in target/ so the relative paths hold.
    let site = read("demo-site.toml").replace("@HOSTNAME@", "demo-host");
    std::fs::create_dir_all(root.join("target/demo-site")).unwrap();
    std::fs::write(root.join("target/demo-site/rw-community"), "demo-rw\n").unwrap();
    for (name, parts, functions) in [
        (
            "timer-replay",
            vec![read("demo.toml"), read("demo-flow-replay.toml")],
            "5",
        ),
        ("site", vec![read("demo.toml"), site.clone()], "7"),
        (
            "site-timer-replay",
            vec![
                read("demo.toml"),
                read("demo-flow-replay.toml"),
                site.clone(),
            ],
            "8",
        ),
    ] {
        let config = root.join(format!("target/demo-{name}-check.toml"));
        std::fs::write(&config, parts.join("\n")).unwrap();
        check(&config, functions);
    }
}
