//! Notification contents as JSON: typed varbinds and the names of well-known notifications.
//! Depends on nothing of fogd but async-snmp's types, so the fuzz harness (`fuzz/`) runs it
//! on everything the decoder accepts.

use async_snmp::{Value, VarBind};
use serde_json::{Value as Json, json};

/// Names of the standard notifications (SNMPv2-MIB, IF-MIB, and the v1 generic traps as
/// RFC 3584 maps them), so functions need no MIB.
const WELL_KNOWN: &[(&str, &str)] = &[
    ("1.3.6.1.6.3.1.1.5.1", "coldStart"),
    ("1.3.6.1.6.3.1.1.5.2", "warmStart"),
    ("1.3.6.1.6.3.1.1.5.3", "linkDown"),
    ("1.3.6.1.6.3.1.1.5.4", "linkUp"),
    ("1.3.6.1.6.3.1.1.5.5", "authenticationFailure"),
    ("1.3.6.1.6.3.1.1.5.6", "egpNeighborLoss"),
    ("1.3.6.1.2.1.88.2.0.1", "mteTriggerFired"),
    ("1.3.6.1.2.1.88.2.0.2", "mteTriggerRising"),
    ("1.3.6.1.2.1.88.2.0.3", "mteTriggerFalling"),
    ("1.3.6.1.2.1.14.16.2.2", "ospfNbrStateChange"),
    ("1.3.6.1.2.1.15.7.1", "bgpEstablished"),
    ("1.3.6.1.2.1.15.7.2", "bgpBackwardTransition"),
    ("1.3.6.1.2.1.15.0.1", "bgpEstablishedNotification"),
    ("1.3.6.1.2.1.15.0.2", "bgpBackwardTransNotification"),
    ("1.3.6.1.4.1.8072.4.0.2", "nsNotifyShutdown"),
    ("1.3.6.1.4.1.8072.4.0.3", "nsNotifyRestart"),
];

/// The name of a standard notification, if it is one.
pub fn well_known_name(trap_oid: &str) -> Option<&'static str> {
    WELL_KNOWN
        .iter()
        .find(|(oid, _)| *oid == trap_oid)
        .map(|(_, name)| *name)
}

/// `{"oid", "type", "value"}`; an octet string that is not printable text has `hex` instead
/// of `value`.
pub fn varbind(binding: &VarBind) -> Json {
    let oid = binding.oid.to_string();
    let kind = binding.value.kind().as_str();
    match &binding.value {
        Value::OctetString(bytes) | Value::Opaque(bytes) | Value::Nsap(bytes) => {
            match printable(bytes) {
                Some(text) => json!({"oid": oid, "type": kind, "value": text}),
                None => json!({"oid": oid, "type": kind, "hex": hex::encode(bytes)}),
            }
        }
        Value::Integer(v) => json!({"oid": oid, "type": kind, "value": v}),
        Value::Counter32(v) | Value::Gauge32(v) | Value::UInteger32(v) | Value::TimeTicks(v) => {
            json!({"oid": oid, "type": kind, "value": v})
        }
        Value::Counter64(v) => json!({"oid": oid, "type": kind, "value": v}),
        Value::IpAddress([a, b, c, d]) => {
            json!({"oid": oid, "type": kind, "value": format!("{a}.{b}.{c}.{d}")})
        }
        Value::ObjectIdentifier(target) => {
            json!({"oid": oid, "type": kind, "value": target.to_string()})
        }
        _ => json!({"oid": oid, "type": kind, "value": null}),
    }
}

/// Text a person would recognise as text: valid UTF-8 without control characters other
/// than tab and line breaks.
fn printable(bytes: &[u8]) -> Option<&str> {
    let text = std::str::from_utf8(bytes).ok()?;
    text.chars()
        .all(|c| !c.is_control() || matches!(c, '\t' | '\n' | '\r'))
        .then_some(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use async_snmp::oid;
    use bytes::Bytes;

    #[test]
    fn values_become_typed_json() {
        let text = VarBind::new(
            oid!(1, 3, 6, 1, 2, 1, 2, 2, 1, 2, 3),
            Value::OctetString(Bytes::from_static(b"eth0")),
        );
        assert_eq!(
            varbind(&text),
            json!({"oid": "1.3.6.1.2.1.2.2.1.2.3", "type": "octet_string", "value": "eth0"})
        );
        let mac = VarBind::new(
            oid!(1, 3, 6, 1, 2, 1, 2, 2, 1, 6, 3),
            Value::OctetString(Bytes::from_static(&[0, 0x1b, 0x21, 0xff])),
        );
        assert_eq!(varbind(&mac)["hex"], "001b21ff");
        let big = VarBind::new(oid!(1, 3, 6, 1), Value::Counter64(u64::MAX));
        assert_eq!(varbind(&big)["value"], json!(u64::MAX));
        let address = VarBind::new(oid!(1, 3, 6, 1), Value::IpAddress([192, 0, 2, 1]));
        assert_eq!(varbind(&address)["value"], "192.0.2.1");
    }

    #[test]
    fn standard_notifications_are_named() {
        assert_eq!(well_known_name("1.3.6.1.6.3.1.1.5.3"), Some("linkDown"));
        assert_eq!(well_known_name("1.3.6.1.4.1.9.9.41.2.0.1"), None);
    }
}
