//! A fleet for end-to-end sync tests and benchmarks: Mosquitto with mutual TLS as the
//! fleet's broker, nginx serving artifacts over HTTPS, a fleet signing key, device configs
//! that follow the broker, and `fogctl` pointed at it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use fogd::sync::{FleetKey, Report};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::certs::{ClientFiles, Pki};
use crate::daemon::Daemon;
use crate::fogctl_bin;
use crate::mosquitto::{BrokerOptions, Mosquitto};
use crate::nginx::Nginx;

pub struct Fleet {
    pub dir: tempfile::TempDir,
    pub broker: Mosquitto,
    pub files: Nginx,
    pub key: FleetKey,
    pub key_file: PathBuf,
    pub tls: ClientFiles,
}

impl Default for Fleet {
    fn default() -> Self {
        Self::new()
    }
}

impl Fleet {
    pub fn new() -> Self {
        Self::with_artifact_rate(None)
    }

    /// A fleet whose artifact server sends at most `bytes_per_second` per download.
    pub fn with_artifact_rate(bytes_per_second: Option<u32>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki::generate("fleet");
        let broker = Mosquitto::with(BrokerOptions {
            tls: Some(pki.clone()),
            require_client_certificate: true,
            ..BrokerOptions::default()
        });
        let artifacts = dir.path().join("artifacts");
        std::fs::create_dir_all(&artifacts).unwrap();
        let files = Nginx::serve_limited(&artifacts, &pki, bytes_per_second);
        let (pem, key) = FleetKey::generate().unwrap();
        let key_file = dir.path().join("fleet.key");
        std::fs::write(&key_file, pem).unwrap();
        let tls = pki.write_client_files(dir.path(), "fleet");
        Self {
            dir,
            broker,
            files,
            key,
            key_file,
            tls,
        }
    }

    /// Writes a device's config: no functions of its own, following the fleet on the mTLS
    /// listener, in group `site-a`.
    pub fn device(&self, id: &str) -> PathBuf {
        let home = self.dir.path().join(id);
        std::fs::create_dir_all(&home).unwrap();
        let config = home.join("fogd.toml");
        std::fs::write(
            &config,
            format!(
                r#"
                    state_dir = "state"
                    [metrics]
                    address = "127.0.0.1:0"

                    [[broker]]
                    name = "cloud"
                    address = "127.0.0.1:{port}"
                    client_id = "fogd-{id}"
                    reconnect_max = "300ms"
                    tls = {{ ca_file = "{ca}", cert_file = "{cert}", key_file = "{key}" }}

                    [sync]
                    broker = "cloud"
                    device_id = "{id}"
                    groups = ["site-a"]
                    trusted_keys = ["{trusted}"]
                    artifact_ca = "{ca}"
                    report_every = "1s"

                    [inference]
                    runtime = "{litert}"
                "#,
                port = self.broker.tls_port.unwrap(),
                ca = self.tls.ca.display(),
                cert = self.tls.cert.display(),
                key = self.tls.key.display(),
                trusted = self.key.public_hex(),
                litert = crate::litert_library().display(),
            ),
        )
        .unwrap();
        config
    }

    pub fn start(&self, id: &str) -> Daemon {
        let mut daemon = Daemon::start(&self.device(id));
        daemon.wait_for(&["sync connection up"]);
        daemon
    }

    /// Puts `bytes` on the artifact server as `name`; returns its artifact entry.
    pub fn serve(&self, name: &str, bytes: &[u8]) -> Value {
        std::fs::write(self.dir.path().join("artifacts").join(name), bytes).unwrap();
        json!({
            "url": format!("https://127.0.0.1:{}/{name}", self.files.port),
            "sha256": hex::encode(Sha256::digest(bytes)),
            "size": bytes.len()
        })
    }

    /// A revision running `component` (served as `file`) as function `echo` on a timer.
    pub fn document(&self, revision: u64, file: &str, component: &[u8], timer: &str) -> Value {
        json!({
            "schema": "fogd.deployment/v1",
            "revision": revision,
            "artifacts": {file: self.serve(file, component)},
            "function": [{
                "name": "echo",
                "component": file,
                "trigger": [{"timer": {"every": "20ms", "name": timer}}]
            }],
            "health": {"window": "400ms", "min_events": 5, "max_error_rate": 0.5}
        })
    }

    pub fn sign(&self, name: &str, document: Value) -> PathBuf {
        let path = self.dir.path().join(format!("{name}.signed.json"));
        std::fs::write(&path, serde_json::to_vec(&self.key.sign(document)).unwrap()).unwrap();
        path
    }

    pub fn fogctl(&self, args: &[&str]) -> Output {
        self.fogctl_command(args).output().expect("fogctl runs")
    }

    pub fn fogctl_command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(fogctl_bin());
        command
            .args(args)
            .arg("--broker")
            .arg(format!("127.0.0.1:{}", self.broker.tls_port.unwrap()))
            .arg("--ca")
            .arg(&self.tls.ca)
            .arg("--cert")
            .arg(&self.tls.cert)
            .arg("--key-file")
            .arg(&self.tls.key)
            .args(["--settle-ms", "300"]);
        command
    }

    /// `fogctl rollout SIGNED` to `devices` (`--group G` or `--devices ...`) with `plan`;
    /// its exit code and progress output.
    pub fn rollout(&self, signed: &Path, devices: &[&str], plan: &[&str]) -> (Option<i32>, String) {
        let output =
            self.fogctl(&[&["rollout", signed.to_str().unwrap()][..], devices, plan].concat());
        (output.status.code(), text(&output.stderr))
    }

    pub fn status(&self) -> BTreeMap<String, Report> {
        let output = self.fogctl(&["status", "--json"]);
        assert!(output.status.success(), "{}", text(&output.stderr));
        serde_json::from_slice(&output.stdout).unwrap()
    }

    /// Publishes raw bytes, retained, on the plain listener (as anyone with broker access
    /// could).
    pub fn publish_raw(&self, topic: &str, payload: &Path) {
        let output = Command::new("mosquitto_pub")
            .args(["-h", "127.0.0.1", "-p", &self.broker.port.to_string()])
            .args(["-t", topic, "-q", "1", "-r", "-f"])
            .arg(payload)
            .output()
            .expect("mosquitto_pub runs (Debian package `mosquitto-clients`)");
        assert!(output.status.success(), "{}", text(&output.stderr));
    }
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `component` with a custom section of `size` bytes appended: a larger artifact that
/// still compiles.
pub fn with_custom_section(component: &[u8], size: u32) -> Vec<u8> {
    let name = b"padding";
    let mut section = vec![name.len() as u8];
    section.extend_from_slice(name);
    section.extend((0..size).map(|i| (i % 251) as u8));
    let mut padded = component.to_vec();
    padded.push(0);
    let mut length = section.len() as u32;
    loop {
        let byte = (length & 0x7f) as u8;
        length >>= 7;
        if length == 0 {
            padded.push(byte);
            break;
        }
        padded.push(byte | 0x80);
    }
    padded.extend(section);
    padded
}
