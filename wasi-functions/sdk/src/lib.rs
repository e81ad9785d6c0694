//! Write fogd network functions in Rust.
//!
//! ```ignore
//! use fogd_sdk::{Event, Result};
//!
//! #[derive(serde::Deserialize)]
//! struct Reading {
//!     temperature: f64,
//! }
//!
//! fn handle(event: Event) -> Result<Option<Vec<u8>>> {
//!     let reading: Reading = event.json()?;
//!     let seen: u64 = fogd_sdk::kv_get_json("seen")?.unwrap_or(0);
//!     fogd_sdk::kv_set_json("seen", &(seen + 1))?;
//!     if reading.temperature > 80.0 {
//!         fogd_sdk::publish_json("alerts/hot", &serde_json::json!({"seen": seen + 1}))?;
//!     }
//!     Ok(None)
//! }
//!
//! fogd_sdk::handler!(handle);
//! ```
//!
//! Any error converts into [`Error`] with `?`; [`Context`] adds what was being done. A
//! function may also implement [`Guest`] itself and call [`export!`].
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

pub mod http;

pub use bindings::fogd::function::events::Source;
pub use bindings::fogd::function::{config, inference, kv, log, messaging, response, snmp};
pub use bindings::{Event, Guest, export};

use serde::Serialize;
use serde::de::DeserializeOwned;

/// Why an event failed: a message fogd records as the event's error. Every error type that
/// displays converts into it, so `?` works on the host interfaces, serde and the standard
/// library alike.
pub struct Error(String);

impl Error {
    pub fn msg(message: impl Into<String>) -> Self {
        Error(message.into())
    }

    pub fn message(&self) -> &str {
        &self.0
    }
}

impl<E: std::fmt::Display> From<E> for Error {
    fn from(error: E) -> Self {
        Error(error.to_string())
    }
}

impl std::fmt::Debug for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<Error> for String {
    fn from(error: Error) -> Self {
        error.0
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Says what was being done when an error happened (`kv::get(key).context("reading state")?`).
pub trait Context<T> {
    fn context(self, what: &str) -> Result<T>;
}

impl<T, E: std::fmt::Display> Context<T> for std::result::Result<T, E> {
    fn context(self, what: &str) -> Result<T> {
        self.map_err(|error| Error(format!("{what}: {error}")))
    }
}

impl<T> Context<T> for std::result::Result<T, Error> {
    fn context(self, what: &str) -> Result<T> {
        self.map_err(|error| Error(format!("{what}: {}", error.0)))
    }
}

impl<T> Context<T> for Option<T> {
    fn context(self, what: &str) -> Result<T> {
        self.ok_or_else(|| Error(what.to_owned()))
    }
}

/// Exports `handler`, a `fn(Event) -> fogd_sdk::Result<Option<Vec<u8>>>`, as the function's
/// entry point; its error becomes the event's error message.
#[macro_export]
macro_rules! handler {
    ($handler:path) => {
        struct FogdHandler;

        impl $crate::Guest for FogdHandler {
            fn handle(
                event: $crate::Event,
            ) -> ::core::result::Result<
                ::core::option::Option<::std::vec::Vec<u8>>,
                ::std::string::String,
            > {
                $handler(event).map_err(::std::string::String::from)
            }
        }

        $crate::export!(FogdHandler);
    };
}

/// The attribute names fogd sets on events (see the README's event schema).
pub mod attributes {
    include!("../../../agent/wit/attributes.rs");
}

/// The value stored under `key`, decoded from JSON; `None` when absent.
pub fn kv_get_json<T: DeserializeOwned>(key: &str) -> Result<Option<T>> {
    match kv::get(key).context(key)? {
        Some(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .context(&format!("the value under {key} is not what was stored")),
        None => Ok(None),
    }
}

/// Stores `value` under `key` as JSON, with no expiry.
pub fn kv_set_json<T: Serialize + ?Sized>(key: &str, value: &T) -> Result<()> {
    let bytes = serde_json::to_vec(value)?;
    kv::set(key, &bytes, None).context(key)
}

/// Publishes `value` as JSON to `topic` at QoS 1, not retained.
pub fn publish_json<T: Serialize + ?Sized>(topic: &str, value: &T) -> Result<()> {
    let bytes = serde_json::to_vec(value)?;
    messaging::publish(topic, &bytes, messaging::Qos::AtLeastOnce, false)
        .context(&format!("publish to {topic}"))
}

impl Event {
    /// The payload decoded from JSON into `T`.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T> {
        Ok(serde_json::from_slice(&self.payload)?)
    }

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

impl std::fmt::Display for KvUpdateError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KvUpdateError::Kv(error) => write!(f, "kv: {error}"),
            KvUpdateError::Contended => write!(
                f,
                "the value changed under every one of {KV_UPDATE_ATTEMPTS} attempts"
            ),
        }
    }
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

/// The value of one object on a granted SNMP target (`snmp::get` of one OID).
pub fn snmp_get(target: &str, oid: &str) -> Result<snmp::Value> {
    let mut varbinds = snmp::get(target, &[oid.to_owned()])?;
    varbinds
        .pop()
        .map(|varbind| varbind.value)
        .ok_or_else(|| Error(format!("{target} answered nothing for {oid}")))
}

/// Sets one object on a granted (`write`) SNMP target.
pub fn snmp_set(target: &str, oid: &str, value: snmp::Value) -> Result<()> {
    snmp::set(
        target,
        &[snmp::Varbind {
            oid: oid.to_owned(),
            value,
        }],
    )?;
    Ok(())
}

impl snmp::Value {
    /// Integers, gauges, counters and time ticks as a number.
    pub fn as_u64(&self) -> Option<u64> {
        match self {
            snmp::Value::Integer(value) => u64::try_from(*value).ok(),
            snmp::Value::Unsigned(value)
            | snmp::Value::Counter32(value)
            | snmp::Value::Timeticks(value) => Some(u64::from(*value)),
            snmp::Value::Counter64(value) => Some(*value),
            _ => None,
        }
    }

    /// An octet string that is UTF-8, as text.
    pub fn as_text(&self) -> Option<&str> {
        match self {
            snmp::Value::OctetString(bytes) => std::str::from_utf8(bytes).ok(),
            _ => None,
        }
    }
}

/// The payload of an SNMP poll event (the README's schema): the job, its target and the
/// values read, each varbind as fogd renders it.
#[derive(Debug, serde::Deserialize)]
pub struct PollResult {
    pub job: String,
    #[serde(default)]
    pub target: String,
    pub varbinds: Vec<PolledVarbind>,
}

/// One value of a poll: `value` is a number or text (`null` for an exception); an octet
/// string that is not text comes as `hex` instead.
#[derive(Debug, serde::Deserialize)]
pub struct PolledVarbind {
    pub oid: String,
    #[serde(rename = "type", default)]
    pub kind: String,
    #[serde(default)]
    pub value: serde_json::Value,
    pub hex: Option<String>,
}

impl PollResult {
    /// Each OID that holds a number (integers, gauges, counters, time ticks).
    pub fn numbers(&self) -> std::collections::BTreeMap<&str, f64> {
        self.varbinds
            .iter()
            .filter_map(|varbind| Some((varbind.oid.as_str(), varbind.value.as_f64()?)))
            .collect()
    }
}
