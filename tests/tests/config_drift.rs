//! The shipped `config-drift` function in an agent, against a real snmpd with a writable view:
//! a poll finds the device off its baseline and sets it back; a configuration change logged
//! with util-linux `logger` and made with net-snmp's `snmpset` is reported with its message
//! and undone; other syslog lines are not reported.

use std::process::Command;

use fogd_tests::agent::{broker, connected, function, start};
use fogd_tests::mosquitto::Mosquitto;
use fogd_tests::mqtt_client::TestClient;
use fogd_tests::snmpd::{self, Snmpd};
use fogd_tests::{PATIENCE, assert_success, components, wait_until};
use serde_json::Value;

const SYS_CONTACT: &str = "1.3.6.1.2.1.1.4.0";
const SYS_LOCATION: &str = "1.3.6.1.2.1.1.6.0";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drift_is_reported_with_its_change_message_and_set_back_to_the_baseline() {
    let snmpd = Snmpd::writable();
    snmpd.wait_ready();
    let mosquitto = Mosquitto::start();
    let mut client = TestClient::connect(mosquitto.port, "drift-observer", &["config/#"]).await;
    let community = snmpd.dir().join("rw-community");
    std::fs::write(&community, snmpd::WRITE_COMMUNITY).unwrap();
    // logger sends the machine's host name.
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    let hostname = hostname.trim();
    let config = format!(
        r#"
[syslog]
udp = ["127.0.0.1:0"]

[snmp]
[[snmp.target]]
name = "edge-1"
address = "{address}"
community_file = "{community}"

[[snmp.poll]]
name = "edge-1-config"
target = "{address}"
community = "fogd-ro"
get = ["{SYS_CONTACT}", "{SYS_LOCATION}"]
every = "1h"

{broker}
{drift}
"#,
        address = snmpd.address(),
        community = community.display(),
        broker = broker("local", &mosquitto.address(), ""),
        drift = function(
            "config-drift",
            &components().config_drift,
            &format!(
                r#"
                grants = {{ publish = ["config/#"], snmp = {{ edge-1 = "write" }} }}
                config = {{ remediate = true, devices = {{ "{hostname}" = "edge-1", edge-1-config = "edge-1" }}, baseline = {{ edge-1 = {{ sysContact = "noc@example.net", sysLocation = "rack-7" }} }} }}
                [[function.trigger]]
                syslog = {{}}
                [[function.trigger]]
                snmp_poll = {{ job = "edge-1-config" }}
            "#
            )
        ),
    );
    let running = start(&config).await;
    connected(&running.agent, "local").await;
    let syslog = running.agent.syslog_addresses[0];

    // The first poll (at start) finds net-snmp's default contact and location.
    let report = next_report(&mut client).await;
    assert_eq!(report["trigger"], "snmp-poll", "{report}");
    assert_eq!(report["compliance"], 0.0, "{report}");
    let drifted: Vec<&str> = report["drift"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["object"].as_str().unwrap())
        .collect();
    assert_eq!(drifted, ["sysContact", "sysLocation"]);
    assert_eq!(
        report["remediated"].as_array().map(Vec::len),
        Some(2),
        "{report}"
    );
    assert_eq!(
        snmpd.get(SYS_CONTACT).as_deref(),
        Some("\"noc@example.net\"")
    );
    assert_eq!(snmpd.get(SYS_LOCATION).as_deref(), Some("\"rack-7\""));

    // An operator moves the device and the router logs it; an unrelated line comes first.
    let snmpset = Command::new("snmpset")
        .args(["-v2c", "-c", snmpd::WRITE_COMMUNITY, "-t", "2"])
        .arg(snmpd.address())
        .args([SYS_LOCATION, "s", "lab-bench"])
        .env("MIBS", "")
        .output()
        .expect("snmpset runs (Debian package `snmp`)");
    assert_success(&snmpset);
    for message in [
        "%LINK-3-UPDOWN: Interface GigabitEthernet0/1, changed state to up",
        "%SYS-5-CONFIG_I: Configured from console by admin on vty0 (192.0.2.5)",
    ] {
        let logger = Command::new("logger")
            .args(["-n", "127.0.0.1", "-P", &syslog.port().to_string(), "-d"])
            .args(["-t", "router", "--"])
            .arg(message)
            .output()
            .expect("logger runs (util-linux)");
        assert_success(&logger);
    }
    // Events of one host run in order: had the first line been reported, it would come first.
    let report = next_report(&mut client).await;
    assert_eq!(report["trigger"], "syslog", "{report}");
    assert_eq!(report["change"]["marker"], "%SYS-5-CONFIG_I", "{report}");
    assert!(
        report["change"]["message"]
            .as_str()
            .unwrap()
            .contains("Configured from console by admin")
    );
    assert_eq!(report["compliance"], 0.5, "{report}");
    assert_eq!(report["drift"][0]["object"], "sysLocation");
    assert_eq!(report["drift"][0]["actual"], "lab-bench");
    assert_eq!(report["drift"][0]["expected"], "rack-7");
    assert_eq!(report["remediated"][0]["object"], "sysLocation", "{report}");
    wait_until("snmpd has the baseline location again", || {
        snmpd.get(SYS_LOCATION).as_deref() == Some("\"rack-7\"")
    })
    .await;
}

async fn next_report(client: &mut TestClient) -> Value {
    let message = client.next(PATIENCE).await;
    assert_eq!(message.topic, "config/drift/edge-1");
    serde_json::from_slice(&message.payload).unwrap_or_else(|e| panic!("{}: {e}", message.text()))
}
