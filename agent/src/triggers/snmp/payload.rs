//! A received notification as a fogd event: subject = trap OID, payload = the JSON
//! documented in the README (SNMP section). Communities never reach the event.

use std::net::SocketAddr;

use async_snmp::SecurityLevel;
use async_snmp::notification::Notification;
use serde_json::{Map, Value as Json, json};

use super::render::{varbind, well_known_name};

use crate::event::{Event, Source, attributes, new_event};

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
        (attributes::SNMP_VERSION.into(), version.into()),
        (attributes::SNMP_PDU.into(), pdu.into()),
        (attributes::SNMP_SOURCE.into(), source.to_string()),
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
