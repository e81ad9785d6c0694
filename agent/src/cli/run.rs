//! `fogd run`: the daemon, its signals and its systemd integration.

use std::path::Path;
use std::pin::Pin;
use std::process::ExitCode;

use anyhow::Context;
use tokio::signal::unix::{SignalKind, signal};

use super::ConfigArg;
use super::daemon::pid_file;
use fogd::agent::Agent;
use fogd::config::{self, Config};
use fogd::inference::{ModelRegistry, SyncAction};
use fogd::residency;
use fogd::sync::cloud::{CloudSync, Reporter};
use fogd::sync::watch::{Verdict, Watch, function_health};
use fogd::sync::{RevisionStore, SyncState, activate};
use fogd::telemetry::{self, systemd};
use fogd::triggers::snmp;
use std::sync::Arc;

#[derive(clap::Args)]
#[command(
    after_help = "Signals: SIGTERM or SIGINT drain in-flight events and exit; SIGHUP (or `fogd reload`) \
re-reads the config: if it is valid, the agent drains and restarts on it; if not, the error is logged and \
the running agent carries on."
)]
pub struct RunArgs {
    #[command(flatten)]
    config: ConfigArg,
}

pub fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let path = args.config.config;
    let config = config::load_file(&path)?;
    telemetry::init_logging(&config.log, vec![snmp::decode_failures::counter()]);
    tracing::info!(config = %path.display(), version = env!("CARGO_PKG_VERSION"), "starting");
    super::tokio_runtime(Some(config.async_threads()))?.block_on(serve(&path, config))
}

async fn serve(path: &Path, mut config: Config) -> anyhow::Result<ExitCode> {
    let mut terminate = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("cannot watch SIGINT")?;
    let mut hangup = signal(SignalKind::hangup()).context("cannot watch SIGHUP")?;
    match RevisionStore::new(&config.state_dir).remove_abandoned_staging() {
        Ok(removed) => {
            for folder in removed {
                tracing::info!(folder = %folder.display(), "removed a revision whose staging was interrupted");
            }
        }
        Err(error) => tracing::warn!(%error, "cannot remove interrupted staging"),
    }
    let selected = activate::select(&config);
    // The registry outlives reloads: a changed model version is loaded beside the active
    // one and swapped in, unchanged ones are kept as they are.
    let models = Arc::new(ModelRegistry::for_config(&selected.config));
    let next = Next {
        selected,
        replaced_models: Vec::new(),
    };
    let (mut agent, mut watching) = start_selected(&config, next, &models).await?;
    let mut cloud = CloudSync::start(&config, Arc::new(super::check::probe))?;
    let mut reporter = reporter_of(&cloud);
    report_start(&reporter, &config, &agent, &watching, None);
    let mut watchdog = systemd::watchdog_interval().map(tokio::time::interval);
    let mut report_health = tokio::time::interval(config.sync.report_every.as_duration());
    loop {
        tokio::select! {
            _ = terminate.recv() => return stop(agent, cloud, &config, "SIGTERM").await,
            _ = interrupt.recv() => return stop(agent, cloud, &config, "SIGINT").await,
            _ = hangup.recv() => {
                systemd::reloading();
                match config::load_file(path) {
                    Ok(new_config) => {
                        tracing::info!(config = %path.display(), "reloading: draining, then starting on the new config");
                        if new_config.async_threads() != config.async_threads() {
                            tracing::warn!(running = config.async_threads(), configured = new_config.async_threads(), "runtime.async_threads takes effect at the next start, not on reload");
                        }
                        agent.shutdown().await;
                        let next = select(&new_config, &models);
                        let activated = next.selected.staged.as_ref().and(next.selected.revision);
                        config = new_config;
                        (agent, watching) = start_selected(&config, next, &models).await?;
                        cloud = restart_sync(cloud, &config).await;
                        reporter = reporter_of(&cloud);
                        report_health = tokio::time::interval(config.sync.report_every.as_duration());
                        report_start(&reporter, &config, &agent, &watching, activated);
                    }
                    Err(errors) => {
                        tracing::error!(%errors, "reload refused: the config file is invalid; still running the previous one");
                        systemd::ready();
                    }
                }
            }
            Some(revision) = activation(&mut cloud) => {
                tracing::info!(revision, "activating the fleet's desired revision");
                agent.shutdown().await;
                let next = select(&config, &models);
                (agent, watching) = start_selected(&config, next, &models).await?;
                report_start(&reporter, &config, &agent, &watching, Some(revision));
            }
            (revision, verdict) = verdict(&mut watching) => {
                watching = None;
                match verdict {
                    Verdict::Healthy => {
                        activate::commit(&config, revision);
                        report_start(&reporter, &config, &agent, &watching, None);
                    }
                    Verdict::Tripped { reason, at } => {
                        activate::refuse(&config, revision, &reason);
                        agent.shutdown().await;
                        let previous = select(&config, &models);
                        (agent, watching) = start_selected(&config, previous, &models).await?;
                        tracing::info!(revision, elapsed_ms = at.elapsed().as_millis() as u64, "rolled back from the revision whose gate tripped");
                        report_start(&reporter, &config, &agent, &watching, Some(revision));
                    }
                }
            }
            _ = report_health.tick() => reporter.update(|report| {
                report.functions = function_health(&agent.metrics, &config.functions);
            }),
            _ = tick(&mut watchdog) => {
                if agent.is_alive().await {
                    systemd::watchdog();
                } else {
                    tracing::error!("a part of the agent has stopped; not feeding the watchdog");
                }
            }
        }
    }
}

/// What to run next, with the models whose version the registry sync replaced for it.
struct Next {
    selected: activate::Selected,
    replaced_models: Vec<String>,
}

/// What to run on top of `config` (see [`activate::select`]), with the model registry
/// brought in line with it. Called once the old agent has drained, so that events in flight
/// finish on the functions and model versions they started with.
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

/// Follows the fleet with a reloaded config's sync settings and device config (what new
/// revisions are checked against). A download in progress resumes on the new connection.
async fn restart_sync(cloud: Option<CloudSync>, config: &Config) -> Option<CloudSync> {
    if let Some(cloud) = cloud {
        cloud.stop().await;
    }
    match CloudSync::start(config, Arc::new(super::check::probe)) {
        Ok(cloud) => cloud,
        Err(error) => {
            tracing::error!(error = %format!("{error:#}"), "cannot follow the fleet with the reloaded config; running without fleet sync");
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

/// Tells the fleet what the device runs after a (re)start or a verdict. `activated` is the
/// revision the restart was meant to run: if the device is not watching it now, it was
/// rolled back.
fn report_start(
    reporter: &Reporter,
    config: &Config,
    agent: &Agent,
    watching: &Option<Watching>,
    activated: Option<u64>,
) {
    let store = RevisionStore::new(&config.state_dir);
    let committed = store.committed().ok().flatten();
    let refused = store.refused();
    reporter.update(|report| {
        report.committed = committed;
        report.functions = function_health(&agent.metrics, &config.functions);
        if let Some(watching) = watching {
            report.enter(SyncState::Watching, Some(watching.revision));
            report.running = Some(watching.revision);
            return;
        }
        report.running = committed;
        let rolled_back = match (activated, refused) {
            (Some(revision), Some((refused, reason))) if refused == revision => {
                Some((revision, reason))
            }
            (None, Some((refused, reason))) if Some(refused) > committed => Some((refused, reason)),
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

/// A staged revision running through its watch window before it is committed.
struct Watching {
    revision: u64,
    verdict: Pin<Box<dyn Future<Output = Verdict> + Send>>,
}

/// The watched revision's verdict; never resolves when nothing is watched.
async fn verdict(watching: &mut Option<Watching>) -> (u64, Verdict) {
    match watching {
        Some(watching) => (watching.revision, watching.verdict.as_mut().await),
        None => std::future::pending().await,
    }
}

/// Starts the agent on the selected configuration. A staged deployment is watched for its
/// gate window before it is committed; if it cannot start, it is discarded and the agent
/// starts on what the device ran before.
async fn start_selected(
    base: &Config,
    next: Next,
    models: &Arc<ModelRegistry>,
) -> anyhow::Result<(Agent, Option<Watching>)> {
    let activate::Selected {
        config,
        revision,
        staged,
    } = next.selected;
    let (Some(revision), Some(gates)) = (revision, staged) else {
        let agent = start(&config, models).await?;
        if let Some(revision) = revision {
            tracing::info!(revision, "running deployment");
        }
        return Ok((agent, None));
    };
    match start(&config, models).await {
        Ok(agent) => {
            tracing::info!(
                revision,
                window_ms = gates.window.0,
                "running deployment; watching it before committing"
            );
            let watch = Watch::start(
                gates,
                &agent.metrics,
                &config.functions,
                models,
                &next.replaced_models,
            );
            let verdict = Box::pin(watch.run());
            Ok((agent, Some(Watching { revision, verdict })))
        }
        Err(error) => {
            activate::refuse(base, revision, &format!("{error:#}"));
            let previous = select(base, models);
            Box::pin(start_selected(base, previous, models)).await
        }
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

async fn start(config: &Config, models: &Arc<ModelRegistry>) -> anyhow::Result<Agent> {
    let agent = Agent::start(config.clone(), models.clone()).await?;
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

async fn stop(
    agent: Agent,
    cloud: Option<CloudSync>,
    config: &Config,
    signal: &str,
) -> anyhow::Result<ExitCode> {
    tracing::info!(signal, "stop requested");
    systemd::stopping();
    agent.shutdown().await;
    if let Some(cloud) = cloud {
        cloud.stop().await;
    }
    let _ = std::fs::remove_file(pid_file(config));
    Ok(ExitCode::SUCCESS)
}
