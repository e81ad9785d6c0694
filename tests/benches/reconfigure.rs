//! What a reload costs, in place and as a restart, on an agent with an SNMP receiver and a
//! real Mosquitto: the time from the new configuration to the new version serving, and what
//! a steady stream of traps (1,000/s) and QoS 0 messages (1,000/s) loses across reloads.
//!
//! In place, a reload changes one function's settings, or adds or removes a third function.
//! As a restart (what every reload used to be), it changes a setting outside the functions
//! (`state.sweep_every`), which needs the agent drained and started again.
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

/// What a reload changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Change {
    /// One function's settings: in place.
    Setting,
    /// A third function comes or goes: in place.
    Function,
    /// A setting outside the functions: a restart.
    Restart,
}

impl Change {
    fn describe(self) -> &'static str {
        match self {
            Change::Setting => "in place, a function's setting",
            Change::Function => "in place, a function added or removed",
            Change::Restart => "as a restart",
        }
    }
}

struct Site {
    dir: tempfile::TempDir,
    broker: String,
    snmp_port: u16,
}

impl Site {
    /// `generation` is the trap function's setting; the `step`th reload of `change` (from 0)
    /// adds a third function or changes the sweep period on even steps, and undoes it on odd
    /// ones.
    fn config(&self, generation: u32, change: Change, step: u32) -> Config {
        let echo = components().echo.display().to_string();
        let even = step.is_multiple_of(2);
        let spare = if change == Change::Function && even {
            format!(
                r#"
                    [[function]]
                    name = "spare"
                    component = "{echo}"
                    [[function.trigger]]
                    timer = {{ every = "1s" }}
                "#
            )
        } else {
            String::new()
        };
        let sweep_every = if change == Change::Restart && even {
            "61s"
        } else {
            "60s"
        };
        let text = format!(
            r#"
state_dir = "state"
[state]
sweep_every = "{sweep_every}"
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

/// Reloads `reloads` times with `change`; returns the supervisor and each reload's time in
/// microseconds.
async fn timed_reloads(
    site: &Site,
    mut supervisor: Supervisor,
    reloads: u32,
    change: Change,
) -> (Supervisor, Vec<u64>) {
    let mut times = Vec::new();
    for index in 0..reloads {
        let config = site.config(index + 2, change, index);
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
    change: Change,
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
        let config = site.config(100 + step, change, step);
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
    let mut supervisor = Supervisor::start(site.config(1, Change::Setting, 1))
        .await
        .unwrap();
    connected(supervisor.agent(), "local").await;

    let changes = [Change::Setting, Change::Function, Change::Restart];
    for change in changes {
        let (after, mut times) = timed_reloads(&site, supervisor, reloads, change).await;
        supervisor = after;
        report(&format!("reload {}", change.describe()), &mut times);
    }
    for change in changes {
        connected(supervisor.agent(), "local").await;
        let (after, traps, messages) = streamed(&site, &mosquitto, supervisor, change).await;
        supervisor = after;
        println!(
            "{}",
            json!({"measurement": format!("stream through two reloads {}", change.describe()),
                   "sent": STREAM, "traps_lost": STREAM - traps,
                   "messages_lost": STREAM - messages})
        );
    }
    supervisor.stop("the bench ended").await;
}
