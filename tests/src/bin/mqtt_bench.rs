//! `fogd-mqtt-bench`: message in → function → result out through a real broker, against the
//! broker alone, in one run. It starts `fogd run` (this same binary) as a child process with
//! the `echo` function on `bench/in` → `bench/out`, so the daemon is measured as deployed.

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::{Buf, BufMut, Bytes, BytesMut};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::Packet;
use rumqttc::v5::{AsyncClient, Event, MqttOptions};
use serde::Serialize;

use clap::Parser;
use fogd::bench::Summary;

#[derive(Parser)]
#[command(
    name = "fogd-mqtt-bench",
    about = "Message in, function, result out through a real broker, against the broker alone",
    after_help = "Examples (a local Mosquitto on 1883):\n  cargo run --release -p fogd-tests --bin fogd-mqtt-bench -- --broker 127.0.0.1:1883 --rate 5000 --seconds 10 --burst 50000 --json\n  cargo run --release -p fogd-tests --bin fogd-mqtt-bench -- --broker 127.0.0.1:1883 --sustain-from 10000 --step 2500 --json"
)]
struct MqttBenchArgs {
    /// The broker, `host:port` (plain TCP, MQTT v5).
    #[arg(long)]
    broker: String,
    /// The fogd binary to run; defaults to this workspace's release build.
    #[arg(long, value_name = "FILE")]
    fogd: Option<std::path::PathBuf>,
    /// The function to drive; defaults to the shipped `echo`.
    #[arg(long, value_name = "FILE.wasm")]
    component: Option<std::path::PathBuf>,
    /// Messages per second in the latency phase.
    #[arg(long, default_value_t = 5_000)]
    rate: u32,
    /// Length of the latency phase.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Messages sent as fast as possible (QoS 1) in the throughput phase.
    #[arg(long, default_value_t = 50_000)]
    burst: u32,
    /// Payload size in bytes (at least 16).
    #[arg(long, default_value_t = 64)]
    payload_bytes: usize,
    /// Also find the highest rate each path sustains: fixed rates from this one up, in
    /// steps of `--step`, each for `--step-seconds`, until a step loses a message or its p99
    /// latency exceeds `--max-p99-ms` (results no longer keep up with the messages).
    #[arg(long, value_name = "MSG_PER_S")]
    sustain_from: Option<u32>,
    /// Rate increase between the steps of `--sustain-from`.
    #[arg(long, default_value_t = 2_500, value_name = "MSG_PER_S")]
    step: u32,
    /// Length of each step of `--sustain-from`.
    #[arg(long, default_value_t = 10)]
    step_seconds: u64,
    /// Highest rate `--sustain-from` tries.
    #[arg(long, default_value_t = 40_000, value_name = "MSG_PER_S")]
    max_rate: u32,
    /// p99 latency above which a step of `--sustain-from` counts as not kept up.
    #[arg(long, default_value_t = 100)]
    max_p99_ms: u64,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

/// One path (broker alone, or through fogd) measured both ways.
#[derive(Debug, Serialize)]
struct PathReport {
    /// Latency at the fixed rate: p50_us, p99_us, mean_us, per_second (achieved), iterations.
    latency: Summary,
    lost_at_rate: u64,
    /// The burst: per_second is messages in and results out per second.
    burst_per_second: f64,
    lost_in_burst: u64,
    /// CPU time fogd spent per message at the fixed rate and in the burst, in microseconds
    /// (user + system, all threads); absent for the broker alone.
    #[serde(skip_serializing_if = "Option::is_none")]
    cpu_us_per_message: Option<CpuPerMessage>,
    /// The rate ladder of `--sustain-from`, if asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    sustained: Option<Sustained>,
}

/// The highest fixed rate a path kept up with, and every step tried on the way.
#[derive(Debug, Serialize)]
struct Sustained {
    /// `None` when even the first step was not kept up.
    highest_per_second: Option<u32>,
    ended_by: ClimbEnd,
    steps: Vec<SustainStep>,
}

/// Why the climb stopped; only `not_kept_up` says where the path's limit is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
enum ClimbEnd {
    /// The last step lost a message or its p99 was over the bound.
    NotKeptUp,
    /// The bench could not send as fast as the next step asked: the path's limit is higher.
    SenderLimited,
    /// Every step up to `--max-rate` was kept up: the path's limit is higher.
    MaxRate,
}

#[derive(Debug, Serialize)]
struct SustainStep {
    rate: u32,
    /// The rate the bench really sent at.
    sent_per_second: f64,
    p50_us: f64,
    p99_us: f64,
    lost: u64,
    kept_up: bool,
}

#[derive(Debug, Serialize)]
struct CpuPerMessage {
    at_rate: f64,
    burst: f64,
}

#[derive(Debug, Serialize)]
struct Report {
    rate: u32,
    seconds: u64,
    burst: u32,
    broker_alone: PathReport,
    through_fogd: PathReport,
    /// fogd's p50 and p99 latency divided by the broker's.
    p50_ratio: f64,
    p99_ratio: f64,
    /// fogd's burst throughput as a share of the broker's.
    throughput_share: f64,
    /// fogd's highest sustained rate as a share of the broker's, with `--sustain-from`.
    #[serde(skip_serializing_if = "Option::is_none")]
    sustained_share: Option<f64>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = MqttBenchArgs::parse();
    let component = match &args.component {
        Some(path) => path.clone(),
        None => fogd_tests::components().echo.clone(),
    };
    let fogd = match &args.fogd {
        Some(path) => path.clone(),
        None => fogd_tests::fogd_bin(),
    };
    // The child resolves paths against its config file's directory.
    let component = std::fs::canonicalize(&component)
        .with_context(|| format!("cannot find {}", component.display()))?;
    if args.payload_bytes < 16 {
        bail!("--payload-bytes must be at least 16");
    }
    let (host, port) = args
        .broker
        .rsplit_once(':')
        .and_then(|(host, port)| Some((host.to_owned(), port.parse::<u16>().ok()?)))
        .context("--broker must be host:port")?;
    let scratch = tempfile::tempdir()?;
    let mut daemon = spawn_daemon(&fogd, scratch.path(), &args.broker, &component)?;
    let result = measure(&args, &host, port, daemon.id()).await;
    let exited_early = daemon.try_wait()?;
    // SAFETY: plain kill(2) on our own child's pid.
    unsafe { libc::kill(daemon.id() as i32, libc::SIGTERM) };
    let _ = daemon.wait();
    if let Some(status) = exited_early {
        // Whatever answered was not this bench's daemon.
        bail!("fogd exited during the bench ({status}); its log is above");
    }
    let report = result?;
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print_report(&report);
    }
    Ok(())
}

fn spawn_daemon(fogd: &Path, dir: &Path, broker: &str, component: &Path) -> anyhow::Result<Child> {
    let config = dir.join("fogd.toml");
    std::fs::write(
        &config,
        format!(
            r#"
                state_dir = "state"
                [log]
                level = "warn"
                [metrics]
                [[broker]]
                name = "bench"
                address = "{broker}"
                client_id = "fogd-bench-{pid}"
                inflight = 1000
                session_expiry = "0ms"

                [[function]]
                name = "echo"
                component = "{component}"
                output = "bench/out"
                limits = {{ concurrency = 2, queue = 4096 }}
                [[function.trigger]]
                mqtt = {{ topic = "bench/in", qos = 1 }}
            "#,
            pid = std::process::id(),
            component = component.display()
        ),
    )?;
    let mut command = Command::new(fogd);
    command
        .args(["run", "--config"])
        .arg(&config)
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    // A daemon left behind by a killed bench would answer the next run's messages as well,
    // doubling the work measured. The signal follows the spawning thread: the bench's main
    // thread, which `block_on` runs this on. A bench killed before the child asked for the
    // signal never sends it, so the child then gives up instead of starting.
    let bench = std::process::id() as libc::pid_t;
    // SAFETY: prctl(2) and getppid(2) are async-signal-safe and change only the new child;
    // nothing here allocates.
    unsafe {
        command.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) == -1 {
                return Err(std::io::Error::last_os_error());
            }
            if libc::getppid() != bench {
                return Err(std::io::Error::from_raw_os_error(libc::ESRCH));
            }
            Ok(())
        });
    }
    command.spawn().context("cannot start fogd")
}

/// Receive-side state: when each message arrived relative to when it was sent.
#[derive(Default)]
struct Arrivals {
    latencies_ns: Vec<u64>,
    received: u64,
}

struct Bench {
    started: Instant,
    publisher: AsyncClient,
    arrivals: Arc<Mutex<Arrivals>>,
    payload_bytes: usize,
}

fn connect(host: &str, port: u16, id: &str) -> (AsyncClient, rumqttc::v5::EventLoop) {
    let mut options = MqttOptions::new(id, host, port);
    options
        .set_keep_alive(Duration::from_secs(30))
        .set_outgoing_inflight_upper_limit(1000)
        .set_max_packet_size(Some(1024 * 1024));
    AsyncClient::new(options, 100_000)
}

async fn measure(
    args: &MqttBenchArgs,
    host: &str,
    port: u16,
    daemon: u32,
) -> anyhow::Result<Report> {
    let started = Instant::now();
    let arrivals = Arc::new(Mutex::new(Arrivals::default()));
    let id = std::process::id();
    let (subscriber, mut subscriber_loop) = connect(host, port, &format!("bench-sub-{id}"));
    let (publisher, mut publisher_loop) = connect(host, port, &format!("bench-pub-{id}"));
    let (subscribed_tx, mut subscribed) = tokio::sync::watch::channel(0u32);
    {
        let arrivals = arrivals.clone();
        let subscriber = subscriber.clone();
        tokio::spawn(async move {
            loop {
                match subscriber_loop.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        for topic in ["bench/out", "bench/direct"] {
                            let _ = subscriber.subscribe(topic, QoS::AtLeastOnce).await;
                        }
                    }
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        subscribed_tx.send_modify(|n| *n += 1)
                    }
                    Ok(Event::Incoming(Packet::Publish(publish))) => {
                        let now = started.elapsed().as_nanos() as u64;
                        let mut payload = publish.payload;
                        if payload.len() >= 16 {
                            let _sequence = payload.get_u64();
                            let sent = payload.get_u64();
                            if let Ok(mut arrivals) = arrivals.lock() {
                                arrivals.latencies_ns.push(now.saturating_sub(sent));
                                arrivals.received += 1;
                            }
                        }
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        });
    }
    tokio::spawn(async move {
        loop {
            if publisher_loop.poll().await.is_err() {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    });
    tokio::time::timeout(Duration::from_secs(20), subscribed.wait_for(|n| *n >= 2))
        .await
        .context("the broker did not confirm the bench subscriptions")??;

    let bench = Bench {
        started,
        publisher,
        arrivals,
        payload_bytes: args.payload_bytes,
    };
    bench.wait_for_fogd().await?;
    let broker_alone = bench.path("bench/direct", args, None).await?;
    let through_fogd = bench.path("bench/in", args, Some(daemon)).await?;
    Ok(Report {
        rate: args.rate,
        seconds: args.seconds,
        burst: args.burst,
        p50_ratio: through_fogd.latency.p50_us / broker_alone.latency.p50_us,
        p99_ratio: through_fogd.latency.p99_us / broker_alone.latency.p99_us,
        throughput_share: through_fogd.burst_per_second / broker_alone.burst_per_second,
        sustained_share: sustained_share(&broker_alone, &through_fogd),
        broker_alone,
        through_fogd,
    })
}

impl Bench {
    fn payload(&self, sequence: u64) -> Bytes {
        let mut payload = BytesMut::with_capacity(self.payload_bytes);
        payload.put_u64(sequence);
        payload.put_u64(self.started.elapsed().as_nanos() as u64);
        payload.resize(self.payload_bytes, b'x');
        payload.freeze()
    }

    fn reset(&self) -> Arrivals {
        self.arrivals
            .lock()
            .map(|mut a| std::mem::take(&mut *a))
            .unwrap_or_default()
    }

    fn received(&self) -> u64 {
        self.arrivals.lock().map(|a| a.received).unwrap_or(0)
    }

    /// Sends until fogd answers once: its subscription is in place and its function warm.
    async fn wait_for_fogd(&self) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.received() == 0 {
            if Instant::now() > deadline {
                bail!("fogd did not answer on bench/out within 30 s");
            }
            self.publisher
                .publish("bench/in", QoS::AtLeastOnce, false, self.payload(0))
                .await?;
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        // Let stragglers of the warm-up arrive, then start clean.
        tokio::time::sleep(Duration::from_millis(500)).await;
        self.reset();
        Ok(())
    }

    /// Waits until `expected` messages arrived or nothing arrived for two seconds.
    async fn settle(&self, expected: u64) {
        let mut last = (self.received(), Instant::now());
        while self.received() < expected {
            tokio::time::sleep(Duration::from_millis(20)).await;
            let now = self.received();
            if now != last.0 {
                last = (now, Instant::now());
            } else if last.1.elapsed() > Duration::from_secs(2) {
                return;
            }
        }
    }

    /// Measures one path; `daemon` is the process whose CPU time it costs, if any.
    async fn path(
        &self,
        topic: &str,
        args: &MqttBenchArgs,
        daemon: Option<u32>,
    ) -> anyhow::Result<PathReport> {
        let cpu = || daemon.and_then(cpu_time);
        let cpu_before_rate = cpu();
        let (latency, at_rate) = self.fixed_rate(topic, args.rate, args.seconds).await?;

        // Burst.
        let cpu_before_burst = cpu();
        let began = Instant::now();
        for sequence in 0..u64::from(args.burst) {
            self.publisher
                .publish(topic, QoS::AtLeastOnce, false, self.payload(sequence))
                .await?;
        }
        self.settle(u64::from(args.burst)).await;
        let elapsed = began.elapsed();
        let burst = self.reset();
        let per_message = |before: Option<Duration>, after: Option<Duration>, messages: u64| {
            Some((after? - before?).as_secs_f64() * 1e6 / messages.max(1) as f64)
        };
        let cpu_us_per_message = per_message(cpu_before_rate, cpu_before_burst, at_rate.received)
            .zip(per_message(cpu_before_burst, cpu(), burst.received))
            .map(|(at_rate, burst)| CpuPerMessage { at_rate, burst });
        Ok(PathReport {
            cpu_us_per_message,
            lost_at_rate: at_rate.lost(),
            latency,
            burst_per_second: burst.received as f64 / elapsed.as_secs_f64(),
            lost_in_burst: u64::from(args.burst).saturating_sub(burst.received),
            sustained: match args.sustain_from {
                Some(from) => Some(self.sustained(topic, from, args).await?),
                None => None,
            },
        })
    }

    /// Sends `rate` messages per second for `seconds` (paced per millisecond) and waits for
    /// them; returns their latency and how many were sent and arrived.
    async fn fixed_rate(
        &self,
        topic: &str,
        rate: u32,
        seconds: u64,
    ) -> anyhow::Result<(Summary, PhaseCounts)> {
        let total = u64::from(rate) * seconds;
        let began = Instant::now();
        let mut ticker = tokio::time::interval(Duration::from_millis(1));
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        let mut sent = 0u64;
        while sent < total {
            ticker.tick().await;
            let due = ((began.elapsed().as_secs_f64() * f64::from(rate)) as u64).min(total);
            while sent < due {
                self.publisher
                    .publish(topic, QoS::AtLeastOnce, false, self.payload(sent))
                    .await?;
                sent += 1;
            }
        }
        let sending = began.elapsed();
        self.settle(total).await;
        let mut arrivals = self.reset();
        let latency = Summary::from_latencies(&mut arrivals.latencies_ns, sending);
        Ok((
            latency,
            PhaseCounts {
                sent: total,
                received: arrivals.received,
                sending,
            },
        ))
    }

    /// Climbs from `from` in steps until one is not kept up with (see `--sustain-from`).
    async fn sustained(
        &self,
        topic: &str,
        from: u32,
        args: &MqttBenchArgs,
    ) -> anyhow::Result<Sustained> {
        let mut report = Sustained {
            highest_per_second: None,
            ended_by: ClimbEnd::MaxRate,
            steps: Vec::new(),
        };
        let max_p99_us = args.max_p99_ms as f64 * 1000.0;
        let mut rate = from.max(1);
        while rate <= args.max_rate {
            let (latency, counts) = self.fixed_rate(topic, rate, args.step_seconds).await?;
            let lost = counts.lost();
            let kept_up = lost == 0 && latency.p99_us <= max_p99_us;
            let sent_per_second = counts.sent as f64 / counts.sending.as_secs_f64().max(1e-9);
            report.steps.push(SustainStep {
                rate,
                sent_per_second,
                p50_us: latency.p50_us,
                p99_us: latency.p99_us,
                lost,
                kept_up,
            });
            if !kept_up {
                report.ended_by = ClimbEnd::NotKeptUp;
                break;
            }
            if sent_per_second < 0.95 * f64::from(rate) {
                report.ended_by = ClimbEnd::SenderLimited;
                break;
            }
            report.highest_per_second = Some(rate);
            match rate.checked_add(args.step.max(1)) {
                Some(next) => rate = next,
                None => break,
            }
        }
        Ok(report)
    }
}

/// Messages sent in a phase and results received for them.
struct PhaseCounts {
    sent: u64,
    received: u64,
    /// How long sending them took.
    sending: Duration,
}

impl PhaseCounts {
    fn lost(&self) -> u64 {
        self.sent.saturating_sub(self.received)
    }
}

fn sustained_share(broker_alone: &PathReport, through_fogd: &PathReport) -> Option<f64> {
    let highest = |path: &PathReport| path.sustained.as_ref()?.highest_per_second;
    Some(f64::from(highest(through_fogd)?) / f64::from(highest(broker_alone)?))
}

/// User + system CPU time of a process so far, from `/proc/<pid>/stat`.
fn cpu_time(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces:
    // state is field 3, utime 14, stime 15.
    let mut fields = stat.rsplit_once(')')?.1.split_whitespace().skip(11);
    let user: u64 = fields.next()?.parse().ok()?;
    let system: u64 = fields.next()?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let ticks_per_second = u64::try_from(unsafe { libc::sysconf(libc::_SC_CLK_TCK) }).ok()?;
    Some(Duration::from_secs_f64(
        (user + system) as f64 / ticks_per_second.max(1) as f64,
    ))
}

fn print_report(report: &Report) {
    println!(
        "MQTT round trip, {} msg/s for {} s, then a burst of {} (QoS 1)",
        report.rate, report.seconds, report.burst
    );
    println!(
        "{:<16} {:>9} {:>9} {:>9} {:>6} {:>12} {:>6}",
        "path", "p50 µs", "p99 µs", "mean µs", "lost", "burst msg/s", "lost"
    );
    for (name, path) in [
        ("broker alone", &report.broker_alone),
        ("through fogd", &report.through_fogd),
    ] {
        println!(
            "{:<16} {:>9.0} {:>9.0} {:>9.0} {:>6} {:>12.0} {:>6}",
            name,
            path.latency.p50_us,
            path.latency.p99_us,
            path.latency.mean_us,
            path.lost_at_rate,
            path.burst_per_second,
            path.lost_in_burst
        );
    }
    println!(
        "fogd / broker: p50 {:.2}x, p99 {:.2}x, throughput {:.0}%",
        report.p50_ratio,
        report.p99_ratio,
        report.throughput_share * 100.0
    );
    if let Some(cpu) = &report.through_fogd.cpu_us_per_message {
        println!(
            "fogd CPU per message: {:.1} µs at the fixed rate, {:.1} µs in the burst",
            cpu.at_rate, cpu.burst
        );
    }
    for (name, path) in [
        ("broker alone", &report.broker_alone),
        ("through fogd", &report.through_fogd),
    ] {
        let Some(sustained) = &path.sustained else {
            continue;
        };
        let steps: Vec<String> = sustained
            .steps
            .iter()
            .map(|step| {
                format!(
                    "{} msg/s: p99 {:.0} µs, lost {}{}",
                    step.rate,
                    step.p99_us,
                    step.lost,
                    if step.kept_up { "" } else { " (not kept up)" }
                )
            })
            .collect();
        let limit = match sustained.ended_by {
            ClimbEnd::NotKeptUp => "",
            ClimbEnd::SenderLimited => " or more (the most the bench could send)",
            ClimbEnd::MaxRate => " or more (--max-rate)",
        };
        match sustained.highest_per_second {
            Some(rate) => println!("{name} sustained {rate} msg/s{limit}; {}", steps.join("; ")),
            None => println!("{name} sustained none of the rates; {}", steps.join("; ")),
        }
    }
    if let Some(share) = report.sustained_share {
        println!("fogd / broker sustained rate: {:.0}%", share * 100.0);
    }
}
