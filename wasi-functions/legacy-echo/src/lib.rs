//! A function built against `fogd:function@0.1.0` (the WIT in `wit/` is that release's,
//! unchanged), so fogd's tests can prove such functions still load and run: it counts its
//! events in kv and returns `<count>:<payload>`.

#[allow(clippy::too_many_arguments)] // generated lifting glue
mod bindings {
    wit_bindgen::generate!({
        path: "wit",
        world: "network-function",
    });
}

use bindings::fogd::function::{kv, log};
use bindings::{Event, Guest, export};

struct LegacyEcho;

impl Guest for LegacyEcho {
    fn handle(event: Event) -> Result<Option<Vec<u8>>, String> {
        let count = kv::incr("events", 1).map_err(|error| format!("{error:?}"))?;
        log::log(log::Level::Info, "legacy echo", &[]);
        let mut reply = format!("{count}:").into_bytes();
        reply.extend_from_slice(&event.payload);
        Ok(Some(reply))
    }
}

export!(LegacyEcho with_types_in bindings);
