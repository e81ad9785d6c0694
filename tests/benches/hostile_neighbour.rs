//! What a hostile function costs its neighbour, and whether memory comes back, on `fogd run`
//! with a real Mosquitto.
//!
//! 1. Neighbour: an echo at 50 msg/s (QoS 1 in, result out), its round-trip latency measured
//!    alone, then beside a hostile function fed ten rounds a second of 64 MiB results and
//!    publish floods past and within its limits, then also of kv floods that loop until their
//!    300 ms deadline (three CPU-seconds a second asked of two CPUs). Reports p50 and p99 of
//!    each phase, the ratio to the echo alone, and what was lost.
//! 2. Memory: resident set of the daemon before, at the peak of, and 30 s after a burst of 15
//!    huge results, and a flood of 65,536 QoS 0 messages into a slow function's queue.
//!
//!   cargo bench -p fogd-tests --bench hostile_neighbour -- [--seconds N] [--workers N]

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use fogd::bench::percentile;
use fogd_tests::agent::broker;
use fogd_tests::components;
use fogd_tests::daemon::{Daemon, http_get, metrics_address, resident_kib};
use fogd_tests::hostile::{ROUND, ROUND_WITHOUT_LOOPS};
use fogd_tests::mosquitto::Mosquitto;
use fogd_tests::mqtt_client::TestClient;

fn config(dir: &Path, mosquitto: &Mosquitto, workers: Option<u32>) -> std::path::PathBuf {
    let path = dir.join("fogd.toml");
    let probe = components().probe.display().to_string();
    let text = format!(
        r#"state_dir = "state"
{runtime}
[metrics]
address = "127.0.0.1:0"
{broker}
[[function]]
name = "echo"
component = "{echo}"
output = "echo/out"
[[function.trigger]]
mqtt = {{ topic = "echo/in", qos = 1 }}

[[function]]
name = "hostile"
component = "{probe}"
output = "hostile/out"
limits = {{ memory_mib = 80, timeout = "300ms" }}
grants = {{ publish = ["flood/#"] }}
[[function.trigger]]
mqtt = {{ topic = "big", qos = 0 }}
[[function.trigger]]
mqtt = {{ topic = "flood", qos = 0 }}

[[function]]
name = "slow"
component = "{probe}"
limits = {{ concurrency = 1, queue = 65536 }}
[[function.trigger]]
mqtt = {{ topic = "busy", qos = 0 }}
"#,
        broker = broker("local", &mosquitto.address(), ""),
        echo = components().echo.display(),
        runtime = workers.map_or_else(String::new, |workers| format!(
            "[runtime]\nworkers = {workers}"
        )),
    );
    std::fs::write(&path, text).expect("config written");
    path
}

/// Echo round trips at 50 msg/s for `seconds`: latencies in µs, and how many never came back.
async fn echo_phase(
    sender: &TestClient,
    observer: &mut TestClient,
    seconds: u64,
    first: usize,
) -> (Vec<u64>, usize) {
    let count = (seconds * 50) as usize;
    let mut sent_at = HashMap::new();
    let mut latencies = Vec::with_capacity(count);
    let mut pace = tokio::time::interval(Duration::from_millis(20));
    let mut next = first;
    let end = first + count;
    let deadline = Instant::now() + Duration::from_secs(seconds + 30);
    while (next < end || !sent_at.is_empty()) && Instant::now() < deadline {
        tokio::select! {
            _ = pace.tick(), if next < end => {
                sent_at.insert(format!("echo {next}"), Instant::now());
                sender.publish("echo/in", format!("echo {next}"), 1).await;
                next += 1;
            }
            received = observer.try_next(Duration::from_secs(1)) => {
                if let Some(message) = received
                    && let Some(sent) = sent_at.remove(&message.text())
                {
                    latencies.push(sent.elapsed().as_micros() as u64);
                }
            }
        }
    }
    latencies.sort_unstable();
    (latencies, sent_at.len())
}

fn summary(latencies: &[u64]) -> (f64, f64) {
    (
        percentile(latencies, 50.0) as f64 / 1000.0,
        percentile(latencies, 99.0) as f64 / 1000.0,
    )
}

/// Samples the daemon's resident set every 100 ms for `during`; returns the highest.
async fn peak_kib(pid: i32, during: Duration) -> u64 {
    let start = Instant::now();
    let mut peak = resident_kib(pid);
    while start.elapsed() < during {
        tokio::time::sleep(Duration::from_millis(100)).await;
        peak = peak.max(resident_kib(pid));
    }
    peak
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let option = |name: &str| {
        std::env::args()
            .skip_while(|arg| arg != name)
            .nth(1)
            .and_then(|value| value.parse::<u64>().ok())
    };
    let seconds = option("--seconds").unwrap_or(20);
    let workers = option("--workers").map(|workers| workers as u32);
    let mosquitto = Mosquitto::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let mut daemon = Daemon::start(&config(dir.path(), &mosquitto, workers));
    daemon.wait_for(&["fogd ready"]);
    daemon.wait_for(&["triggers subscribed"]);
    let pid = daemon.pid();
    let sender = TestClient::connect(mosquitto.port, "bench-sender", &[]).await;
    let mut observer = TestClient::connect(mosquitto.port, "bench-observer", &["echo/out"]).await;

    let (quiet, quiet_lost) = echo_phase(&sender, &mut observer, seconds, 0).await;
    let (quiet_p50, quiet_p99) = summary(&quiet);
    println!("## Echo at 50 msg/s beside a hostile function ({seconds} s per phase)\n");
    println!("| phase | echoes | lost | p50 ms | p99 ms | p99 / alone |");
    println!("|---|---|---|---|---|---|");
    println!(
        "| alone | {} | {quiet_lost} | {quiet_p50:.2} | {quiet_p99:.2} | 1.00 |",
        quiet.len()
    );
    let mut first = quiet.len() + quiet_lost;
    let rounds: [(&str, &[(&str, &str)]); 2] = [
        ("results and publish floods", &ROUND_WITHOUT_LOOPS),
        ("the same and loops to the deadline", &ROUND),
    ];
    for (name, round) in rounds {
        let flooder = TestClient::connect(mosquitto.port, "bench-flooder", &[]).await;
        let round: Vec<(String, String)> = round
            .iter()
            .map(|(topic, payload)| ((*topic).to_owned(), (*payload).to_owned()))
            .collect();
        let hostile = tokio::spawn(async move {
            let mut pace = tokio::time::interval(Duration::from_millis(100));
            for _ in 0..seconds * 10 {
                pace.tick().await;
                for (topic, payload) in &round {
                    flooder.publish(topic, payload.clone(), 0).await;
                }
            }
        });
        let (beside, lost) = echo_phase(&sender, &mut observer, seconds, first).await;
        hostile.await.expect("the hostile sender ran");
        first += beside.len() + lost;
        let (p50, p99) = summary(&beside);
        println!(
            "| beside {name} | {} | {lost} | {p50:.2} | {p99:.2} | {:.2} |",
            beside.len(),
            p99 / quiet_p99.max(0.001)
        );
    }

    let ready = daemon.wait_for(&["fogd ready"]);
    let address = metrics_address(&ready);
    let queue_depth = || {
        http_get(&address, "/metrics")
            .lines()
            .find(|line| line.starts_with("fogd_queue_depth{function=\"slow\"}"))
            .and_then(|line| line.rsplit(' ').next())
            .and_then(|value| value.parse::<u64>().ok())
            .unwrap_or(0)
    };
    println!("\n## Resident set of fogd run (KiB)\n");
    println!("| burst | before | peak | 30 s after it was handled |");
    println!("|---|---|---|---|");
    tokio::time::sleep(Duration::from_secs(10)).await;
    let before = resident_kib(pid);
    for _ in 0..15 {
        sender.publish("big", "67108864", 0).await;
    }
    let peak = peak_kib(pid, Duration::from_secs(5)).await;
    tokio::time::sleep(Duration::from_secs(25)).await;
    println!(
        "| 15 results of 64 MiB | {before} | {peak} | {} |",
        resident_kib(pid)
    );

    let before = resident_kib(pid);
    for _ in 0..65_536 {
        sender.publish("busy", "1", 0).await;
    }
    let mut peak = resident_kib(pid);
    let mut deepest = 0;
    let flood = Instant::now();
    loop {
        let depth = queue_depth();
        deepest = deepest.max(depth);
        if depth == 0 && flood.elapsed() > Duration::from_secs(2) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        peak = peak.max(resident_kib(pid));
    }
    tokio::time::sleep(Duration::from_secs(30)).await;
    println!(
        "| 65,536 QoS 0 messages of 1 ms each (queue reached {deepest}) | {before} | {peak} | {} |",
        resident_kib(pid)
    );
    let (status, _) = daemon.terminate();
    assert!(status.success(), "fogd exited with {status}");
}
