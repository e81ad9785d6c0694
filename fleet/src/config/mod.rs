//! The configuration file (`fogd.toml`): its types, defaults, loading and validation.
//!
//! The same [`FunctionSpec`] shape describes a function in the local file and in a deployment
//! document, so there is one parser for both.

mod broker;
mod duration;
mod flow;
mod grants;
mod key;
mod load;
mod network;
mod snmp;
mod syslog;
mod validate;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;

pub use broker::{
    BrokerSpec, EmbeddedBrokerSpec, MqttProtocol, MqttTrigger, OutboxLimits, Retained, TlsSpec,
    default_client_id,
};
pub use duration::{DurationError, Millis};
pub use flow::{
    FlowConfig, FlowKey, FlowMode, FlowTrigger, MAX_BATCH_RECORDS, MAX_KEY_FIELDS, MAX_TOP_TALKERS,
};
pub use grants::{Grants, HttpGrant, HttpOrigin, HttpScheme, SnmpAccess, split_host_port};
pub use key::{PublicKey, PublicKeyError};
pub use load::{ConfigError, ConfigErrors, error_at_key, load_file, parse_str};
pub use network::{Network, NetworkError, source_allowed};
pub use snmp::{PollJob, SnmpConfig, SnmpPollTrigger, SnmpTarget, SnmpTrapTrigger, SnmpUser};
pub use syslog::{Facility, Pattern, Severity, SyslogConfig, SyslogTls, SyslogTrigger};

/// The whole configuration file.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Where fogd keeps its database and compiled-component cache. Relative paths are
    /// resolved against the directory of the config file.
    #[serde(default = "default_state_dir")]
    pub state_dir: PathBuf,
    #[serde(default)]
    pub log: LogConfig,
    #[serde(default)]
    pub metrics: MetricsConfig,
    #[serde(default)]
    pub runtime: RuntimeConfig,
    #[serde(default)]
    pub state: StateConfig,
    /// MQTT broker connections (`[[broker]]` tables).
    #[serde(default, rename = "broker")]
    pub brokers: Vec<BrokerSpec>,
    /// An MQTT broker fogd serves itself, for devices on the site; off unless present.
    pub embedded_broker: Option<EmbeddedBrokerSpec>,
    /// The network functions to host (`[[function]]` tables).
    #[serde(default, rename = "function")]
    pub functions: Vec<FunctionSpec>,
    #[serde(default)]
    pub inference: InferenceConfig,
    /// TFLite models functions may run (`[[model]]` tables).
    #[serde(default, rename = "model")]
    pub models: Vec<ModelSpec>,
    /// The SNMP trap and inform receiver; off unless present.
    pub snmp: Option<SnmpConfig>,
    /// The syslog receiver; off unless present.
    pub syslog: Option<SyslogConfig>,
    /// The flow collector (NetFlow, IPFIX, sFlow); off unless present.
    pub flow: Option<FlowConfig>,
    #[serde(default)]
    pub sync: SyncConfig,
}

/// Deployment documents from the fleet (`fogd deploy`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyncConfig {
    /// Fleet public keys (hex, as `fogctl keygen` writes them) whose signed documents this
    /// device accepts. None: deployments are refused.
    #[serde(default)]
    pub trusted_keys: Vec<PublicKey>,
    /// Revisions whose files are kept: the committed one and those before it, for rollback.
    #[serde(default = "default_keep_revisions")]
    pub keep_revisions: u32,
    /// The `[[broker]]` on which the device follows its desired state
    /// (`fogd/v1/devices/<id>/desired` and its groups' `fogd/v1/groups/<group>/desired`) and
    /// publishes its report (`fogd/v1/devices/<id>/reported`). None: only `fogd deploy`.
    pub broker: Option<String>,
    /// The device's id in those topics; defaults to the host name.
    pub device_id: Option<String>,
    /// Groups whose desired documents the device follows too.
    #[serde(default)]
    pub groups: Vec<String>,
    /// PEM CA file for the artifact server's certificate; without it, the system's roots.
    pub artifact_ca: Option<PathBuf>,
    /// How often the report's function health is refreshed between state changes.
    #[serde(default = "default_report_every")]
    pub report_every: Millis,
}

fn default_report_every() -> Millis {
    Millis(60_000)
}

impl SyncConfig {
    /// The device id: `device_id`, else the host name.
    pub fn device_id(&self) -> String {
        self.device_id.clone().unwrap_or_else(hostname)
    }
}

/// The host name, or `device` where it cannot be read: the default device id and part of
/// default MQTT client ids.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|name| name.trim().to_owned())
        .ok()
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "device".to_owned())
}

fn default_keep_revisions() -> u32 {
    3
}

impl Default for SyncConfig {
    fn default() -> Self {
        Self {
            trusted_keys: Vec::new(),
            keep_revisions: default_keep_revisions(),
            broker: None,
            device_id: None,
            groups: Vec::new(),
            artifact_ca: None,
            report_every: default_report_every(),
        }
    }
}

/// The LiteRT runtime.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InferenceConfig {
    /// Path of `libLiteRt.so`; otherwise `FOGD_LITERT_LIB`, then standard locations.
    pub runtime: Option<PathBuf>,
    /// Largest model file accepted.
    #[serde(default = "default_max_model_mib")]
    pub max_model_mib: u32,
}

fn default_max_model_mib() -> u32 {
    64
}

impl Default for InferenceConfig {
    fn default() -> Self {
        Self {
            runtime: None,
            max_model_mib: default_max_model_mib(),
        }
    }
}

/// One version of a model: the same shape in fogd.toml and in deployment documents.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSpec {
    /// The name functions use (`grants.models`).
    pub name: String,
    /// Any text that changes with the file, e.g. `"3"` or a date.
    pub version: String,
    /// The `.tflite` file (relative to the config file's directory).
    pub path: PathBuf,
    /// Expected SHA-256 of the file, hex; checked before loading when given.
    pub sha256: Option<String>,
    /// Reference vectors (JSON, see models/README.md) the model must reproduce exactly
    /// before it is activated.
    pub reference: Option<PathBuf>,
    /// Run this version beside the active one on the same inputs, without returning its
    /// outputs, and record agreement and latency (`/models`).
    #[serde(default)]
    pub shadow: bool,
}

pub(crate) fn default_state_dir() -> PathBuf {
    PathBuf::from("/var/lib/fogd")
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One readable line per record.
    #[default]
    Human,
    /// One JSON object per line.
    Json,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    #[serde(default)]
    pub format: LogFormat,
    /// A tracing filter such as `info` or `fogd=debug,info`; `RUST_LOG` overrides it.
    #[serde(default = "default_log_level")]
    pub level: String,
}

fn default_log_level() -> String {
    "info".to_owned()
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            format: LogFormat::default(),
            level: default_log_level(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// Address of the `/metrics` and `/healthz` endpoint; omit `address` to turn it off.
    pub address: Option<SocketAddr>,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self {
            address: Some(SocketAddr::from(([127, 0, 0, 1], 9464))),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuntimeConfig {
    /// Threads that run guests; defaults to the number of CPUs.
    pub workers: Option<usize>,
    /// Threads of the async runtime (broker connections, triggers, outbox); defaults to half
    /// the CPUs, at least one.
    pub async_threads: Option<usize>,
    /// Compiled-component cache; defaults to `<state_dir>/cache`.
    pub cache_dir: Option<PathBuf>,
    /// Instances that may exist at once across all functions (the pooling allocator's size).
    #[serde(default = "default_max_instances")]
    pub max_instances: u32,
    /// Granularity of function deadlines.
    #[serde(default = "default_epoch_tick")]
    pub epoch_tick: Millis,
    /// Once ready (and after each reload), page out the code and read-only data start-up
    /// touched; what events need is read back on first use.
    #[serde(default = "default_release_startup_pages")]
    pub release_startup_pages: bool,
}

fn default_max_instances() -> u32 {
    64
}

fn default_epoch_tick() -> Millis {
    Millis(10)
}

fn default_release_startup_pages() -> bool {
    true
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        Self {
            workers: None,
            async_threads: None,
            cache_dir: None,
            max_instances: default_max_instances(),
            epoch_tick: default_epoch_tick(),
            release_startup_pages: default_release_startup_pages(),
        }
    }
}

/// Durability and limits of the state database.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateConfig {
    /// How often buffered writes are flushed to disk. `0ms` flushes after every write
    /// (durable, slower); a crash may lose at most this window of kv writes otherwise.
    #[serde(default = "default_flush_every")]
    pub flush_every: Millis,
    #[serde(default = "default_max_key_bytes")]
    pub max_key_bytes: u32,
    #[serde(default = "default_max_value_bytes")]
    pub max_value_bytes: u32,
    /// How often expired kv keys are removed from disk (they are never returned either way).
    #[serde(default = "default_sweep_every")]
    pub sweep_every: Millis,
    /// Memory the database may use for its page cache.
    #[serde(default = "default_cache_mib")]
    pub cache_mib: u32,
}

fn default_flush_every() -> Millis {
    Millis(500)
}
fn default_max_key_bytes() -> u32 {
    512
}
fn default_max_value_bytes() -> u32 {
    64 * 1024
}
fn default_sweep_every() -> Millis {
    Millis(60_000)
}
fn default_cache_mib() -> u32 {
    4
}

impl Default for StateConfig {
    fn default() -> Self {
        Self {
            flush_every: default_flush_every(),
            max_key_bytes: default_max_key_bytes(),
            max_value_bytes: default_max_value_bytes(),
            sweep_every: default_sweep_every(),
            cache_mib: default_cache_mib(),
        }
    }
}

/// One network function: the same shape in fogd.toml and in deployment documents.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FunctionSpec {
    /// Unique name: lower-case letters, digits, `-` and `_`.
    pub name: String,
    /// Path of the `.wasm` component (relative to the config file's directory).
    pub component: PathBuf,
    /// What runs the function (`[[function.trigger]]` tables).
    #[serde(default, rename = "trigger")]
    pub triggers: Vec<TriggerSpec>,
    /// Topic template the function's return value is published to: `{function}`,
    /// `{subject}` and `{1}`, `{2}`, ... (levels of the subject) are replaced. An MQTT v5
    /// request with a response topic is answered there instead.
    pub output: Option<String>,
    /// QoS of the published result: 0, 1 or 2. Default: the QoS of the MQTT message that
    /// triggered the event, 1 for other sources.
    pub output_qos: Option<u8>,
    /// The broker connection results and publishes go to; defaults to the first `[[broker]]`.
    pub broker: Option<String>,
    #[serde(default)]
    pub limits: Limits,
    /// Whether a failed event's publishes and kv writes are discarded (`atomic`) or kept.
    #[serde(default)]
    pub effects: Effects,
    /// Which events run one at a time, in arrival order: those with the same subject
    /// (`"subject"`, the default), the same value of an attribute (`"attribute:<name>"`), or
    /// none (`"none"`).
    #[serde(default)]
    pub order_by: OrderBy,
    #[serde(default)]
    pub grants: Grants,
    /// Shapes the function expects of its models (`[function.model_shapes.<model>]`): a
    /// model that does not match is refused when the function loads.
    #[serde(default)]
    pub model_shapes: BTreeMap<String, ModelShapes>,
    /// Settings the function reads through the `config` interface.
    #[serde(default)]
    pub config: BTreeMap<String, serde_json::Value>,
}

/// Per-function resource limits.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Largest linear memory an instance may grow to.
    #[serde(default = "default_memory_mib")]
    pub memory_mib: u32,
    /// Wall-clock deadline for one `handle` call.
    #[serde(default = "default_timeout")]
    pub timeout: Millis,
    /// Events of this function that may run at the same time.
    #[serde(default = "default_concurrency")]
    pub concurrency: u32,
    /// Events that may wait for a free slot; beyond that sources back off or drop (counted).
    #[serde(default = "default_queue")]
    pub queue: u32,
    /// Largest result `handle` may return; a larger one fails the event (`output_limit`).
    #[serde(default = "default_result_bytes")]
    pub result_bytes: u32,
    /// `messaging.publish` calls one event may make (`output_limit` beyond).
    #[serde(default = "default_publishes")]
    pub publishes: u32,
    /// Payload bytes one event may publish, all its publishes together (`output_limit` beyond).
    #[serde(default = "default_publish_bytes")]
    pub publish_bytes: u64,
    /// Key and value bytes one event may write to kv (`output_limit` beyond).
    #[serde(default = "default_kv_write_bytes")]
    pub kv_write_bytes: u64,
    /// Key and value bytes the function may keep in kv: its quota (`storage_quota` beyond).
    #[serde(default = "default_kv_bytes")]
    pub kv_bytes: u64,
    /// Keys the function may keep in kv (`storage_quota` beyond).
    #[serde(default = "default_kv_keys")]
    pub kv_keys: u64,
    /// Largest HTTP response body the function may read; the body is cut there and the guest
    /// gets an error.
    #[serde(default = "default_http_response_bytes")]
    pub http_response_bytes: u64,
    /// HTTP requests of the function that may be in flight at once (all its events together).
    #[serde(default = "default_http_concurrency")]
    pub http_concurrency: u32,
    /// SNMP requests (`get`, `get-next`, `set`, and each `walk`) one event may make.
    #[serde(default = "default_snmp_requests")]
    pub snmp_requests: u32,
}

fn default_memory_mib() -> u32 {
    16
}
fn default_timeout() -> Millis {
    Millis(1000)
}
fn default_concurrency() -> u32 {
    2
}
fn default_queue() -> u32 {
    256
}
/// Largest message a function may publish.
pub const MAX_PUBLISH_BYTES: u32 = 1024 * 1024;

fn default_result_bytes() -> u32 {
    MAX_PUBLISH_BYTES
}
fn default_publishes() -> u32 {
    100
}
fn default_publish_bytes() -> u64 {
    4 * 1024 * 1024
}
fn default_kv_write_bytes() -> u64 {
    1024 * 1024
}
fn default_kv_bytes() -> u64 {
    64 * 1024 * 1024
}
fn default_kv_keys() -> u64 {
    100_000
}
fn default_http_response_bytes() -> u64 {
    1024 * 1024
}
fn default_http_concurrency() -> u32 {
    4
}
fn default_snmp_requests() -> u32 {
    100
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            memory_mib: default_memory_mib(),
            timeout: default_timeout(),
            concurrency: default_concurrency(),
            queue: default_queue(),
            result_bytes: default_result_bytes(),
            publishes: default_publishes(),
            publish_bytes: default_publish_bytes(),
            kv_write_bytes: default_kv_write_bytes(),
            kv_bytes: default_kv_bytes(),
            kv_keys: default_kv_keys(),
            http_response_bytes: default_http_response_bytes(),
            http_concurrency: default_http_concurrency(),
            snmp_requests: default_snmp_requests(),
        }
    }
}

/// Which of a function's events must not overlap and finish in arrival order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub enum OrderBy {
    /// Events with the same subject (MQTT topic, trap OID, poll job, timer name).
    #[default]
    Subject,
    /// Events with the same value of this attribute (absent counts as one value).
    Attribute(String),
    /// No ordering: events run as slots free up.
    None,
}

impl TryFrom<String> for OrderBy {
    type Error = String;

    fn try_from(text: String) -> Result<Self, Self::Error> {
        match text.as_str() {
            "subject" => Ok(OrderBy::Subject),
            "none" => Ok(OrderBy::None),
            _ => match text.strip_prefix("attribute:") {
                Some(name) if !name.is_empty() => Ok(OrderBy::Attribute(name.to_owned())),
                _ => Err(format!(
                    "{text:?} is not \"subject\", \"none\" or \"attribute:<name>\""
                )),
            },
        }
    }
}

/// What happens to an event's publishes and kv writes when the event fails.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Effects {
    /// They take effect only if the event succeeds, all together; a failed event leaves
    /// nothing behind.
    #[default]
    Atomic,
    /// Each takes effect when it is made, and stays when the event fails later.
    Keep,
}

/// Tensor shapes, one list per input and per output, e.g. `inputs = [[1, 8]]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelShapes {
    #[serde(default)]
    pub inputs: Vec<Vec<u32>>,
    #[serde(default)]
    pub outputs: Vec<Vec<u32>>,
}

/// A trigger: a table with exactly one key naming its kind.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "lowercase", deny_unknown_fields)]
pub enum TriggerSpec {
    /// `timer = { every = "5s" }`: runs the function periodically.
    Timer(TimerTrigger),
    /// `mqtt = { topic = "sensors/+/telemetry", qos = 1 }`: runs it for matching messages.
    Mqtt(MqttTrigger),
    /// `snmp_trap = { oid = "1.3.6.1.6.3.1.1.5" }`: runs it for traps and informs.
    #[serde(rename = "snmp_trap")]
    SnmpTrap(SnmpTrapTrigger),
    /// `snmp_poll = { job = "core-interfaces" }`: runs it with each result of a poll job.
    #[serde(rename = "snmp_poll")]
    SnmpPoll(SnmpPollTrigger),
    /// `syslog = { severity = "warning" }`: runs it for syslog messages that pass its filters.
    Syslog(SyslogTrigger),
    /// `flow = { window = "1s", key = ["dst_addr"] }`: runs it with flow aggregates or
    /// record batches.
    Flow(FlowTrigger),
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimerTrigger {
    /// Period between ticks, e.g. `"500ms"`, `"10s"`, `"1m"`.
    pub every: Millis,
    /// Event subject; defaults to `<function>/timer<index>`.
    pub name: Option<String>,
    /// Payloads to send, one per tick in turn (cycling). Without any, each tick's payload
    /// is `{"tick": n}`.
    #[serde(default)]
    pub payloads: Vec<String>,
}

impl Config {
    /// The compiled-component cache directory.
    pub fn cache_dir(&self) -> PathBuf {
        self.runtime
            .cache_dir
            .clone()
            .unwrap_or_else(|| self.state_dir.join("cache"))
    }

    /// Guest worker threads.
    /// Threads running guests: one more than the CPUs by default, so that a function that
    /// keeps its events running for long leaves a thread for the others, and the kernel
    /// shares the CPUs among them (BENCHMARKS.md, "Isolation").
    pub fn workers(&self) -> usize {
        self.runtime.workers.unwrap_or_else(|| cpus() + 1)
    }

    /// Async runtime threads. Guests run on their own threads, so the runtime only moves
    /// messages: on two CPUs one thread cost 0.84× the CPU per MQTT message of two
    /// (BENCHMARKS.md, "One async thread on two CPUs").
    pub fn async_threads(&self) -> usize {
        self.runtime
            .async_threads
            .unwrap_or_else(|| (cpus() / 2).max(1))
    }
}

fn cpus() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
}

impl FunctionSpec {
    /// A spec with default limits and no triggers or grants, for `fogd invoke --component`.
    pub fn for_component(name: &str, component: PathBuf) -> Self {
        Self {
            name: name.to_owned(),
            component,
            triggers: Vec::new(),
            output: None,
            output_qos: None,
            broker: None,
            limits: Limits::default(),
            effects: Effects::default(),
            order_by: OrderBy::default(),
            grants: Grants::default(),
            model_shapes: BTreeMap::new(),
            config: BTreeMap::new(),
        }
    }
}
