//! What a reload costs, in place and as a restart, on an agent with an SNMP receiver and a
//! real Mosquitto: the time from the new configuration to the new version serving, and what
//! a steady stream of traps (1,000/s) and QoS 0 messages (1,000/s) loses across reloads.
//!
//! In place: the reload changes one function's settings. Restart: it adds or removes a third
//! function, which needs the agent drained and started again.
//!
//!   cargo bench -p fogd-tests --bench reconfigure -- [--reloads N]

use std::time::{Duration, Instant};

use fogd::bench::percentile;
use fogd::config::{self, Config};
use fogd::supervisor::Supervisor;
use fogd_tests::agent::{broker, connected};
use fogd_tests::mosquitto::{Mosquitto, free_port};
use fogd_tests::mqtt_client::TestClient;
use fogd_tests::streams::{
    invocations, paced_messages, paced_traps, trap_and_message_functions, v2c_trap,
};
use fogd_tests::{components, wait_until};
use serde_json::json;

/// Traps and messages each stream sends while two reloads happen.
const STREAM: u64 = 8_000;

struct Site {
    dir: tempfile::TempDir,
    broker: String,
    snmp_port: u16,
}

impl Site {
    /// `generation` is the trap function's setting; `spare` adds a third function.
    fn config(&self, generation: u32, spare: bool) -> Config {
        let echo = components().echo.display().to_string();
        let spare = if spare {
            format!(
                "[[function]]\nname = \"spare\"\ncomponent = \"{echo}\"\n[[function.trigger]]\ntimer = {{ every = \"1s\" }}\n"
            )
        } else {
            String::new()
        };
        let text = format!(
            r#"
state_dir = "state"
[metrics]
{broker}
{functions}
{spare}"#,
            broker = self.broker,
            functions =
                trap_and_message_functions(&format!("127.0.0.1:{}", self.snmp_port), generation),
        );
        config::parse_str(&text, "fogd.toml".as_ref(), self.dir.path())
            .unwrap_or_else(|errors| panic!("{errors}"))
    }
}

/// Reloads `reloads` times, in place or as restarts; returns the supervisor and each
/// reload's time in microseconds.
async fn timed_reloads(
    site: &Site,
    mut supervisor: Supervisor,
    reloads: u32,
    restart: bool,
) -> (Supervisor, Vec<u64>) {
    let mut times = Vec::new();
    for index in 0..reloads {
        let config = site.config(index + 2, restart && index % 2 == 0);
        let started = Instant::now();
        supervisor = supervisor.reload(config).await.unwrap();
        times.push(started.elapsed().as_micros() as u64);
    }
    (supervisor, times)
}

/// Streams traps and messages through two reloads; returns the supervisor and how many of
/// each ran.
async fn streamed(
    site: &Site,
    mosquitto: &Mosquitto,
    mut supervisor: Supervisor,
    restart: bool,
) -> (Supervisor, u64, u64) {
    let trap = v2c_trap(site.dir.path());
    let traps_before = invocations(&supervisor, "traps");
    let messages_before = invocations(&supervisor, "messages");
    let publisher = TestClient::connect(mosquitto.port, "reconfigure-load", &[]).await;
    let target = format!("127.0.0.1:{}", site.snmp_port).parse().unwrap();
    let traps = tokio::spawn(paced_traps(target, trap, STREAM));
    let messages = tokio::spawn(paced_messages(publisher, "load/in", STREAM));
    for (step, share) in [(0, 3), (1, 2)] {
        // A third and two thirds of the way through the stream.
        tokio::time::sleep(Duration::from_millis(STREAM / share)).await;
        let config = site.config(100 + step, restart && step == 0);
        supervisor = supervisor.reload(config).await.unwrap();
    }
    traps.await.unwrap();
    messages.await.unwrap();
    // Whatever was still queued runs; nothing else is coming: done once the counts have
    // not moved for half a second.
    let mut settled = ((0, 0), Instant::now());
    wait_until("the counts settle", || {
        let now = (
            invocations(&supervisor, "traps") - traps_before,
            invocations(&supervisor, "messages") - messages_before,
        );
        if now != settled.0 {
            settled = (now, Instant::now());
        }
        settled.1.elapsed() >= Duration::from_millis(500)
    })
    .await;
    let settled = settled.0;
    (supervisor, settled.0, settled.1)
}

fn report(what: &str, times: &mut [u64]) {
    times.sort_unstable();
    println!(
        "{}",
        json!({
            "measurement": what,
            "reloads": times.len(),
            "p50_ms": percentile(times, 50.0) as f64 / 1000.0,
            "max_ms": times.last().copied().unwrap_or(0) as f64 / 1000.0,
        })
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let reloads: u32 = std::env::args()
        .skip_while(|arg| arg != "--reloads")
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(20);
    let mosquitto = Mosquitto::start();
    let site = Site {
        dir: tempfile::tempdir().unwrap(),
        broker: broker("local", &mosquitto.address(), ""),
        snmp_port: free_port(),
    };
    let supervisor = Supervisor::start(site.config(1, false)).await.unwrap();
    connected(supervisor.agent(), "local").await;

    let (supervisor, mut in_place) = timed_reloads(&site, supervisor, reloads, false).await;
    report("reload in place", &mut in_place);
    let (supervisor, mut restarts) = timed_reloads(&site, supervisor, reloads, true).await;
    report("reload as a restart", &mut restarts);
    connected(supervisor.agent(), "local").await;

    let mut supervisor = supervisor;
    for (restart, what) in [
        (false, "stream through two reloads in place"),
        (true, "stream through two restarts"),
    ] {
        connected(supervisor.agent(), "local").await;
        let (after, traps, messages) = streamed(&site, &mosquitto, supervisor, restart).await;
        supervisor = after;
        println!(
            "{}",
            json!({"measurement": what, "sent": STREAM,
                   "traps_lost": STREAM - traps, "messages_lost": STREAM - messages})
        );
    }
    supervisor.stop("the bench ended").await;
}
