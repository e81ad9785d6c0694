//! Syslog from real senders (util-linux `logger`, rsyslog forwarding) into a running agent:
//! each message reaches the functions whose filters pass it, and their output a real
//! Mosquitto carries back to the test. Malformed streams and idle clients are counted.

use std::io::Write;
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::process::Command;

use fogd_tests::agent::{Running, broker, connected, function, start};
use fogd_tests::certs::Pki;
use fogd_tests::mosquitto::Mosquitto;
use fogd_tests::mqtt_client::TestClient;
use fogd_tests::{PATIENCE, assert_success, components, wait_until};
use serde_json::Value;

const MAX_MESSAGE: usize = 4096;
const MAX_CONNECTIONS: usize = 3;

struct Site {
    running: Running,
    client: TestClient,
    udp: SocketAddr,
    tcp: SocketAddr,
    tls: SocketAddr,
    /// Messages read while waiting for another function's, kept for their turn.
    pending: Vec<(String, Value)>,
    /// The CA, server and client certificates (`ca.pem`, `server.pem`, `client.pem`...).
    certificates: tempfile::TempDir,
    _mosquitto: Mosquitto,
}

/// An agent receiving syslog on a free UDP, TCP and TLS port (client certificates required),
/// with the shipped `login-watch` function, and an `echo` function that
/// publishes every message to `syslog/all` and one that takes only sshd's failed logins at
/// warning or above from the auth facility.
async fn site(id: &str) -> Site {
    let mosquitto = Mosquitto::start();
    let client = TestClient::connect(mosquitto.port, id, &["syslog/#"]).await;
    let certificates = tempfile::tempdir().unwrap();
    let pki = Pki::generate("syslog");
    pki.write_server_files(certificates.path());
    pki.write_client_files(certificates.path(), "sender");
    let config = format!(
        r#"
[syslog]
udp = ["127.0.0.1:0"]
tcp = ["127.0.0.1:0"]
max_message_bytes = {MAX_MESSAGE}
max_connections = {MAX_CONNECTIONS}
idle_timeout = "300ms"

[[syslog.tls]]
listen = "127.0.0.1:0"
cert_file = "{dir}/server.pem"
key_file = "{dir}/server.key"
client_ca_file = "{dir}/ca.pem"

{broker}
{all}
{failed_logins}
{login_watch}
"#,
        dir = certificates.path().display(),
        broker = broker("local", &mosquitto.address(), ""),
        all = function(
            "all",
            &components().echo,
            r#"
                output = "syslog/all"
                [[function.trigger]]
                syslog = {}
            "#
        ),
        failed_logins = function(
            "failed-logins",
            &components().echo,
            r#"
                output = "syslog/failed-logins"
                [[function.trigger]]
                syslog = { facility = ["auth", "authpriv"], severity = "warning", app_name = "sshd", pattern = "^Failed password for \\S+" }
            "#
        ),
        login_watch = function(
            "login-watch",
            &components().login_watch,
            r#"
                grants = { publish = ["syslog/#"] }
                config = { threshold = 3, alert_topic = "syslog/login-alerts/{host}" }
                [[function.trigger]]
                syslog = { app_name = "sshd", pattern = "^Failed password for " }
            "#
        ),
    );
    let running = start(&config).await;
    connected(&running.agent, "local").await;
    let [udp, tcp, tls] = running.agent.syslog_addresses[..] else {
        panic!("expected one UDP, one TCP and one TLS listener");
    };
    Site {
        running,
        client,
        udp,
        tcp,
        tls,
        pending: Vec::new(),
        certificates,
        _mosquitto: mosquitto,
    }
}

impl Site {
    /// Runs `logger` against the TCP listener (`tcp`) or the UDP one.
    fn logger(&self, tcp: bool, options: &[&str], message: &str) {
        let address = if tcp { self.tcp } else { self.udp };
        let mut command = Command::new("logger");
        command
            .args(["-n", "127.0.0.1", "-P", &address.port().to_string()])
            .arg(if tcp { "-T" } else { "-d" })
            .args(options)
            .arg("--")
            .arg(message);
        assert_success(&command.output().expect("logger runs (util-linux)"));
    }

    /// The next message `function` published; the others' wait in `pending` (functions run
    /// side by side, so messages of different functions come in any order).
    async fn next_from(&mut self, function: &str) -> Value {
        if let Some(position) = self.pending.iter().position(|(from, _)| from == function) {
            return self.pending.remove(position).1;
        }
        loop {
            let message = self.client.next(PATIENCE).await;
            let body = serde_json::from_slice(&message.payload)
                .unwrap_or_else(|e| panic!("{}: {e}", message.text()));
            let from = message.topic.trim_start_matches("syslog/").to_owned();
            if from == function {
                return body;
            }
            self.pending.push((from, body));
        }
    }

    /// Sends `stream` over TLS with `openssl s_client`, presenting the sender's client
    /// certificate or none; the client closes when its input ends.
    fn send_tls(&self, with_certificate: bool, stream: &[u8]) -> std::process::Output {
        let dir = self.certificates.path();
        let mut command = Command::new("openssl");
        command
            .args(["s_client", "-quiet", "-no_ign_eof", "-verify_return_error"])
            .args(["-connect", &self.tls.to_string()])
            .arg("-CAfile")
            .arg(dir.join("ca.pem"));
        if with_certificate {
            command
                .arg("-cert")
                .arg(dir.join("sender-client.pem"))
                .arg("-key")
                .arg(dir.join("sender-client.key"));
        }
        let mut child = command
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("openssl runs");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(stream)
            .unwrap();
        child.wait_with_output().unwrap()
    }

    fn rejected(&self, reason: &str) -> u64 {
        self.running
            .agent
            .metrics
            .input_rejected_count("syslog", reason)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rfc5424_over_udp_keeps_the_header_and_structured_data_and_filters_route_it() {
    let mut site = site("syslog-observer-1").await;
    site.logger(
        false,
        &[
            "--rfc5424",
            "-p",
            "auth.err",
            "-t",
            "sshd",
            "--msgid",
            "LOGIN",
            "--sd-id",
            "origin@32473",
            "--sd-param",
            r#"ip="192.0.2.9""#,
        ],
        "Failed password for root from 192.0.2.9",
    );
    let all = site.next_from("all").await;
    assert_eq!(all["protocol"], "rfc5424");
    assert_eq!(all["facility"], "auth");
    assert_eq!(all["severity"], "err");
    assert_eq!(all["app_name"], "sshd");
    assert_eq!(all["msg_id"], "LOGIN");
    assert_eq!(all["transport"], "udp");
    assert_eq!(all["structured_data"]["origin@32473"]["ip"], "192.0.2.9");
    assert_eq!(all["message"], "Failed password for root from 192.0.2.9");
    assert!(
        all["timestamp"].as_str().is_some_and(|t| t.contains('T')),
        "{all}"
    );
    let failed = site.next_from("failed-logins").await;
    assert_eq!(failed["message"], all["message"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_with_octet_counting_and_newlines_delivers_in_order_and_filters_hold() {
    let mut site = site("syslog-observer-2").await;
    // Each refused by one filter of failed-logins; then one that passes them all.
    for (options, message) in [
        (
            &["-p", "auth.info", "-t", "sshd"][..],
            "Failed password for a",
        ),
        (
            &["-p", "daemon.err", "-t", "sshd"][..],
            "Failed password for b",
        ),
        (
            &["-p", "auth.err", "-t", "cron"][..],
            "Failed password for c",
        ),
        (
            &["-p", "auth.err", "-t", "sshd"][..],
            "Accepted password for d",
        ),
    ] {
        let mut framed = vec!["--octet-count", "--rfc5424"];
        framed.extend_from_slice(options);
        site.logger(true, &framed, message);
    }
    site.logger(
        true,
        &["--rfc3164", "-p", "authpriv.warning", "-t", "sshd"],
        "Failed password for e",
    );
    let failed = site.next_from("failed-logins").await;
    assert_eq!(failed["message"], "Failed password for e");
    assert_eq!(failed["protocol"], "rfc3164");
    assert_eq!(failed["transport"], "tcp");
    let mut all = Vec::new();
    while all.len() < 5 {
        let body = site.next_from("all").await;
        all.push(body["message"].as_str().unwrap().to_owned());
    }
    // Events of one subject (app name) run in order; cron's may pass sshd's.
    all.sort();
    assert_eq!(
        all,
        [
            "Accepted password for d",
            "Failed password for a",
            "Failed password for b",
            "Failed password for c",
            "Failed password for e"
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_64_kib_line_is_truncated_and_counted_and_the_connection_goes_on() {
    let mut site = site("syslog-observer-3").await;
    let long = "x".repeat(64 * 1024);
    site.logger(true, &["--rfc5424", "-S", "70000", "-t", "big"], &long);
    let body = site.next_from("all").await;
    assert_eq!(body["truncated"], true);
    assert_eq!(body["app_name"], "big");
    assert!(body["message"].as_str().unwrap().len() < MAX_MESSAGE);
    assert_eq!(
        site.running.agent.metrics.input_truncated_count("syslog"),
        1
    );

    // Newline framing: the rest of the long line is skipped, the next line is whole.
    let mut stream = TcpStream::connect(site.tcp).unwrap();
    // One app name: events of one subject reach the function in order.
    let mut lines =
        format!("<14>1 - h stream - - - {}\n", "y".repeat(2 * MAX_MESSAGE)).into_bytes();
    lines.extend_from_slice(b"<14>1 - h stream - - - after the long one\n");
    stream.write_all(&lines).unwrap();
    assert_eq!(site.next_from("all").await["truncated"], true);
    let after = site.next_from("all").await;
    assert_eq!(after["message"], "after the long one");
    assert_eq!(after["truncated"], false);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_utf8_bytes_are_kept_and_malformed_streams_are_counted_once() {
    let mut site = site("syslog-observer-4").await;
    let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
    let datagram = b"<14>1 - h app - - - caf\xe9 \xff";
    sender.send_to(datagram, site.udp).unwrap();
    let body = site.next_from("all").await;
    assert_eq!(body["raw_hex"], hex::encode(datagram));
    assert_eq!(body["message"], "caf\u{fffd} \u{fffd}");

    let mut broken = TcpStream::connect(site.tcp).unwrap();
    broken.write_all(b"12x<14>1 - h app - - - lost").unwrap();
    wait_until("the broken stream is counted", || {
        site.rejected("malformed") == 1
    })
    .await;

    // Other senders are not disturbed.
    site.logger(true, &["--rfc5424", "-t", "fine"], "still here");
    assert_eq!(site.next_from("all").await["message"], "still here");
    assert_eq!(site.rejected("malformed"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_clients_are_closed_and_connections_are_bounded() {
    let mut site = site("syslog-observer-5").await;
    let silent: Vec<TcpStream> = (0..MAX_CONNECTIONS)
        .map(|_| TcpStream::connect(site.tcp).unwrap())
        .collect();
    let _refused = TcpStream::connect(site.tcp).unwrap();
    wait_until("the connection over the limit is refused", || {
        site.rejected("too_many_connections") >= 1
    })
    .await;
    wait_until("the silent connections are closed", || {
        site.rejected("idle") == MAX_CONNECTIONS as u64
    })
    .await;
    drop(silent);
    site.logger(true, &["--rfc5424", "-t", "later"], "room again");
    assert_eq!(site.next_from("all").await["message"], "room again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rsyslog_forwards_over_tcp() {
    let mut site = site("syslog-observer-6").await;
    let dir = tempfile::tempdir().unwrap();
    let input = UdpSocket::bind("127.0.0.1:0").unwrap();
    let input_port = input.local_addr().unwrap().port();
    drop(input);
    let config = dir.path().join("rsyslog.conf");
    std::fs::write(
        &config,
        format!(
            r#"
global(workDirectory="{work}")
module(load="imudp")
input(type="imudp" address="127.0.0.1" port="{input_port}")
action(type="omfwd" target="127.0.0.1" port="{port}" protocol="tcp" template="RSYSLOG_SyslogProtocol23Format" TCP_Framing="octet-counted")
"#,
            work = dir.path().display(),
            port = site.tcp.port(),
        ),
    )
    .unwrap();
    let pid_file = dir.path().join("rsyslogd.pid");
    let mut rsyslogd = Command::new("rsyslogd")
        .args(["-n", "-f"])
        .arg(&config)
        .arg("-i")
        .arg(&pid_file)
        .spawn()
        .expect("rsyslogd runs (Debian package rsyslog)");
    // rsyslog's UDP input may not be bound yet: send until a message comes through.
    let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut body = None;
    for _ in 0..50 {
        sender
            .send_to(
                b"<29>Dec  1 22:00:00 edge-gw ospfd: neighbour 10.0.0.2 down",
                ("127.0.0.1", input_port),
            )
            .unwrap();
        if let Some(message) = site
            .client
            .try_next(std::time::Duration::from_millis(200))
            .await
        {
            body = Some(serde_json::from_slice::<Value>(&message.payload).unwrap());
            break;
        }
    }
    let _ = rsyslogd.kill();
    let _ = rsyslogd.wait();
    let body = body.expect("rsyslog forwarded the message");
    assert_eq!(body["protocol"], "rfc5424");
    assert_eq!(body["app_name"], "ospfd");
    assert_eq!(body["hostname"], "edge-gw");
    assert_eq!(body["facility"], "daemon");
    assert_eq!(body["severity"], "notice");
    assert_eq!(body["message"], "neighbour 10.0.0.2 down");
    assert_eq!(body["transport"], "tcp");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_a_client_certificate_delivers_and_without_one_is_refused() {
    let mut site = site("syslog-observer-7").await;
    let message = b"<86>1 2026-12-01T22:00:00Z edge-gw sshd 77 - - session opened for admin";
    let mut stream = format!("{} ", message.len()).into_bytes();
    stream.extend_from_slice(message);
    site.send_tls(true, &stream);
    let body = site.next_from("all").await;
    assert_eq!(body["transport"], "tls");
    assert_eq!(body["facility"], "authpriv");
    assert_eq!(body["message"], "session opened for admin");

    site.send_tls(false, &stream);
    wait_until("the client without a certificate is refused", || {
        site.rejected("tls_handshake_failed") == 1
    })
    .await;
    site.logger(true, &["--rfc5424", "-t", "after"], "plain TCP unaffected");
    assert_eq!(
        site.next_from("all").await["message"],
        "plain TCP unaffected"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_watch_alerts_on_the_third_failure_from_one_address() {
    let mut site = site("syslog-observer-8").await;
    // logger sends the machine's host name.
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    let topic = format!("login-alerts/{}", hostname.trim());
    for (user, address) in [
        ("root", "203.0.113.7"),
        ("admin", "203.0.113.7"),
        ("root", "198.51.100.1"),
        ("oracle", "203.0.113.7"),
    ] {
        site.logger(
            true,
            &["--rfc5424", "-p", "auth.warning", "-t", "sshd"],
            &format!("Failed password for {user} from {address} port 40022 ssh2"),
        );
    }
    let alert = site.next_from(&topic).await;
    assert_eq!(alert["address"], "203.0.113.7");
    assert_eq!(alert["failures"], 3);
    assert_eq!(alert["last_user"], "oracle");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn senders_outside_the_allowed_networks_are_refused_and_counted() {
    let running = start(&format!(
        r#"
[syslog]
udp = ["127.0.0.1:0"]
tcp = ["127.0.0.1:0"]
allowed_sources = ["192.0.2.0/24"]
{}
"#,
        function(
            "all",
            &components().echo,
            "[[function.trigger]]\nsyslog = {}"
        )
    ))
    .await;
    let [udp, tcp] = running.agent.syslog_addresses[..] else {
        panic!("expected one UDP and one TCP listener");
    };
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .send_to(b"<14>1 - h app - - - from loopback", udp)
        .unwrap();
    let mut stream = TcpStream::connect(tcp).unwrap();
    let _ = stream.write_all(b"<14>1 - h app - - - from loopback\n");
    let metrics = &running.agent.metrics;
    wait_until("both senders are refused", || {
        metrics.input_rejected_count("syslog", "source_not_allowed") == 2
    })
    .await;
    assert_eq!(metrics.events_received_count("syslog"), 0);
}
