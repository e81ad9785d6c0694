//! `fogd reload`: asks the running daemon to re-read its config (SIGHUP).

use std::process::ExitCode;

use anyhow::Context;

use super::ConfigArg;
use fogd::config;

#[derive(clap::Args)]
#[command(
    after_help = "The daemon is found through <state_dir>/fogd.pid. Under systemd, `systemctl reload fogd` does the same."
)]
pub struct ReloadArgs {
    #[command(flatten)]
    config: ConfigArg,
}

pub fn run(args: ReloadArgs) -> anyhow::Result<ExitCode> {
    let config = config::load_file(&args.config.config)?;
    let pid = super::daemon::signal_daemon(&config)?.with_context(|| {
        format!(
            "cannot read {} (is `fogd run` running with this config?)",
            fogd::supervisor::pid_file(&config).display()
        )
    })?;
    println!(
        "asked fogd (pid {pid}) to reload {}",
        args.config.config.display()
    );
    Ok(ExitCode::SUCCESS)
}
