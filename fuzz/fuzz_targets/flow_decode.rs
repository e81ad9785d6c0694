//! Every datagram a flow listener receives goes through fogd's decoder (netflow_parser,
//! flowparser-sflow, etherparse for sampled headers), one decoder per listener keeping
//! templates between datagrams. No sequence of datagrams may make it panic or hang, and
//! every record it returns has a sampling rate of at least one.
//!
//! The input is a sequence of datagrams, each preceded by its length (two bytes, big
//! endian), decoded in order by one decoder as if one exporter sent them.

#![no_main]

use std::net::SocketAddr;
use std::time::Duration;

use libfuzzer_sys::fuzz_target;

// The agent uses all of the record's helpers; the decoder only some.
#[allow(dead_code)]
#[path = "../../agent/src/triggers/flow/record.rs"]
mod record;

#[path = "../../agent/src/triggers/flow/decode.rs"]
mod decode;

fuzz_target!(|data: &[u8]| {
    let exporter: SocketAddr = ([192, 0, 2, 1], 2055).into();
    let mut decoder = decode::Decoder::new(Duration::from_secs(60));
    let mut records = Vec::new();
    let mut rest = data;
    while let Some((&[high, low], after)) = rest.split_first_chunk::<2>() {
        let length = usize::from(u16::from_be_bytes([high, low])).min(after.len());
        let (datagram, remaining) = after.split_at(length);
        rest = remaining;
        records.clear();
        let decoded = decoder.decode(datagram, exporter, &mut records);
        assert!(records.iter().all(|r| r.sampling_rate >= 1));
        let _ = (
            decoded.template_misses,
            decoded.malformed,
            decoded.counters.len(),
        );
    }
});
