//! MQTT against a real Mosquitto: delivery, request/response, TLS, outages, limits, grants.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use fogd_tests::agent::{Running, broker, connected, function, start};
use fogd_tests::certs::Pki;
use fogd_tests::mosquitto::{BrokerOptions, Mosquitto};
use fogd_tests::mqtt_client::TestClient;
use fogd_tests::{components, wait_until};

use fogd_tests::PATIENCE;

/// Starts an agent with one broker connection named `local` and one function, and waits
/// until the connection is up and subscribed.
async fn start_one(
    address: &str,
    broker_extra: &str,
    name: &str,
    component: &std::path::Path,
    body: &str,
) -> Running {
    let running = start(&format!(
        "{}{}",
        broker("local", address, broker_extra),
        function(name, component, body)
    ))
    .await;
    connected(&running.agent, "local").await;
    running
}

/// The `probe` function on a Mosquitto at `address`, with `body` as its config.
async fn start_probe(address: &str, body: &str) -> Running {
    start_one(address, "", "probe", &components().probe, body).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wildcards_qos_levels_and_v5_request_response() {
    let mosquitto = Mosquitto::start();
    let mut client = TestClient::connect(mosquitto.port, "observer-1", &["out/#", "resp/#"]).await;
    let echo = &components().echo;
    let running = start(&format!(
        "{}{}{}{}",
        broker("local", &mosquitto.address(), ""),
        function(
            "sensor",
            echo,
            r#"
            output = "out/sensor/{2}"
            [[function.trigger]]
            mqtt = { topic = "sensors/+/temp", qos = 0 }
        "#
        ),
        function(
            "command",
            echo,
            r#"
            output = "out/cmd/{subject}"
            [[function.trigger]]
            mqtt = { topic = "cmd/#", qos = 2 }
        "#
        ),
        function(
            "rpc",
            echo,
            r#"
            [[function.trigger]]
            mqtt = { topic = "rpc/echo", qos = 1 }
        "#
        ),
    ))
    .await;
    connected(&running.agent, "local").await;

    client
        .publish("sensors/r1/humidity", "not matched", 1)
        .await;
    client.publish("sensors/r1/temp", "21.5", 0).await;
    let message = client.next(PATIENCE).await;
    assert_eq!(
        (message.topic.as_str(), message.text().as_str()),
        ("out/sensor/r1", "21.5")
    );

    client.publish("cmd/reboot/now", "go", 2).await;
    let message = client.next(PATIENCE).await;
    assert_eq!(
        (message.topic.as_str(), message.text().as_str()),
        ("out/cmd/cmd/reboot/now", "go")
    );

    client
        .request_as(
            "rpc/echo",
            "ping",
            "resp/client-1",
            &[0, 1, 2, 254],
            Some("text/plain"),
        )
        .await;
    let message = client.next(PATIENCE).await;
    assert_eq!(message.topic, "resp/client-1");
    assert_eq!(message.text(), "ping");
    assert_eq!(
        message.correlation_data.as_deref(),
        Some(&[0u8, 1, 2, 254][..])
    );
    assert_eq!(
        message.content_type.as_deref(),
        Some("text/plain"),
        "an answer carries the request's content type"
    );

    assert!(
        client.drain().is_empty(),
        "the unmatched topic produced nothing"
    );
    running.agent.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_subscription_splits_a_stream_between_gateways() {
    let mosquitto = Mosquitto::start();
    let mut client = TestClient::connect(mosquitto.port, "observer-2", &["done/#"]).await;
    let mut gateways = Vec::new();
    for gateway in ["a", "b"] {
        let running = start_one(
            &mosquitto.address(),
            "",
            "worker",
            &components().echo,
            &format!(
                r#"
            output = "done/{gateway}"
            [[function.trigger]]
            mqtt = {{ topic = "$share/gateways/jobs/#", qos = 1 }}
        "#
            ),
        )
        .await;
        gateways.push(running);
    }
    for job in 0..40 {
        client
            .publish(&format!("jobs/{job}"), job.to_string(), 1)
            .await;
    }
    let results = client.collect_until(PATIENCE, |all| all.len() >= 40).await;
    let jobs: BTreeSet<u32> = results.iter().map(|m| m.text().parse().unwrap()).collect();
    assert_eq!(jobs, (0..40).collect());
    for gateway in ["done/a", "done/b"] {
        let count = results.iter().filter(|m| m.topic == gateway).count();
        assert!(count > 0 && count < 40, "{gateway} took {count} of 40 jobs");
    }
    for running in gateways {
        running.agent.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_works_and_wrong_ca_or_missing_certificate_is_refused() {
    let pki = Pki::generate("broker");
    let mosquitto = Mosquitto::with(BrokerOptions {
        tls: Some(pki.clone()),
        require_client_certificate: true,
        ..Default::default()
    });
    let tls_address = format!("localhost:{}", mosquitto.tls_port.unwrap());
    let dir = tempfile::tempdir().unwrap();
    let good = pki.write_client_files(dir.path(), "good");
    let stranger = Pki::generate("stranger").write_client_files(dir.path(), "stranger");

    let mut client = TestClient::connect(mosquitto.port, "observer-3", &["secure/out"]).await;
    let mtls = format!(
        "tls = {{ ca_file = \"{}\", cert_file = \"{}\", key_file = \"{}\" }}",
        good.ca.display(),
        good.cert.display(),
        good.key.display()
    );
    let running = start(&format!(
        "{}{}",
        broker("secure", &tls_address, &mtls),
        function(
            "echo",
            &components().echo,
            r#"
                output = "secure/out"
                [[function.trigger]]
                mqtt = { topic = "secure/in" }
            "#
        ),
    ))
    .await;
    connected(&running.agent, "secure").await;
    client.publish("secure/in", "over mTLS", 1).await;
    assert_eq!(client.next(PATIENCE).await.text(), "over mTLS");
    running.agent.shutdown().await;

    let cases = [
        (
            "wrong CA",
            format!(
                "tls = {{ ca_file = \"{}\", cert_file = \"{}\", key_file = \"{}\" }}",
                stranger.ca.display(),
                good.cert.display(),
                good.key.display()
            ),
            "UnknownIssuer",
        ),
        (
            "missing client certificate",
            format!("tls = {{ ca_file = \"{}\" }}", good.ca.display()),
            "CertificateRequired",
        ),
    ];
    for (case, tls, expected) in cases {
        let running = start(&broker("secure", &tls_address, &tls)).await;
        let key = "broker/secure".to_owned();
        wait_until(&format!("{case}: a connection error is reported"), || {
            running
                .agent
                .health
                .report()
                .components
                .get(&key)
                .is_some_and(|c| !c.ok && c.detail.starts_with("disconnected: "))
        })
        .await;
        let detail = running.agent.health.report().components[&key]
            .detail
            .clone();
        assert!(detail.contains(expected), "{case}: {detail}");
        eprintln!("{case}: {detail}");
        running.agent.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_and_large_payloads_pass_and_oversized_ones_are_rejected_and_counted() {
    let mosquitto = Mosquitto::start();
    let mut client = TestClient::connect(mosquitto.port, "observer-4", &["bytes/out"]).await;
    let running = start_one(
        &mosquitto.address(),
        "max_message_bytes = 300000",
        "echo",
        &components().echo,
        r#"
        output = "bytes/out"
        limits = { memory_mib = 32 }
        [[function.trigger]]
        mqtt = { topic = "bytes/in" }
    "#,
    )
    .await;

    let binary: Vec<u8> = vec![0xff, 0xfe, 0x00, 0xc3, 0x28, 0x80];
    client.publish("bytes/in", binary.clone(), 1).await;
    assert_eq!(
        client.next(PATIENCE).await.payload.as_ref(),
        binary.as_slice()
    );

    let large: Vec<u8> = (0..256 * 1024).map(|i| (i % 251) as u8).collect();
    client.publish("bytes/in", large.clone(), 1).await;
    assert_eq!(
        client.next(PATIENCE).await.payload.as_ref(),
        large.as_slice()
    );

    client.publish("bytes/in", vec![7u8; 400 * 1024], 1).await;
    let metrics = running.agent.metrics.clone();
    wait_until("the oversized message is counted", || {
        metrics.input_rejected_count("mqtt", "too_large") == 1
    })
    .await;
    client.publish("bytes/in", "after", 1).await;
    assert_eq!(client.next(PATIENCE).await.text(), "after");
    assert!(
        client.drain().is_empty(),
        "the oversized message produced nothing"
    );
    running.agent.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ungranted_publish_is_refused_retried_and_dead_lettered() {
    let mosquitto = Mosquitto::start();
    let mut client = TestClient::connect(
        mosquitto.port,
        "observer-5",
        &["allowed/#", "forbidden/#", "dead/#"],
    )
    .await;
    let running = start_probe(&mosquitto.address(), r#"
        grants = { publish = ["allowed/#"] }
        [[function.trigger]]
        mqtt = { topic = "publish", retries = 2, retry_backoff = "10ms", dead_letter = "dead/{function}" }
    "#).await;

    client
        .publish(
            "publish",
            r#"{"topic": "allowed/x", "payload": "granted"}"#,
            1,
        )
        .await;
    let message = client.next(PATIENCE).await;
    assert_eq!(
        (message.topic.as_str(), message.text().as_str()),
        ("allowed/x", "granted")
    );

    let forbidden = r#"{"topic": "forbidden/x", "payload": "no"}"#;
    client.publish("publish", forbidden, 1).await;
    let dead = client.next(PATIENCE).await;
    assert_eq!(dead.topic, "dead/probe");
    assert_eq!(
        dead.text(),
        forbidden,
        "the original message is dead-lettered"
    );
    assert!(
        dead.user_property("fogd-error")
            .is_some_and(|e| e.contains("NotGranted(\"forbidden/x\")")),
        "{dead:?}"
    );
    assert_eq!(dead.user_property("fogd-error-kind"), Some("failed"));
    assert_eq!(dead.user_property("fogd-topic"), Some("publish"));
    let probe = running.agent.metrics.function("probe");
    assert_eq!(
        probe.error_count("failed"),
        3,
        "one attempt and two retries"
    );
    assert!(client.drain().iter().all(|m| m.topic != "forbidden/x"));
    running.agent.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn functions_chain_through_the_broker() {
    let mosquitto = Mosquitto::start();
    let mut client = TestClient::connect(mosquitto.port, "observer-6", &["chain/out"]).await;
    let echo = &components().echo;
    let running = start(&format!(
        "{}{}{}",
        broker("local", &mosquitto.address(), ""),
        function(
            "first",
            echo,
            r#"
                output = "chain/mid"
                [[function.trigger]]
                mqtt = { topic = "chain/in" }
            "#
        ),
        function(
            "second",
            echo,
            r#"
                output = "chain/out"
                [[function.trigger]]
                mqtt = { topic = "chain/mid" }
            "#
        ),
    ))
    .await;
    connected(&running.agent, "local").await;
    client.publish("chain/in", "link", 1).await;
    assert_eq!(client.next(PATIENCE).await.text(), "link");
    running.agent.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qos0_overflow_is_dropped_and_counted_while_qos1_waits_and_loses_nothing() {
    let mosquitto = Mosquitto::start();
    let client = TestClient::connect(mosquitto.port, "observer-7", &[]).await;
    let running = start(&format!(
        "{}{}{}",
        broker("qos0", &mosquitto.address(), ""),
        broker("qos1", &mosquitto.address(), ""),
        function(
            "busy-qos0",
            &components().probe,
            r#"
                limits = { concurrency = 1, queue = 1 }
                [[function.trigger]]
                mqtt = { topic = "busy", qos = 0, broker = "qos0" }
            "#
        ),
    ))
    .await;
    let waiting = start(&format!(
        "{}{}",
        broker("local", &mosquitto.address(), ""),
        function(
            "busy-qos1",
            &components().probe,
            r#"
                limits = { concurrency = 1, queue = 1 }
                [[function.trigger]]
                mqtt = { topic = "busy", qos = 1 }
            "#
        ),
    ))
    .await;
    connected(&running.agent, "qos0").await;
    connected(&waiting.agent, "local").await;
    // Published at QoS 1: each subscription then gets its own QoS (0 for one, 1 for the other).
    for _ in 0..20 {
        client.publish("busy", "20", 1).await;
    }
    let qos0 = running.agent.metrics.function("busy-qos0");
    wait_until("all 20 QoS 0 messages are run or dropped", || {
        qos0.invocations.get() + qos0.dropped_count("queue_full") == 20
    })
    .await;
    assert!(
        qos0.dropped_count("queue_full") > 0,
        "a queue of one must overflow"
    );

    let qos1 = waiting.agent.metrics.function("busy-qos1");
    wait_until("every QoS 1 delivery of the 20 messages ran", || {
        qos1.invocations.get() >= 20
    })
    .await;
    assert_eq!(qos1.dropped_count("queue_full"), 0);
    running.agent.shutdown().await;
    waiting.agent.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_3_1_1_connections_work() {
    let mosquitto = Mosquitto::start();
    let mut client = TestClient::connect(mosquitto.port, "observer-8", &["v311/out"]).await;
    let running = start(&format!(
        "{}{}",
        broker("old", &mosquitto.address(), "protocol = \"3.1.1\""),
        function(
            "echo",
            &components().echo,
            r#"
                output = "v311/out"
                [[function.trigger]]
                mqtt = { topic = "v311/in", qos = 2 }
            "#
        ),
    ))
    .await;
    connected(&running.agent, "old").await;
    client.publish("v311/in", "legacy", 1).await;
    assert_eq!(client.next(PATIENCE).await.text(), "legacy");
    running.agent.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn results_produced_while_the_broker_is_down_arrive_in_order_after_it_returns() {
    let (_, connections) = results_arrive_in_order_after_an_outage("").await;
    assert_eq!(connections, ["broker/local", "broker/local/publish"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_single_connection_results_arrive_in_order_after_an_outage() {
    let (mosquitto, connections) =
        results_arrive_in_order_after_an_outage("separate_publisher = false").await;
    assert_eq!(connections, ["broker/local"]);
    let logged = mosquitto
        .log()
        .lines()
        .filter(|line| line.contains("New client connected") && line.contains(" as fogd-"))
        .count();
    // The log covers the broker's run after the outage.
    assert_eq!(logged, 1, "{}", mosquitto.log());
}

/// Stops the broker while a timer function publishes, restarts it, and checks that every
/// result arrives in order. Returns the broker and fogd's connections to it, once all are
/// back.
async fn results_arrive_in_order_after_an_outage(broker_extra: &str) -> (Mosquitto, Vec<String>) {
    let mut mosquitto = Mosquitto::with(BrokerOptions {
        persistence: true,
        ..Default::default()
    });
    let mut client = TestClient::connect(mosquitto.port, "observer-9", &["ticks"]).await;
    let running = start_one(
        &mosquitto.address(),
        broker_extra,
        "ticker",
        &components().echo,
        r#"
            output = "ticks"
            [[function.trigger]]
            timer = { every = "10ms" }
        "#,
    )
    .await;
    client.collect_until(PATIENCE, |all| all.len() >= 5).await;

    mosquitto.stop();
    let metrics = running.agent.metrics.clone();
    let health = running.agent.health.clone();
    wait_until("fogd notices the outage", || {
        !health.report().components["broker/local"].ok
    })
    .await;
    let ticks_at_outage = metrics.events_received_count("timer");
    wait_until("30 ticks happen during the outage", || {
        metrics.events_received_count("timer") >= ticks_at_outage + 30
    })
    .await;
    let produced_in_outage = metrics.events_received_count("timer");
    let broker = metrics.broker("local");
    wait_until("the outbox depth shows the results waiting", || {
        broker.outbox_depth.get() >= 30
    })
    .await;
    mosquitto.restart();

    let tick = |m: &fogd_tests::mqtt_client::Received| -> u64 {
        let value: serde_json::Value = serde_json::from_slice(&m.payload).unwrap();
        value["tick"].as_u64().unwrap()
    };
    let mut received = client.drain();
    received.extend(
        client
            .collect_until(PATIENCE, |all| {
                all.iter().any(|m| tick(m) + 1 >= produced_in_outage)
            })
            .await,
    );
    let ticks: Vec<u64> = received.iter().map(tick).collect();
    let mut distinct = ticks.clone();
    distinct.dedup();
    let first = distinct[0];
    let expected: Vec<u64> = (first..first + distinct.len() as u64).collect();
    assert_eq!(
        distinct, expected,
        "every tick arrives, in order (duplicates allowed)"
    );
    eprintln!(
        "{} ticks received, {} duplicates",
        ticks.len(),
        ticks.len() - distinct.len()
    );
    let connections = || {
        let report = health.report();
        report
            .components
            .into_iter()
            .filter(|(name, _)| name.starts_with("broker/"))
            .collect::<Vec<_>>()
    };
    wait_until("every connection is back", || {
        connections().iter().all(|(_, state)| state.ok)
    })
    .await;
    let names = connections().into_iter().map(|(name, _)| name).collect();
    let text = metrics.encode();
    for series in ["fogd_messages_published_total", "fogd_outbox_depth"] {
        assert!(
            !text.contains(&format!("{series}{{broker=\"local/publish\"}}")),
            "a broker's deliveries are counted once, under its name:\n{text}"
        );
    }
    running.agent.shutdown().await;
    (mosquitto, names)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_broker_serves_site_devices() {
    let port = fogd_tests::mosquitto::free_port();
    let running = start(&format!(
        r#"
            [embedded_broker]
            listen = "127.0.0.1:{port}"
            {}{}
        "#,
        broker(
            "local",
            &format!("127.0.0.1:{port}"),
            "protocol = \"3.1.1\""
        ),
        function(
            "echo",
            &components().echo,
            r#"
                output = "site/out/{3}"
                [[function.trigger]]
                mqtt = { topic = "site/in/+" }
            "#
        ),
    ))
    .await;
    connected(&running.agent, "local").await;

    // Real clients from mosquitto-clients, as a device on the site would use. The
    // subscriber exits after one message; publishing is repeated until it has, since it
    // may not have subscribed yet when the first message goes out.
    let port_text = port.to_string();
    let mut subscriber = tokio::process::Command::new("mosquitto_sub")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &port_text,
            "-t",
            "site/out/#",
            "-v",
            "-C",
            "1",
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("mosquitto_sub runs (Debian package `mosquitto-clients`)");
    let deadline = Instant::now() + PATIENCE;
    loop {
        let published = tokio::process::Command::new("mosquitto_pub")
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &port_text,
                "-t",
                "site/in/door",
                "-m",
                "opened",
                "-q",
                "1",
            ])
            .status()
            .await
            .unwrap();
        assert!(
            published.success(),
            "mosquitto_pub reaches the embedded broker"
        );
        if let Ok(status) =
            tokio::time::timeout(Duration::from_millis(300), subscriber.wait()).await
        {
            assert!(status.unwrap().success());
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no result through the embedded broker"
        );
    }
    let mut output = String::new();
    tokio::io::AsyncReadExt::read_to_string(&mut subscriber.stdout.take().unwrap(), &mut output)
        .await
        .unwrap();
    assert_eq!(output.trim(), "site/out/door opened");
    running.agent.shutdown().await;
}

/// Publishes one QoS 1 message with `mosquitto_pub`, as a device on the site would.
async fn device_publish(port: u16, topic: &str, payload: &str) {
    let status = tokio::process::Command::new("mosquitto_pub")
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(["-t", topic, "-m", payload, "-q", "1"])
        .status()
        .await
        .expect("mosquitto_pub runs (Debian package `mosquitto-clients`)");
    assert!(status.success(), "mosquitto_pub reaches the broker");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledgements_keep_arrival_order_when_a_later_message_finishes_first() {
    // The embedded broker drops a client that acknowledges out of order (MQTT requires
    // clients to acknowledge in order); so a message that finished early must wait for the
    // failing, retried one before it.
    let port = fogd_tests::mosquitto::free_port();
    let running = start(&format!(
        r#"
            [embedded_broker]
            listen = "127.0.0.1:{port}"
            {}{}{}
        "#,
        broker(
            "local",
            &format!("127.0.0.1:{port}"),
            "protocol = \"3.1.1\""
        ),
        function(
            "slow-failure",
            &components().probe,
            r#"
                [[function.trigger]]
                mqtt = { topic = "orders/a", qos = 1, retries = 3, retry_backoff = "100ms" }
            "#
        ),
        function(
            "fast",
            &components().echo,
            r#"
                [[function.trigger]]
                mqtt = { topic = "orders/+", qos = 1 }
            "#
        ),
    ))
    .await;
    connected(&running.agent, "local").await;
    let metrics = &running.agent.metrics;
    let fast = metrics.function("fast");
    let failing = metrics.function("slow-failure");

    device_publish(port, "orders/a", "first").await;
    device_publish(port, "orders/b", "second").await;
    wait_until("the failing message has used every attempt", || {
        failing.error_count("failed") >= 4
    })
    .await;
    device_publish(port, "orders/c", "third").await;
    wait_until("the fast function has run three times", || {
        fast.invocations.get() >= 3
    })
    .await;
    assert_eq!(
        metrics.broker("local").connection.connects.get(),
        1,
        "the broker never dropped the connection"
    );
    running.agent.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledgements_wait_for_the_broker_unless_kv_was_written() {
    let mosquitto = Mosquitto::start();
    let mut client = TestClient::connect(mosquitto.port, "observer-10", &["probe/out"]).await;
    let running = start_probe(
        &mosquitto.address(),
        r#"
            output = "probe/out"
            [[function.trigger]]
            mqtt = { topic = "echo", qos = 1 }
            [[function.trigger]]
            mqtt = { topic = "kv", qos = 1 }
        "#,
    )
    .await;
    // Until the publishing connection is up, acknowledgements fall back to a flush.
    wait_until("broker/local/publish is connected", || {
        running
            .agent
            .health
            .report()
            .components
            .get("broker/local/publish")
            .is_some_and(|c| c.ok)
    })
    .await;
    let metrics = running.agent.metrics.clone();
    let acknowledged = || {
        metrics.acknowledged_count("local", "delivery")
            + metrics.acknowledged_count("local", "flush")
    };

    for n in 0..10 {
        client.publish("echo", n.to_string(), 1).await;
    }
    for _ in 0..10 {
        client.next(PATIENCE).await;
    }
    wait_until("all 10 echoes are acknowledged", || acknowledged() == 10).await;
    assert!(
        metrics.acknowledged_count("local", "delivery") > 0,
        "results the broker acknowledged need no flush"
    );

    let flushed_before = metrics.acknowledged_count("local", "flush");
    for n in 0..5 {
        let steps = format!(r#"[{{"op": "set", "key": "k{n}", "value": "v"}}]"#);
        client.publish("kv", steps, 1).await;
    }
    for _ in 0..5 {
        let result = client.next(PATIENCE).await.text();
        assert!(result.contains("\"ok\""), "{result}");
    }
    wait_until("all 15 messages are acknowledged", || acknowledged() == 15).await;
    assert!(
        metrics.acknowledged_count("local", "flush") > flushed_before,
        "a kv write is flushed before its message is acknowledged"
    );
    running.agent.shutdown().await;
}

/// `fogd-mqtt-bench` against a real Mosquitto: every phase reports, nothing is lost, and the
/// rate ladder climbs through rates any build keeps up with.
#[test]
fn the_mqtt_bench_measures_both_paths_and_the_sustained_rate() {
    let mosquitto = Mosquitto::start();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_fogd-mqtt-bench"))
        .args(["--broker", &mosquitto.address()])
        .args(["--fogd", &fogd_tests::fogd_bin().display().to_string()])
        .args(["--component", &components().echo.display().to_string()])
        .args(["--rate", "500", "--seconds", "1", "--burst", "500"])
        .args([
            "--sustain-from",
            "500",
            "--step",
            "500",
            "--step-seconds",
            "1",
        ])
        .args(["--max-rate", "1000", "--max-p99-ms", "2000", "--json"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    for path in ["broker_alone", "through_fogd"] {
        let path = &report[path];
        assert_eq!(path["lost_at_rate"], 0, "{report}");
        assert_eq!(path["lost_in_burst"], 0, "{report}");
        assert!(
            path["latency"]["p50_us"]
                .as_f64()
                .is_some_and(|us| us > 0.0)
        );
        assert_eq!(path["sustained"]["highest_per_second"], 1000, "{report}");
        assert_eq!(path["sustained"]["ended_by"], "max_rate", "{report}");
        let rates: Vec<_> = path["sustained"]["steps"]
            .as_array()
            .unwrap()
            .iter()
            .map(|step| step["rate"].as_u64().unwrap())
            .collect();
        assert_eq!(rates, [500, 1000]);
    }
    assert!(
        report["through_fogd"]["cpu_us_per_message"]["at_rate"]
            .as_f64()
            .is_some()
    );
    assert_eq!(report["sustained_share"], 1.0, "{report}");
}

/// The daemon a bench starts must not outlive it: a leftover one would answer the next
/// run's messages too.
#[test]
fn the_mqtt_bench_daemon_ends_when_the_bench_is_killed() {
    let mosquitto = Mosquitto::start();
    let mut bench = std::process::Command::new(env!("CARGO_BIN_EXE_fogd-mqtt-bench"))
        .args(["--broker", &mosquitto.address()])
        .args(["--fogd", &fogd_tests::fogd_bin().display().to_string()])
        .args(["--component", &components().echo.display().to_string()])
        .args(["--rate", "100", "--seconds", "600"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let daemon_pids = || -> Vec<u32> {
        std::fs::read_dir(format!("/proc/{}/task", bench.id()))
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|task| std::fs::read_to_string(task.path().join("children")).ok())
            .flat_map(|list| {
                list.split_whitespace()
                    .filter_map(|pid| pid.parse().ok())
                    .collect::<Vec<u32>>()
            })
            .collect()
    };
    let mut daemon = Vec::new();
    fogd_tests::wait_until_blocking("the bench started its daemon", || {
        daemon = daemon_pids();
        !daemon.is_empty()
    });
    let daemon = daemon[0];
    // If the test fails, the daemon it left behind must not answer other tests' messages.
    struct EndOnDrop(u32);
    impl Drop for EndOnDrop {
        fn drop(&mut self) {
            // SAFETY: plain kill(2) on a pid this test saw as the bench's child.
            unsafe { libc::kill(self.0 as i32, libc::SIGTERM) };
        }
    }
    let _leftover = EndOnDrop(daemon);
    bench.kill().unwrap();
    bench.wait().unwrap();
    // A zombie has ended too; only its parent has not collected it yet.
    let running = |pid: u32| {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .is_ok_and(|stat| !stat.contains(") Z "))
    };
    fogd_tests::wait_until_blocking("the daemon ended with its bench", || !running(daemon));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_result_goes_out_at_the_triggers_qos_unless_the_function_names_one() {
    let mosquitto = Mosquitto::start();
    let mut client = TestClient::connect(mosquitto.port, "observer-qos", &["out/#"]).await;
    let running = start(&format!(
        "{}{}{}",
        broker("local", &mosquitto.address(), ""),
        function(
            "follows",
            &components().echo,
            r#"
                output = "out/follows"
                [[function.trigger]]
                mqtt = { topic = "in/follows", qos = 1 }
            "#
        ),
        function(
            "named",
            &components().echo,
            r#"
                output = "out/named"
                output_qos = 0
                [[function.trigger]]
                mqtt = { topic = "in/named", qos = 1 }
            "#
        ),
    ))
    .await;
    connected(&running.agent, "local").await;
    let sender = TestClient::connect(mosquitto.port, "sender-qos", &[]).await;
    sender.publish("in/follows", "at 0", 0).await;
    sender.publish("in/follows", "at 1", 1).await;
    sender.publish("in/named", "at 1", 1).await;
    let received = client.collect_until(PATIENCE, |all| all.len() == 3).await;
    let mut seen: Vec<(String, String, u8)> = received
        .iter()
        .map(|m| (m.topic.clone(), m.text(), m.qos))
        .collect();
    seen.sort();
    assert_eq!(
        seen,
        [
            ("out/follows".into(), "at 0".into(), 0),
            ("out/follows".into(), "at 1".into(), 1),
            ("out/named".into(), "at 1".into(), 0),
        ]
    );
    running.agent.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retained_messages_run_a_trigger_never_once_or_at_every_start_as_it_asks() {
    const FUNCTIONS: [&str; 3] = ["new", "once", "always"];
    let mosquitto = Mosquitto::start();
    let sender = TestClient::connect(mosquitto.port, "sender-retained", &[]).await;
    for function in FUNCTIONS {
        sender
            .publish_retained(&format!("cfg/{function}"), "before")
            .await;
    }
    let mut observer = TestClient::connect(mosquitto.port, "observer-retained", &["seen/#"]).await;
    let trigger = |function: &str, retained: &str| {
        format!(
            r#"
                output = "seen/{{function}}"
                [[function.trigger]]
                mqtt = {{ topic = "cfg/{function}", qos = 1{retained} }}
            "#
        )
    };
    let config = format!(
        "{}{}{}{}",
        broker("local", &mosquitto.address(), ""),
        function("new", &components().echo, &trigger("new", "")),
        function(
            "once",
            &components().echo,
            &trigger("once", ", retained = \"once\"")
        ),
        function(
            "always",
            &components().echo,
            &trigger("always", ", retained = \"always\"")
        ),
    );
    // Everything each function echoed up to and including `marker`, by function.
    async fn seen_until(
        observer: &mut TestClient,
        sender: &TestClient,
        marker: &str,
    ) -> std::collections::BTreeMap<String, Vec<String>> {
        for function in FUNCTIONS {
            sender
                .publish(&format!("cfg/{function}"), marker.to_owned(), 1)
                .await;
        }
        let received = observer
            .collect_until(PATIENCE, |all| {
                all.iter().filter(|m| m.text() == marker).count() == FUNCTIONS.len()
            })
            .await;
        let mut by_function = std::collections::BTreeMap::new();
        for message in received {
            let function = message.topic.trim_start_matches("seen/").to_owned();
            by_function
                .entry(function)
                .or_insert_with(Vec::new)
                .push(message.text());
        }
        by_function
    }

    let running = start(&config).await;
    connected(&running.agent, "local").await;
    let first = seen_until(&mut observer, &sender, "marker 1").await;
    assert_eq!(first["new"], ["marker 1"]);
    assert_eq!(first["once"], ["before", "marker 1"]);
    assert_eq!(first["always"], ["before", "marker 1"]);
    for function in FUNCTIONS {
        sender
            .publish_retained(&format!("cfg/{function}"), "changed")
            .await;
    }
    let live = seen_until(&mut observer, &sender, "marker 2").await;
    for function in FUNCTIONS {
        assert_eq!(live[function], ["changed", "marker 2"], "{function}");
    }
    running.agent.shutdown().await;

    // The same client id: the broker still has the subscriptions.
    let running = start(&config).await;
    connected(&running.agent, "local").await;
    let restarted = seen_until(&mut observer, &sender, "marker 3").await;
    assert_eq!(restarted["new"], ["marker 3"]);
    assert_eq!(restarted["once"], ["marker 3"]);
    // Once per subscribe: a reconnect while starting would add another copy.
    let always = &restarted["always"];
    assert!(
        always.len() >= 2
            && always.last().map(String::as_str) == Some("marker 3")
            && always[..always.len() - 1].iter().all(|m| m == "changed"),
        "{restarted:?}"
    );
    running.agent.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_function_sets_the_content_type_and_user_properties_of_its_result() {
    let mosquitto = Mosquitto::start();
    let mut client =
        TestClient::connect(mosquitto.port, "observer-properties", &["resp/#", "out/#"]).await;
    let running = start_probe(
        &mosquitto.address(),
        r#"
            output = "out/probe"
            [[function.trigger]]
            mqtt = { topic = "respond", qos = 1 }
        "#,
    )
    .await;
    let asks = r#"{"content_type":"application/json","user_properties":[["handled-by","probe"],["site","7"]]}"#;
    let expected = vec![
        ("handled-by".to_owned(), "probe".to_owned()),
        ("site".to_owned(), "7".to_owned()),
    ];
    client
        .request_as(
            "respond",
            asks,
            "resp/properties",
            b"c1",
            Some("text/plain"),
        )
        .await;
    let answer = client.next(PATIENCE).await;
    assert_eq!(answer.topic, "resp/properties");
    assert_eq!(answer.correlation_data.as_deref(), Some(&b"c1"[..]));
    assert_eq!(
        answer.content_type.as_deref(),
        Some("application/json"),
        "the function's content type, not the request's"
    );
    assert_eq!(answer.user_properties, expected);

    client.publish("respond", asks, 1).await;
    let message = client.next(PATIENCE).await;
    assert_eq!(message.topic, "out/probe");
    assert_eq!(message.content_type.as_deref(), Some("application/json"));
    assert_eq!(message.user_properties, expected);
    running.agent.shutdown().await;
}
