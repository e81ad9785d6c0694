//! Packet captures for flow exporters to replay (libpcap format, Ethernet frames built with
//! etherparse), and the ground truth a collector's aggregates must match: what each
//! destination received.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;

use etherparse::PacketBuilder;

const TCP_SYN: u8 = 0x02;
const TCP_ACK: u8 = 0x10;
const TCP_PSH: u8 = 0x08;
const TCP_FIN: u8 = 0x01;

/// What one destination received, counted from the packets written.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Received {
    pub packets: u64,
    /// IP bytes (header and payload), as NetFlow counts them.
    pub bytes: u64,
    /// Flows (one direction of one 5-tuple).
    pub flows: u64,
    /// Flows whose packets carried SYN, and those of them never carrying ACK.
    pub syn_flows: u64,
    pub syn_without_ack_flows: u64,
    /// Packets with SYN, and those of them without ACK (what sFlow's samples count).
    pub syn_packets: u64,
    pub syn_without_ack_packets: u64,
    pub udp_packets: u64,
    pub sources: BTreeSet<Ipv4Addr>,
    pub dst_ports: BTreeSet<u16>,
}

type FiveTuple = (Ipv4Addr, Ipv4Addr, u16, u16, u8);

/// A capture being written, with its ground truth.
pub struct Capture {
    bytes: Vec<u8>,
    micros: u64,
    /// Flags seen per flow, OR-ed.
    flows: BTreeMap<FiveTuple, u8>,
    received: BTreeMap<Ipv4Addr, Received>,
}

impl Default for Capture {
    fn default() -> Self {
        Self::new()
    }
}

impl Capture {
    pub fn new() -> Self {
        let mut bytes = Vec::new();
        bytes.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
        bytes.extend_from_slice(&2u16.to_le_bytes());
        bytes.extend_from_slice(&4u16.to_le_bytes());
        bytes.extend_from_slice(&0i32.to_le_bytes());
        bytes.extend_from_slice(&0u32.to_le_bytes());
        bytes.extend_from_slice(&65_535u32.to_le_bytes());
        // LINKTYPE_ETHERNET
        bytes.extend_from_slice(&1u32.to_le_bytes());
        Self {
            bytes,
            // 2026-12-01T00:00:00Z, so exporters see a plausible clock.
            micros: 1_796_083_200_000_000,
            flows: BTreeMap::new(),
            received: BTreeMap::new(),
        }
    }

    /// Moves the capture's clock on.
    pub fn advance(&mut self, micros: u64) {
        self.micros += micros;
    }

    fn frame(&mut self, frame: &[u8]) {
        let seconds = (self.micros / 1_000_000) as u32;
        let micros = (self.micros % 1_000_000) as u32;
        let length = frame.len() as u32;
        for field in [seconds, micros, length, length] {
            self.bytes.extend_from_slice(&field.to_le_bytes());
        }
        self.bytes.extend_from_slice(frame);
        self.micros += 10;
    }

    fn count(&mut self, tuple: FiveTuple, flags: u8, ip_bytes: usize) {
        let (src, dst, _, dst_port, protocol) = tuple;
        *self.flows.entry(tuple).or_insert(0) |= flags;
        let received = self.received.entry(dst).or_default();
        received.packets += 1;
        received.bytes += ip_bytes as u64;
        received.sources.insert(src);
        received.dst_ports.insert(dst_port);
        if protocol == 17 {
            received.udp_packets += 1;
        }
        if flags & TCP_SYN != 0 {
            received.syn_packets += 1;
            if flags & TCP_ACK == 0 {
                received.syn_without_ack_packets += 1;
            }
        }
    }

    /// One TCP segment with `flags` (SYN 0x02, ACK 0x10...) and `payload` bytes of data.
    pub fn tcp(&mut self, src: (Ipv4Addr, u16), dst: (Ipv4Addr, u16), flags: u8, payload: usize) {
        let mut builder = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
            .ipv4(src.0.octets(), dst.0.octets(), 64)
            .tcp(src.1, dst.1, 1_000, 65_535);
        if flags & TCP_SYN != 0 {
            builder = builder.syn();
        }
        if flags & TCP_ACK != 0 {
            builder = builder.ack(1);
        }
        if flags & TCP_PSH != 0 {
            builder = builder.psh();
        }
        if flags & TCP_FIN != 0 {
            builder = builder.fin();
        }
        let data = vec![0x61; payload];
        let mut frame = Vec::with_capacity(builder.size(payload));
        builder.write(&mut frame, &data).unwrap();
        self.frame(&frame);
        self.count((src.0, dst.0, src.1, dst.1, 6), flags, frame.len() - 14);
    }

    /// One UDP datagram with `payload` bytes.
    pub fn udp(&mut self, src: (Ipv4Addr, u16), dst: (Ipv4Addr, u16), payload: usize) {
        self.udp_carrying(src, dst, &vec![0x62; payload]);
    }

    /// One UDP datagram carrying `payload` (an export, for a collector reading captures).
    pub fn udp_carrying(&mut self, src: (Ipv4Addr, u16), dst: (Ipv4Addr, u16), payload: &[u8]) {
        let builder = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
            .ipv4(src.0.octets(), dst.0.octets(), 64)
            .udp(src.1, dst.1);
        let mut frame = Vec::with_capacity(builder.size(payload.len()));
        builder.write(&mut frame, payload).unwrap();
        self.frame(&frame);
        self.count((src.0, dst.0, src.1, dst.1, 17), 0, frame.len() - 14);
    }

    /// A whole client-to-server TCP exchange, client side only: SYN, `segments` data
    /// segments, FIN.
    pub fn tcp_session(&mut self, src: (Ipv4Addr, u16), dst: (Ipv4Addr, u16), segments: usize) {
        self.tcp(src, dst, TCP_SYN, 0);
        for _ in 0..segments {
            self.tcp(src, dst, TCP_ACK | TCP_PSH, 400);
        }
        self.tcp(src, dst, TCP_ACK | TCP_FIN, 0);
    }

    /// `count` SYNs to `dst`, each from its own source address in 198.18.0.0/15 and port.
    pub fn syn_flood(&mut self, dst: (Ipv4Addr, u16), count: u32) {
        for n in 0..count {
            let source = Ipv4Addr::from(u32::from(Ipv4Addr::new(198, 18, 0, 1)) + n);
            self.tcp((source, 1024 + (n % 60_000) as u16), dst, TCP_SYN, 0);
        }
    }

    /// What each destination received, with flow counts.
    pub fn received(&self) -> BTreeMap<Ipv4Addr, Received> {
        let mut received = self.received.clone();
        for (&(_, dst, _, _, _), &flags) in &self.flows {
            let r = received.entry(dst).or_default();
            r.flows += 1;
            if flags & TCP_SYN != 0 {
                r.syn_flows += 1;
                if flags & TCP_ACK == 0 {
                    r.syn_without_ack_flows += 1;
                }
            }
        }
        received
    }

    /// Flows in the capture: what an exporter without sampling sends one record each for.
    pub fn flow_count(&self) -> u64 {
        self.flows.len() as u64
    }

    /// Packets in the capture: what sFlow sampling every packet sends one sample each for.
    pub fn packet_count(&self) -> u64 {
        self.received.values().map(|r| r.packets).sum()
    }

    pub fn write(&self, path: &Path) {
        std::fs::write(path, &self.bytes).unwrap();
    }
}

/// Replays `pcap` with softflowd exporting `version` (5, 9 or 10) to `collector`, until
/// softflowd has read the whole capture and exported every flow.
pub fn softflowd(pcap: &Path, version: &str, collector: SocketAddr) {
    softflowd_with(pcap, version, collector, &[]);
}

/// As [`softflowd`], with more of its options (`-s 10`: sample one packet in ten).
pub fn softflowd_with(pcap: &Path, version: &str, collector: SocketAddr, options: &[&str]) {
    // softflowd 1.1.0 stalls on exit when its control socket's path is 13 characters or
    // longer, so it runs in the capture's directory with short relative paths.
    let output = Command::new("/usr/sbin/softflowd")
        .current_dir(pcap.parent().unwrap())
        .arg("-r")
        .arg(pcap)
        .args(["-n", &collector.to_string(), "-v", version, "-d"])
        .args(["-p", "sf.pid", "-c", "sf.ctl"])
        .args(options)
        .output()
        .expect("softflowd runs (Debian package softflowd)");
    crate::assert_success(&output);
}

/// Runs one of pmacct's daemons (`pmacctd`, `nfacctd`) on `config` until it exits. Its core
/// and plugin processes race on exit, so the status varies; a failure is named in its log.
pub fn pmacct(daemon: &str, config: &Path) {
    let output = Command::new(Path::new("/usr/sbin").join(daemon))
        .arg("-f")
        .arg(config)
        .output()
        .unwrap_or_else(|e| panic!("{daemon} runs (Debian package pmacct): {e}"));
    let log = String::from_utf8_lossy(&output.stderr);
    assert!(!log.contains("ERROR"), "{daemon} failed:\n{log}");
}
