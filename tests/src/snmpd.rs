//! A real snmpd per test, on a free port with its own config and persistent directory.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Instant;

use crate::mosquitto::free_port;

pub struct Snmpd {
    pub port: u16,
    child: Child,
    dir: tempfile::TempDir,
}

/// The v2c community and v3 user (authPriv, SHA/AES) a writable snmpd accepts for writes.
pub const WRITE_COMMUNITY: &str = "fogd-rw-secret";
pub const WRITE_USER: &str = "setv3";
pub const WRITE_USER_AUTH: &str = "setauthpass";
pub const WRITE_USER_PRIVACY: &str = "setprivpass";

impl Snmpd {
    /// Answers v2c community `fogd-ro` and v3 user `pollv3` (authPriv SHA/AES, read-only),
    /// with a known sysLocation (`rack-7`) and sysContact.
    pub fn start() -> Self {
        Self::with_config(
            "rocommunity fogd-ro 127.0.0.1\n\
             createUser pollv3 SHA \"pollauthpass\" AES \"pollprivpass\"\nrouser pollv3 priv\n\
             sysLocation rack-7\nsysContact ops@example.net\n",
        )
    }

    /// Answers reads on `fogd-ro` and writes on [`WRITE_COMMUNITY`] and [`WRITE_USER`];
    /// sysContact and sysLocation are not set in the config, so they are writable.
    pub fn writable() -> Self {
        Self::with_config(&format!(
            "rocommunity fogd-ro 127.0.0.1\nrwcommunity {WRITE_COMMUNITY} 127.0.0.1\n\
             createUser {WRITE_USER} SHA \"{WRITE_USER_AUTH}\" AES \"{WRITE_USER_PRIVACY}\"\n\
             rwuser {WRITE_USER} priv\n"
        ))
    }

    /// Runs with these lines after its `agentaddress` (a `pass` script, say).
    pub fn with_config(lines: &str) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        let config = dir.path().join("snmpd.conf");
        std::fs::write(
            &config,
            format!("agentaddress udp:127.0.0.1:{port}\n{lines}"),
        )
        .expect("snmpd config written");
        let child = Command::new("/usr/sbin/snmpd")
            .args(["-f", "-C", "-Lf", "/dev/null", "-c"])
            .arg(&config)
            .env("SNMP_PERSISTENT_DIR", dir.path())
            .env("MIBS", "")
            .stdin(Stdio::null())
            .spawn()
            .expect("snmpd runs (Debian package `snmpd`)");
        Self { port, child, dir }
    }

    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// `snmpget -v2c -c fogd-ro` of one OID, as net-snmp prints its value (`-Oqv`).
    pub fn get(&self, oid: &str) -> Option<String> {
        let output = Command::new("snmpget")
            .args(["-v2c", "-c", "fogd-ro", "-Oqv", "-t", "1", "-r", "0"])
            .arg(self.address())
            .arg(oid)
            .env("MIBS", "")
            .output()
            .expect("snmpget runs (Debian package `snmp`)");
        output
            .status
            .success()
            .then(|| String::from_utf8_lossy(&output.stdout).trim().to_owned())
    }

    /// Waits until snmpd answers a real `snmpget`.
    pub fn wait_ready(&self) {
        let deadline = Instant::now() + crate::PATIENCE;
        while self.get("1.3.6.1.2.1.1.3.0").is_none() {
            assert!(
                Instant::now() < deadline,
                "snmpd did not answer within 30 s"
            );
        }
    }
}

impl Drop for Snmpd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
