//! `[flow]`: the flow collector's listeners and limits, and the `flow` trigger's shape
//! (windowed aggregates or record batches).

use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, de};

use super::{Millis, Network};

/// The flow collector: UDP listeners for NetFlow v5, v9, IPFIX and sFlow v5 (told apart by
/// each datagram's version field).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlowConfig {
    /// UDP addresses to receive on, e.g. `["0.0.0.0:2055", "0.0.0.0:6343"]`.
    #[serde(default)]
    pub udp: Vec<SocketAddr>,
    /// Exporter networks accepted; empty accepts any exporter.
    #[serde(default)]
    pub allowed_sources: Vec<Network>,
    /// Socket receive buffer of each listener (`SO_RCVBUF`).
    #[serde(default = "default_receive_buffer_kib")]
    pub receive_buffer_kib: u32,
    /// A v9 or IPFIX template not refreshed for this long is forgotten (RFC 7011 section
    /// 8.4: templates over UDP expire unless resent).
    #[serde(default = "default_template_timeout")]
    pub template_timeout: Millis,
}

fn default_receive_buffer_kib() -> u32 {
    4096
}

fn default_template_timeout() -> Millis {
    Millis(1_800_000)
}

fn default_max_keys() -> usize {
    200
}

/// `flow = { window = "1s", key = ["dst_addr"] }` (one event per key per window),
/// `flow = { batch = 500, flush = "1s" }` (the records themselves, in batches) or
/// `flow = { counters = true }` (sFlow interface counter samples, one event each).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlowTrigger {
    /// Aggregation window.
    pub window: Option<Millis>,
    /// Record fields the window's aggregates are kept apart by; none gives one aggregate
    /// per window.
    #[serde(default)]
    pub key: Vec<FlowKey>,
    /// Talkers (sources by bytes) listed per aggregate.
    #[serde(default = "default_top")]
    pub top: usize,
    /// Keys one window keeps apart; records of further keys are added to one overflow
    /// aggregate (`"overflow": true`). A window is queued whole or dropped whole, so the
    /// function's `limits.queue` must hold more than this.
    #[serde(default = "default_max_keys")]
    pub max_keys: usize,
    /// Records per batch event.
    pub batch: Option<usize>,
    /// The longest a record waits for its batch to fill.
    pub flush: Option<Millis>,
    /// sFlow counter samples instead of flow records.
    #[serde(default)]
    pub counters: bool,
}

fn default_top() -> usize {
    5
}

/// What a flow trigger's events carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlowMode {
    Window { window: Millis },
    Batch { records: usize, flush: Millis },
    Counters,
}

/// A batch is flushed at least this often unless the trigger says otherwise.
const DEFAULT_FLUSH: Millis = Millis(1_000);

impl FlowTrigger {
    /// The mode, once validation has seen exactly one of `window`, `batch` and `counters`.
    pub fn mode(&self) -> FlowMode {
        match (self.window, self.batch) {
            _ if self.counters => FlowMode::Counters,
            (Some(window), _) => FlowMode::Window { window },
            (None, records) => FlowMode::Batch {
                records: records.unwrap_or(1),
                flush: self.flush.unwrap_or(DEFAULT_FLUSH),
            },
        }
    }
}

/// A record field a window's aggregates are kept apart by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FlowKey {
    SrcAddr,
    DstAddr,
    /// The source address's first bits (`src_addr/24`).
    SrcPrefix(u8),
    DstPrefix(u8),
    SrcPort,
    DstPort,
    Protocol,
    /// The address the export came from.
    Exporter,
    InputInterface,
    OutputInterface,
}

const KEY_NAMES: &str = "src_addr, dst_addr, src_addr/<bits>, dst_addr/<bits>, src_port, \
                         dst_port, protocol, exporter, input_interface, output_interface";

impl FlowKey {
    /// The name in events, without a prefix length.
    pub fn field(self) -> &'static str {
        match self {
            FlowKey::SrcAddr | FlowKey::SrcPrefix(_) => "src_addr",
            FlowKey::DstAddr | FlowKey::DstPrefix(_) => "dst_addr",
            FlowKey::SrcPort => "src_port",
            FlowKey::DstPort => "dst_port",
            FlowKey::Protocol => "protocol",
            FlowKey::Exporter => "exporter",
            FlowKey::InputInterface => "input_interface",
            FlowKey::OutputInterface => "output_interface",
        }
    }
}

impl fmt::Display for FlowKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FlowKey::SrcPrefix(bits) | FlowKey::DstPrefix(bits) => {
                write!(f, "{}/{bits}", self.field())
            }
            _ => f.write_str(self.field()),
        }
    }
}

impl FromStr for FlowKey {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let unknown = || format!("{text:?} is not a flow key (one of: {KEY_NAMES})");
        if let Some((field, bits)) = text.split_once('/') {
            let bits: u8 = bits
                .parse()
                .ok()
                .filter(|b| (1..=128).contains(b))
                .ok_or_else(|| format!("{text:?}: a prefix length is 1 to 128 bits"))?;
            return match field {
                "src_addr" => Ok(FlowKey::SrcPrefix(bits)),
                "dst_addr" => Ok(FlowKey::DstPrefix(bits)),
                _ => Err(unknown()),
            };
        }
        Ok(match text {
            "src_addr" => FlowKey::SrcAddr,
            "dst_addr" => FlowKey::DstAddr,
            "src_port" => FlowKey::SrcPort,
            "dst_port" => FlowKey::DstPort,
            "protocol" => FlowKey::Protocol,
            "exporter" => FlowKey::Exporter,
            "input_interface" => FlowKey::InputInterface,
            "output_interface" => FlowKey::OutputInterface,
            _ => return Err(unknown()),
        })
    }
}

impl<'de> Deserialize<'de> for FlowKey {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer)?
            .parse()
            .map_err(de::Error::custom)
    }
}

/// The most records one batch event may carry.
pub const MAX_BATCH_RECORDS: usize = 10_000;

/// The most fields one window key may have.
pub const MAX_KEY_FIELDS: usize = 6;

/// The most talkers one aggregate may list.
pub const MAX_TOP_TALKERS: usize = 100;

impl FlowTrigger {
    /// What is wrong with this trigger, as (key under `flow`, problem).
    pub fn problems(&self) -> Vec<(&'static str, String)> {
        let mut problems = Vec::new();
        let modes = [self.window.is_some(), self.batch.is_some(), self.counters];
        if modes.iter().filter(|&&given| given).count() != 1 {
            problems.push((
                "",
                "give one of window (aggregates), batch (records) or counters = true".to_owned(),
            ));
            return problems;
        }
        if let Some(window) = self.window {
            if window.0 == 0 {
                problems.push(("window", "must be at least 1ms".to_owned()));
            }
            if self.top > MAX_TOP_TALKERS {
                problems.push(("top", format!("must be at most {MAX_TOP_TALKERS}")));
            }
            if self.key.len() > MAX_KEY_FIELDS {
                problems.push(("key", format!("at most {MAX_KEY_FIELDS} fields")));
            }
            if self.max_keys == 0 {
                problems.push(("max_keys", "must be at least 1".to_owned()));
            }
        } else if !self.key.is_empty() {
            problems.push(("key", "goes with window".to_owned()));
        }
        if let Some(records) = self.batch {
            if !(1..=MAX_BATCH_RECORDS).contains(&records) {
                problems.push(("batch", format!("must be 1 to {MAX_BATCH_RECORDS}")));
            }
            if self.flush.is_some_and(|f| f.0 == 0) {
                problems.push(("flush", "must be at least 1ms".to_owned()));
            }
        } else if self.flush.is_some() {
            problems.push(("flush", "goes with batch".to_owned()));
        }
        problems
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trigger(toml_text: &str) -> FlowTrigger {
        toml::from_str(toml_text).unwrap()
    }

    #[test]
    fn keys_parse_with_prefix_lengths() {
        let t = trigger("window = \"1s\"\nkey = [\"dst_addr/24\", \"protocol\", \"exporter\"]");
        assert_eq!(
            t.key,
            [FlowKey::DstPrefix(24), FlowKey::Protocol, FlowKey::Exporter]
        );
        assert_eq!(t.key[0].to_string(), "dst_addr/24");
        assert_eq!(
            t.mode(),
            FlowMode::Window {
                window: Millis(1000)
            }
        );
        assert!(t.problems().is_empty());
    }

    #[test]
    fn unknown_keys_and_bad_prefixes_are_refused_with_the_choices() {
        let error = toml::from_str::<FlowTrigger>("window = \"1s\"\nkey = [\"tos\"]").unwrap_err();
        assert!(
            error
                .to_string()
                .contains("\"tos\" is not a flow key (one of: src_addr")
        );
        let error =
            toml::from_str::<FlowTrigger>("window = \"1s\"\nkey = [\"dst_addr/0\"]").unwrap_err();
        assert!(error.to_string().contains("1 to 128 bits"), "{error}");
        let error =
            toml::from_str::<FlowTrigger>("window = \"1s\"\nkey = [\"dst_port/8\"]").unwrap_err();
        assert!(error.to_string().contains("is not a flow key"), "{error}");
    }

    #[test]
    fn a_trigger_is_either_windows_or_batches() {
        assert_eq!(trigger("window = \"1s\"\nbatch = 5").problems().len(), 1);
        assert_eq!(trigger("top = 3").problems().len(), 1);
        let batch = trigger("batch = 500");
        assert!(batch.problems().is_empty());
        assert_eq!(
            batch.mode(),
            FlowMode::Batch {
                records: 500,
                flush: DEFAULT_FLUSH
            }
        );
        let wrong: Vec<_> = trigger("batch = 0\nkey = [\"dst_addr\"]")
            .problems()
            .into_iter()
            .map(|(key, _)| key)
            .collect();
        assert_eq!(wrong, ["key", "batch"]);
        let wrong: Vec<_> = trigger("window = \"0s\"\nflush = \"1s\"\ntop = 1000")
            .problems()
            .into_iter()
            .map(|(key, _)| key)
            .collect();
        assert_eq!(wrong, ["window", "top", "flush"]);
        assert_eq!(trigger("counters = true\nbatch = 5").problems().len(), 1);
        assert_eq!(trigger("counters = true").mode(), FlowMode::Counters);
    }
}
