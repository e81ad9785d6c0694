//! The daemon's life through one path: start on the selected configuration, reload it,
//! activate a revision the fleet staged, commit or roll back when its watch window ends, and
//! stop. The binary only turns signals into [`Command`]s; tests drive the same steps.
//!
//! The model registry and the metrics outlive each agent: a changed model version is
//! swapped in beside the active one, and counters and histograms carry on across restarts.

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;

use tokio::sync::mpsc;

use crate::agent::{Agent, StartError, metrics_for};
use crate::config::Config;
use crate::inference::{ModelRegistry, SyncAction};
use crate::residency;
use crate::sync::cloud::{CloudSync, Reporter, SyncStartError};
use crate::sync::watch::{Verdict, Watch, function_health};
use crate::sync::{RevisionStore, SyncState, activate, probe};
use crate::telemetry::{Metrics, systemd};

/// What the supervisor is asked to do.
pub enum Command {
    /// Run this configuration (loaded and validated by the caller) from now on.
    Reload(Box<Config>),
    /// Drain and stop; the reason is logged.
    Stop(&'static str),
}

#[derive(Debug, thiserror::Error)]
pub enum SupervisorError {
    #[error(transparent)]
    Start(#[from] StartError),
    #[error(transparent)]
    Sync(#[from] SyncStartError),
}

/// Where `fogd run` records its pid, for `fogd reload` and `fogd deploy`.
pub fn pid_file(config: &Config) -> PathBuf {
    config.state_dir.join("fogd.pid")
}

pub struct Supervisor {
    /// The configuration file's contents; revisions run on top of it.
    config: Config,
    models: Arc<ModelRegistry>,
    metrics: Arc<Metrics>,
    agent: Agent,
    watching: Option<Watching>,
    cloud: Option<CloudSync>,
    reporter: Reporter,
}

/// A staged revision running through its watch window before it is committed.
struct Watching {
    revision: u64,
    verdict: Pin<Box<dyn Future<Output = Verdict> + Send>>,
}

/// What to run next, with the models whose version the registry sync replaced for it.
struct Next {
    selected: activate::Selected,
    replaced_models: Vec<String>,
}

impl Supervisor {
    /// Starts the agent on what `config` selects (a staged revision, the committed one, or
    /// the file's own functions) and follows the fleet if `sync.broker` is set.
    pub async fn start(config: Config) -> Result<Self, SupervisorError> {
        match RevisionStore::new(&config.state_dir).remove_abandoned_staging() {
            Ok(removed) => {
                for folder in removed {
                    tracing::info!(folder = %folder.display(), "removed a revision whose staging was interrupted");
                }
            }
            Err(error) => tracing::warn!(%error, "cannot remove interrupted staging"),
        }
        let selected = activate::select(&config);
        let models = Arc::new(ModelRegistry::for_config(&selected.config));
        let metrics = Arc::new(metrics_for(&models));
        let next = Next {
            selected,
            replaced_models: Vec::new(),
        };
        let (agent, watching) = start_selected(&config, next, &models, &metrics).await?;
        let cloud = CloudSync::start(&config, Arc::new(probe::probe))?;
        let supervisor = Self {
            reporter: reporter_of(&cloud),
            config,
            models,
            metrics,
            agent,
            watching,
            cloud,
        };
        supervisor.report_start(None);
        Ok(supervisor)
    }

    /// The running agent.
    pub fn agent(&self) -> &Agent {
        &self.agent
    }

    /// The revision being watched before it is committed, if any.
    pub fn watched_revision(&self) -> Option<u64> {
        self.watching.as_ref().map(|watching| watching.revision)
    }

    /// Serves until a [`Command::Stop`] (or the command channel closes): reloads, activates
    /// what the fleet staged, settles watch windows, reports health and feeds the watchdog.
    pub async fn run(
        mut self,
        mut commands: mpsc::Receiver<Command>,
    ) -> Result<(), SupervisorError> {
        let mut watchdog = systemd::watchdog_interval().map(tokio::time::interval);
        let mut report_health = tokio::time::interval(self.config.sync.report_every.as_duration());
        loop {
            tokio::select! {
                command = commands.recv() => match command {
                    Some(Command::Reload(config)) => {
                        self = self.reload(*config).await?;
                        report_health = tokio::time::interval(self.config.sync.report_every.as_duration());
                    }
                    Some(Command::Stop(reason)) => {
                        self.stop(reason).await;
                        return Ok(());
                    }
                    None => {
                        self.stop("the command channel closed").await;
                        return Ok(());
                    }
                },
                Some(revision) = activation(&mut self.cloud) => {
                    self = self.activate(revision).await?;
                }
                (revision, verdict) = verdict(&mut self.watching) => {
                    self = self.settle(revision, verdict).await?;
                }
                _ = report_health.tick() => {
                    let functions = function_health(&self.metrics, &self.config.functions);
                    self.reporter.update(|report| report.functions = functions);
                }
                _ = tick(&mut watchdog) => {
                    if self.agent.is_alive().await {
                        systemd::watchdog();
                    } else {
                        tracing::error!("a part of the agent has stopped; not feeding the watchdog");
                    }
                }
            }
        }
    }

    /// Drains the agent and starts it on `config` (with a revision staged meanwhile, if
    /// any); fleet sync follows the new sync settings.
    pub async fn reload(mut self, config: Config) -> Result<Self, SupervisorError> {
        tracing::info!("reloading");
        if config.async_threads() != self.config.async_threads() {
            tracing::warn!(
                running = self.config.async_threads(),
                configured = config.async_threads(),
                "runtime.async_threads takes effect at the next start, not on reload"
            );
        }
        let next = select(&config, &self.models);
        let activated = next.selected.staged.as_ref().and(next.selected.revision);
        self.config = config;
        self = self.switch(next).await?;
        self.cloud = restart_sync(self.cloud.take(), &self.config).await;
        self.reporter = reporter_of(&self.cloud);
        self.report_start(activated);
        Ok(self)
    }

    /// Switches to the revision the fleet staged and starts watching it.
    pub async fn activate(mut self, revision: u64) -> Result<Self, SupervisorError> {
        tracing::info!(revision, "activating the fleet's desired revision");
        let next = select(&self.config, &self.models);
        self = self.switch(next).await?;
        self.report_start(Some(revision));
        Ok(self)
    }

    /// Waits for the watched revision's verdict and acts on it; returns at once when
    /// nothing is watched.
    pub async fn settle_watch(self) -> Result<Self, SupervisorError> {
        let mut supervisor = self;
        match supervisor.watching.as_mut() {
            Some(watching) => {
                let verdict = watching.verdict.as_mut().await;
                let revision = watching.revision;
                supervisor.settle(revision, verdict).await
            }
            None => Ok(supervisor),
        }
    }

    /// Commits a healthy revision; rolls a tripped one back to what ran before.
    async fn settle(mut self, revision: u64, verdict: Verdict) -> Result<Self, SupervisorError> {
        self.watching = None;
        match verdict {
            Verdict::Healthy => {
                activate::commit(&self.config, revision);
                self.report_start(None);
            }
            Verdict::Tripped { reason, at } => {
                activate::refuse(&self.config, revision, &reason);
                let previous = select(&self.config, &self.models);
                self = self.switch(previous).await?;
                tracing::info!(
                    revision,
                    elapsed_ms = at.elapsed().as_millis() as u64,
                    "rolled back from the revision whose gate tripped"
                );
                self.report_start(Some(revision));
            }
        }
        Ok(self)
    }

    /// Runs what `next` selected: in place when the running agent can take it (only what
    /// its functions run differs), else by draining the agent and starting a new one.
    async fn switch(mut self, next: Next) -> Result<Self, SupervisorError> {
        match self.agent.reconfigure(&next.selected.config).await {
            Ok(()) => {
                if let (Some(revision), None) = (next.selected.revision, &next.selected.staged) {
                    tracing::info!(revision, "running deployment");
                }
                self.watching = watch_selected(next, &self.metrics, &self.models);
                self.agent.announce_ready();
                systemd::ready();
            }
            Err(reason) => {
                tracing::info!(%reason, "restarting the agent: draining, then starting on the new configuration");
                self.agent.shutdown().await;
                (self.agent, self.watching) =
                    start_selected(&self.config, next, &self.models, &self.metrics).await?;
            }
        }
        Ok(self)
    }

    /// Drains in-flight events, stops following the fleet and removes the pid file.
    pub async fn stop(self, reason: &str) {
        tracing::info!(reason, "stop requested");
        systemd::stopping();
        self.agent.shutdown().await;
        if let Some(cloud) = self.cloud {
            cloud.stop().await;
        }
        let _ = std::fs::remove_file(pid_file(&self.config));
    }

    /// Tells the fleet what the device runs after a (re)start or a verdict. `activated` is
    /// the revision the restart was meant to run: if the device is not watching it now, it
    /// was rolled back.
    fn report_start(&self, activated: Option<u64>) {
        let store = RevisionStore::new(&self.config.state_dir);
        let committed = store.committed().ok().flatten();
        let refused = store.refused();
        let functions = function_health(&self.metrics, &self.config.functions);
        let watched = self.watched_revision();
        self.metrics
            .deployment(watched.or(committed), committed, watched);
        self.reporter.update(|report| {
            report.committed = committed;
            report.functions = functions;
            if let Some(revision) = watched {
                report.enter(SyncState::Watching, Some(revision));
                report.running = Some(revision);
                return;
            }
            report.running = committed;
            let rolled_back = match (activated, refused) {
                (Some(revision), Some((refused, reason))) if refused == revision => {
                    Some((revision, reason))
                }
                (None, Some((refused, reason))) if Some(refused) > committed => {
                    Some((refused, reason))
                }
                _ => None,
            };
            match rolled_back {
                Some((revision, reason)) => {
                    report.enter(SyncState::RolledBack, Some(revision));
                    report.reason = Some(reason);
                }
                // Leaves a rejection or a download in progress on record.
                None if matches!(report.state, SyncState::Idle | SyncState::Committed)
                    || report.target == committed =>
                {
                    let state = if committed.is_some() {
                        SyncState::Committed
                    } else {
                        SyncState::Idle
                    };
                    report.enter(state, committed);
                }
                None => {}
            }
        });
    }
}

/// What to run on top of `config` (see [`activate::select`]), with the model registry
/// brought in line with it: a model's new version serves the next inference call, also of
/// an event that started before.
fn select(config: &Config, models: &ModelRegistry) -> Next {
    let selected = activate::select(config);
    let replaced_models = models
        .sync(&selected.config.models)
        .into_iter()
        .filter(|(_, action)| matches!(action, Ok(SyncAction::Swapped { .. })))
        .map(|(name, _)| name)
        .collect();
    Next {
        selected,
        replaced_models,
    }
}

/// Starts the agent on the selected configuration. A staged deployment is watched for its
/// gate window before it is committed; if it cannot start, it is discarded and the agent
/// starts on what the device ran before.
async fn start_selected(
    base: &Config,
    next: Next,
    models: &Arc<ModelRegistry>,
    metrics: &Arc<Metrics>,
) -> Result<(Agent, Option<Watching>), StartError> {
    let activate::Selected {
        config,
        revision,
        staged,
    } = next.selected;
    let (Some(revision), Some(gates)) = (revision, staged) else {
        let agent = start(&config, models, metrics).await?;
        if let Some(revision) = revision {
            tracing::info!(revision, "running deployment");
        }
        return Ok((agent, None));
    };
    match start(&config, models, metrics).await {
        Ok(agent) => {
            let next = Next {
                selected: activate::Selected {
                    config,
                    revision: Some(revision),
                    staged: Some(gates),
                },
                replaced_models: next.replaced_models,
            };
            Ok((agent, watch_selected(next, metrics, models)))
        }
        Err(error) => {
            activate::refuse(base, revision, &error.to_string());
            let previous = select(base, models);
            Box::pin(start_selected(base, previous, models, metrics)).await
        }
    }
}

/// Starts the watch window of a staged revision; `None` for anything else.
fn watch_selected(
    next: Next,
    metrics: &Arc<Metrics>,
    models: &Arc<ModelRegistry>,
) -> Option<Watching> {
    let (Some(revision), Some(gates)) = (next.selected.revision, next.selected.staged) else {
        return None;
    };
    tracing::info!(
        revision,
        window_ms = gates.window.0,
        "running deployment; watching it before committing"
    );
    let watch = Watch::start(
        gates,
        metrics,
        &next.selected.config.functions,
        models,
        &next.replaced_models,
    );
    Some(Watching {
        revision,
        verdict: Box::pin(watch.run()),
    })
}

async fn start(
    config: &Config,
    models: &Arc<ModelRegistry>,
    metrics: &Arc<Metrics>,
) -> Result<Agent, StartError> {
    let agent = Agent::start_with(config.clone(), models.clone(), metrics.clone()).await?;
    let pid_file = pid_file(config);
    if let Err(error) = std::fs::write(&pid_file, format!("{}\n", std::process::id())) {
        tracing::warn!(path = %pid_file.display(), %error, "cannot write the pid file; `fogd reload` will not find this process");
    }
    agent.announce_ready();
    systemd::ready();
    if config.runtime.release_startup_pages {
        tokio::task::spawn_blocking(release_startup_pages);
    }
    Ok(agent)
}

fn release_startup_pages() {
    match residency::release_file_pages() {
        Ok(released) => tracing::info!(
            mappings = released.mappings,
            resident_before_kib = released.resident_before_kib,
            resident_after_kib = released.resident_after_kib,
            "released the pages start-up touched"
        ),
        Err(error) => tracing::info!(%error, "start-up pages stay resident"),
    }
}

/// Follows the fleet with a reloaded config's sync settings and device config (what new
/// revisions are checked against). A download in progress resumes on the new connection.
async fn restart_sync(cloud: Option<CloudSync>, config: &Config) -> Option<CloudSync> {
    if let Some(cloud) = cloud {
        cloud.stop().await;
    }
    match CloudSync::start(config, Arc::new(probe::probe)) {
        Ok(cloud) => cloud,
        Err(error) => {
            tracing::error!(%error, "cannot follow the fleet with the reloaded config; running without fleet sync");
            None
        }
    }
}

fn reporter_of(cloud: &Option<CloudSync>) -> Reporter {
    cloud
        .as_ref()
        .map(|cloud| cloud.reporter.clone())
        .unwrap_or_default()
}

/// The next revision the fleet's sync staged; never resolves without cloud sync.
async fn activation(cloud: &mut Option<CloudSync>) -> Option<u64> {
    match cloud {
        Some(cloud) => cloud.activations.recv().await,
        None => std::future::pending().await,
    }
}

/// The watched revision's verdict; never resolves when nothing is watched.
async fn verdict(watching: &mut Option<Watching>) -> (u64, Verdict) {
    match watching {
        Some(watching) => (watching.revision, watching.verdict.as_mut().await),
        None => std::future::pending().await,
    }
}

async fn tick(watchdog: &mut Option<tokio::time::Interval>) {
    match watchdog {
        Some(interval) => {
            interval.tick().await;
        }
        None => std::future::pending().await,
    }
}
