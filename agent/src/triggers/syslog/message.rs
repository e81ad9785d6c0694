//! One received syslog message as an event: parsed with `syslog_loose` (RFC 5424 first, then
//! RFC 3164), header fields as attributes for routing, everything as the JSON payload.

use std::net::SocketAddr;

use serde::Serialize;
use serde_json::{Map, Value};
use syslog_loose::{Message, ProcId, Protocol, Variant};

use crate::config::{Facility, Severity};
use crate::event::{Event, Source, attributes, new_event};

/// How the message arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Udp,
    Tcp,
    Tls,
}

impl Transport {
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
            Transport::Tls => "tls",
        }
    }
}

/// The event's payload (the README's syslog event schema).
#[derive(Serialize)]
struct Payload<'a> {
    /// `rfc5424`, `rfc3164`, or `unparsed` when no header could be read (the whole text is
    /// then the message).
    protocol: &'static str,
    facility: Option<&'static str>,
    severity: Option<&'static str>,
    /// RFC 3339; a year-less RFC 3164 timestamp takes the current year.
    timestamp: Option<String>,
    hostname: Option<&'a str>,
    app_name: Option<&'a str>,
    proc_id: Option<String>,
    msg_id: Option<&'a str>,
    /// SD-ID → parameter → value (escapes removed).
    structured_data: Map<String, Value>,
    message: &'a str,
    source: &'a str,
    transport: &'static str,
    /// The message was longer than `syslog.max_message_bytes` and was cut there.
    truncated: bool,
    /// The received bytes as hex, only when they are not valid UTF-8 (`message` then has
    /// U+FFFD in their place).
    #[serde(skip_serializing_if = "Option::is_none")]
    raw_hex: Option<String>,
}

/// The event for one message of `bytes` (one datagram or one TCP frame, without framing).
pub fn event(bytes: &[u8], peer: SocketAddr, transport: Transport, truncated: bool) -> Event {
    let text = String::from_utf8_lossy(bytes);
    let raw_hex = matches!(text, std::borrow::Cow::Owned(_)).then(|| hex::encode(bytes));
    let parsed = syslog_loose::parse_message(&text, Variant::Either);
    // The crate's enums carry the RFC codes as discriminants.
    let facility = parsed
        .facility
        .and_then(|f| Facility::from_code(f as u8))
        .map(Facility::as_str);
    let severity = parsed
        .severity
        .and_then(|s| Severity::from_code(s as u8))
        .map(Severity::as_str);
    let source = peer.to_string();
    let protocol = match parsed.protocol {
        _ if parsed.facility.is_none() && parsed.timestamp.is_none() => "unparsed",
        Protocol::RFC5424(_) => "rfc5424",
        Protocol::RFC3164 => "rfc3164",
    };
    let payload = Payload {
        protocol,
        facility,
        severity,
        timestamp: parsed.timestamp.map(|t| t.to_rfc3339()),
        hostname: parsed.hostname,
        app_name: parsed.appname,
        proc_id: parsed.procid.as_ref().map(|id| match id {
            ProcId::PID(pid) => pid.to_string(),
            ProcId::Name(name) => (*name).to_owned(),
        }),
        msg_id: parsed.msgid,
        structured_data: structured_data(&parsed),
        message: parsed.msg,
        source: &source,
        transport: transport.as_str(),
        truncated,
        raw_hex,
    };
    // Serializing plain strings, numbers and maps cannot fail.
    let body = serde_json::to_vec(&payload).unwrap_or_default();
    let mut event = new_event(Source::Syslog, parsed.appname.unwrap_or("-"), body);
    let mut attribute = |key: &str, value: Option<&str>| {
        if let Some(value) = value {
            event.attributes.push((key.to_owned(), value.to_owned()));
        }
    };
    attribute(attributes::SYSLOG_FACILITY, facility);
    attribute(attributes::SYSLOG_SEVERITY, severity);
    attribute(attributes::SYSLOG_HOSTNAME, parsed.hostname);
    attribute(attributes::SYSLOG_APP_NAME, parsed.appname);
    attribute(attributes::SYSLOG_SOURCE, Some(&source));
    attribute(attributes::SYSLOG_TRANSPORT, Some(transport.as_str()));
    event
}

fn structured_data(parsed: &Message<&str>) -> Map<String, Value> {
    let mut elements = Map::new();
    for element in &parsed.structured_data {
        let params: Map<String, Value> = element
            .params()
            .map(|(name, value)| ((*name).to_owned(), Value::String(value)))
            .collect();
        elements.insert(element.id.to_owned(), Value::Object(params));
    }
    elements
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{attribute, syslog_message};

    fn peer() -> SocketAddr {
        "192.0.2.7:5140".parse().unwrap()
    }

    fn payload(event: &Event) -> Value {
        serde_json::from_slice(&event.payload).unwrap()
    }

    #[test]
    fn an_rfc5424_message_keeps_every_header_field_and_its_structured_data() {
        let line = br#"<34>1 2026-12-01T22:14:15.003Z r1.example.net sshd 4242 ID47 [auth@32473 user="root" from="192.0.2.9"][meta seq="7"] Failed password for root"#;
        let event = event(line, peer(), Transport::Tcp, false);
        assert_eq!(event.source, Source::Syslog);
        assert_eq!(event.subject, "sshd");
        let body = payload(&event);
        assert_eq!(body["protocol"], "rfc5424");
        assert_eq!(body["facility"], "auth");
        assert_eq!(body["severity"], "crit");
        assert_eq!(body["hostname"], "r1.example.net");
        assert_eq!(body["proc_id"], "4242");
        assert_eq!(body["msg_id"], "ID47");
        assert_eq!(body["structured_data"]["auth@32473"]["user"], "root");
        assert_eq!(body["structured_data"]["meta"]["seq"], "7");
        assert_eq!(body["message"], "Failed password for root");
        assert_eq!(body["transport"], "tcp");
        assert_eq!(attribute(&event, attributes::SYSLOG_SEVERITY), Some("crit"));
        assert_eq!(
            attribute(&event, attributes::SYSLOG_SOURCE),
            Some("192.0.2.7:5140")
        );
        assert!(body.get("raw_hex").is_none());
        assert_eq!(
            syslog_message(&event).as_deref(),
            Some("Failed password for root")
        );
    }

    #[test]
    fn an_rfc3164_message_has_its_tag_as_app_name() {
        let event = event(
            b"<13>Dec  1 22:14:15 edge-gw kernel: link eth0 down",
            peer(),
            Transport::Udp,
            false,
        );
        let body = payload(&event);
        assert_eq!(body["protocol"], "rfc3164");
        assert_eq!(body["facility"], "user");
        assert_eq!(body["severity"], "notice");
        assert_eq!(body["hostname"], "edge-gw");
        assert_eq!(body["app_name"], "kernel");
        assert_eq!(body["message"], "link eth0 down");
    }

    #[test]
    fn bytes_that_are_not_utf8_are_kept_as_hex() {
        let line = b"<14>1 - host app - - - caf\xe9";
        let event = event(line, peer(), Transport::Udp, false);
        let body = payload(&event);
        assert_eq!(body["raw_hex"], hex::encode(line));
        assert_eq!(body["message"], "caf\u{fffd}");
    }

    #[test]
    fn text_without_a_header_is_all_message() {
        let event = event(b"just words", peer(), Transport::Udp, true);
        let body = payload(&event);
        assert_eq!(body["protocol"], "unparsed");
        assert_eq!(body["message"], "just words");
        assert_eq!(body["truncated"], true);
        assert_eq!(event.subject, "-");
    }
}
