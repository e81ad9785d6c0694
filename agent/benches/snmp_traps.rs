//! SNMP traps received, decoded and dispatched to a function (`echo`), against snmptrapd
//! with a `traphandle` program on the same trap stream. Needs net-snmp (`snmptrap`,
//! `snmptrapd`) and the built `echo` component.
//!
//!     cargo bench -p fogd --bench snmp_traps [-- SECONDS]
//!
//! Prints one JSON object per measurement.

use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use fogd::agent::Agent;
use fogd::telemetry::Metrics;

mod common;
use common::{handled_total, report, wait_handled};
use serde_json::json;

const COMMUNITY: &str = "bench";
const AUTH_PASSWORD: &str = "benchauthpass";
const PRIV_PASSWORD: &str = "benchprivpass";

fn main() -> anyhow::Result<()> {
    let sustained_seconds: u64 = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(30);
    let dir = tempfile::tempdir()?;
    let v2c = capture(dir.path(), &["-v", "2c", "-c", COMMUNITY])?;
    let v3 = capture(
        dir.path(),
        &[
            "-v",
            "3",
            "-u",
            "bench",
            "-l",
            "authPriv",
            "-a",
            "SHA",
            "-A",
            AUTH_PASSWORD,
            "-x",
            "AES",
            "-X",
            PRIV_PASSWORD,
        ],
    )?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let agent = start_agent(dir.path()).await?;
        let target = agent.snmp_address.expect("receiver");
        let metrics = &agent.metrics;

        let burst = 200_000;
        let (handled, seconds) = blast(target, &v2c, burst, metrics).await;
        report("fogd v2c burst", burst, handled, seconds);

        let rate = 10_000;
        let before = handled_total(metrics);
        let sent = paced(target, &v2c, rate, sustained_seconds).await;
        let (handled, _) = wait_handled(metrics, before, sent).await;
        let lost = sent.saturating_sub(handled);
        println!(
            "{}",
            json!({"measurement": "fogd v2c sustained", "rate_per_s": rate,
                   "seconds": sustained_seconds, "sent": sent, "handled": handled, "lost": lost})
        );

        let burst = 50_000;
        let (handled, seconds) = blast(target, &v3, burst, metrics).await;
        report("fogd v3 authPriv burst", burst, handled, seconds);
        agent.shutdown().await;
        anyhow::Ok(())
    })?;

    let burst = 5_000;
    let (handled, seconds) = snmptrapd(dir.path(), &v2c, burst)?;
    report("snmptrapd + traphandle v2c burst", burst, handled, seconds);
    Ok(())
}

/// One trap datagram as `snmptrap` sends it (linkDown with four varbinds).
fn capture(state: &Path, options: &[&str]) -> anyhow::Result<Vec<u8>> {
    let socket = UdpSocket::bind("127.0.0.1:0")?;
    socket.set_read_timeout(Some(Duration::from_secs(10)))?;
    let target = socket.local_addr()?.to_string();
    let status = Command::new("snmptrap")
        .env("MIBS", "")
        .env("SNMP_PERSISTENT_DIR", state)
        .env("SNMPCONFPATH", state)
        .args(options)
        .args([
            &target,
            "12345",
            "1.3.6.1.6.3.1.1.5.3",
            "1.3.6.1.2.1.2.2.1.1.2",
            "i",
            "2",
            "1.3.6.1.2.1.2.2.1.2.2",
            "s",
            "eth1",
            "1.3.6.1.2.1.2.2.1.7.2",
            "i",
            "1",
            "1.3.6.1.2.1.2.2.1.8.2",
            "i",
            "2",
        ])
        .status()?;
    anyhow::ensure!(status.success(), "snmptrap failed");
    let mut buffer = vec![0; 65_535];
    let (length, _) = socket.recv_from(&mut buffer)?;
    buffer.truncate(length);
    Ok(buffer)
}

async fn start_agent(dir: &Path) -> anyhow::Result<Agent> {
    std::fs::write(dir.join("auth"), AUTH_PASSWORD)?;
    std::fs::write(dir.join("privacy"), PRIV_PASSWORD)?;
    let receiver = format!(
        r#"
[snmp]
listen = "127.0.0.1:0"
receive_buffer_kib = 16384
communities = ["{COMMUNITY}"]
[[snmp.user]]
name = "bench"
auth = "SHA"
auth_password_file = "auth"
privacy = "AES"
privacy_password_file = "privacy"
"#
    );
    common::start_echo_agent(dir, &receiver, "snmp_trap = {}").await
}

/// Sends `count` copies as fast as one socket can and returns how many were handled and the
/// seconds from the first send to the last handled event.
async fn blast(target: SocketAddr, datagram: &[u8], count: u64, metrics: &Metrics) -> (u64, f64) {
    let before = handled_total(metrics);
    let socket = UdpSocket::bind("127.0.0.1:0").expect("socket");
    let started = Instant::now();
    let datagram = datagram.to_vec();
    let sender = tokio::task::spawn_blocking(move || {
        for _ in 0..count {
            let _ = socket.send_to(&datagram, target);
        }
    });
    let _ = sender.await;
    let (handled, last) = wait_handled(metrics, before, count).await;
    (handled, (last - started).as_secs_f64())
}

/// Sends at `rate` per second for `seconds`, in batches every 10 ms; returns how many.
async fn paced(target: SocketAddr, datagram: &[u8], rate: u64, seconds: u64) -> u64 {
    let socket = UdpSocket::bind("127.0.0.1:0").expect("socket");
    let datagram = datagram.to_vec();
    tokio::task::spawn_blocking(move || {
        let per_tick = rate / 100;
        let started = Instant::now();
        let mut sent = 0;
        for tick in 0..seconds * 100 {
            let due = started + Duration::from_millis(tick * 10);
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
            for _ in 0..per_tick {
                let _ = socket.send_to(&datagram, target);
                sent += 1;
            }
        }
        sent
    })
    .await
    .unwrap_or(0)
}

/// snmptrapd as usually deployed: `traphandle` runs a program per trap (here one that
/// appends a line to a file). Returns traps handled and the seconds until the last one.
fn snmptrapd(dir: &Path, datagram: &[u8], count: u64) -> anyhow::Result<(u64, f64)> {
    let port = UdpSocket::bind("127.0.0.1:0")?.local_addr()?.port();
    let out = dir.join("handled");
    let handler = dir.join("handler.sh");
    std::fs::write(
        &handler,
        format!("#!/bin/sh\necho x >> {}\n", out.display()),
    )?;
    Command::new("chmod").arg("+x").arg(&handler).status()?;
    let conf = dir.join("snmptrapd.conf");
    std::fs::write(
        &conf,
        format!(
            "authCommunity execute {COMMUNITY}\ntraphandle default {}\ndisableAuthorization no\n",
            handler.display()
        ),
    )?;
    let mut daemon = Command::new("/usr/sbin/snmptrapd")
        .env("MIBS", "")
        .env("SNMP_PERSISTENT_DIR", dir)
        .args(["-f", "-C", "-Lf", "/dev/null", "-c"])
        .arg(&conf)
        .arg(format!("udp:127.0.0.1:{port}"))
        .spawn()?;
    let lines = || {
        std::fs::read_to_string(&out)
            .map(|t| t.lines().count() as u64)
            .unwrap_or(0)
    };
    let socket = UdpSocket::bind("127.0.0.1:0")?;
    // Wait until it handles traps at all before measuring.
    let ready = Instant::now();
    while lines() == 0 && ready.elapsed() < Duration::from_secs(10) {
        socket.send_to(datagram, ("127.0.0.1", port))?;
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(500));
    let before = lines();
    let started = Instant::now();
    for _ in 0..count {
        socket.send_to(datagram, ("127.0.0.1", port))?;
    }
    let (last, last_change) =
        common::wait_counted(lines, before + count, Duration::from_millis(50));
    let _ = daemon.kill();
    let _ = daemon.wait();
    Ok((last - before, (last_change - started).as_secs_f64()))
}
