//! The shipped `predictive-maintenance` function in an agent with the equipment-health model
//! on LiteRT, polling a real snmpd whose health objects come from a `pass` script the test
//! steers: a steady device raises nothing, a failing fan opens a ticket naming it, and the
//! ticket clears once the fan is back.

use fogd_tests::agent::{broker, connected, function, shipped_model, start};
use fogd_tests::components;
use fogd_tests::mosquitto::Mosquitto;
use fogd_tests::mqtt_client::TestClient;
use fogd_tests::snmpd::Snmpd;

/// Serves temperature, fan speed, CPU and memory under 1.3.6.1.4.1.8072.9999.1; in the
/// `failing` phase the fan slows by 350 rpm a poll down to 600.
const PASS_SCRIPT: &str = r#"#!/bin/sh
[ "$1" = "-g" ] || exit 0
dir=$(dirname "$0")
phase=$(cat "$dir/phase")
case "$2" in
.1.3.6.1.4.1.8072.9999.1.1) echo "$2"; echo integer; echo 45 ;;
.1.3.6.1.4.1.8072.9999.1.2)
    polls=$(cat "$dir/fan-polls" 2>/dev/null || echo 0)
    if [ "$phase" = failing ]; then
        polls=$((polls + 1)); rpm=$((5000 - 350 * polls)); [ "$rpm" -lt 600 ] && rpm=600
    else
        polls=0; rpm=5000
    fi
    echo "$polls" > "$dir/fan-polls"
    echo "$2"; echo integer; echo "$rpm" ;;
.1.3.6.1.4.1.8072.9999.1.3) echo "$2"; echo gauge; echo 20 ;;
.1.3.6.1.4.1.8072.9999.1.4) echo "$2"; echo gauge; echo 40 ;;
esac
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_fan_opens_a_ticket_that_clears_when_it_recovers() {
    let scripts = tempfile::tempdir().unwrap();
    let script = scripts.path().join("health.sh");
    std::fs::write(&script, PASS_SCRIPT).unwrap();
    let phase = scripts.path().join("phase");
    std::fs::write(&phase, "healthy").unwrap();
    let snmpd = Snmpd::with_config(&format!(
        "rocommunity fogd-ro 127.0.0.1\npass .1.3.6.1.4.1.8072.9999.1 /bin/sh {}\n",
        script.display()
    ));
    snmpd.wait_ready();
    let mosquitto = Mosquitto::start();
    let mut client = TestClient::connect(
        mosquitto.port,
        "health-observer",
        &["maintenance/#", "risk/#"],
    )
    .await;
    let config = format!(
        r#"
{model}

[snmp]
[[snmp.poll]]
name = "edge-1-health"
target = "{address}"
community = "fogd-ro"
get = ["1.3.6.1.4.1.8072.9999.1.1", "1.3.6.1.4.1.8072.9999.1.2", "1.3.6.1.4.1.8072.9999.1.3", "1.3.6.1.4.1.8072.9999.1.4"]
every = "100ms"

{broker}
{function}
"#,
        model = shipped_model("equipment-health"),
        address = snmpd.address(),
        broker = broker("local", &mosquitto.address(), ""),
        function = function(
            "predictive-maintenance",
            &components().predictive_maintenance,
            r#"
                output = "risk/{subject}"
                grants = { publish = ["maintenance/#"], models = ["equipment-health"] }
                config = { devices = { edge-1-health = "edge-1" }, signals = { temperature_c = "1.3.6.1.4.1.8072.9999.1.1", fan_rpm = "1.3.6.1.4.1.8072.9999.1.2", cpu_pct = "1.3.6.1.4.1.8072.9999.1.3", memory_pct = "1.3.6.1.4.1.8072.9999.1.4" } }
                [function.model_shapes.equipment-health]
                inputs = [[1, 14]]
                outputs = [[1, 8]]
                [[function.trigger]]
                snmp_poll = { job = "edge-1-health" }
            "#
        ),
    );
    let running = start(&config).await;
    connected(&running.agent, "local").await;

    // Steady: the full windows are judged healthy, and no ticket is published.
    for _ in 0..3 {
        let (topic, body) = client.next_json().await;
        assert_eq!(
            topic, "risk/edge-1-health",
            "no ticket for a steady device: {body}"
        );
        assert!(body["risk"].as_f64().unwrap() < 0.3, "{body}");
    }

    std::fs::write(&phase, "failing").unwrap();
    let ticket = client.next_json_on("maintenance/edge-1").await;
    assert_eq!(ticket["state"], "ticket", "{ticket}");
    assert_eq!(ticket["driver"], "fan_rpm", "{ticket}");
    assert!(ticket["risk"].as_f64().unwrap() >= 0.8, "{ticket}");
    assert!(ticket["signals"]["fan_rpm"].as_f64().unwrap() < 5000.0);

    std::fs::write(&phase, "healthy").unwrap();
    let clear = client.next_json_on("maintenance/edge-1").await;
    assert_eq!(clear["state"], "clear", "{clear}");
    assert!(clear["risk"].as_f64().unwrap() < 0.3, "{clear}");
    drop(running);
}
