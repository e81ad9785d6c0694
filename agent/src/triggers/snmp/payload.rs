//! A received notification as a fogd event: subject = trap OID, payload = the JSON
//! documented in the README (SNMP section). Communities never reach the event.

use std::net::SocketAddr;

use async_snmp::notification::Notification;
use async_snmp::{SecurityLevel, Value, VarBind};
use serde_json::{Map, Value as Json, json};

use crate::event::{Event, Source, new_event};

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

/// Builds the event for one accepted notification.
pub fn to_event(notification: &Notification, source: SocketAddr) -> Event {
    let trap_oid = notification
        .trap_oid()
        .map(|oid| oid.to_string())
        .unwrap_or_default();
    let (version, pdu) = match notification {
        Notification::TrapV1 { .. } => ("1", "trap"),
        Notification::TrapV2c { .. } => ("2c", "trap"),
        Notification::TrapV3 { .. } => ("3", "trap"),
        Notification::InformV2c { .. } => ("2c", "inform"),
        Notification::InformV3 { .. } => ("3", "inform"),
    };
    let mut body = Map::new();
    body.insert("version".into(), json!(version));
    body.insert("pdu".into(), json!(pdu));
    body.insert("source".into(), json!(source.to_string()));
    body.insert("uptime".into(), json!(notification.uptime()));
    body.insert("trap_oid".into(), json!(trap_oid));
    body.insert("name".into(), json!(well_known_name(&trap_oid)));
    match notification {
        Notification::TrapV1 { trap, .. } => {
            let [a, b, c, d] = trap.agent_addr();
            body.insert("agent_address".into(), json!(format!("{a}.{b}.{c}.{d}")));
            body.insert("enterprise".into(), json!(trap.enterprise().to_string()));
            body.insert("generic_trap".into(), json!(trap.generic_trap().as_i32()));
            body.insert("specific_trap".into(), json!(trap.specific_trap()));
        }
        Notification::TrapV3 {
            username,
            context_name,
            security_level,
            ..
        }
        | Notification::InformV3 {
            username,
            context_name,
            security_level,
            ..
        } => {
            body.insert("user".into(), json!(String::from_utf8_lossy(username)));
            body.insert(
                "security_level".into(),
                json!(security_level_name(*security_level)),
            );
            body.insert(
                "context".into(),
                json!(String::from_utf8_lossy(context_name)),
            );
        }
        Notification::TrapV2c { .. } | Notification::InformV2c { .. } => {}
    }
    let varbinds: Vec<Json> = notification.varbinds().iter().map(varbind).collect();
    body.insert("varbinds".into(), Json::Array(varbinds));

    let mut event = new_event(
        Source::SnmpTrap,
        trap_oid,
        Json::Object(body).to_string().into_bytes(),
    );
    event.attributes = vec![
        ("snmp.version".into(), version.into()),
        ("snmp.pdu".into(), pdu.into()),
        ("snmp.source".into(), source.to_string()),
    ];
    event
}

pub fn security_level_name(level: SecurityLevel) -> &'static str {
    match level {
        SecurityLevel::NoAuthNoPriv => "noAuthNoPriv",
        SecurityLevel::AuthNoPriv => "authNoPriv",
        SecurityLevel::AuthPriv => "authPriv",
    }
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
