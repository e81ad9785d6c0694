//! `kill -9` in the middle of a QoS 1 stream: after a restart every message has its result.

use std::collections::HashSet;
use std::time::Duration;

use fogd_tests::components;
use fogd_tests::daemon::Daemon;
use fogd_tests::mosquitto::Mosquitto;
use fogd_tests::mqtt_client::TestClient;

const MESSAGES: u32 = 10_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_dash_nine_mid_stream_loses_nothing() {
    let mosquitto = Mosquitto::start();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("fogd.toml");
    std::fs::write(
        &config,
        format!(
            r#"
                state_dir = "state"
                [metrics]
                [[broker]]
                name = "local"
                address = "{}"
                client_id = "fogd-crash-test"
                reconnect_max = "200ms"

                [[function]]
                name = "echo"
                component = "{}"
                output = "stream/out"
                limits = {{ concurrency = 2, queue = 512 }}
                [[function.trigger]]
                mqtt = {{ topic = "stream/in", qos = 1 }}
            "#,
            mosquitto.address(),
            components().echo.display()
        ),
    )
    .unwrap();

    let mut results = TestClient::connect(mosquitto.port, "crash-results", &["stream/out"]).await;
    let publisher = TestClient::connect(mosquitto.port, "crash-publisher", &[]).await;

    let mut daemon = Daemon::start(&config);
    // Messages published before fogd's first subscription would reach nobody.
    daemon.wait_for(&["triggers subscribed", "broker=local"]);
    for index in 0..MESSAGES {
        publisher.publish("stream/in", index.to_string(), 1).await;
    }
    let before_kill = results
        .collect_until(Duration::from_secs(60), |all| all.len() >= 1_000)
        .await;

    // SAFETY: plain kill(2) on our own child's pid.
    unsafe { libc::kill(daemon.pid(), libc::SIGKILL) };
    drop(daemon);

    let mut daemon = Daemon::start(&config);
    daemon.wait_for(&["broker connected", "local"]);
    let mut seen: HashSet<u32> = before_kill
        .iter()
        .map(|m| m.text().parse().unwrap())
        .collect();
    let mut received = before_kill.len();
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while seen.len() < MESSAGES as usize && std::time::Instant::now() < deadline {
        if let Some(message) = results.try_next(Duration::from_secs(1)).await {
            seen.insert(message.text().parse().unwrap());
            received += 1;
        }
    }
    if seen.len() < MESSAGES as usize {
        // Enough to tell a lost message from a stalled session next time.
        let missing: Vec<u32> = (0..MESSAGES)
            .filter(|n| !seen.contains(n))
            .take(20)
            .collect();
        let (_, log) = daemon.terminate();
        let tail = log.len().saturating_sub(60);
        panic!(
            "{} of {MESSAGES} messages have no result after the restart ({received} results \
             received); first missing: {missing:?}; fogd's log after the restart ends:\n{}\n\
             Mosquitto's log ends:\n{}",
            MESSAGES as usize - seen.len(),
            log[tail..].join("\n"),
            mosquitto
                .log()
                .lines()
                .rev()
                .take(30)
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
    eprintln!(
        "{MESSAGES} messages: {received} results received, {} duplicates after kill -9 at {} results",
        received - MESSAGES as usize,
        before_kill.len()
    );
    let (status, _) = daemon.terminate();
    assert!(status.success());
}
