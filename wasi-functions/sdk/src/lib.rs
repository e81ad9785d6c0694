//! Write fogd network functions in Rust.
//!
//! ```ignore
//! use fogd_sdk::{Event, Guest, export};
//!
//! struct Echo;
//!
//! impl Guest for Echo {
//!     fn handle(event: Event) -> Result<Option<Vec<u8>>, String> {
//!         Ok(Some(event.payload))
//!     }
//! }
//!
//! export!(Echo);
//! ```
//!
//! Build with `cargo build --release --target wasm32-wasip2`; the result is a component
//! fogd loads directly. The bindings come from fogd's own WIT files (`agent/wit`), so host
//! and guest always agree on the contract.

/// The generated bindings; everything useful is re-exported at the crate root.
#[doc(hidden)]
#[allow(clippy::too_many_arguments)] // generated lifting glue
pub mod bindings {
    wit_bindgen::generate!({
        path: "../../agent/wit",
        world: "network-function",
        pub_export_macro: true,
        default_bindings_module: "fogd_sdk::bindings",
    });
}

pub use bindings::fogd::function::types::Source;
pub use bindings::fogd::function::{config, inference, kv, log, messaging};
pub use bindings::{Event, Guest, export};

impl Event {
    /// The payload as text, if it is valid UTF-8.
    pub fn payload_text(&self) -> Option<&str> {
        std::str::from_utf8(&self.payload).ok()
    }

    /// The value of the first attribute named `key`.
    pub fn attribute(&self, key: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// Logs `message` at info level with no extra fields.
pub fn info(message: &str) {
    log::log(log::Level::Info, message, &[]);
}

/// Logs `message` at warn level with no extra fields.
pub fn warn(message: &str) {
    log::log(log::Level::Warn, message, &[]);
}

/// Reads a setting and parses it, falling back to `default` when absent or unparsable.
pub fn setting<T: std::str::FromStr>(key: &str, default: T) -> T {
    config::get(key)
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Attempts [`kv_update`] makes before it gives up.
pub const KV_UPDATE_ATTEMPTS: u32 = 16;

/// Why [`kv_update`] did not store a new value.
#[derive(Debug)]
pub enum KvUpdateError {
    /// The kv interface refused a read or the swap.
    Kv(kv::Error),
    /// Another writer changed the value between every read and swap, [`KV_UPDATE_ATTEMPTS`]
    /// times in a row.
    Contended,
}

/// Replaces the value under `key` with `change(current)` atomically (`None` in: absent;
/// `None` out: delete), for state that events of different ordering keys share. Reads the
/// value, computes, and swaps only if nobody changed it meanwhile, again if somebody did.
/// Returns the value stored.
pub fn kv_update(
    key: &str,
    mut change: impl FnMut(Option<&[u8]>) -> Option<Vec<u8>>,
) -> Result<Option<Vec<u8>>, KvUpdateError> {
    for _ in 0..KV_UPDATE_ATTEMPTS {
        let current = kv::get(key).map_err(KvUpdateError::Kv)?;
        let next = change(current.as_deref());
        if kv::compare_and_swap(key, current.as_deref(), next.as_deref())
            .map_err(KvUpdateError::Kv)?
        {
            return Ok(next);
        }
    }
    Err(KvUpdateError::Contended)
}
