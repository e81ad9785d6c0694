//! A hostile function beside a well-behaved one, through a real Mosquitto: the hostile one
//! fails only its own events, nothing of a failed event is published, the neighbour loses
//! nothing; a hung broker is noticed and the publishing connection recovers.

use std::time::Duration;

use fogd_tests::agent::{broker, connected, function, start};
use fogd_tests::daemon::{Daemon, http_get, metrics_address, resident_kib};
use fogd_tests::hostile::ROUND;
use fogd_tests::mosquitto::{BrokerOptions, Mosquitto};
use fogd_tests::mqtt_client::TestClient;
use fogd_tests::{components, wait_until};

use fogd_tests::PATIENCE;
const ECHOES: usize = 200;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_neighbour_fails_only_itself_and_the_echo_loses_nothing() {
    let mosquitto = Mosquitto::start();
    let mut observer = TestClient::connect(
        mosquitto.port,
        "hostile-observer",
        &["echo/out", "flood/#", "hostile/out"],
    )
    .await;
    let sender = TestClient::connect(mosquitto.port, "hostile-sender", &[]).await;
    let running = start(&format!(
        "{}{}{}",
        broker("local", &mosquitto.address(), ""),
        function(
            "echo",
            &components().echo,
            r#"
                output = "echo/out"
                [[function.trigger]]
                mqtt = { topic = "echo/in", qos = 1 }
            "#
        ),
        function(
            "hostile",
            &components().probe,
            r#"output = "hostile/out"
limits = { memory_mib = 80, timeout = "300ms" }
grants = { publish = ["flood/#"] }
[[function.trigger]]
mqtt = { topic = "big", qos = 0 }
[[function.trigger]]
mqtt = { topic = "flood", qos = 0 }"#
        ),
    ))
    .await;
    connected(&running.agent, "local").await;

    let rounds = ECHOES / 10;
    let hostile_sender = {
        let sender = TestClient::connect(mosquitto.port, "hostile-flooder", &[]).await;
        tokio::spawn(async move {
            let mut pace = tokio::time::interval(Duration::from_millis(200));
            for _ in 0..rounds {
                pace.tick().await;
                for (topic, payload) in ROUND {
                    sender.publish(topic, payload.to_owned(), 0).await;
                }
            }
            sender
        })
    };
    // The echo at 50 messages a second, beside the hostile stream.
    let mut pace = tokio::time::interval(Duration::from_millis(20));
    for index in 0..ECHOES {
        pace.tick().await;
        sender.publish("echo/in", format!("echo {index}"), 1).await;
    }
    let _flooder = hostile_sender.await.unwrap();

    let hostile = running.agent.metrics.function("hostile");
    let all_ran = || {
        hostile.invocations.get() + hostile.dropped_count("queue_full")
            == (rounds * ROUND.len()) as u64
    };
    wait_until("every hostile event ran or was dropped", all_ran).await;
    let kept_floods = hostile.invocations.get()
        - hostile.error_count("output_limit")
        - hostile.error_count("timeout");
    let received = observer
        .collect_until(PATIENCE, |seen| {
            seen.iter().filter(|m| m.topic == "echo/out").count() == ECHOES
                && seen.iter().filter(|m| m.topic == "flood/kept").count()
                    == kept_floods as usize * 100
        })
        .await;
    let echoes: Vec<String> = received
        .iter()
        .filter(|m| m.topic == "echo/out")
        .map(|m| m.text())
        .collect();
    let expected: Vec<String> = (0..ECHOES).map(|index| format!("echo {index}")).collect();
    assert_eq!(echoes, expected, "every echo arrives, in order");
    assert!(
        received.iter().all(|m| m.topic != "flood/failed"),
        "nothing of a failed event is published"
    );
    assert!(hostile.error_count("output_limit") > 0);
    assert_eq!(hostile.error_count("trap"), 0);
    assert_eq!(
        running
            .agent
            .metrics
            .function("echo")
            .error_count("output_limit"),
        0
    );
    running.agent.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_broker_is_reported_and_the_publisher_reconnects_when_it_answers_again() {
    let mosquitto = Mosquitto::start();
    let mut observer = TestClient::connect(mosquitto.port, "stall-observer", &["ticks"]).await;
    let running = start(&format!(
        "{}{}",
        broker("local", &mosquitto.address(), "publish_timeout = \"1s\""),
        function(
            "ticker",
            &components().echo,
            r#"
                output = "ticks"
                [[function.trigger]]
                timer = { every = "50ms", name = "tick", payloads = ["tick"] }
            "#
        ),
    ))
    .await;
    connected(&running.agent, "local").await;
    connected(&running.agent, "local/publish").await;
    observer.next(PATIENCE).await;

    mosquitto.freeze();
    let health = &running.agent.health;
    let publisher = "broker/local/publish";
    wait_until("the stalled publishing connection is reported", || {
        health
            .report()
            .components
            .get(publisher)
            .is_some_and(|c| !c.ok && c.detail.contains("publishing stalled"))
    })
    .await;
    mosquitto.thaw();
    connected(&running.agent, "local/publish").await;
    // Ticks made while the broker hung arrive once it answers again.
    let published = running.agent.metrics.broker("local").published.get();
    wait_until("the publisher delivers again", || {
        running.agent.metrics.broker("local").published.get() > published + 20
    })
    .await;
    observer.drain();
    assert_eq!(observer.next(PATIENCE).await.text(), "tick");
    running.agent.shutdown().await;
}

/// Resident memory once it has stopped changing by more than 1% between samples.
async fn settled_resident_kib(pid: i32) -> u64 {
    let mut last = resident_kib(pid);
    let settling = std::time::Instant::now();
    loop {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let now = resident_kib(pid);
        if now.abs_diff(last) * 100 <= last || settling.elapsed() > Duration::from_secs(20) {
            return now;
        }
        last = now;
    }
}

/// `fogd run` with one probe function named `name` (its `[[function]]` body after the
/// component line) behind `mosquitto`, once it is subscribed; with its metrics address.
fn probe_daemon(
    mosquitto: &Mosquitto,
    dir: &std::path::Path,
    name: &str,
    body: &str,
) -> (Daemon, String) {
    let config = dir.join("fogd.toml");
    std::fs::write(
        &config,
        format!(
            r#"
                state_dir = "state"
                [metrics]
                address = "127.0.0.1:0"
                {}{}
            "#,
            broker("local", &mosquitto.address(), ""),
            function(name, &components().probe, body),
        ),
    )
    .unwrap();
    let mut daemon = Daemon::start(&config);
    let ready = daemon.wait_for(&["fogd ready"]);
    daemon.wait_for(&["triggers subscribed"]);
    (daemon, metrics_address(&ready))
}

/// The value of the first `/metrics` line that starts with `name` and holds `label`.
fn metric(address: &str, name: &str, label: &str) -> u64 {
    http_get(address, "/metrics")
        .lines()
        .find(|line| line.starts_with(name) && line.contains(label))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|value| value.parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_comes_back_after_a_burst_of_huge_results() {
    let mosquitto = Mosquitto::start();
    let sender = TestClient::connect(mosquitto.port, "huge-sender", &[]).await;
    let dir = tempfile::tempdir().unwrap();
    let (daemon, address) = probe_daemon(
        &mosquitto,
        dir.path(),
        "huge",
        r#"
            output = "huge/out"
            limits = { memory_mib = 80 }
            [[function.trigger]]
            mqtt = { topic = "big", qos = 1 }
        "#,
    );
    let count = |kind: &str| {
        metric(
            &address,
            "fogd_invocation_errors_total",
            &format!("kind=\"{kind}\""),
        )
    };
    // Warm up the paths the burst takes, so that what is measured is what stays behind.
    for _ in 0..3 {
        sender.publish("big", "1000", 1).await;
        sender.publish("big", "67108864", 1).await;
    }
    wait_until("the warm-up ran", || count("output_limit") == 3).await;
    let before = settled_resident_kib(daemon.pid()).await;
    for _ in 0..15 {
        sender.publish("big", "67108864", 1).await;
    }
    wait_until("the 15 huge results failed", || count("output_limit") == 18).await;
    let peak = resident_kib(daemon.pid());
    let burst_ended = std::time::Instant::now();
    let mut after = resident_kib(daemon.pid());
    while after * 10 > before * 12 && burst_ended.elapsed() < Duration::from_secs(40) {
        tokio::time::sleep(Duration::from_millis(100)).await;
        after = resident_kib(daemon.pid());
    }
    eprintln!(
        "resident: {before} KiB before, {peak} KiB when the burst ended, {after} KiB {} ms later",
        burst_ended.elapsed().as_millis()
    );
    assert!(
        after * 10 <= before * 12,
        "resident memory {after} KiB, {before} KiB before the burst (peak {peak} KiB)"
    );
    let (status, _) = daemon.terminate();
    assert!(status.success());
}

/// Bytes of the files under `dir` (their apparent sizes).
fn folder_bytes(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|entry| match entry.metadata() {
                    Ok(meta) if meta.is_dir() => folder_bytes(&entry.path()),
                    Ok(meta) => meta.len(),
                    Err(_) => 0,
                })
                .sum()
        })
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kv_flood_stream_keeps_the_state_folder_near_the_quota() {
    const QUOTA: u64 = 2 * 1024 * 1024;
    let mosquitto = Mosquitto::start();
    let sender = TestClient::connect(mosquitto.port, "kv-flooder", &[]).await;
    let dir = tempfile::tempdir().unwrap();
    let (daemon, address) = probe_daemon(
        &mosquitto,
        dir.path(),
        "hoarder",
        &format!(
            r#"
                limits = {{ kv_bytes = {QUOTA}, kv_write_bytes = 4194304 }}
                [[function.trigger]]
                mqtt = {{ topic = "flood", qos = 1, retries = 0 }}
            "#
        ),
    );
    // A megabyte rewritten a hundred times (kept), and three megabytes that pass the quota
    // (refused), in turns.
    for round in 0..100 {
        sender
            .publish("flood", r#"{"kv": 100, "size": 10000}"#, 1)
            .await;
        if round % 5 == 0 {
            sender
                .publish("flood", r#"{"kv": 300, "size": 10000}"#, 1)
                .await;
        }
    }
    let errors = |kind: &str| {
        metric(
            &address,
            "fogd_invocation_errors_total",
            &format!("kind=\"{kind}\""),
        )
    };
    let invocations = || metric(&address, "fogd_invocations_total", "function=\"hoarder\"");
    let started = std::time::Instant::now();
    while invocations() < 120 {
        assert!(
            started.elapsed() < PATIENCE,
            "{}",
            http_get(&address, "/metrics")
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(errors("storage_quota"), 20);
    let state = folder_bytes(&dir.path().join("state/db"));
    eprintln!("state folder: {state} bytes after 100 MB of kv writes, quota {QUOTA}");
    assert!(
        state < 4 * QUOTA,
        "the state folder holds {state} bytes for a quota of {QUOTA}"
    );
    let (status, _) = daemon.terminate();
    assert!(status.success());
}

/// An agent whose probe function answers each `big` message with as many bytes as it asks
/// for, behind `mosquitto`; with a subscribed observer of the answers.
async fn sized_answers(mosquitto: &Mosquitto) -> (fogd_tests::agent::Running, TestClient) {
    let observer = TestClient::connect(mosquitto.port, "sized-observer", &["sized"]).await;
    let running = start(&format!(
        "{}{}",
        broker("local", &mosquitto.address(), "inflight = 4"),
        function(
            "sized",
            &components().probe,
            r#"
                output = "sized"
                [[function.trigger]]
                mqtt = { topic = "big", qos = 1 }
            "#
        ),
    ))
    .await;
    connected(&running.agent, "local").await;
    (running, observer)
}

const REFUSAL_ROUNDS: usize = 10;

/// Asks for a message too large for the broker, then a small one, `REFUSAL_ROUNDS` times.
async fn send_large_and_small(mosquitto: &Mosquitto) {
    let sender = TestClient::connect(mosquitto.port, "sized-sender", &[]).await;
    for _ in 0..REFUSAL_ROUNDS {
        sender.publish("big", "2000", 1).await;
        sender.publish("big", "10", 1).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_over_the_brokers_maximum_packet_size_is_dropped_before_it_is_sent() {
    let mosquitto = Mosquitto::with(BrokerOptions {
        extra: "max_packet_size 1000".into(),
        ..Default::default()
    });
    let (running, mut observer) = sized_answers(&mosquitto).await;
    send_large_and_small(&mosquitto).await;
    let received = observer
        .collect_until(PATIENCE, |seen| seen.len() == REFUSAL_ROUNDS)
        .await;
    assert!(received.iter().all(|m| m.payload.len() == 10));
    let local = running.agent.metrics.broker("local");
    assert_eq!(local.dropped_count("too_large"), REFUSAL_ROUNDS as u64);
    assert_eq!(
        running
            .agent
            .metrics
            .messages_dropped_count("sized", "too_large"),
        REFUSAL_ROUNDS as u64
    );
    assert_eq!(
        local.connection.connects.get(),
        1,
        "no reconnect was needed"
    );
    wait_until("every small answer is counted published", || {
        local.published.get() == REFUSAL_ROUNDS as u64
    })
    .await;
    running.agent.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_the_broker_refuses_is_counted_once_and_publishing_goes_on() {
    // Mosquitto does not announce this limit; it answers a larger message with a reason
    // code that ends rumqttc's connection.
    let mosquitto = Mosquitto::with(BrokerOptions {
        extra: "message_size_limit 1000".into(),
        ..Default::default()
    });
    let (running, mut observer) = sized_answers(&mosquitto).await;
    send_large_and_small(&mosquitto).await;
    // A small answer in flight when a refusal ended the connection is sent again.
    let received = observer
        .collect_until(PATIENCE, |seen| seen.len() >= REFUSAL_ROUNDS)
        .await;
    assert!(received.iter().all(|m| m.payload.len() == 10));
    let local = running.agent.metrics.broker("local");
    wait_until("every refusal is counted and the outbox is empty", || {
        local.dropped_count("refused") == REFUSAL_ROUNDS as u64 && local.outbox_depth.get() == 0
    })
    .await;
    assert_eq!(
        running
            .agent
            .metrics
            .messages_dropped_count("sized", "refused"),
        REFUSAL_ROUNDS as u64
    );
    running.agent.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publish_the_broker_does_not_authorize_is_counted_once_and_not_sent_again() {
    let mosquitto = Mosquitto::with(BrokerOptions {
        acl: Some("topic readwrite in/#\ntopic readwrite out/allowed\n".into()),
        ..Default::default()
    });
    let mut observer = TestClient::connect(mosquitto.port, "acl-observer", &["out/#"]).await;
    let running = start(&format!(
        "{}{}",
        broker("local", &mosquitto.address(), "inflight = 4"),
        function(
            "echo",
            &components().echo,
            r#"
                output = "out/{2}"
                [[function.trigger]]
                mqtt = { topic = "in/+", qos = 1 }
            "#
        ),
    ))
    .await;
    connected(&running.agent, "local").await;
    let sender = TestClient::connect(mosquitto.port, "acl-sender", &[]).await;
    for index in 0..REFUSAL_ROUNDS {
        sender
            .publish("in/denied", format!("denied {index}"), 1)
            .await;
        sender
            .publish("in/allowed", format!("allowed {index}"), 1)
            .await;
    }
    let local = running.agent.metrics.broker("local");
    wait_until("every refusal is counted and the outbox is empty", || {
        local.dropped_count("refused") == REFUSAL_ROUNDS as u64 && local.outbox_depth.get() == 0
    })
    .await;
    // Mosquitto 2.0 answers a denied publish with Not Authorized and may then close the
    // connection: answers in flight then are sent again, so one may arrive twice.
    let expected: Vec<String> = (0..REFUSAL_ROUNDS)
        .map(|i| format!("allowed {i}"))
        .collect();
    let received = observer
        .collect_until(PATIENCE, |seen| {
            seen.last()
                .is_some_and(|m| m.text() == expected[REFUSAL_ROUNDS - 1])
        })
        .await;
    let mut seen = std::collections::HashSet::new();
    let firsts: Vec<String> = received
        .iter()
        .map(|m| m.text())
        .filter(|text| seen.insert(text.clone()))
        .collect();
    assert_eq!(firsts, expected);
    assert_eq!(
        running
            .agent
            .metrics
            .messages_dropped_count("echo", "refused"),
        REFUSAL_ROUNDS as u64
    );
    running.agent.shutdown().await;
}
