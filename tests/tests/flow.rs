//! Flow exports from real exporters into a running agent: softflowd replays captures this
//! test writes (normal traffic, then a SYN flood) as NetFlow v5, v9 and IPFIX, and pmacct's
//! pmacctd as sFlow; the window aggregates a function receives (through a real Mosquitto)
//! must match what the capture holds, and the flood must reach `ddos-detector` and end in
//! a mitigation. Malformed datagrams and data before its template are counted.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::path::Path;

use fogd_tests::agent::{Running, broker, connected, function, start};
use fogd_tests::mosquitto::Mosquitto;
use fogd_tests::mqtt_client::TestClient;
use fogd_tests::traffic::{Capture, Received, pmacct, softflowd, softflowd_with};
use fogd_tests::{PATIENCE, components, litert_library, model_path, wait_until};
use serde_json::Value;

const WEB: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 10);
const DNS: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 53);
const VICTIM: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 80);
const FLOOD: u32 = 1_500;
/// Packets after the compared ones, for exporters that lose the end of a capture.
const TAIL: u16 = 24;
const TAIL_DST: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 99);
/// Distinct sources an aggregate counts exactly (the README's flow window schema).
const EXACT_SOURCES: f64 = 1024.0;

/// Ten clients browsing, five DNS lookups, then a SYN flood from spoofed sources.
fn capture() -> Capture {
    let mut capture = Capture::new();
    for client in 1..=10u8 {
        let source = (Ipv4Addr::new(10, 0, 0, client), 40_000 + u16::from(client));
        capture.tcp_session(source, (WEB, 443), 3);
        capture.advance(20_000);
    }
    for client in 1..=5u8 {
        let source = (Ipv4Addr::new(10, 0, 1, client), 50_000 + u16::from(client));
        capture.udp(source, (DNS, 53), 40);
    }
    capture.advance(500_000);
    capture.syn_flood((VICTIM, 80), FLOOD);
    capture
}

struct Site {
    running: Running,
    client: TestClient,
    flow: SocketAddr,
    _mosquitto: Mosquitto,
}

/// An agent collecting flows on a free UDP port, with an `echo` function that publishes
/// every window of `trigger` to `flows/windows`.
async fn site(id: &str, trigger: &str) -> Site {
    let windows = function(
        "windows",
        &components().echo,
        &format!(
            r#"
                output = "flows/windows"
                [[function.trigger]]
                flow = {trigger}
            "#
        ),
    );
    site_with(id, &windows).await
}

/// An agent collecting flows on a free UDP port and running `functions` (TOML), which may
/// publish under `flows/`.
async fn site_with(id: &str, functions: &str) -> Site {
    let mosquitto = Mosquitto::start();
    let client = TestClient::connect(mosquitto.port, id, &["flows/#"]).await;
    let config = format!(
        r#"
[flow]
udp = ["127.0.0.1:0"]

[inference]
runtime = "{runtime}"

[[model]]
name = "flow-anomaly"
version = "1"
path = "{model}"

{broker}
{functions}
"#,
        runtime = litert_library().display(),
        model = model_path("flow-anomaly/flow-anomaly.tflite").display(),
        broker = broker("local", &mosquitto.address(), ""),
    );
    let running = start(&config).await;
    connected(&running.agent, "local").await;
    let [flow] = running.agent.flow_addresses[..] else {
        panic!("expected one flow listener");
    };
    Site {
        running,
        client,
        flow,
        _mosquitto: mosquitto,
    }
}

/// Replays `pcap` with pmacct's pmacctd and its sfprobe plugin, exporting sFlow v5 with
/// one in `sampling` packets sampled to `collector`, until pmacctd has read the whole capture.
fn pmacctd_sflow(pcap: &Path, sampling: u32, collector: SocketAddr) {
    let config = pcap.with_extension("pmacctd.conf");
    std::fs::write(
        &config,
        format!(
            "daemonize: false\npcap_savefile: {}\nplugins: sfprobe\nsfprobe_receiver: {collector}\n\
             sfprobe_agentip: 127.0.0.1\nsampling_rate: {sampling}\n",
            pcap.display()
        ),
    )
    .unwrap();
    pmacct("pmacctd", &config);
}

impl Site {
    fn rejected(&self, reason: &str) -> u64 {
        self.running
            .agent
            .metrics
            .input_rejected_count("flow", reason)
    }

    /// Waits until every datagram sent so far has been read: a malformed one sent now is
    /// queued behind them, so once it is counted they have all been decoded.
    async fn barrier(&self) {
        let before = self.rejected("malformed");
        UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .send_to(b"\x00", self.flow)
            .unwrap();
        wait_until("the barrier datagram counted", || {
            self.rejected("malformed") > before
        })
        .await;
    }

    async fn records_reach(&self, expected: u64) {
        let metrics = &self.running.agent.metrics;
        wait_until(&format!("{expected} flow records decoded"), || {
            metrics.flow_records_count() >= expected
        })
        .await;
    }

    /// Reconfigures the agent, which closes the open window, and returns its aggregates by
    /// destination.
    async fn closed_window(&mut self, destinations: usize) -> BTreeMap<String, Value> {
        self.running.reapply().await;
        let messages = self
            .client
            .collect_until(PATIENCE, |all| all.len() >= destinations)
            .await;
        messages
            .iter()
            .map(|message| {
                let window: Value = serde_json::from_slice(&message.payload)
                    .unwrap_or_else(|e| panic!("{}: {e}", message.text()));
                let dst = window["key"]["dst_addr"]
                    .as_str()
                    .unwrap_or("all")
                    .to_owned();
                (dst, window)
            })
            .collect()
    }
}

/// Every count an aggregate has for one destination equals the capture's.
fn assert_window_matches(window: &Value, truth: &Received, version: &str) {
    let at = format!("v{version} {}", window["key"]);
    assert_eq!(window["packets"], truth.packets, "{at} packets");
    assert_eq!(window["bytes"], truth.bytes, "{at} bytes");
    assert_eq!(window["flows"], truth.flows, "{at} flows");
    assert_eq!(window["tcp"]["syn"], truth.syn_flows, "{at} syn");
    assert_eq!(
        window["tcp"]["syn_without_ack"], truth.syn_without_ack_flows,
        "{at} syn without ack"
    );
    assert_eq!(window["udp_packets"], truth.udp_packets, "{at} udp packets");
    let sources = truth.sources.len() as f64;
    let counted = window["distinct_sources"]["count"].as_f64().unwrap();
    if sources < EXACT_SOURCES {
        assert_eq!(counted, sources, "{at} sources");
        assert_eq!(window["distinct_sources"]["estimated"], false, "{at}");
    } else {
        assert!(
            (counted - sources).abs() / sources < 0.05,
            "{at}: {counted} sources estimated"
        );
        assert_eq!(window["distinct_sources"]["estimated"], true, "{at}");
    }
    assert_eq!(
        window["distinct_dst_ports"],
        truth.dst_ports.len() as u64,
        "{at} ports"
    );
    assert_eq!(window["overflow"], false);
    assert_eq!(window["sampled"], false);
}

/// A flow exporter a test replays captures with: softflowd or pmacctd's nfprobe.
#[derive(Clone, Copy)]
enum Exporter {
    Softflowd,
    Nfprobe,
}

fn export(exporter: Exporter, pcap: &Path, version: &str, collector: SocketAddr) {
    match exporter {
        Exporter::Softflowd => softflowd(pcap, version, collector),
        Exporter::Nfprobe => {
            let config = pcap.with_extension("nfprobe.conf");
            std::fs::write(
                &config,
                format!(
                    "daemonize: false\npcap_savefile: {}\nplugins: nfprobe\n\
                     nfprobe_receiver: {collector}\nnfprobe_version: {version}\n",
                    pcap.display()
                ),
            )
            .unwrap();
            pmacct("pmacctd", &config);
        }
    }
}

async fn windows_match_the_capture(version: &str) {
    windows_from(Exporter::Softflowd, version).await;
}

async fn windows_from(exporter: Exporter, version: &str) {
    let mut site = site(
        &format!("flow-observer-v{version}-{}", exporter as u8),
        r#"{ window = "1h", key = ["dst_addr"], top = 3 }"#,
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let pcap = dir.path().join("traffic.pcap");
    let capture = capture();
    capture.write(&pcap);
    export(exporter, &pcap, version, site.flow);
    site.records_reach(capture.flow_count()).await;
    assert_eq!(site.rejected("malformed"), 0);
    assert_eq!(site.rejected("template_missing"), 0);
    let windows = site.closed_window(3).await;
    let truth = capture.received();
    assert_eq!(windows.len(), truth.len());
    for (dst, received) in &truth {
        assert_window_matches(&windows[&dst.to_string()], received, version);
    }
    let web = &windows[&WEB.to_string()];
    assert_eq!(web["protocols"]["tcp"]["packets"], truth[&WEB].packets);
    assert_eq!(web["top_sources"].as_array().unwrap().len(), 3);
    assert_eq!(web["top_sources_exact"], true);
    assert!(web["window"]["seconds"].as_f64().unwrap() > 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn netflow_v5_windows_match_the_capture() {
    windows_match_the_capture("5").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn netflow_v9_windows_match_the_capture() {
    windows_match_the_capture("9").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipfix_windows_match_the_capture() {
    windows_match_the_capture("10").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pmacctd_nfprobe_as_a_second_netflow_v9_exporter_gives_the_same_windows() {
    windows_from(Exporter::Nfprobe, "9").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_datagrams_are_counted_once_and_later_exports_still_decode() {
    let mut site = site("flow-observer-bad", r#"{ window = "1h" }"#).await;
    let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
    for datagram in [
        &b"\x00"[..],
        b"\x00\x07garbage",
        b"\x00\x09\x00\x01short",
        &[0u8; 0],
    ] {
        sender.send_to(datagram, site.flow).unwrap();
    }
    wait_until("four malformed datagrams counted", || {
        site.rejected("malformed") == 4
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let pcap = dir.path().join("traffic.pcap");
    let capture = capture();
    capture.write(&pcap);
    softflowd(&pcap, "9", site.flow);
    site.records_reach(capture.flow_count()).await;
    assert_eq!(site.rejected("malformed"), 4);
    let windows = site.closed_window(1).await;
    let all = &windows.values().next().unwrap();
    let total: u64 = capture.received().values().map(|r| r.packets).sum();
    assert_eq!(all["packets"], total);
}

/// ddos-detector on the collector's one-second windows per destination, confirming an
/// attack in one window: mitigations on `flows/mitigation`, every verdict on `flows/verdicts`.
fn ddos_detector() -> String {
    function(
        "ddos-detector",
        &components().ddos_detector,
        r#"
            grants = { models = ["flow-anomaly"], publish = ["flows/#"] }
            config = { action_topic = "flows/mitigation", confirm_windows = 1 }
            output = "flows/verdicts"
            [function.model_shapes.flow-anomaly]
            inputs = [[1, 8]]
            outputs = [[1, 4]]
            [[function.trigger]]
            flow = { window = "1s", key = ["dst_addr"] }
        "#,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_syn_flood_replayed_by_softflowd_reaches_ddos_detector_and_ends_in_a_mitigation() {
    let mut site = site_with("flow-observer-ddos", &ddos_detector()).await;
    let dir = tempfile::tempdir().unwrap();
    let pcap = dir.path().join("flood.pcap");
    // Browsing, then the flood: a handful of one-packet DNS lookups would be a window the
    // model may call a scan, which is not what this test is about.
    let mut capture = Capture::new();
    for client in 1..=10u8 {
        let source = (Ipv4Addr::new(10, 0, 0, client), 40_000 + u16::from(client));
        capture.tcp_session(source, (WEB, 443), 3);
    }
    capture.syn_flood((VICTIM, 80), 20_000);
    capture.write(&pcap);
    softflowd(&pcap, "10", site.flow);
    // Detection latency in windows: the verdicts on the victim before its mitigation.
    let mut victim_windows = 0;
    let mitigation = loop {
        let message = site.client.next(PATIENCE).await;
        let body: Value = serde_json::from_slice(&message.payload).unwrap();
        if body["dst"] != VICTIM.to_string() {
            continue;
        }
        match message.topic.as_str() {
            "flows/mitigation" => break body,
            "flows/verdicts" => victim_windows += 1,
            _ => {}
        }
    };
    assert!(
        victim_windows <= 1,
        "mitigated within the flood's first window (confirm_windows = 1), not after {victim_windows}"
    );
    assert_eq!(mitigation["action"], "mitigate", "{mitigation}");
    assert_eq!(mitigation["attack"], "syn_flood");
    assert_eq!(mitigation["rule"]["type"], "rate-limit");
    assert_eq!(mitigation["rule"]["match"]["tcp_flags"], "SYN,!ACK");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ordinary_traffic_replayed_by_softflowd_raises_no_mitigation() {
    let mut site = site_with("flow-observer-calm", &ddos_detector()).await;
    let dir = tempfile::tempdir().unwrap();
    let pcap = dir.path().join("calm.pcap");
    let mut capture = Capture::new();
    for client in 1..=20u8 {
        let source = (Ipv4Addr::new(10, 0, 0, client), 40_000 + u16::from(client));
        capture.tcp_session(source, (WEB, 443), 5);
    }
    capture.write(&pcap);
    softflowd(&pcap, "10", site.flow);
    // A window's publishes go out before its verdict: a false positive would come first.
    let mut false_positives = 0;
    let verdict = loop {
        let message = site.client.next(PATIENCE).await;
        let body: Value = serde_json::from_slice(&message.payload).unwrap();
        match message.topic.as_str() {
            "flows/mitigation" => false_positives += 1,
            "flows/verdicts" if body["dst"] == WEB.to_string() => break body,
            _ => {}
        }
    };
    assert_eq!(verdict["class"], "normal", "{verdict}");
    assert_eq!(false_positives, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sflow_from_pmacctd_samples_every_packet_into_the_same_windows() {
    let mut site = site(
        "flow-observer-sflow",
        r#"{ window = "1h", key = ["dst_addr"] }"#,
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let pcap = dir.path().join("traffic.pcap");
    let mut capture = capture();
    let counted = capture.packet_count();
    // pmacctd exits without sending the samples of its last, partly filled datagram: the
    // capture ends with packets to another destination that may be lost instead.
    for port in 0..TAIL {
        capture.udp(
            (Ipv4Addr::new(10, 0, 2, 1), 5_000 + port),
            (TAIL_DST, 9),
            10,
        );
    }
    capture.write(&pcap);
    pmacctd_sflow(&pcap, 1, site.flow);
    site.records_reach(counted).await;
    assert_eq!(site.rejected("malformed"), 0);
    let windows = site.closed_window(4).await;
    for (dst, truth) in capture
        .received()
        .iter()
        .filter(|(dst, _)| **dst != TAIL_DST)
    {
        let window = &windows[&dst.to_string()];
        let at = format!("sFlow {dst}");
        // Each sample is one packet: its record counts one packet and its own flags.
        assert_eq!(window["packets"], truth.packets, "{at}");
        assert_eq!(window["flows"], truth.packets, "{at}");
        assert_eq!(window["bytes"], truth.bytes, "{at}");
        assert_eq!(window["tcp"]["syn"], truth.syn_packets, "{at}");
        assert_eq!(
            window["tcp"]["syn_without_ack"], truth.syn_without_ack_packets,
            "{at}"
        );
        assert_eq!(window["udp_packets"], truth.udp_packets, "{at}");
        assert_eq!(
            window["distinct_dst_ports"],
            truth.dst_ports.len() as u64,
            "{at}"
        );
        assert_eq!(window["sampled"], false, "{at}");
    }
    assert_eq!(
        windows[&WEB.to_string()]["distinct_sources"]["count"],
        capture.received()[&WEB].sources.len() as u64
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sampled_sflow_is_scaled_by_the_sampling_rate() {
    let mut site = site("flow-observer-sampled", r#"{ window = "1h" }"#).await;
    let dir = tempfile::tempdir().unwrap();
    let pcap = dir.path().join("traffic.pcap");
    let capture = capture();
    capture.write(&pcap);
    pmacctd_sflow(&pcap, 10, site.flow);
    site.barrier().await;
    let windows = site.closed_window(1).await;
    let all = &windows["all"];
    assert_eq!(all["sampled"], true);
    let packets = all["packets"].as_u64().unwrap();
    let flows = all["flows"].as_u64().unwrap();
    assert_eq!(packets, flows * 10, "each sample stands for ten packets");
    let truth = capture.packet_count() as f64;
    assert!(
        (packets as f64 - truth).abs() / truth < 0.2,
        "{packets} packets estimated of {truth}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_carry_every_record_full_batches_at_once_and_the_rest_when_flushed() {
    let mut site = site("flow-observer-batches", r#"{ batch = 100, flush = "1h" }"#).await;
    let dir = tempfile::tempdir().unwrap();
    let pcap = dir.path().join("traffic.pcap");
    let capture = capture();
    capture.write(&pcap);
    softflowd(&pcap, "9", site.flow);
    let flows = capture.flow_count() as usize;
    let full = site
        .client
        .collect_until(PATIENCE, |all| all.len() == flows / 100)
        .await;
    site.running.reapply().await;
    let rest = site.client.next(PATIENCE).await;
    let batches: Vec<Value> = full
        .iter()
        .chain([&rest])
        .map(|message| serde_json::from_slice(&message.payload).unwrap())
        .collect();
    let sizes: Vec<usize> = batches
        .iter()
        .map(|batch| batch["records"].as_array().unwrap().len())
        .collect();
    assert!(
        sizes[..sizes.len() - 1].iter().all(|&n| n == 100),
        "{sizes:?}"
    );
    assert_eq!(sizes.iter().sum::<usize>(), flows);
    let records: Vec<&Value> = batches
        .iter()
        .flat_map(|batch| batch["records"].as_array().unwrap())
        .collect();
    let flood: Vec<&&Value> = records
        .iter()
        .filter(|r| r["dst_addr"] == VICTIM.to_string())
        .collect();
    assert_eq!(flood.len(), FLOOD as usize);
    assert!(flood.iter().all(|r| r["protocol"] == 6
        && r["tcp_flags"] == 2
        && r["packets"] == 1
        && r["dst_port"] == 80
        && r["sampling_rate"] == 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_before_its_template_is_counted_per_set_and_an_unknown_exporter_is_refused() {
    let config = format!(
        r#"
[flow]
udp = ["127.0.0.1:0"]
allowed_sources = ["192.0.2.0/24"]
{windows}
"#,
        windows = function(
            "windows",
            &components().echo,
            r#"
                [[function.trigger]]
                flow = { window = "1h" }
            "#
        ),
    );
    let running = start(&config).await;
    let flow = running.agent.flow_addresses[0];
    let metrics = &running.agent.metrics;
    let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
    sender.send_to(&v9_data_without_template(), flow).unwrap();
    wait_until("the loopback exporter refused", || {
        metrics.input_rejected_count("flow", "source_not_allowed") == 1
    })
    .await;
    assert_eq!(metrics.input_rejected_count("flow", "template_missing"), 0);
    drop(running);

    let mut site = site("flow-observer-template", r#"{ window = "1h" }"#).await;
    let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
    sender
        .send_to(&v9_data_without_template(), site.flow)
        .unwrap();
    wait_until("two data sets without a template counted", || {
        site.rejected("template_missing") == 2
    })
    .await;
    assert_eq!(site.rejected("malformed"), 0);
    let dir = tempfile::tempdir().unwrap();
    let pcap = dir.path().join("traffic.pcap");
    let capture = capture();
    capture.write(&pcap);
    softflowd(&pcap, "9", site.flow);
    site.records_reach(capture.flow_count()).await;
    let windows = site.closed_window(1).await;
    assert_eq!(windows["all"]["flows"], capture.flow_count());
}

/// A NetFlow v9 export whose two data sets use template 300, which was never sent.
fn v9_data_without_template() -> Vec<u8> {
    let mut datagram = Vec::new();
    for field in [9u16, 2] {
        datagram.extend_from_slice(&field.to_be_bytes());
    }
    for field in [1u32, 1_796_083_200, 1, 42] {
        datagram.extend_from_slice(&field.to_be_bytes());
    }
    for _ in 0..2 {
        datagram.extend_from_slice(&300u16.to_be_bytes());
        datagram.extend_from_slice(&12u16.to_be_bytes());
        datagram.extend_from_slice(&[0xab; 8]);
    }
    datagram
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sampled_netflow_is_scaled_by_the_rate_its_options_data_announces() {
    for version in ["9", "10"] {
        let mut site = site(
            &format!("flow-observer-sampled-v{version}"),
            r#"{ window = "1h" }"#,
        )
        .await;
        let dir = tempfile::tempdir().unwrap();
        let pcap = dir.path().join("traffic.pcap");
        let capture = capture();
        capture.write(&pcap);
        softflowd_with(&pcap, version, site.flow, &["-s", "10"]);
        site.barrier().await;
        let windows = site.closed_window(1).await;
        let all = &windows["all"];
        assert_eq!(all["sampled"], true, "v{version}: {all}");
        let packets = all["packets"].as_f64().unwrap();
        let truth = capture.packet_count() as f64;
        assert!(
            (packets - truth).abs() / truth < 0.2,
            "v{version}: {packets} packets estimated of {truth}"
        );
    }
}
