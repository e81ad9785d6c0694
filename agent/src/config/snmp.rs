//! `[snmp]`: the trap and inform receiver, its accept lists and SNMPv3 users.

use std::path::PathBuf;

use serde::Deserialize;

/// The trap and inform receiver; off unless the table is present.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnmpConfig {
    /// UDP address to receive on. Port 162 needs `CAP_NET_BIND_SERVICE` (the unit grants it).
    #[serde(default = "default_listen")]
    pub listen: String,
    /// Socket receive buffer (`SO_RCVBUF`), room for bursts while events are dispatched.
    #[serde(default = "default_receive_buffer_kib")]
    pub receive_buffer_kib: u32,
    /// SNMPv1/v2c communities accepted; empty accepts none (v1/v2c is then refused).
    #[serde(default)]
    pub communities: Vec<String>,
    /// Source networks accepted (`10.0.0.0/8`, `192.0.2.7`); empty accepts any source.
    #[serde(default)]
    pub allowed_sources: Vec<String>,
    /// SNMPv3 USM users (`[[snmp.user]]`).
    #[serde(default, rename = "user")]
    pub users: Vec<SnmpUser>,
}

fn default_listen() -> String {
    "0.0.0.0:162".to_owned()
}

fn default_receive_buffer_kib() -> u32 {
    1024
}

/// An SNMPv3 user. Passwords are read from files so the config itself holds no secret.
#[derive(Debug, Clone, Deserialize)]
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
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnmpTrapTrigger {
    pub oid: Option<String>,
}
