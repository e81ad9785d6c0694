//! SNMP traps and informs from the real net-snmp tools (`snmptrap`, `snmpinform`) into a
//! running agent; each accepted notification reaches a function, whose output a real
//! Mosquitto carries back to the test.

use std::process::{Command, Output};
use std::time::Duration;

use fogd::telemetry::Rejection;
use fogd_tests::agent::{Running, broker, connected, function, start};
use fogd_tests::mosquitto::Mosquitto;
use fogd_tests::mqtt_client::{Received, TestClient};
use fogd_tests::snmpd::Snmpd;
use fogd_tests::{assert_success, components, wait_until};
use serde_json::Value;
use std::collections::BTreeMap;

use fogd_tests::PATIENCE;
const COMMUNITY: &str = "fogd-test";
const LINK_DOWN: &str = "1.3.6.1.6.3.1.1.5.3";
const COLD_START: &str = "1.3.6.1.6.3.1.1.5.1";
/// net-snmp options for the authPriv SHA/AES user every site configures.
const SHA_AES_USER: &[&str] = &[
    "-u",
    "sha-aes",
    "-l",
    "authPriv",
    "-a",
    "SHA",
    "-A",
    "authpass123",
    "-x",
    "AES",
    "-X",
    "privpass123",
];

struct Site {
    running: Running,
    client: TestClient,
    port: u16,
    dir: tempfile::TempDir,
    _mosquitto: Mosquitto,
}

/// An agent receiving SNMP on a free port with three v3 users, an `echo` function that
/// publishes every notification to `traps/all`, and one that only takes linkDown.
async fn site(id: &str) -> Site {
    // Counts what async-snmp refuses only in its log, as the daemon does.
    fogd_tests::logs::capture();
    let mosquitto = Mosquitto::start();
    let client = TestClient::connect(mosquitto.port, id, &["traps/#"]).await;
    let dir = tempfile::tempdir().unwrap();
    let secret = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, format!("{text}\n")).unwrap();
        path.display().to_string()
    };
    let config = format!(
        r#"
[snmp]
listen = "127.0.0.1:0"
communities = ["{COMMUNITY}"]

[[snmp.user]]
name = "sha-aes"
auth = "SHA"
auth_password_file = "{sha_auth}"
privacy = "AES"
privacy_password_file = "{aes_priv}"

[[snmp.user]]
name = "md5-des"
auth = "MD5"
auth_password_file = "{md5_auth}"
privacy = "DES"
privacy_password_file = "{des_priv}"

[[snmp.user]]
name = "sha256-only"
auth = "SHA-256"
auth_password_file = "{sha256_auth}"

[[snmp.user]]
name = "aes192"
auth = "SHA-256"
auth_password_file = "{sha256_auth}"
privacy = "AES-192-BLUMENTHAL"
privacy_password_file = "{aes_priv}"

[[snmp.user]]
name = "aes256"
auth = "SHA-256"
auth_password_file = "{sha256_auth}"
privacy = "AES-256-BLUMENTHAL"
privacy_password_file = "{aes_priv}"

{broker}
{all}
{link_down}
"#,
        sha_auth = secret("sha-auth", "authpass123"),
        aes_priv = secret("aes-priv", "privpass123"),
        md5_auth = secret("md5-auth", "md5password"),
        des_priv = secret("des-priv", "despassword"),
        sha256_auth = secret("sha256-auth", "sha256password"),
        broker = broker("local", &mosquitto.address(), ""),
        all = function(
            "all",
            &components().echo,
            r#"
                output = "traps/all"
                [[function.trigger]]
                snmp_trap = {}
            "#
        ),
        link_down = function(
            "link-down",
            &components().echo,
            &format!(
                r#"
                    output = "traps/link-down"
                    [[function.trigger]]
                    snmp_trap = {{ oid = "{LINK_DOWN}" }}
                "#
            )
        ),
    );
    let running = start(&config).await;
    connected(&running.agent, "local").await;
    let port = running.agent.snmp_address.expect("snmp receiver").port();
    Site {
        running,
        client,
        port,
        dir,
        _mosquitto: mosquitto,
    }
}

impl Site {
    /// `tool OPTIONS TARGET TAIL`, the order net-snmp's tools expect, with their persistent
    /// state kept in the test's directory rather than the user's home.
    fn tool(&self, tool: &str, options: &[&str], tail: &[&str]) -> Output {
        let target = format!("127.0.0.1:{}", self.port);
        let args: Vec<&str> = options
            .iter()
            .copied()
            .chain([target.as_str()])
            .chain(tail.iter().copied())
            .collect();
        Command::new(tool)
            .env("SNMP_PERSISTENT_DIR", self.dir.path())
            .env("SNMPCONFPATH", self.dir.path())
            .env("MIBS", "")
            .args(&args)
            .output()
            .unwrap_or_else(|e| panic!("{tool} runs (Debian package `snmp`): {e}"))
    }

    async fn next_trap(&mut self) -> (String, Value) {
        let message: Received = self.client.next(PATIENCE).await;
        let body = serde_json::from_slice(&message.payload)
            .unwrap_or_else(|e| panic!("{}: {e}", message.text()));
        (message.topic, body)
    }

    fn rejected(&self, reason: &str) -> u64 {
        self.running
            .agent
            .metrics
            .input_rejected_count("snmp-trap", reason)
    }

    /// What the receiver made of the datagrams it read, by reason, omitting zeros:
    /// `received`, `accepted` (events), `discovery` and each refusal reason.
    fn accounting(&self) -> BTreeMap<&'static str, u64> {
        let metrics = &self.running.agent.metrics;
        let mut counts: BTreeMap<&'static str, u64> = Rejection::ALL
            .iter()
            .map(|reason| (reason.as_str(), self.rejected(reason.as_str())))
            .collect();
        counts.insert("accepted", metrics.events_received_count("snmp-trap"));
        counts.insert("discovery", metrics.snmp_discoveries_count());
        counts.insert("received", metrics.datagrams_received_count("snmp-trap"));
        counts.retain(|_, count| *count > 0);
        counts
    }

    /// Waits until every datagram read is accounted for once, and returns the accounting.
    async fn balanced(&self) -> BTreeMap<&'static str, u64> {
        let balances = |counts: &BTreeMap<&'static str, u64>| {
            let outcomes: u64 = counts
                .iter()
                .filter(|(name, _)| **name != "received")
                .map(|(_, count)| count)
                .sum();
            outcomes == counts.get("received").copied().unwrap_or(0)
        };
        let deadline = std::time::Instant::now() + PATIENCE;
        loop {
            let counts = self.accounting();
            if balances(&counts) {
                return counts;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "accepted + discoveries + refused never equalled received: {counts:?}"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

fn varbind<'a>(body: &'a Value, oid: &str) -> &'a Value {
    body["varbinds"]
        .as_array()
        .and_then(|v| v.iter().find(|b| b["oid"] == oid))
        .unwrap_or_else(|| panic!("no varbind {oid} in {body}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v2c_and_v1_traps_become_events_routed_by_trap_oid() {
    let mut site = site("snmp-observer-1").await;
    let output = site.tool(
        "snmptrap",
        &["-v", "2c", "-c", COMMUNITY],
        &[
            "12345",
            LINK_DOWN,
            "1.3.6.1.2.1.2.2.1.1.2",
            "i",
            "2",
            "1.3.6.1.2.1.2.2.1.2.2",
            "s",
            "eth1",
            "1.3.6.1.2.1.31.1.1.1.6.2",
            "C",
            "18446744073709551615",
            "1.3.6.1.2.1.4.20.1.1.192.0.2.1",
            "a",
            "192.0.2.1",
            "1.3.6.1.2.1.2.2.1.6.2",
            "x",
            "001b21ff0a0b",
        ],
    );
    assert_success(&output);
    let mut by_topic = std::collections::BTreeMap::new();
    for _ in 0..2 {
        let (topic, body) = site.next_trap().await;
        by_topic.insert(topic, body);
    }
    let body = &by_topic["traps/all"];
    assert_eq!(by_topic["traps/link-down"], *body);
    assert_eq!(body["version"], "2c");
    assert_eq!(body["pdu"], "trap");
    assert_eq!(body["trap_oid"], LINK_DOWN);
    assert_eq!(body["name"], "linkDown");
    assert_eq!(body["uptime"], 12345);
    assert!(body["source"].as_str().unwrap().starts_with("127.0.0.1:"));
    assert_eq!(
        varbind(body, "1.3.6.1.2.1.2.2.1.1.2")["value"],
        serde_json::json!(2)
    );
    assert_eq!(varbind(body, "1.3.6.1.2.1.2.2.1.2.2")["value"], "eth1");
    assert_eq!(
        varbind(body, "1.3.6.1.2.1.31.1.1.1.6.2")["value"],
        serde_json::json!(u64::MAX)
    );
    assert_eq!(
        varbind(body, "1.3.6.1.2.1.31.1.1.1.6.2")["type"],
        "counter64"
    );
    assert_eq!(
        varbind(body, "1.3.6.1.2.1.4.20.1.1.192.0.2.1")["value"],
        "192.0.2.1"
    );
    assert_eq!(
        varbind(body, "1.3.6.1.2.1.2.2.1.6.2")["hex"],
        "001b21ff0a0b"
    );
    assert!(
        !body.to_string().contains(COMMUNITY),
        "the community stays out of events"
    );

    // A coldStart is not a linkDown: only the catch-all function runs.
    assert_success(&site.tool(
        "snmptrap",
        &["-v", "2c", "-c", COMMUNITY],
        &["1", COLD_START],
    ));
    let (topic, body) = site.next_trap().await;
    assert_eq!(
        (topic.as_str(), body["name"].as_str()),
        ("traps/all", Some("coldStart"))
    );

    // SNMPv1: generic trap 2 is linkDown in the v2 form (RFC 3584).
    let v1 = site.tool(
        "snmptrap",
        &["-v", "1", "-c", COMMUNITY],
        &[
            "1.3.6.1.4.1.8072.2.3.1",
            "192.0.2.7",
            "2",
            "0",
            "777",
            "1.3.6.1.2.1.2.2.1.1.5",
            "i",
            "5",
        ],
    );
    assert_success(&v1);
    let (_, body) = site.next_trap().await;
    assert_eq!(body["version"], "1");
    assert_eq!(body["trap_oid"], LINK_DOWN);
    assert_eq!(body["agent_address"], "192.0.2.7");
    assert_eq!(body["generic_trap"], 2);
    assert_eq!(body["uptime"], 777);
    assert_eq!(
        varbind(&body, "1.3.6.1.2.1.2.2.1.1.5")["value"],
        serde_json::json!(5)
    );
    site.running.agent.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v3_traps_with_each_security_level_and_wrong_keys_are_counted() {
    let mut site = site("snmp-observer-2").await;
    // net-snmp's AES-192 and AES-256 extend the key as Blumenthal's draft does.
    let blumenthal = |user: &'static str, privacy: &'static str| {
        [
            "-u",
            user,
            "-l",
            "authPriv",
            "-a",
            "SHA-256",
            "-A",
            "sha256password",
            "-x",
            privacy,
            "-X",
            "privpass123",
        ]
    };
    let (aes192, aes256) = (
        blumenthal("aes192", "AES-192"),
        blumenthal("aes256", "AES-256"),
    );
    let cases: [(&[&str], &str); 5] = [
        (SHA_AES_USER, "authPriv"),
        (&aes192, "authPriv"),
        (&aes256, "authPriv"),
        (
            &[
                "-u",
                "md5-des",
                "-l",
                "authPriv",
                "-a",
                "MD5",
                "-A",
                "md5password",
                "-x",
                "DES",
                "-X",
                "despassword",
            ],
            "authPriv",
        ),
        (
            &[
                "-u",
                "sha256-only",
                "-l",
                "authNoPriv",
                "-a",
                "SHA-256",
                "-A",
                "sha256password",
            ],
            "authNoPriv",
        ),
    ];
    for (credentials, level) in cases {
        let options: Vec<&str> = ["-v", "3"].iter().chain(credentials).copied().collect();
        assert_success(&site.tool("snmptrap", &options, &["42", COLD_START]));
        let (_, body) = site.next_trap().await;
        assert_eq!(body["version"], "3");
        assert_eq!(body["user"], credentials[1]);
        assert_eq!(body["security_level"], level);
        assert_eq!(body["name"], "coldStart");
        for secret in ["authpass123", "privpass123", "md5password", "despassword"] {
            assert!(!body.to_string().contains(secret));
        }
    }

    let wrong_key = [
        "-v",
        "3",
        "-u",
        "sha-aes",
        "-l",
        "authPriv",
        "-a",
        "SHA",
        "-A",
        "wrongpass1",
        "-x",
        "AES",
        "-X",
        "privpass123",
    ];
    site.tool("snmptrap", &wrong_key, &["1", COLD_START]);
    wait_until("the wrong key is counted", || {
        site.rejected("wrong_digest") >= 1
    })
    .await;
    site.tool(
        "snmptrap",
        &["-v", "3", "-u", "nobody", "-l", "noAuthNoPriv"],
        &["1", COLD_START],
    );
    wait_until("the unknown user is counted", || {
        site.rejected("unknown_user") >= 1
    })
    .await;
    // The counts above were taken after the wrong key's datagram was done with.
    assert_eq!(
        site.rejected("malformed"),
        0,
        "an authentication failure is counted once, under its usmStats reason"
    );
    // A user configured for authPriv may not send without privacy.
    site.tool(
        "snmptrap",
        &[
            "-v",
            "3",
            "-u",
            "sha-aes",
            "-l",
            "authNoPriv",
            "-a",
            "SHA",
            "-A",
            "authpass123",
        ],
        &["1", COLD_START],
    );
    wait_until("the lower security level is counted", || {
        site.rejected("security_level_too_low") >= 1
    })
    .await;
    site.tool("snmptrap", &["-v", "2c", "-c", "wrong"], &["1", COLD_START]);
    wait_until("the wrong community is counted", || {
        site.rejected("bad_community") >= 1
    })
    .await;
    assert!(
        site.client.drain().is_empty(),
        "no refused notification reached a function"
    );
    site.running.agent.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn informs_are_answered_and_refused_ones_are_not() {
    let mut site = site("snmp-observer-3").await;
    // snmpinform exits 0 only when the receiver answered.
    let v2c = site.tool(
        "snmpinform",
        &["-v", "2c", "-c", COMMUNITY],
        &["5", LINK_DOWN],
    );
    assert_success(&v2c);
    let v3 = site.tool(
        "snmpinform",
        &[&["-v", "3"], SHA_AES_USER].concat(),
        &["6", COLD_START],
    );
    assert_success(&v3);
    let mut seen = Vec::new();
    while seen.len() < 3 {
        let (topic, body) = site.next_trap().await;
        assert_eq!(body["pdu"], "inform");
        seen.push((topic, body["version"].as_str().unwrap().to_owned()));
    }
    seen.sort();
    assert_eq!(
        seen,
        [
            ("traps/all".to_owned(), "2c".to_owned()),
            ("traps/all".to_owned(), "3".to_owned()),
            ("traps/link-down".to_owned(), "2c".to_owned()),
        ]
    );

    let refused = site.tool(
        "snmpinform",
        &["-v", "2c", "-c", "wrong", "-t", "0.3", "-r", "1"],
        &["7", LINK_DOWN],
    );
    assert!(
        !refused.status.success(),
        "an inform with a wrong community is not answered"
    );
    assert!(site.rejected("bad_community") >= 1);
    site.running.agent.shutdown().await;
}

/// A mixed run: good and refused notifications from net-snmp's tools, requests sent to
/// the receiver, an inform's discovery, and garbage. Each datagram read is counted once,
/// under what became of it, and the sums balance.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_datagram_is_counted_once_under_its_true_reason() {
    let site = site("snmp-observer-4").await;
    let v3 = |user: &'static str, auth: &'static str, privacy: &'static str| {
        [
            "-v", "3", "-u", user, "-l", "authPriv", "-a", "SHA", "-A", auth, "-x", "AES", "-X",
            privacy,
        ]
    };
    let expect = |counts: &BTreeMap<&'static str, u64>, reason: &str, at_least: u64| {
        counts.get(reason).copied().unwrap_or(0) >= at_least
    };
    // A sender's engine (traps carry the sender's engine ID, boots and time): its first trap
    // sets the time the receiver keeps for it; one claiming to be 990 s older is outside the
    // 150 s window (RFC 3414, 3.2 step 7b).
    let engine_at = |time: &'static str| {
        [
            &["-v", "3"],
            SHA_AES_USER,
            &["-e", "0x80007ed905a1b2c3d4e5f60718", "-Z", time],
        ]
        .concat()
    };
    // Each step sends, then waits for its own count, so the next one starts from it.
    let steps: Vec<(Vec<&str>, &str, &[&str], &str)> = vec![
        (
            engine_at("5,1000"),
            "snmptrap",
            &["1", COLD_START],
            "accepted",
        ),
        (
            engine_at("5,10"),
            "snmptrap",
            &["1", COLD_START],
            "not_in_time_window",
        ),
        (
            vec!["-v", "2c", "-c", COMMUNITY],
            "snmptrap",
            &["1", COLD_START],
            "accepted",
        ),
        (
            v3("sha-aes", "authpass123", "privpass123").to_vec(),
            "snmptrap",
            &["2", COLD_START],
            "accepted",
        ),
        (
            vec!["-v", "2c", "-c", "wrong"],
            "snmptrap",
            &["3", COLD_START],
            "bad_community",
        ),
        (
            v3("sha-aes", "wrongpass1", "privpass123").to_vec(),
            "snmptrap",
            &["4", COLD_START],
            "wrong_digest",
        ),
        (
            v3("sha-aes", "authpass123", "wrongpriv1").to_vec(),
            "snmptrap",
            &["5", COLD_START],
            "decryption_error",
        ),
        (
            vec!["-v", "3", "-u", "nobody", "-l", "noAuthNoPriv"],
            "snmptrap",
            &["6", COLD_START],
            "unknown_user",
        ),
        (
            vec!["-v", "2c", "-c", COMMUNITY, "-t", "0.2", "-r", "0"],
            "snmpget",
            &["1.3.6.1.2.1.1.3.0"],
            "not_a_notification",
        ),
        (
            [&["-v", "3"], SHA_AES_USER].concat(),
            "snmpinform",
            &["7", COLD_START],
            "discovery",
        ),
        // An inform addressed to another engine (net-snmp's -e skips discovery).
        (
            [
                &[
                    "-v",
                    "3",
                    "-e",
                    "0x80007ed905ffeeddccbbaa9988",
                    "-t",
                    "0.3",
                    "-r",
                    "0",
                ],
                SHA_AES_USER,
            ]
            .concat(),
            "snmpinform",
            &["8", COLD_START],
            "unknown_engine_id",
        ),
    ];
    let mut expected: BTreeMap<&str, u64> = BTreeMap::new();
    for (options, tool, tail, reason) in &steps {
        *expected.entry(reason).or_default() += 1;
        let output = site.tool(tool, options, tail);
        if *reason == "discovery" {
            assert_success(&output);
            *expected.entry("accepted").or_default() += 1;
        }
        let at_least = expected[reason];
        wait_until(&format!("{tool} {options:?} counted as {reason}"), || {
            expect(&site.accounting(), reason, at_least)
        })
        .await;
    }

    // A Response and a Report PDU, cut-off and random datagrams, sent raw.
    let response = b"\x30\x1c\x02\x01\x01\x04\x09fogd-test\xa2\x0c\x02\x01\x01\x02\x01\x00\x02\x01\x00\x30\x01\x00";
    let report = [&response[..15], b"\xa8", &response[16..]].concat();
    let mut raw: Vec<Vec<u8>> = vec![response[..18].to_vec(), Vec::new()];
    raw.extend(random_datagrams(0x9e37_79b9_7f4a_7c15, 200, 300));
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let receiver = format!("127.0.0.1:{}", site.port);
    let all = [response.to_vec(), report]
        .into_iter()
        .chain(raw)
        .collect::<Vec<_>>();
    let read_before = site.accounting()["received"];
    for datagram in &all {
        socket.send_to(datagram, &receiver).unwrap();
    }
    wait_until("every raw datagram is read", || {
        site.accounting()["received"] >= read_before + all.len() as u64
    })
    .await;
    let counts = site.balanced().await;
    let received = counts["received"];
    assert_eq!(
        received,
        expected.values().sum::<u64>() + all.len() as u64,
        "one datagram per trap, get and raw datagram, two for the inform: {counts:?}"
    );
    for (reason, count) in &expected {
        let at_least = if *reason == "not_a_notification" {
            count + 2
        } else {
            *count
        };
        assert!(
            expect(&counts, reason, at_least),
            "{reason}: {counts:?}, expected at least {at_least}"
        );
    }
    assert_eq!(
        counts.get("unknown_engine_id"),
        Some(&1),
        "only the inform to another engine: {counts:?}"
    );
    assert_eq!(
        counts.get("discovery"),
        Some(&1),
        "the inform's discovery is not a refusal"
    );
    site.running.agent.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn senders_outside_the_allowed_sources_are_refused_on_arrival() {
    let config = format!(
        r#"
[snmp]
listen = "127.0.0.1:0"
communities = ["{COMMUNITY}"]
allowed_sources = ["192.0.2.0/24"]
{}
"#,
        function(
            "all",
            &components().echo,
            r#"
                [[function.trigger]]
                snmp_trap = {}
            "#
        )
    );
    let running = start(&config).await;
    let port = running.agent.snmp_address.expect("snmp receiver").port();
    assert_success(&cold_start_trap(&format!("127.0.0.1:{port}")));
    let metrics = &running.agent.metrics;
    wait_until("the trap from 127.0.0.1 is refused", || {
        metrics.input_rejected_count("snmp-trap", "source_not_allowed") == 1
    })
    .await;
    assert_eq!(metrics.datagrams_received_count("snmp-trap"), 1);
    assert_eq!(metrics.events_received_count("snmp-trap"), 0);
    running.agent.shutdown().await;
}

/// `count` datagrams of pseudo-random bytes, each shorter than `longest`, the same for a
/// seed on every run.
fn random_datagrams(mut seed: u64, count: usize, longest: u64) -> Vec<Vec<u8>> {
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    (0..count)
        .map(|_| {
            let length = next() % longest;
            (0..length).map(|_| next() as u8).collect()
        })
        .collect()
}

/// A v2c coldStart trap from `snmptrap` to `receiver`.
fn cold_start_trap(receiver: &str) -> Output {
    Command::new("snmptrap")
        .env("MIBS", "")
        .args(["-v", "2c", "-c", COMMUNITY, receiver, "1", COLD_START])
        .output()
        .unwrap()
}

/// The receiver's address from fogd's "SNMP receiver listening listen=…" line.
fn listen_address(line: &str) -> std::net::SocketAddr {
    let start = line.find("listen=").expect("listen field") + "listen=".len();
    let end = line[start..]
        .find(char::is_whitespace)
        .map_or(line.len(), |i| start + i);
    line[start..end].parse().expect("an address")
}

#[test]
fn malformed_datagrams_are_counted_and_the_receiver_keeps_working() {
    use fogd_tests::daemon::{Daemon, http_get, metrics_address};
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("fogd.toml");
    std::fs::write(
        &config,
        format!(
            r#"
                state_dir = "state"
                [metrics]
                address = "127.0.0.1:0"
                [snmp]
                listen = "127.0.0.1:0"
                communities = ["{COMMUNITY}"]
                {}
            "#,
            function(
                "all",
                &components().echo,
                r#"
                    output = "traps/all"
                    [[function.trigger]]
                    snmp_trap = {}
                "#
            )
        ),
    )
    .unwrap();
    let mut daemon = Daemon::start(&config);
    let receiver = listen_address(&daemon.wait_for(&["SNMP receiver listening"]));
    let metrics = metrics_address(&daemon.wait_for(&["fogd ready"]));

    // Garbage, truncated and lying BER: a v2c trap cut short, a length of 2^31, an unknown
    // PDU type, an unknown version, and random bytes.
    let trap = b"\x30\x29\x02\x01\x01\x04\x09fogd-test\xa7\x19\x02\x01\x01\x02\x01\x00\x02\x01\x00\x30\x0e\x30\x0c\x06\x08\x2b\x06\x01\x02\x01\x01\x03\x00\x43\x00";
    let mut malformed: Vec<Vec<u8>> = vec![
        trap[..20].to_vec(),
        b"\x30\x84\x80\x00\x00\x00\x02\x01\x01".to_vec(),
        [&trap[..15], b"\xbf\x19"].concat(),
        b"\x30\x06\x02\x01\x07\x04\x01x".to_vec(),
        Vec::new(),
    ];
    malformed.extend(random_datagrams(0x2545_f491_4f6c_dd1d, 195, 200));
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    for datagram in &malformed {
        socket.send_to(datagram, receiver).unwrap();
    }

    assert_success(&cold_start_trap(&receiver.to_string()));
    daemon.wait_for(&["publish", "traps/all", "coldStart"]);
    let rejected = |text: &str| -> u64 {
        text.lines()
            .find(|l| {
                l.starts_with(
                    "fogd_inputs_rejected_total{source=\"snmp-trap\",reason=\"malformed\"}",
                )
            })
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    let deadline = std::time::Instant::now() + PATIENCE;
    let mut counted = 0;
    while counted < 150 && std::time::Instant::now() < deadline {
        counted = rejected(&http_get(&metrics, "/metrics"));
        if counted < 150 {
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    assert!(
        counted >= 150,
        "{counted} of {} malformed datagrams counted",
        malformed.len()
    );
    let (status, log) = daemon.terminate();
    assert!(status.success(), "{}", log.join("\n"));
    assert!(
        log.iter().filter(|l| l.contains("failed to parse")).count() < 5,
        "malformed datagrams are counted, not logged one by one"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn polls_a_real_snmpd_over_v2c_and_v3_while_a_dead_target_waits() {
    let snmpd = Snmpd::start();
    let mosquitto = Mosquitto::start();
    let mut client = TestClient::connect(mosquitto.port, "snmp-observer-4", &["polls/#"]).await;
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path.display().to_string()
    };
    let config = format!(
        r#"
[snmp]
[[snmp.user]]
name = "pollv3"
auth = "SHA"
auth_password_file = "{auth}"
privacy = "AES"
privacy_password_file = "{privacy}"

[[snmp.poll]]
name = "v2c-system"
target = "127.0.0.1:{port}"
community = "fogd-ro"
get = ["1.3.6.1.2.1.1.6.0"]
walk = "1.3.6.1.2.1.1"
every = "200ms"

[[snmp.poll]]
name = "v3-location"
target = "127.0.0.1:{port}"
user = "pollv3"
get = ["1.3.6.1.2.1.1.6.0", "1.3.6.1.2.1.1.4.0"]
every = "200ms"

[[snmp.poll]]
name = "dead"
target = "192.0.2.1:161"
community = "fogd-ro"
get = ["1.3.6.1.2.1.1.6.0"]
every = "200ms"
timeout = "20s"
retries = 0

{broker}
{v2c}
{v3}
{dead}
"#,
        auth = write("auth", "pollauthpass"),
        privacy = write("privacy", "pollprivpass"),
        port = snmpd.port,
        broker = broker("local", &mosquitto.address(), ""),
        v2c = function(
            "v2c",
            &components().echo,
            r#"
                output = "polls/v2c"
                [[function.trigger]]
                snmp_poll = { job = "v2c-system" }
            "#
        ),
        v3 = function(
            "v3",
            &components().echo,
            r#"
                output = "polls/v3"
                [[function.trigger]]
                snmp_poll = { job = "v3-location" }
            "#
        ),
        dead = function(
            "dead",
            &components().echo,
            r#"
                output = "polls/dead"
                [[function.trigger]]
                snmp_poll = { job = "dead" }
            "#
        ),
    );
    let running = start(&config).await;
    connected(&running.agent, "local").await;

    let mut v2c = Vec::new();
    let mut v3 = Vec::new();
    while v2c.len() < 3 || v3.len() < 3 {
        let message = client.next(PATIENCE).await;
        let body: Value = serde_json::from_slice(&message.payload).unwrap();
        match message.topic.as_str() {
            "polls/v2c" => v2c.push(body),
            "polls/v3" => v3.push(body),
            other => panic!("unexpected {other}: {body}"),
        }
    }
    // The dead target's first request has not even timed out: it delayed nobody.
    assert_eq!(
        running
            .agent
            .metrics
            .input_rejected_count("snmp-poll", "failed"),
        0
    );
    let system = &v2c[0];
    assert_eq!(system["job"], "v2c-system");
    assert_eq!(varbind(system, "1.3.6.1.2.1.1.6.0")["value"], "rack-7");
    let walked = system["varbinds"].as_array().unwrap();
    assert!(
        walked.len() > 5
            && walked
                .iter()
                .skip(1)
                .all(|b| b["oid"].as_str().unwrap().starts_with("1.3.6.1.2.1.1.")),
        "the walk covers the system subtree: {system}"
    );
    assert_eq!(
        varbind(&v3[0], "1.3.6.1.2.1.1.4.0")["value"],
        "ops@example.net"
    );
    running.agent.shutdown().await;
}

#[test]
fn a_failed_poll_is_logged_once_as_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let nobody = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let config = dir.path().join("fogd.toml");
    std::fs::write(
        &config,
        format!(
            r#"state_dir = "state"
[metrics]
address = "127.0.0.1:0"

[snmp]
[[snmp.poll]]
name = "gone"
target = "{nobody}"
community = "fogd-ro"
get = ["1.3.6.1.2.1.1.6.0"]
every = "200ms"
timeout = "100ms"
retries = 0

{gone}"#,
            gone = function(
                "gone",
                &components().echo,
                r#"
                    [[function.trigger]]
                    snmp_poll = { job = "gone" }
                "#
            ),
        ),
    )
    .unwrap();
    let mut daemon = fogd_tests::daemon::Daemon::start(&config);
    daemon.wait_for(&["SNMP poll failed", "job=gone"]);
    daemon.wait_for_next(&["SNMP poll failed", "job=gone"]);
    let (_, lines) = daemon.terminate();
    let failures = lines
        .iter()
        .filter(|l| l.contains("SNMP poll failed"))
        .count();
    let errors: Vec<&String> = lines.iter().filter(|l| l.contains("ERROR")).collect();
    assert!(failures >= 2);
    assert!(
        errors.is_empty(),
        "each failure is one warning: {errors:#?}"
    );
}
