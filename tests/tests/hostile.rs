//! A hostile function beside a well-behaved one, through a real Mosquitto: the hostile one
//! fails only its own events, nothing of a failed event is published, the neighbour loses
//! nothing; a hung broker is noticed and the publishing connection recovers.

use std::time::Duration;

use fogd_tests::agent::{broker, connected, function, start};
use fogd_tests::daemon::{Daemon, http_get, metrics_address, resident_kib};
use fogd_tests::hostile::ROUND;
use fogd_tests::mosquitto::Mosquitto;
use fogd_tests::mqtt_client::TestClient;
use fogd_tests::{components, wait_until};

const PATIENCE: Duration = Duration::from_secs(30);
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
            "output = \"echo/out\"\n[[function.trigger]]\nmqtt = { topic = \"echo/in\", qos = 1 }"
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
            "output = \"ticks\"\n[[function.trigger]]\ntimer = { every = \"50ms\", name = \"tick\", payloads = [\"tick\"] }"
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_comes_back_after_a_burst_of_huge_results() {
    let mosquitto = Mosquitto::start();
    let sender = TestClient::connect(mosquitto.port, "huge-sender", &[]).await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("fogd.toml");
    std::fs::write(
        &config,
        format!(
            r#"state_dir = "state"
[metrics]
address = "127.0.0.1:0"
{broker}
[[function]]
name = "huge"
component = "{probe}"
output = "huge/out"
limits = {{ memory_mib = 80 }}
[[function.trigger]]
mqtt = {{ topic = "big", qos = 1 }}
"#,
            broker = broker("local", &mosquitto.address(), ""),
            probe = components().probe.display(),
        ),
    )
    .unwrap();
    let mut daemon = Daemon::start(&config);
    let ready = daemon.wait_for(&["fogd ready"]);
    let address = metrics_address(&ready);
    daemon.wait_for(&["triggers subscribed"]);
    let count = |kind: &str| {
        let metrics = http_get(&address, "/metrics");
        metrics
            .lines()
            .find(|line| {
                line.starts_with("fogd_invocation")
                    && line.contains(kind)
                    && line.contains("function=\"huge\"")
            })
            .and_then(|line| line.rsplit(' ').next())
            .and_then(|value| value.parse::<u64>().ok())
            .unwrap_or(0)
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
