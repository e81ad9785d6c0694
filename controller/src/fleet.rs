//! The fleet as the broker holds it: every device's retained report and desired document,
//! and the archive of rolled-out revisions. fogctl reads it fresh on every command.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use fogd_fleet::config::BrokerSpec;
use fogd_fleet::deployment::{Report, topics};
use fogd_fleet::mqtt::ConnectionSettings;
use fogd_fleet::mqtt::control::{ControlConnection, ControlEvent};

use crate::link::Link;

/// Time for the broker to answer a connect and fogctl's subscriptions.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(15);

/// Longest a re-read of retained reports may take; devices it did not reach stay unknown.
const REREAD_TIMEOUT: Duration = Duration::from_secs(30);

/// Retained reports a re-read asks for at once, at most.
const REREAD_WINDOW: usize = 1000;

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
    /// Reports the broker may send before fogctl acknowledges any (MQTT v5 Receive
    /// Maximum). A broker that caps it lower queues the rest and drops what overflows its
    /// queue; fogctl then judges the devices it missed by their retained reports.
    #[arg(long, value_name = "N", default_value_t = u16::MAX)]
    pub receive_maximum: u16,
}

impl BrokerArgs {
    /// Connects (client id `fogctl-<host>-<pid>`, then `-<role>` if given) and subscribes to
    /// `filters`; also returns how many publishes it keeps in flight.
    fn connect(
        &self,
        role: Option<&str>,
        filters: &[&str],
    ) -> anyhow::Result<(ControlConnection, usize)> {
        if self.cert.is_some() && self.ca.is_none() {
            anyhow::bail!("--cert needs --ca");
        }
        let tls = self.ca.as_ref().map(|ca| {
            serde_json::json!({"ca_file": ca, "cert_file": self.cert, "key_file": self.key_file})
        });
        let spec: BrokerSpec = serde_json::from_value(serde_json::json!({
            "name": "fleet",
            "address": self.broker,
            "client_id": format!(
                "fogctl-{}-{}{}",
                fogd_fleet::config::hostname(),
                std::process::id(),
                role.map(|role| format!("-{role}")).unwrap_or_default()
            ),
            "username": self.username,
            "password_file": self.password_file,
            "tls": tls,
            "session_expiry": "0s",
            "reconnect_min": "200ms",
            "reconnect_max": "2s",
        }))
        .context("broker settings")?;
        let settings = ConnectionSettings::load(&spec)?.with_receive_maximum(self.receive_maximum);
        let connection = ControlConnection::open(
            &settings,
            filters.iter().map(|filter| (*filter).to_owned()).collect(),
        );
        Ok((connection, usize::from(settings.spec.inflight)))
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
    /// Reports that never reached fogctl, by device: the gaps in their sequence numbers.
    pub missed: BTreeMap<String, u64>,
}

impl Snapshot {
    /// Takes in one message; returns the device whose report changed, if any. A report
    /// older than the one held (the stream catching up after a re-read) is passed over.
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
                if let Some(held) = self.reports.get(&device) {
                    match sequence_step(held, &report) {
                        Step::Older => return None,
                        Step::Skipped(missed) => {
                            *self.missed.entry(device.clone()).or_default() += missed;
                        }
                        Step::Next => {}
                    }
                }
                self.reports.insert(device.clone(), report);
                Some(device)
            }
            Err(error) => {
                self.unreadable.insert(device, error.to_string());
                None
            }
        }
    }

    /// Reports missed so far, in all.
    pub fn missed_total(&self) -> u64 {
        self.missed.values().sum()
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

/// How a report's sequence number follows the one held for its device.
#[derive(Debug, PartialEq, Eq)]
enum Step {
    /// The next one, a repeat, or one from an agent that does not number its reports.
    Next,
    /// This many reports in between never arrived.
    Skipped(u64),
    /// Published before the one held, by the same run of the agent.
    Older,
}

fn sequence_step(held: &Report, report: &Report) -> Step {
    if held.sequence == 0 || report.sequence == 0 {
        return Step::Next;
    }
    if report.sequence < held.sequence {
        // A restarted agent counts from 1 again and entered its state after the held one.
        return if report.since > held.since {
            Step::Next
        } else {
            Step::Older
        };
    }
    match report.sequence - held.sequence {
        0 | 1 => Step::Next,
        gap => Step::Skipped(gap - 1),
    }
}

/// Reads the retained state under `filters`: everything the broker sends until it has been
/// quiet for the settle time after the subscriptions were confirmed. The connection stays
/// open, following the same topics.
pub async fn read(broker: &BrokerArgs, filters: &[&str]) -> anyhow::Result<(Link, Snapshot)> {
    let (connection, inflight) = broker.connect(None, filters)?;
    let mut link = Link::start(connection, inflight);
    let mut snapshot = Snapshot::default();
    let mut confirmed = 0;
    let connect_deadline = tokio::time::Instant::now() + ANSWER_TIMEOUT;
    loop {
        let event = if confirmed < filters.len() {
            tokio::time::timeout_at(connect_deadline, link.next())
                .await
                .map_err(|_| anyhow::anyhow!("{}: no answer from the broker", broker.broker))?
        } else {
            match tokio::time::timeout(broker.settle(), link.next()).await {
                Ok(event) => event,
                Err(_) => return Ok((link, snapshot)),
            }
        };
        let Some(event) = event else {
            anyhow::bail!("{}: the connection ended", broker.broker);
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

/// Reads the retained reports of `devices` again, on a connection of its own, into
/// `snapshot`; returns the devices that have none (or that the broker did not answer for in
/// time). It subscribes to each device's report topic, a window at a time no larger than the
/// receive maximum, so the answers fit in what the broker lets fogctl have in flight and
/// none is dropped however small the broker's queue.
pub async fn reread(
    broker: &BrokerArgs,
    devices: &[String],
    snapshot: &mut Snapshot,
) -> anyhow::Result<BTreeSet<String>> {
    let (mut connection, _) = broker.connect(Some("reread"), &[])?;
    let deadline = tokio::time::Instant::now() + REREAD_TIMEOUT;
    let connected = tokio::time::timeout(ANSWER_TIMEOUT, async {
        loop {
            match connection.next().await {
                ControlEvent::Connected => return Ok(()),
                ControlEvent::Disconnected(error) if tokio::time::Instant::now() >= deadline => {
                    return Err(error);
                }
                _ => {}
            }
        }
    })
    .await;
    match connected {
        Ok(Ok(())) => {}
        Ok(Err(error)) => anyhow::bail!("{}: {error}", broker.broker),
        Err(_) => anyhow::bail!("{}: no answer from the broker", broker.broker),
    }
    let window = usize::from(broker.receive_maximum).clamp(1, REREAD_WINDOW);
    let mut queue = devices.iter();
    // Subscribed and not answered yet.
    let mut outstanding: BTreeSet<&str> = BTreeSet::new();
    let mut unconfirmed = 0usize;
    let mut without_report = BTreeSet::new();
    loop {
        while outstanding.len() < window {
            let Some(device) = queue.next() else { break };
            connection
                .subscribe(&topics::reported(device))
                .map_err(anyhow::Error::msg)?;
            outstanding.insert(device);
            unconfirmed += 1;
        }
        if outstanding.is_empty() {
            break;
        }
        let wake = deadline.min(tokio::time::Instant::now() + broker.settle());
        match tokio::time::timeout_at(wake, connection.next()).await {
            Ok(ControlEvent::Message { topic, payload, .. }) => {
                snapshot.take(&topic, payload);
                if let Some(device) = topics::device_of(&topic) {
                    outstanding.remove(device);
                }
            }
            Ok(ControlEvent::Subscribed) => unconfirmed = unconfirmed.saturating_sub(1),
            Ok(_) => {}
            // Quiet with every subscription confirmed: the rest hold no retained report.
            Err(_) if unconfirmed == 0 || tokio::time::Instant::now() >= deadline => {
                without_report.extend(outstanding.iter().map(|device| (*device).to_owned()));
                outstanding.clear();
                if tokio::time::Instant::now() >= deadline {
                    without_report.extend(queue.by_ref().cloned());
                }
            }
            Err(_) => {}
        }
    }
    connection.close(broker.settle()).await;
    Ok(without_report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use fogd_fleet::deployment::SyncState;

    fn report(sequence: u64, since: u64, state: SyncState) -> Report {
        let mut report = Report::new("gw-1", &[]);
        report.enter(state, Some(2));
        report.sequence = sequence;
        report.since = Some(since);
        report
    }

    fn message(report: &Report) -> Bytes {
        Bytes::from(serde_json::to_vec(report).unwrap())
    }

    #[test]
    fn gaps_in_a_devices_sequence_count_as_missed_reports_and_older_reports_are_passed_over() {
        let topic = topics::reported("gw-1");
        let mut snapshot = Snapshot::default();
        assert!(
            snapshot
                .take(&topic, message(&report(1, 10, SyncState::Idle)))
                .is_some()
        );
        assert!(
            snapshot
                .take(&topic, message(&report(2, 20, SyncState::Downloading)))
                .is_some()
        );
        assert_eq!(snapshot.missed_total(), 0);
        // 3 and 4 were dropped on the way.
        assert!(
            snapshot
                .take(&topic, message(&report(5, 50, SyncState::Committed)))
                .is_some()
        );
        assert_eq!(snapshot.missed.get("gw-1"), Some(&2));
        // The stream catching up with what a re-read already brought changes nothing.
        assert!(
            snapshot
                .take(&topic, message(&report(4, 40, SyncState::Watching)))
                .is_none()
        );
        assert_eq!(snapshot.reports["gw-1"].state, SyncState::Committed);
        assert!(
            snapshot
                .take(&topic, message(&report(5, 50, SyncState::Committed)))
                .is_some()
        );
        assert_eq!(snapshot.missed_total(), 2);
        // A restarted agent numbers from 1 again.
        assert!(
            snapshot
                .take(&topic, message(&report(1, 60, SyncState::Idle)))
                .is_some()
        );
        assert_eq!(snapshot.reports["gw-1"].state, SyncState::Idle);
        assert_eq!(snapshot.missed_total(), 2);
        // Reports of an agent that does not number them are all taken.
        assert!(
            snapshot
                .take(&topic, message(&report(0, 5, SyncState::Watching)))
                .is_some()
        );
        assert_eq!(snapshot.missed_total(), 2);
    }
}
