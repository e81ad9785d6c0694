//! Writes the capture the demo replays with softflowd (`provisioning/demo-traffic.pcap`):
//! a second of a site's ordinary traffic (HTTPS sessions to three servers, 192.0.2.80 among
//! them), then a SYN flood on 192.0.2.80:80 from spoofed sources. The demo replays it whole
//! for the flood and without port 80 of 192.0.2.80 for calm.
//!
//!   cargo run -p fogd-tests --bin fogd-demo-traffic -- provisioning/demo-traffic.pcap

use std::net::Ipv4Addr;
use std::path::PathBuf;

use anyhow::Context;
use fogd_tests::traffic::Capture;

fn main() -> anyhow::Result<()> {
    let path: PathBuf = std::env::args()
        .nth(1)
        .context("usage: fogd-demo-traffic <output.pcap>")?
        .into();
    let mut capture = Capture::new();
    let servers = [
        Ipv4Addr::new(192, 0, 2, 10),
        Ipv4Addr::new(192, 0, 2, 11),
        Ipv4Addr::new(192, 0, 2, 80),
    ];
    for client in 0..30u8 {
        let source = (
            Ipv4Addr::new(10, 0, 0, client + 1),
            40_000 + u16::from(client),
        );
        let server = servers[usize::from(client) % servers.len()];
        capture.tcp_session(source, (server, 443), 10);
        capture.advance(30_000);
    }
    capture.syn_flood((Ipv4Addr::new(192, 0, 2, 80), 80), 4_000);
    capture.write(&path);
    println!(
        "{}: {} flows, {} packets",
        path.display(),
        capture.flow_count(),
        capture.packet_count()
    );
    Ok(())
}
