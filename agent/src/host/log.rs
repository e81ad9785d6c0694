//! `fogd:function/log`: guest log records in fogd's log, tagged with function and event.

use wasmtime::component::{HasSelf, Linker};

use super::{Capability, GrantError, HostResources, HostState};
use crate::config::FunctionSpec;
use crate::contract::log::{self, Host, Level};

/// Guest logging: every function may log; records carry its name and the event's id.
pub struct GuestLog;

impl Capability for GuestLog {
    fn prepare(_: &FunctionSpec, _: &HostResources) -> Result<Self, GrantError> {
        Ok(Self)
    }

    fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
        log::add_to_linker::<_, HasSelf<_>>(linker, |state| state)
    }
}

/// Longest message or field value kept; longer ones are cut so a guest cannot flood the log.
const MAX_TEXT: usize = 4096;

fn clip(text: &str) -> &str {
    if text.len() <= MAX_TEXT {
        return text;
    }
    let mut end = MAX_TEXT;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

impl Host for HostState {
    fn log(&mut self, level: Level, message: String, fields: Vec<(String, String)>) {
        let function = &*self.caps.name;
        let event_id = self.event_id();
        let message = clip(&message);
        let fields = fields
            .iter()
            .map(|(key, value)| format!("{}={}", clip(key), clip(value)))
            .collect::<Vec<_>>()
            .join(" ");
        match level {
            Level::Trace => tracing::trace!(function, event_id, fields, "{message}"),
            Level::Debug => tracing::debug!(function, event_id, fields, "{message}"),
            Level::Info => tracing::info!(function, event_id, fields, "{message}"),
            Level::Warn => tracing::warn!(function, event_id, fields, "{message}"),
            Level::Error => tracing::error!(function, event_id, fields, "{message}"),
        }
    }
}
