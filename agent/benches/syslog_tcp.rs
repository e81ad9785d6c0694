//! Syslog over TCP into a function (`echo`), against rsyslog's `imtcp` writing to a file on
//! the same stream. Each message counts as handled when the function has finished with it
//! (for rsyslog: when its line is in the file). Needs rsyslog and the built `echo` component.
//!
//!     cargo bench -p fogd --bench syslog_tcp [-- SECONDS]
//!
//! Prints one JSON object per measurement: a burst sent as fast as one connection can, and a
//! paced rate held for SECONDS (default 30).

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::json;

mod common;
use common::{handled_total, report, wait_handled};

const BURST: usize = 200_000;
const RATE: u64 = 50_000;

fn main() -> anyhow::Result<()> {
    let seconds: u64 = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(30);
    let dir = tempfile::tempdir()?;
    let burst = stream(BURST);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let agent = common::start_echo_agent(
            dir.path(),
            "[syslog]\ntcp = [\"127.0.0.1:0\"]",
            "syslog = {}",
        )
        .await?;
        let target = agent.syslog_addresses[0];
        let metrics = &agent.metrics;

        let before = handled_total(metrics);
        let started = Instant::now();
        send(target, burst.clone()).await?;
        let (handled, last) = wait_handled(metrics, before, BURST as u64).await;
        report(
            "fogd burst",
            BURST as u64,
            handled,
            (last - started).as_secs_f64(),
        );

        let before = handled_total(metrics);
        let (sent, sending) = paced(target, RATE, seconds).await?;
        let (handled, _) = wait_handled(metrics, before, sent).await;
        println!(
            "{}",
            json!({"measurement": "fogd sustained", "rate_per_s": RATE, "seconds": seconds,
                   "sending_seconds": sending,
                   "sent": sent, "handled": handled, "lost": sent.saturating_sub(handled),
                   "truncated": metrics.input_truncated_count("syslog"),
                   "dropped_queue_full": metrics.function("echo").dropped_count("queue_full")})
        );
        agent.shutdown().await;
        anyhow::Ok(())
    })?;
    let (handled, seconds) = rsyslog(dir.path(), &burst)?;
    report(
        "rsyslog imtcp to file burst",
        BURST as u64,
        handled,
        seconds,
    );
    Ok(())
}

/// `count` octet-counted RFC 5424 messages as one byte stream.
fn stream(count: usize) -> Vec<u8> {
    (0..count)
        .flat_map(|i| {
            let line = format!(
                "<38>1 2026-12-01T22:14:15.{:03}Z edge-gw sshd {} - [origin@32473 ip=\"192.0.2.{}\"] Failed password for user{} port {}",
                i % 1000,
                4000 + i % 1000,
                i % 250,
                i % 97,
                i
            );
            format!("{} {line}", line.len()).into_bytes()
        })
        .collect()
}

async fn send(target: SocketAddr, bytes: Vec<u8>) -> anyhow::Result<()> {
    tokio::task::spawn_blocking(move || {
        let mut connection = TcpStream::connect(target)?;
        connection.write_all(&bytes)?;
        anyhow::Ok(())
    })
    .await?
}

/// Sends at `rate` per second for `seconds` over one connection, in batches every 10 ms;
/// returns how many, and the seconds the sending took (more than `seconds` when the
/// receiver held the sender back).
async fn paced(target: SocketAddr, rate: u64, seconds: u64) -> anyhow::Result<(u64, f64)> {
    let batch = stream((rate / 100) as usize);
    let per_batch = rate / 100;
    tokio::task::spawn_blocking(move || {
        let mut connection = TcpStream::connect(target)?;
        let started = Instant::now();
        let mut sent = 0;
        for tick in 0..seconds * 100 {
            let due = started + Duration::from_millis(tick * 10);
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
            connection.write_all(&batch)?;
            sent += per_batch;
        }
        anyhow::Ok((sent, started.elapsed().as_secs_f64()))
    })
    .await?
}

/// rsyslogd with `imtcp` on a free port writing every message to a file; returns messages
/// written and the seconds from the first send until the last line.
fn rsyslog(dir: &Path, stream: &[u8]) -> anyhow::Result<(u64, f64)> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let out = dir.join("rsyslog.out");
    let conf = dir.join("rsyslog.conf");
    std::fs::write(
        &conf,
        format!(
            "global(workDirectory=\"{work}\")\nmodule(load=\"imtcp\")\ninput(type=\"imtcp\" address=\"127.0.0.1\" port=\"{port}\")\naction(type=\"omfile\" file=\"{out}\")\n",
            work = dir.display(),
            out = out.display()
        ),
    )?;
    let mut daemon = Command::new("rsyslogd")
        .args(["-n", "-f"])
        .arg(&conf)
        .arg("-i")
        .arg(dir.join("rsyslogd.pid"))
        .spawn()?;
    let lines = || {
        std::fs::read(&out)
            .map(|t| t.iter().filter(|&&b| b == b'\n').count() as u64)
            .unwrap_or(0)
    };
    let ready = Instant::now();
    let mut connection = loop {
        match TcpStream::connect(("127.0.0.1", port)) {
            Ok(connection) => break connection,
            Err(error) if ready.elapsed() > Duration::from_secs(10) => return Err(error.into()),
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    };
    let started = Instant::now();
    connection.write_all(stream)?;
    let (last, last_change) = common::wait_counted(lines, BURST as u64, Duration::from_millis(20));
    let _ = daemon.kill();
    let _ = daemon.wait();
    Ok((last, (last_change - started).as_secs_f64()))
}
