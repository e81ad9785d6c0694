//! Every byte a syslog TCP or TLS connection sends goes through fogd's framer, and every
//! message through `syslog_loose`. Neither may panic or hang on any input, however the
//! stream is split into reads, and the framer never keeps more than its limit of a message.

#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../../agent/src/triggers/syslog/framing.rs"]
mod framing;

fuzz_target!(|data: &[u8]| {
    let Some((&[read_size, limit], stream)) = data.split_first_chunk::<2>() else {
        return;
    };
    let read_size = usize::from(read_size).max(1);
    let limit = usize::from(limit) * 16 + 1;
    let mut framer = framing::Framer::new(limit);
    let mut messages = Vec::new();
    for chunk in stream.chunks(read_size) {
        if framer.feed(chunk, |frame| messages.push(frame)).is_err() {
            break;
        }
    }
    for frame in &messages {
        assert!(frame.message.len() <= limit);
        let text = String::from_utf8_lossy(&frame.message);
        let parsed = syslog_loose::parse_message(&text, syslog_loose::Variant::Either);
        for element in &parsed.structured_data {
            for (name, value) in element.params() {
                let _ = (name, value.len());
            }
        }
        let _ = parsed.timestamp.map(|t| t.to_rfc3339());
    }
});
