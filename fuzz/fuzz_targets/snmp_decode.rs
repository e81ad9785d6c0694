//! Every datagram the SNMP receiver gets goes through async-snmp's message decoder and, for
//! what it accepts, through fogd's varbind rendering. Neither may panic, hang or allocate
//! without bound on any input.

#![no_main]

use async_snmp::DecodeConfig;
use async_snmp::message::Message;
use bytes::Bytes;
use libfuzzer_sys::fuzz_target;

#[path = "../../agent/src/triggers/snmp/render.rs"]
mod render;

fuzz_target!(|data: &[u8]| {
    for config in [DecodeConfig::default(), DecodeConfig::STRICT] {
        let Ok(outcome) = Message::decode(Bytes::copy_from_slice(data), config) else {
            continue;
        };
        let message = outcome.value;
        let _ = message.version();
        if let Message::Community(community) = &message
            && let Some(trap) = community.pdu().trap_v1()
        {
            let _ = trap.v2_trap_oid();
            render_all(trap.varbinds());
        }
        if let Some(pdu) = message.into_pdu() {
            render_all(pdu.varbinds());
        }
    }
});

fn render_all(varbinds: &[async_snmp::VarBind]) {
    for binding in varbinds {
        let json = render::varbind(binding);
        let text = json.to_string();
        assert!(serde_json::from_str::<serde_json::Value>(&text).is_ok());
        if let Some(oid) = json["oid"].as_str() {
            let _ = render::well_known_name(oid);
        }
    }
}
