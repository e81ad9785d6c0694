//! Syslog messages framed and decoded in process: a TCP stream of octet-counted RFC 5424
//! messages with structured data, and one of newline-framed RFC 3164 lines, through the
//! framer and the event builder the TCP listener uses (no socket, no function).
//!
//!     cargo bench -p fogd --bench syslog_decode [-- RUNS]
//!
//! Prints one JSON object per stream: messages per second, median and range over the runs,
//! and as the baseline `syslog_loose` parsing the same messages already split, with no
//! framing and no event: what fogd adds to the parser it uses.

use std::net::SocketAddr;
use std::time::Instant;

use fogd::triggers::syslog::framing::Framer;
use fogd::triggers::syslog::message::{Transport, event};
use serde_json::json;

const MESSAGES: usize = 200_000;
/// Bytes handed to the framer at a time, as one socket read.
const READ: usize = 16 * 1024;

fn main() {
    let runs: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(5);
    let rfc5424 = stream(|i| {
        let line = format!(
            "<38>1 2026-12-01T22:14:15.{:03}Z edge-gw-{} sshd {} LOGIN [origin@32473 ip=\"192.0.2.{}\" port=\"{}\"] Failed password for user{} from 192.0.2.{} port {} ssh2",
            i % 1000,
            i % 16,
            4000 + i % 1000,
            i % 250,
            1024 + i % 60000,
            i % 97,
            i % 250,
            1024 + i % 60000
        );
        format!("{} {line}", line.len()).into_bytes()
    });
    let rfc3164 = stream(|i| {
        format!(
            "<13>Dec  1 22:14:{:02} edge-gw-{} kernel: [{}] eth{}: link down\n",
            i % 60,
            i % 16,
            i,
            i % 4
        )
        .into_bytes()
    });
    for (name, bytes) in [
        ("rfc5424_octet_counted", &rfc5424),
        ("rfc3164_newline", &rfc3164),
    ] {
        let split = split(bytes);
        let mut rates: Vec<f64> = (0..runs).map(|_| decode(bytes)).collect();
        let mut baseline: Vec<f64> = (0..runs).map(|_| parse_only(&split)).collect();
        rates.sort_by(f64::total_cmp);
        baseline.sort_by(f64::total_cmp);
        let median = rates[rates.len() / 2];
        let baseline_median = baseline[baseline.len() / 2];
        println!(
            "{}",
            json!({
                "stream": name,
                "messages": MESSAGES,
                "bytes": bytes.len(),
                "runs": runs,
                "messages_per_second_median": median.round(),
                "messages_per_second_min": rates[0].round(),
                "messages_per_second_max": rates[rates.len() - 1].round(),
                "syslog_loose_parse_only_median": baseline_median.round(),
                "ratio_to_parse_only": (median / baseline_median * 100.0).round() / 100.0,
            })
        );
    }
}

fn stream(message: impl Fn(usize) -> Vec<u8>) -> Vec<u8> {
    (0..MESSAGES).flat_map(message).collect()
}

/// The stream's messages, framed once, as text.
fn split(bytes: &[u8]) -> Vec<String> {
    let mut framer = Framer::new(8192);
    let mut messages = Vec::with_capacity(MESSAGES);
    framer
        .feed(bytes, |frame| {
            messages.push(String::from_utf8_lossy(&frame.message).into_owned())
        })
        .expect("well-framed stream");
    messages
}

/// Parses every message with `syslog_loose` alone; returns messages per second.
fn parse_only(messages: &[String]) -> f64 {
    let start = Instant::now();
    let parsed = messages
        .iter()
        .filter(|m| {
            syslog_loose::parse_message(m, syslog_loose::Variant::Either)
                .facility
                .is_some()
        })
        .count();
    let elapsed = start.elapsed().as_secs_f64();
    assert_eq!(parsed, MESSAGES, "every message parsed");
    MESSAGES as f64 / elapsed
}

/// Frames and decodes the whole stream; returns messages per second.
fn decode(bytes: &[u8]) -> f64 {
    let peer: SocketAddr = "192.0.2.1:40000".parse().expect("address");
    let mut framer = Framer::new(8192);
    let mut decoded = 0usize;
    let start = Instant::now();
    for chunk in bytes.chunks(READ) {
        framer
            .feed(chunk, |frame| {
                let event = event(&frame.message, peer, Transport::Tcp, frame.truncated);
                decoded += usize::from(!event.payload.is_empty());
            })
            .expect("well-framed stream");
    }
    let elapsed = start.elapsed().as_secs_f64();
    assert_eq!(decoded, MESSAGES, "every message decoded");
    MESSAGES as f64 / elapsed
}
