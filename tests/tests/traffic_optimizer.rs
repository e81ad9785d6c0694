//! The shipped `traffic-optimizer` function in an agent with the link-forecast model on
//! LiteRT, polling a real snmpd whose octet counters come from a `pass` script that
//! integrates the rates the test sets: steady links are left alone, a link whose traffic
//! climbs towards its capacity gets traffic moved to its parallel link once, and equal
//! weights come back when it has calmed down.

use std::time::{SystemTime, UNIX_EPOCH};

use fogd_tests::agent::{broker, connected, function, shipped_model, start};
use fogd_tests::components;
use fogd_tests::mosquitto::Mosquitto;
use fogd_tests::mqtt_client::TestClient;
use fogd_tests::snmpd::Snmpd;

/// `.1.3.6.1.4.1.8072.9999.2.<n>`: link n's octet counter, integrated from the rate in
/// file `link-<n>` ("bits/s at the set time, change per second, set time in ns").
const PASS_SCRIPT: &str = r#"#!/bin/sh
[ "$1" = "-g" ] || exit 0
dir=$(dirname "$0")
case "$2" in
.1.3.6.1.4.1.8072.9999.2.1) link=1 ;;
.1.3.6.1.4.1.8072.9999.2.2) link=2 ;;
*) exit 0 ;;
esac
now=$(date +%s%N)
octets=$(awk -v now="$now" -v config="$dir/link-$link" -v state="$dir/link-$link.state" 'BEGIN {
    getline line < config; split(line, c, " ");
    last = now; total = 0;
    if ((getline kept < state) > 0) { split(kept, k, " "); last = k[1]; total = k[2]; }
    from = c[1] + c[2] * (last - c[3]) / 1e9; to = c[1] + c[2] * (now - c[3]) / 1e9;
    if (from < 0) from = 0; if (to < 0) to = 0;
    total += (from + to) / 2 * (now - last) / 1e9 / 8;
    printf "%.0f %.0f\n", now, total > state;
    printf "%.0f\n", total;
}')
echo "$2"; echo counter; echo "$octets"
"#;

fn now_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

/// Sets link `n` to `mbps` now, changing by `per_second` Mbit/s each second.
fn set_rate(dir: &std::path::Path, link: u32, mbps: f64, per_second: f64) {
    std::fs::write(
        dir.join(format!("link-{link}")),
        format!("{} {} {}\n", mbps * 1e6, per_second * 1e6, now_ns()),
    )
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_link_forecast_congested_moves_traffic_to_its_neighbour_once_and_back() {
    let scripts = tempfile::tempdir().unwrap();
    let script = scripts.path().join("counters.sh");
    std::fs::write(&script, PASS_SCRIPT).unwrap();
    set_rate(scripts.path(), 1, 30.0, 0.0);
    set_rate(scripts.path(), 2, 20.0, 0.0);
    let snmpd = Snmpd::with_config(&format!(
        "rocommunity fogd-ro 127.0.0.1\npass .1.3.6.1.4.1.8072.9999.2 /bin/sh {}\n",
        script.display()
    ));
    snmpd.wait_ready();
    let mosquitto = Mosquitto::start();
    let mut client =
        TestClient::connect(mosquitto.port, "te-observer", &["traffic/#", "links/#"]).await;
    let config = format!(
        r#"
{model}

[snmp]
[[snmp.poll]]
name = "edge-1-links"
target = "{address}"
community = "fogd-ro"
get = ["1.3.6.1.4.1.8072.9999.2.1", "1.3.6.1.4.1.8072.9999.2.2"]
every = "100ms"

{broker}
{function}
"#,
        model = shipped_model("link-forecast"),
        address = snmpd.address(),
        broker = broker("local", &mosquitto.address(), ""),
        function = function(
            "traffic-optimizer",
            &components().traffic_optimizer,
            r#"
                output = "links/{subject}"
                grants = { publish = ["traffic/#"], models = ["link-forecast"] }
                config = { groups = { wan = ["uplink-a", "uplink-b"] }, links = { uplink-a = { octets = "1.3.6.1.4.1.8072.9999.2.1", speed_mbps = 100 }, uplink-b = { octets = "1.3.6.1.4.1.8072.9999.2.2", speed_mbps = 100 } } }
                [function.model_shapes.link-forecast]
                inputs = [[1, 8]]
                outputs = [[1, 1]]
                [[function.trigger]]
                snmp_poll = { job = "edge-1-links" }
            "#
        ),
    );
    let running = start(&config).await;
    connected(&running.agent, "local").await;

    // Steady at 30% and 20%: forecasts near that, and no action.
    let mut judged = 0;
    while judged < 3 {
        let (topic, body) = client.next_json().await;
        assert!(
            topic.starts_with("links/"),
            "no action on steady links: {body}"
        );
        if let Some(a) = body["wan"]["uplink-a"]["forecast"].as_f64() {
            assert!((a - 0.3).abs() < 0.1, "{body}");
            judged += 1;
        }
    }

    // uplink-a climbs from 60 Mbit/s by 25 Mbit/s a second.
    set_rate(scripts.path(), 1, 60.0, 25.0);
    let rebalance = client.next_json_on("traffic/wan").await;
    assert_eq!(rebalance["action"], "rebalance", "{rebalance}");
    assert_eq!(rebalance["congested"], serde_json::json!(["uplink-a"]));
    let weights = &rebalance["ecmp_weights"];
    assert!(
        weights["uplink-b"].as_u64() > weights["uplink-a"].as_u64(),
        "{rebalance}"
    );
    assert_eq!(
        weights["uplink-a"].as_u64().unwrap() + weights["uplink-b"].as_u64().unwrap(),
        100
    );

    // Back to 30 Mbit/s: the next action is the restore, not another rebalance.
    set_rate(scripts.path(), 1, 30.0, 0.0);
    let restore = client.next_json_on("traffic/wan").await;
    assert_eq!(restore["action"], "restore", "{restore}");
    assert_eq!(restore["ecmp_weights"]["uplink-a"], 50);
    assert_eq!(restore["ecmp_weights"]["uplink-b"], 50);
    drop(running);
}
