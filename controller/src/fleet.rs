//! The fleet as the broker holds it: every device's retained report and desired document,
//! and the archive of rolled-out revisions. fogctl reads it fresh on every command.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use fogd_fleet::config::BrokerSpec;
use fogd_fleet::deployment::{Report, topics};
use fogd_fleet::mqtt::ConnectionSettings;
use fogd_fleet::mqtt::control::{ControlConnection, ControlEvent};

/// How to reach the fleet's broker.
#[derive(clap::Args, Clone)]
pub struct BrokerArgs {
    /// The fleet's MQTT broker, host:port.
    #[arg(long, value_name = "HOST:PORT", env = "FOGCTL_BROKER")]
    pub broker: String,
    /// PEM CA file of the broker's certificate; enables TLS.
    #[arg(long, value_name = "FILE", env = "FOGCTL_CA")]
    pub ca: Option<PathBuf>,
    /// PEM client certificate for mutual TLS (with --key-file).
    #[arg(long, value_name = "FILE", env = "FOGCTL_CERT", requires = "key_file")]
    pub cert: Option<PathBuf>,
    /// PEM private key of the client certificate.
    #[arg(long, value_name = "FILE", env = "FOGCTL_KEY_FILE", requires = "cert")]
    pub key_file: Option<PathBuf>,
    #[arg(long, env = "FOGCTL_USERNAME")]
    pub username: Option<String>,
    /// File holding the password.
    #[arg(long, value_name = "FILE", env = "FOGCTL_PASSWORD_FILE")]
    pub password_file: Option<PathBuf>,
    /// How long the broker may stay quiet before the retained state counts as read.
    #[arg(long, value_name = "MS", default_value_t = 500)]
    pub settle_ms: u64,
}

impl BrokerArgs {
    /// Connects and subscribes to `filters`.
    pub fn connect(&self, filters: &[&str]) -> anyhow::Result<ControlConnection> {
        if self.cert.is_some() && self.ca.is_none() {
            anyhow::bail!("--cert needs --ca");
        }
        let tls = self.ca.as_ref().map(|ca| {
            serde_json::json!({"ca_file": ca, "cert_file": self.cert, "key_file": self.key_file})
        });
        let spec: BrokerSpec = serde_json::from_value(serde_json::json!({
            "name": "fleet",
            "address": self.broker,
            "client_id": format!("fogctl-{}-{}", fogd_fleet::config::hostname(), std::process::id()),
            "username": self.username,
            "password_file": self.password_file,
            "tls": tls,
            "session_expiry": "0s",
            "reconnect_min": "200ms",
            "reconnect_max": "2s",
        }))
        .context("broker settings")?;
        let settings = ConnectionSettings::load(&spec)?;
        Ok(ControlConnection::open(
            &settings,
            filters.iter().map(|filter| (*filter).to_owned()).collect(),
        ))
    }

    pub fn settle(&self) -> Duration {
        Duration::from_millis(self.settle_ms)
    }
}

/// What the broker held when fogctl looked.
#[derive(Default)]
pub struct Snapshot {
    pub reports: BTreeMap<String, Report>,
    pub desired: BTreeMap<String, Bytes>,
    pub archive: BTreeMap<u64, Bytes>,
    /// Reports that did not parse, by device.
    pub unreadable: BTreeMap<String, String>,
}

impl Snapshot {
    /// Takes in one message; returns the device whose report changed, if any.
    pub fn take(&mut self, topic: &str, payload: Bytes) -> Option<String> {
        if let Some(revision) = topic
            .strip_prefix(topics::ROOT)
            .and_then(|rest| rest.strip_prefix("/revisions/"))
            .and_then(|revision| revision.parse().ok())
        {
            self.archive.insert(revision, payload);
            return None;
        }
        let device = topics::device_of(topic)?.to_owned();
        if topic.ends_with("/desired") {
            if payload.is_empty() {
                self.desired.remove(&device);
            } else {
                self.desired.insert(device, payload);
            }
            return None;
        }
        if !topic.ends_with("/reported") || payload.is_empty() {
            return None;
        }
        match serde_json::from_slice::<Report>(&payload) {
            Ok(report) => {
                self.unreadable.remove(&device);
                self.reports.insert(device.clone(), report);
                Some(device)
            }
            Err(error) => {
                self.unreadable.insert(device, error.to_string());
                None
            }
        }
    }

    /// The highest revision any device or the archive knows.
    pub fn highest_revision(&self) -> u64 {
        let reported = self.reports.values().flat_map(|report| {
            [report.committed, report.running, report.target]
                .into_iter()
                .flatten()
        });
        reported
            .chain(self.archive.keys().copied())
            .max()
            .unwrap_or(0)
    }

    /// Devices in `group`, by their reports.
    pub fn group(&self, group: &str) -> Vec<String> {
        self.reports
            .values()
            .filter(|report| report.groups.iter().any(|g| g == group))
            .map(|report| report.device.clone())
            .collect()
    }
}

/// Reads the retained state under `filters`: everything the broker sends until it has been
/// quiet for the settle time after the subscriptions were confirmed.
pub async fn read(
    broker: &BrokerArgs,
    filters: &[&str],
) -> anyhow::Result<(ControlConnection, Snapshot)> {
    let mut connection = broker.connect(filters)?;
    let mut snapshot = Snapshot::default();
    let mut confirmed = 0;
    let connect_deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let event = if confirmed < filters.len() {
            tokio::time::timeout_at(connect_deadline, connection.next())
                .await
                .map_err(|_| anyhow::anyhow!("{}: no answer from the broker", broker.broker))?
        } else {
            match tokio::time::timeout(broker.settle(), connection.next()).await {
                Ok(event) => event,
                Err(_) => return Ok((connection, snapshot)),
            }
        };
        match event {
            ControlEvent::Message { topic, payload, .. } => {
                snapshot.take(&topic, payload);
            }
            ControlEvent::Subscribed => confirmed += 1,
            ControlEvent::Connected => confirmed = 0,
            ControlEvent::Published => {}
            ControlEvent::Disconnected(error) => {
                if tokio::time::Instant::now() >= connect_deadline {
                    anyhow::bail!("{}: {error}", broker.broker);
                }
            }
        }
    }
}
