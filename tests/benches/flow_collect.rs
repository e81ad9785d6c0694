//! Flow records decoded and aggregated (a `flow = { window, key = ["dst_addr"] }` trigger):
//! in process over NetFlow v9 and IPFIX exports softflowd made from a capture, and through
//! fogd's UDP socket from a sender; pmacct's nfacctd reading the same exports from a capture
//! (aggregating by destination) as the baseline; then 200,000 records/s sustained through
//! the socket, counting what is lost.
//!
//!   cargo bench -p fogd-tests --bench flow_collect -- [--runs N] [--sustain-seconds S]

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::path::Path;
use std::time::{Duration, Instant};

use fogd::config::FlowKey;
use fogd::triggers::flow::aggregate::Window;
use fogd::triggers::flow::decode::Decoder;
use fogd_tests::agent::{Running, function, start};
use fogd_tests::components;
use fogd_tests::traffic::{Capture, pmacct, softflowd};

/// Flows in the capture softflowd exports: a SYN flood from spoofed sources and sessions.
const FLOOD: u32 = 60_000;
const SUSTAINED_RATE: u64 = 200_000;

struct Options {
    runs: usize,
    sustain_seconds: u64,
}

fn options() -> Options {
    let mut options = Options {
        runs: 5,
        sustain_seconds: 30,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().and_then(|v| v.parse().ok());
        match arg.as_str() {
            "--runs" => options.runs = value().unwrap_or(options.runs as u64) as usize,
            "--sustain-seconds" => options.sustain_seconds = value().unwrap_or(30),
            _ => {}
        }
    }
    options
}

fn capture() -> Capture {
    let mut capture = Capture::new();
    for client in 0..200u32 {
        let source = Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 0, 0, 1)) + client);
        let server = Ipv4Addr::new(192, 0, 2, (client % 50) as u8 + 1);
        capture.tcp_session((source, 40_000), (server, 443), 2);
    }
    capture.syn_flood((Ipv4Addr::new(192, 0, 2, 80), 80), FLOOD);
    capture
}

/// A UDP socket with a receive buffer large enough for a burst from softflowd.
fn roomy_socket() -> UdpSocket {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let bytes: libc::c_int = 256 << 20;
    // SAFETY: setsockopt on a socket this process owns, with an int of the right size.
    unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            (&raw const bytes).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
    socket
}

/// One export datagram and the records it carries.
struct Export {
    datagram: Vec<u8>,
    records: u64,
}

/// The export datagrams softflowd sends for `pcap` as `version` (9 or 10), every one of them
/// (checked by decoding them all).
fn exports(pcap: &Path, version: &str, flows: u64) -> Vec<Export> {
    let socket = roomy_socket();
    let collector = socket.local_addr().unwrap();
    softflowd(pcap, version, collector);
    socket.set_nonblocking(true).unwrap();
    let mut datagrams = Vec::new();
    let mut buffer = vec![0; 65_535];
    while let Ok((length, _)) = socket.recv_from(&mut buffer) {
        datagrams.push(buffer[..length].to_vec());
    }
    let exporter: SocketAddr = "192.0.2.254:2055".parse().unwrap();
    let mut decoder = Decoder::new(Duration::from_secs(1800));
    let mut records = Vec::new();
    let exports: Vec<Export> = datagrams
        .into_iter()
        .map(|datagram| {
            records.clear();
            decoder.decode(&datagram, exporter, &mut records);
            Export {
                datagram,
                records: records.len() as u64,
            }
        })
        .collect();
    let decoded: u64 = exports.iter().map(|e| e.records).sum();
    assert_eq!(decoded, flows, "softflowd's exports were not all captured");
    exports
}

/// Decodes and aggregates the exports `repeat` times in process; returns the records.
fn decode_all(exports: &[Export], repeat: usize) -> u64 {
    let exporter: SocketAddr = "192.0.2.254:2055".parse().unwrap();
    let mut decoder = Decoder::new(Duration::from_secs(1800));
    let mut window = Window::new(&[FlowKey::DstAddr], 5, 200);
    let mut records = Vec::new();
    let mut total = 0;
    for _ in 0..repeat {
        for export in exports {
            records.clear();
            decoder.decode(&export.datagram, exporter, &mut records);
            for record in &records {
                window.add(record);
            }
            total += records.len() as u64;
        }
    }
    total
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// Records per second nfacctd decodes and aggregates (`-c dst_host`) reading the exports
/// from a capture: the difference between replaying it eleven times and once, so start-up
/// is left out. `packets` is what one replay carries, to check nfacctd counted them all.
fn nfacctd_rate(dir: &Path, exports: &[Export], records: u64, packets: u64) -> f64 {
    let mut capture = Capture::new();
    for export in exports {
        capture.udp_carrying(
            (Ipv4Addr::new(192, 0, 2, 254), 9_995),
            (Ipv4Addr::LOCALHOST, 2_100),
            &export.datagram,
        );
    }
    let pcap = dir.join("exports.pcap");
    capture.write(&pcap);
    let run = |replays: u32| {
        let config = dir.join("nfacctd.conf");
        std::fs::write(
            &config,
            format!(
                "pcap_savefile: {}\npcap_savefile_delay: 0\npcap_savefile_replay: {replays}\n\
                 plugins: print\naggregate: dst_host\nprint_output: csv\nprint_output_file: {}\n\
                 plugin_pipe_size: 268435456\nplugin_buffer_size: 65536\nprint_refresh_time: 3600\n",
                pcap.display(),
                dir.join("nfacctd.csv").display()
            ),
        )
        .unwrap();
        let started = Instant::now();
        pmacct("nfacctd", &config);
        started.elapsed().as_secs_f64()
    };
    let once = run(1);
    let eleven = run(11);
    let accounted: u64 = std::fs::read_to_string(dir.join("nfacctd.csv"))
        .unwrap_or_default()
        .lines()
        .skip(1)
        .filter_map(|line| line.split(',').nth(1)?.parse::<u64>().ok())
        .sum();
    assert_eq!(
        accounted,
        11 * packets,
        "nfacctd accounted every packet of eleven replays"
    );
    (10 * records) as f64 / (eleven - once)
}

/// An agent collecting on a free port into one windowed trigger.
async fn agent() -> Running {
    let config = format!(
        r#"
[flow]
udp = ["127.0.0.1:0"]
receive_buffer_kib = 65536
{windows}
"#,
        windows = function(
            "windows",
            &components().echo,
            r#"
                [[function.trigger]]
                flow = { window = "1s", key = ["dst_addr"] }
            "#
        ),
    );
    start(&config).await
}

fn rejected(running: &Running, reason: &str) -> u64 {
    running.agent.metrics.input_rejected_count("flow", reason)
}

/// Sends the exports `rounds` times as fast as one thread can; returns records sent.
fn blast(target: SocketAddr, exports: &[Export], rounds: usize) -> u64 {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut sent = 0;
    for _ in 0..rounds {
        for export in exports {
            socket.send_to(&export.datagram, target).unwrap();
            sent += export.records;
        }
    }
    sent
}

/// Sends the exports over and over at `rate` records per second for `seconds`, checking the
/// pace every half millisecond; returns records sent.
fn paced(target: SocketAddr, exports: &[Export], rate: u64, seconds: u64) -> u64 {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let started = Instant::now();
    let mut sent = 0u64;
    let mut next = exports.iter().cycle();
    while started.elapsed() < Duration::from_secs(seconds) {
        let due = (started.elapsed().as_secs_f64() * rate as f64) as u64;
        while sent < due {
            let Some(export) = next.next() else { break };
            socket.send_to(&export.datagram, target).unwrap();
            sent += export.records;
        }
        std::thread::sleep(Duration::from_micros(500));
    }
    sent
}

/// Waits until `sent` records are decoded since `before`, or none more arrive for a second;
/// returns those decoded.
async fn settle(running: &Running, before: u64, sent: u64) -> u64 {
    let metrics = &running.agent.metrics;
    let mut last = (metrics.flow_records_count(), Instant::now());
    loop {
        let now = metrics.flow_records_count();
        if now - before >= sent || last.1.elapsed() > Duration::from_secs(1) {
            return now - before;
        }
        if now != last.0 {
            last = (now, Instant::now());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let options = options();
    let dir = tempfile::tempdir().unwrap();
    let pcap = dir.path().join("traffic.pcap");
    let capture = capture();
    capture.write(&pcap);
    let flows = capture.flow_count();
    println!(
        "flow_collect: {flows} flows exported by softflowd, {} runs, {} CPUs",
        options.runs,
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    for (name, version) in [("NetFlow v9", "9"), ("IPFIX", "10")] {
        let exports = std::sync::Arc::new(exports(&pcap, version, flows));
        let per_datagram = flows as f64 / exports.len() as f64;
        let rates: Vec<f64> = (0..options.runs)
            .map(|_| {
                let started = Instant::now();
                let records = decode_all(&exports, 10);
                records as f64 / started.elapsed().as_secs_f64()
            })
            .collect();
        let in_process = median(rates);
        let nfacctd: Vec<f64> = (0..options.runs.min(3))
            .map(|_| nfacctd_rate(dir.path(), &exports, flows, capture.packet_count()))
            .collect();
        let nfacctd = median(nfacctd);
        println!(
            "{name}: {} datagrams, {per_datagram:.1} records each; in process median {in_process:.0} records/s; nfacctd {nfacctd:.0} records/s; ratio {:.2}",
            exports.len(),
            in_process / nfacctd
        );

        let running = agent().await;
        let target = running.agent.flow_addresses[0];
        let metrics = running.agent.metrics.clone();
        let mut socket_rates = Vec::new();
        for _ in 0..options.runs {
            let before = metrics.flow_records_count();
            let drops_before = rejected(&running, "kernel_buffer_full");
            let started = Instant::now();
            let sending = exports.clone();
            let sent = tokio::task::spawn_blocking(move || blast(target, &sending, 20))
                .await
                .unwrap();
            let decoded = settle(&running, before, sent).await;
            socket_rates.push(decoded as f64 / started.elapsed().as_secs_f64());
            println!(
                "  {name} through the socket: {sent} records sent in a burst, {decoded} decoded, {} datagrams dropped by the kernel",
                rejected(&running, "kernel_buffer_full") - drops_before
            );
        }
        println!(
            "{name} through the socket: median {:.0} records/s decoded",
            median(socket_rates)
        );

        let before = metrics.flow_records_count();
        let drops_before = rejected(&running, "kernel_buffer_full");
        let seconds = options.sustain_seconds;
        let sending = exports.clone();
        let sent =
            tokio::task::spawn_blocking(move || paced(target, &sending, SUSTAINED_RATE, seconds))
                .await
                .unwrap();
        let decoded = settle(&running, before, sent).await;
        println!(
            "{name} sustained at {SUSTAINED_RATE} records/s for {seconds} s: {sent} records sent, {decoded} decoded ({} lost), {} datagrams dropped by the kernel",
            sent - decoded,
            rejected(&running, "kernel_buffer_full") - drops_before
        );
        running.agent.shutdown().await;
    }
}
