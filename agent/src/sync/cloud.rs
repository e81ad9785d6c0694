//! Following the fleet over MQTT: the device's desired documents (its own topic and its
//! groups', retained) are verified as they arrive, the newest one is downloaded, staged and
//! probed, and handed to the daemon to activate; the device's [`Report`] is published
//! (retained) whenever it changes.
//!
//! Two tasks: the connection, which must keep polling to stay connected, and the apply
//! pipeline, which may spend minutes downloading. A newer document that arrives meanwhile
//! replaces the one waiting, so a device that was offline goes straight to the newest
//! revision.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use super::download::{DownloadError, Downloader};
use super::report::{Progress, Report, SyncState, topics};
use super::store::Admission;
use super::{Deployment, DocumentError, RevisionStore, TrustedKeys};
use crate::config::Config;
use fogd_fleet::mqtt::control::{ControlConnection, ControlEvent};
use fogd_fleet::mqtt::{ConnectionSettings, SetupError};

/// Checks a staged revision against the device: builds the configuration that runs it and
/// compiles it into the daemon's cache. Returns what keeps it from running.
pub type Probe = Arc<dyn Fn(&Config, &Deployment, &Path) -> Vec<String> + Send + Sync>;

/// Progress is reported at most this often while downloading.
const PROGRESS_EVERY: Duration = Duration::from_millis(500);

/// Delay before a failed download is tried again (doubling up to [`RETRY_MAX`]).
const RETRY_MIN: Duration = Duration::from_secs(1);
const RETRY_MAX: Duration = Duration::from_secs(60);

/// Time given to the broker to take the last report at shutdown.
const FLUSH_AT_SHUTDOWN: Duration = Duration::from_secs(2);

/// The device's report, shared by the apply pipeline and the daemon (which reports
/// activation, watching, commit and rollback). A no-op without cloud sync.
#[derive(Clone, Default)]
pub struct Reporter(Option<Arc<watch::Sender<Report>>>);

impl Reporter {
    /// Changes the report; it is published if it changed.
    pub fn update(&self, change: impl FnOnce(&mut Report)) {
        if let Some(sender) = &self.0 {
            sender.send_if_modified(|report| {
                let before = report.clone();
                change(report);
                *report != before
            });
        }
    }

    pub fn current(&self) -> Option<Report> {
        self.0.as_ref().map(|sender| sender.borrow().clone())
    }
}

pub struct CloudSync {
    pub reporter: Reporter,
    /// Revisions staged and probed, for the daemon to activate.
    pub activations: mpsc::Receiver<u64>,
    shutdown: watch::Sender<bool>,
    connection: JoinHandle<()>,
    apply: JoinHandle<()>,
}

/// Why following the fleet could not start.
#[derive(Debug, thiserror::Error)]
pub enum SyncStartError {
    #[error("sync.broker: no [[broker]] is named {0:?}")]
    UnknownBroker(String),
    #[error(transparent)]
    Connection(#[from] SetupError),
    #[error("sync.artifact_ca: {0}")]
    Downloads(#[from] DownloadError),
}

impl CloudSync {
    /// Starts following the fleet if `sync.broker` is set.
    pub fn start(config: &Config, probe: Probe) -> Result<Option<Self>, SyncStartError> {
        let sync = &config.sync;
        let Some(broker) = &sync.broker else {
            return Ok(None);
        };
        let spec = config
            .brokers
            .iter()
            .find(|spec| &spec.name == broker)
            .ok_or_else(|| SyncStartError::UnknownBroker(broker.clone()))?;
        let settings = ConnectionSettings::load(spec)?.second_connection("sync");
        let trusted = TrustedKeys::new(&sync.trusted_keys);
        let downloader = Downloader::new(sync.artifact_ca.as_deref())?;
        let device = sync.device_id();
        let mut desired_topics = vec![topics::device_desired(&device)];
        desired_topics.extend(sync.groups.iter().map(|group| topics::group_desired(group)));
        let (report, _) = watch::channel(Report::new(&device, &sync.groups));
        let reporter = Reporter(Some(Arc::new(report)));
        let (desired, desired_updates) = watch::channel(None);
        let (activate, activations) = mpsc::channel(4);
        let (shutdown, shutdown_updates) = watch::channel(false);
        tracing::info!(
            device,
            broker = %broker,
            topics = ?desired_topics,
            "following the fleet's desired state"
        );
        let connection = tokio::spawn(
            Connection {
                connection: ControlConnection::open(&settings, desired_topics.clone()),
                desired_topics,
                reported_topic: topics::reported(&device),
                store: RevisionStore::new(&config.state_dir),
                trusted: trusted.clone(),
                reporter: reporter.clone(),
                desired,
                newest: 0,
                published: 0,
            }
            .run(shutdown_updates),
        );
        let apply = tokio::spawn(
            Apply {
                base: config.clone(),
                store: RevisionStore::new(&config.state_dir),
                trusted,
                downloader,
                probe,
                reporter: reporter.clone(),
                activate,
            }
            .run(desired_updates),
        );
        Ok(Some(Self {
            reporter,
            activations,
            shutdown,
            connection,
            apply,
        }))
    }

    /// Publishes the last report and disconnects; a download in progress is left to resume.
    pub async fn stop(self) {
        self.apply.abort();
        let _ = self.shutdown.send(true);
        let _ = self.connection.await;
    }
}

/// A verified desired document waiting to be applied: its revision and signed bytes.
type Desired = Option<(u64, Bytes)>;

struct Connection {
    connection: ControlConnection,
    desired_topics: Vec<String>,
    reported_topic: String,
    store: RevisionStore,
    trusted: TrustedKeys,
    reporter: Reporter,
    desired: watch::Sender<Desired>,
    /// The highest revision handed to the apply pipeline.
    newest: u64,
    /// Reports published since the agent started.
    published: u64,
}

impl Connection {
    async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
        let Some(sender) = self.reporter.0.clone() else {
            return;
        };
        let mut reports = sender.subscribe();
        let mut connected = false;
        loop {
            tokio::select! {
                _ = shutdown.changed() => break,
                event = self.connection.next() => match event {
                    ControlEvent::Connected => {
                        tracing::info!("sync connection up");
                        connected = true;
                        self.publish(reports.borrow_and_update().clone());
                    }
                    ControlEvent::Message { topic, payload, .. } => self.desired(&topic, payload),
                    ControlEvent::Subscribed | ControlEvent::Published => {}
                    ControlEvent::Disconnected(error) => {
                        if connected {
                            tracing::warn!(%error, "sync connection lost; retrying");
                        }
                        connected = false;
                    }
                },
                changed = reports.changed() => {
                    if changed.is_err() {
                        break;
                    }
                    let report = reports.borrow_and_update().clone();
                    self.publish(report);
                }
            }
        }
        let report = reports.borrow().clone();
        self.publish(report);
        self.connection.flush(FLUSH_AT_SHUTDOWN).await;
        self.connection.disconnect();
    }

    fn publish(&mut self, mut report: Report) {
        self.published += 1;
        report.sequence = self.published;
        match serde_json::to_vec(&report) {
            Ok(payload) => {
                if let Err(error) = self.connection.publish(&self.reported_topic, payload, true) {
                    tracing::warn!(%error, "cannot queue the device report");
                }
            }
            Err(error) => tracing::error!(%error, "cannot encode the device report"),
        }
    }

    /// Verifies a desired document and passes it on if it is newer than what was passed.
    fn desired(&mut self, topic: &str, payload: Bytes) {
        if !self.desired_topics.iter().any(|desired| desired == topic) || payload.is_empty() {
            return;
        }
        let revision = match self.trusted.open(&payload) {
            Ok(document) => document.get("revision").and_then(serde_json::Value::as_u64),
            Err(error) => {
                tracing::warn!(topic, %error, "desired document refused");
                self.reporter.update(|report| {
                    report.enter(SyncState::Rejected, None);
                    report.reason = Some(format!("{topic}: {error}"));
                });
                return;
            }
        };
        let Some(revision) = revision else {
            self.reporter.update(|report| {
                report.enter(SyncState::Rejected, None);
                report.reason = Some(format!("{topic}: the document has no revision"));
            });
            return;
        };
        if revision > self.newest {
            self.newest = revision;
            self.desired.send_replace(Some((revision, payload)));
        } else if topic == self.desired_topics[0]
            && let Ok(Some(committed)) = self.store.committed()
            && revision < committed
        {
            // An old document replayed onto the device's own topic. (A group's document may
            // well be older than the device's, and fogctl puts back the committed one
            // after a stopped rollout: neither is worth a report.)
            let reason =
                format!("revision {revision} is not above the committed revision {committed}");
            tracing::warn!(topic, %reason, "desired revision refused");
            self.reporter.update(|report| {
                report.enter(SyncState::Rejected, Some(revision));
                report.reason = Some(reason);
            });
        }
    }
}

struct Apply {
    base: Config,
    store: RevisionStore,
    trusted: TrustedKeys,
    downloader: Downloader,
    probe: Probe,
    reporter: Reporter,
    activate: mpsc::Sender<u64>,
}

/// How applying one document ended.
enum Outcome {
    /// Staged and handed over for activation, or nothing to do.
    Done,
    /// Refused for good.
    Refused(String),
    /// A newer document arrived meanwhile.
    Superseded,
}

impl Apply {
    async fn run(self, mut desired: watch::Receiver<Desired>) {
        while desired.changed().await.is_ok() {
            let Some((revision, signed)) = desired.borrow_and_update().clone() else {
                continue;
            };
            match self.apply(revision, &signed, &mut desired).await {
                Outcome::Done | Outcome::Superseded => {}
                Outcome::Refused(reason) => {
                    tracing::warn!(revision, %reason, "desired revision rejected");
                    if let Err(error) = self.store.record_refusal(revision, &reason) {
                        tracing::error!(revision, %error, "cannot record the rejected revision");
                    }
                    self.reporter.update(|report| {
                        report.enter(SyncState::Rejected, Some(revision));
                        report.reason = Some(reason);
                    });
                }
            }
        }
    }

    async fn apply(
        &self,
        revision: u64,
        signed: &Bytes,
        desired: &mut watch::Receiver<Desired>,
    ) -> Outcome {
        let committed = match self.store.committed() {
            Ok(committed) => committed,
            Err(error) => return Outcome::Refused(error.to_string()),
        };
        let admission = match self.store.admits(revision, signed) {
            Ok(admission) => admission,
            Err(reason) => {
                // The staged or watched revision stays; nothing to record against this one.
                tracing::warn!(revision, %reason, "desired revision refused");
                self.reporter.update(|report| {
                    report.enter(SyncState::Rejected, Some(revision));
                    report.reason = Some(reason.to_string());
                });
                return Outcome::Done;
            }
        };
        let known = committed == Some(revision)
            || admission == Admission::AlreadyStaged
            || self
                .store
                .refused()
                .is_some_and(|(refused, _)| refused >= revision);
        if known {
            return Outcome::Done;
        }
        let document = match self.trusted.open(signed) {
            Ok(document) => document,
            Err(error) => return Outcome::Refused(error.to_string()),
        };
        let deployment = match Deployment::parse(document, committed) {
            Ok(deployment) => deployment,
            Err(error @ DocumentError::Stale { .. }) => {
                // A replayed old document: reported, but nothing to record.
                tracing::warn!(revision, %error, "desired revision refused");
                self.reporter.update(|report| {
                    report.enter(SyncState::Rejected, Some(revision));
                    report.reason = Some(error.to_string());
                });
                return Outcome::Done;
            }
            Err(error) => return Outcome::Refused(error.to_string()),
        };
        tracing::info!(
            revision,
            artifacts = deployment.artifacts.len(),
            "applying desired revision"
        );
        let downloads = self.store.download_dir(revision);
        if let Some(outcome) = self.download(&deployment, &downloads, desired).await {
            return outcome;
        }
        self.reporter
            .update(|report| report.enter(SyncState::Staging, Some(revision)));
        let store = RevisionStore::new(&self.base.state_dir);
        let prepared = {
            let (signed, deployment, downloads) =
                (signed.clone(), deployment.clone(), downloads.clone());
            tokio::task::spawn_blocking(move || store.prepare(&signed, &deployment, &downloads))
                .await
        };
        let staged = match prepared {
            Ok(Ok(staged)) => staged,
            Ok(Err(error)) => return self.refuse_downloaded(&downloads, error.to_string()).await,
            Err(error) => return self.refuse_downloaded(&downloads, error.to_string()).await,
        };
        self.reporter
            .update(|report| report.enter(SyncState::Probing, Some(revision)));
        // Probed where it was staged: a crash before it is sealed leaves no revision to run
        // unprobed at the next start, and the downloads to stage it again from.
        let probed = {
            let (probe, base, deployment) =
                (self.probe.clone(), self.base.clone(), deployment.clone());
            tokio::task::spawn_blocking(move || {
                let problems = probe(&base, &deployment, staged.dir());
                if problems.is_empty() {
                    staged
                        .seal()
                        .map(|_| ())
                        .map_err(|error| vec![error.to_string()])
                } else {
                    Err(problems)
                }
            })
            .await
        };
        let sealed = match probed {
            Ok(sealed) => sealed,
            Err(error) => Err(vec![error.to_string()]),
        };
        if let Err(problems) = sealed {
            return self
                .refuse_downloaded(&downloads, problems.join("; "))
                .await;
        }
        let _ = tokio::fs::remove_dir_all(&downloads).await;
        // Fails only when the daemon is stopping; the staged revision is selected at start.
        let _ = self.activate.send(revision).await;
        Outcome::Done
    }

    /// Refuses a revision whose downloads are no use any more.
    async fn refuse_downloaded(&self, downloads: &Path, reason: String) -> Outcome {
        let _ = tokio::fs::remove_dir_all(downloads).await;
        Outcome::Refused(reason)
    }

    /// Downloads every artifact, retrying with backoff until it succeeds or a newer document
    /// arrives; `None` when all are in place.
    async fn download(
        &self,
        deployment: &Deployment,
        dir: &Path,
        desired: &mut watch::Receiver<Desired>,
    ) -> Option<Outcome> {
        let revision = deployment.revision;
        let total: u64 = deployment
            .artifacts
            .values()
            .map(|artifact| artifact.size)
            .sum();
        let mut delay = RETRY_MIN;
        loop {
            self.reporter.update(|report| {
                let reason = report.reason.take();
                report.enter(SyncState::Downloading, Some(revision));
                report.reason = reason;
                report.progress = Some(Progress { bytes: 0, total });
            });
            match self.download_once(deployment, dir, total).await {
                Ok(()) => return None,
                Err(error) => {
                    tracing::warn!(revision, %error, retry_in_ms = delay.as_millis() as u64, "download failed");
                    self.reporter
                        .update(|report| report.reason = Some(error.to_string()));
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                changed = desired.changed() => {
                    if changed.is_ok() {
                        desired.mark_changed();
                    }
                    return Some(Outcome::Superseded);
                }
            }
            delay = (delay * 2).min(RETRY_MAX);
        }
    }

    async fn download_once(
        &self,
        deployment: &Deployment,
        dir: &Path,
        total: u64,
    ) -> Result<(), AttemptError> {
        tokio::fs::create_dir_all(dir)
            .await
            .map_err(|source| AttemptError::Dir {
                dir: dir.display().to_string(),
                source,
            })?;
        let mut done = 0u64;
        let mut reported = Instant::now();
        for (name, artifact) in &deployment.artifacts {
            let mut progress = |held: u64| {
                if reported.elapsed() >= PROGRESS_EVERY || done + held == total {
                    reported = Instant::now();
                    self.reporter.update(|report| {
                        report.progress = Some(Progress {
                            bytes: done + held,
                            total,
                        })
                    });
                }
            };
            self.downloader
                .fetch(artifact, &dir.join(name), &mut progress)
                .await
                .map_err(|source| AttemptError::Artifact {
                    name: name.clone(),
                    source,
                })?;
            done += artifact.size;
        }
        Ok(())
    }
}

/// Why one attempt to download a revision's artifacts failed.
#[derive(Debug, thiserror::Error)]
enum AttemptError {
    #[error("{dir}: {source}")]
    Dir { dir: String, source: std::io::Error },
    #[error("artifact {name}: {source}")]
    Artifact { name: String, source: DownloadError },
}
