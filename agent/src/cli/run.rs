//! `fogd run`: the daemon.

use std::process::ExitCode;

use anyhow::Context;
use tokio::signal::unix::{SignalKind, signal};

use super::ConfigArg;
use fogd::agent::Agent;
use fogd::config;
use fogd::telemetry;

#[derive(clap::Args)]
pub struct RunArgs {
    #[command(flatten)]
    config: ConfigArg,
}

pub fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let config = config::load_file(&args.config.config)?;
    telemetry::init_logging(&config.log);
    tracing::info!(config = %args.config.config.display(), version = env!("CARGO_PKG_VERSION"), "starting");
    super::tokio_runtime()?.block_on(async move {
        let mut terminate = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
        let mut interrupt = signal(SignalKind::interrupt()).context("cannot watch SIGINT")?;
        let agent = Agent::start(config).await?;
        let signal = tokio::select! {
            _ = terminate.recv() => "SIGTERM",
            _ = interrupt.recv() => "SIGINT",
        };
        tracing::info!(signal, "stop requested");
        agent.shutdown().await;
        Ok(ExitCode::SUCCESS)
    })
}
