//! `[snmp]`: the trap and inform receiver, its accept lists, SNMPv3 users and poll jobs.

use std::path::PathBuf;

use serde::Deserialize;

use super::{Millis, Network};

/// SNMP: the trap and inform receiver (when `listen` is set) and poll jobs.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnmpConfig {
    /// UDP address to receive traps and informs on, e.g. `0.0.0.0:162` (port 162 needs
    /// `CAP_NET_BIND_SERVICE`, which the unit grants). Without it, nothing is received.
    pub listen: Option<String>,
    /// Socket receive buffer (`SO_RCVBUF`), room for bursts while events are dispatched.
    #[serde(default = "default_receive_buffer_kib")]
    pub receive_buffer_kib: u32,
    /// SNMPv1/v2c communities accepted; empty accepts none (v1/v2c is then refused).
    #[serde(default)]
    pub communities: Vec<String>,
    /// Source networks accepted (`10.0.0.0/8`, `192.0.2.7`); empty accepts any source.
    #[serde(default)]
    pub allowed_sources: Vec<Network>,
    /// The IANA private enterprise number in the receiver's generated SNMPv3 engine ID
    /// (RFC 3411 format: this number, then 8 random octets). fogd has none of its own; the
    /// default is the number RFC 5612 sets aside for documentation. Read when the engine ID
    /// is first made (`<state_dir>/snmp-engine.json`), which keeps it afterwards.
    #[serde(default = "default_engine_enterprise")]
    pub engine_enterprise: u32,
    /// SNMPv3 USM users (`[[snmp.user]]`), for receiving and polling.
    #[serde(default, rename = "user")]
    pub users: Vec<SnmpUser>,
    /// Poll jobs (`[[snmp.poll]]`).
    #[serde(default, rename = "poll")]
    pub polls: Vec<PollJob>,
    /// Agents functions may query and set through the `snmp` interface (`[[snmp.target]]`),
    /// each granted per function in `grants.snmp`.
    #[serde(default, rename = "target")]
    pub targets: Vec<SnmpTarget>,
}

/// An SNMP agent functions name instead of addressing: the guest never sees its community
/// or keys.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnmpTarget {
    /// What functions call it by.
    pub name: String,
    /// `host:port` (port 161 usually).
    pub address: String,
    /// v2c with the community read from this file...
    pub community_file: Option<PathBuf>,
    /// ...or SNMPv3 as this `[[snmp.user]]`.
    pub user: Option<String>,
    /// How long one request waits for its answer.
    #[serde(default = "default_poll_timeout")]
    pub timeout: Millis,
    /// Requests sent again after a timeout.
    #[serde(default = "default_poll_retries")]
    pub retries: u32,
}

/// Reads OIDs from one target every `every`; each result is an event whose subject is the
/// job name.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PollJob {
    pub name: String,
    /// `host:port` (port 161 usually).
    pub target: String,
    /// v2c with this community...
    pub community: Option<String>,
    /// ...or SNMPv3 as this `[[snmp.user]]`.
    pub user: Option<String>,
    /// OIDs to GET.
    #[serde(default)]
    pub get: Vec<String>,
    /// A subtree to walk (GETBULK).
    pub walk: Option<String>,
    pub every: Millis,
    #[serde(default = "default_poll_timeout")]
    pub timeout: Millis,
    #[serde(default = "default_poll_retries")]
    pub retries: u32,
}

fn default_poll_timeout() -> Millis {
    Millis(2000)
}

fn default_poll_retries() -> u32 {
    1
}

/// `snmp_poll = { job = "core-interfaces" }`: runs a function with each result of a job.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnmpPollTrigger {
    pub job: String,
}

fn default_receive_buffer_kib() -> u32 {
    1024
}

fn default_engine_enterprise() -> u32 {
    32473
}

/// An SNMPv3 user. Passwords are read from files so the config itself holds no secret.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnmpUser {
    pub name: String,
    /// `MD5`, `SHA` (SHA-1), `SHA-224`, `SHA-256`, `SHA-384` or `SHA-512`; none means
    /// noAuthNoPriv.
    pub auth: Option<String>,
    pub auth_password_file: Option<PathBuf>,
    /// `DES`, `3DES`, `AES` (AES-128), `AES-192-BLUMENTHAL`, `AES-256-BLUMENTHAL` (and the
    /// `-REEDER` variants Cisco uses); needs `auth`.
    pub privacy: Option<String>,
    pub privacy_password_file: Option<PathBuf>,
}

/// `snmp_trap = { oid = "1.3.6.1.6.3.1.1.5" }`: runs a function for traps and informs whose
/// trap OID is this OID or below it; without `oid`, for every one.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnmpTrapTrigger {
    pub oid: Option<String>,
}
