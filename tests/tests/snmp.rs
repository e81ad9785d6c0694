//! SNMP traps and informs from the real net-snmp tools (`snmptrap`, `snmpinform`) into a
//! running agent; each accepted notification reaches a function, whose output a real
//! Mosquitto carries back to the test.

use std::process::{Command, Output};
use std::time::Duration;

use fogd_tests::agent::{Running, broker, connected, function, start};
use fogd_tests::mosquitto::Mosquitto;
use fogd_tests::mqtt_client::{Received, TestClient};
use fogd_tests::{components, wait_until};
use serde_json::Value;

const PATIENCE: Duration = Duration::from_secs(30);
const COMMUNITY: &str = "fogd-test";
const LINK_DOWN: &str = "1.3.6.1.6.3.1.1.5.3";
const COLD_START: &str = "1.3.6.1.6.3.1.1.5.1";

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
            "output = \"traps/all\"\n[[function.trigger]]\nsnmp_trap = {}"
        ),
        link_down = function(
            "link-down",
            &components().echo,
            &format!(
                "output = \"traps/link-down\"\n[[function.trigger]]\nsnmp_trap = {{ oid = \"{LINK_DOWN}\" }}"
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
            .input_rejected_count("snmp", reason)
    }
}

fn assert_ok(output: &Output) {
    assert!(
        output.status.success(),
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
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
    assert_ok(&output);
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
    assert_ok(&site.tool(
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
    assert_ok(&v1);
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
    let cases: [(&[&str], &str); 3] = [
        (
            &[
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
            ],
            "authPriv",
        ),
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
        assert_ok(&site.tool("snmptrap", &options, &["42", COLD_START]));
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
    assert_ok(&v2c);
    let v3 = site.tool(
        "snmpinform",
        &[
            "-v",
            "3",
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
        ],
        &["6", COLD_START],
    );
    assert_ok(&v3);
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
