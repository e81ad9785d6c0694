//! `fogd run`: the daemon, its signals and its systemd integration.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio::sync::mpsc;

use super::ConfigArg;
use fogd::config::{self, Config};
use fogd::supervisor::{Command, Supervisor};
use fogd::telemetry::{self, systemd};
use fogd::triggers::snmp;

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
    super::tokio_runtime(Some(config.async_threads()))?.block_on(serve(path, config))
}

async fn serve(path: PathBuf, config: Config) -> anyhow::Result<ExitCode> {
    let signals = Signals {
        terminate: signal(SignalKind::terminate()).context("cannot watch SIGTERM")?,
        interrupt: signal(SignalKind::interrupt()).context("cannot watch SIGINT")?,
        hangup: signal(SignalKind::hangup()).context("cannot watch SIGHUP")?,
    };
    let supervisor = Supervisor::start(config).await?;
    let (commands, received) = mpsc::channel(4);
    tokio::spawn(signals.forward(path, commands));
    supervisor.run(received).await?;
    Ok(ExitCode::SUCCESS)
}

struct Signals {
    terminate: Signal,
    interrupt: Signal,
    hangup: Signal,
}

impl Signals {
    /// SIGTERM and SIGINT stop the daemon; SIGHUP re-reads the config file, and an invalid
    /// file is refused here, leaving the running configuration in place.
    async fn forward(mut self, path: PathBuf, commands: mpsc::Sender<Command>) {
        loop {
            let command = tokio::select! {
                _ = self.terminate.recv() => Command::Stop("SIGTERM"),
                _ = self.interrupt.recv() => Command::Stop("SIGINT"),
                _ = self.hangup.recv() => {
                    systemd::reloading();
                    match reread(&path) {
                        Some(config) => Command::Reload(Box::new(config)),
                        None => continue,
                    }
                }
            };
            let stop = matches!(command, Command::Stop(_));
            if commands.send(command).await.is_err() || stop {
                return;
            }
        }
    }
}

fn reread(path: &Path) -> Option<Config> {
    match config::load_file(path) {
        Ok(config) => {
            tracing::info!(config = %path.display(), "config file re-read");
            Some(config)
        }
        Err(errors) => {
            tracing::error!(%errors, "reload refused: the config file is invalid; still running the previous one");
            systemd::ready();
            None
        }
    }
}
