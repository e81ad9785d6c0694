//! What the benches that drive an in-process agent share: the `echo` component, and waiting
//! until its events are handled.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use fogd::agent::Agent;
use fogd::config;
use fogd::telemetry::Metrics;
use serde_json::json;

/// The built `echo` component.
fn echo_component() -> anyhow::Result<PathBuf> {
    let echo = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../wasi-functions/target/wasm32-wasip2/release/echo.wasm");
    anyhow::ensure!(
        echo.exists(),
        "build the functions first: wasi-functions/build.sh"
    );
    Ok(echo)
}

/// Starts an agent in `dir` with `receiver` (TOML tables) and the `echo` function on
/// `trigger` (one inline table) with room for a burst in its queue.
pub async fn start_echo_agent(dir: &Path, receiver: &str, trigger: &str) -> anyhow::Result<Agent> {
    let echo = echo_component()?;
    let text = format!(
        r#"
state_dir = "state"
[metrics]
[log]
level = "warn"
{receiver}
[[function]]
name = "echo"
component = "{}"
limits = {{ queue = 65536, concurrency = 2 }}
[[function.trigger]]
{trigger}
"#,
        echo.display()
    );
    let config =
        config::parse_str(&text, "bench.toml".as_ref(), dir).map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(Agent::start(config, Default::default()).await?)
}

/// Prints one burst's measurement.
pub fn report(what: &str, sent: u64, handled: u64, seconds: f64) {
    println!(
        "{}",
        json!({"measurement": what, "sent": sent, "handled": handled,
               "lost": sent.saturating_sub(handled), "seconds": seconds,
               "handled_per_s": (handled as f64 / seconds).round()})
    );
}

/// Events the `echo` function has finished.
pub fn handled_total(metrics: &Metrics) -> u64 {
    metrics.function("echo").invocations.get()
}

/// Waits until `expected` events more than `before` were handled, or nothing moved for 2 s;
/// returns how many were and when the last one was seen.
pub async fn wait_handled(metrics: &Metrics, before: u64, expected: u64) -> (u64, Instant) {
    let mut last = handled_total(metrics);
    let mut last_change = Instant::now();
    while last - before < expected && last_change.elapsed() < Duration::from_secs(2) {
        tokio::time::sleep(Duration::from_millis(5)).await;
        let now = handled_total(metrics);
        if now != last {
            last = now;
            last_change = Instant::now();
        }
    }
    (last - before, last_change)
}

/// Waits until `count()` reaches `expected`, or has not moved for 3 s, looking every
/// `every`; returns the last count and when it last changed. For baselines that only show
/// progress as lines in a file.
pub fn wait_counted(
    mut count: impl FnMut() -> u64,
    expected: u64,
    every: Duration,
) -> (u64, Instant) {
    let mut last = count();
    let mut last_change = Instant::now();
    while last < expected && last_change.elapsed() < Duration::from_secs(3) {
        std::thread::sleep(every);
        let now = count();
        if now != last {
            last = now;
            last_change = Instant::now();
        }
    }
    (last, last_change)
}
