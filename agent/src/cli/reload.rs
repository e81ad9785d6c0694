//! `fogd reload`: asks the running daemon to re-read its config (SIGHUP).

use std::process::ExitCode;

use anyhow::{Context, bail};

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
    let pid_file = super::run::pid_file(&config);
    let text = std::fs::read_to_string(&pid_file).with_context(|| {
        format!(
            "cannot read {} (is `fogd run` running with this config?)",
            pid_file.display()
        )
    })?;
    let pid: i32 = text
        .trim()
        .parse()
        .with_context(|| format!("{} does not hold a pid", pid_file.display()))?;
    // SAFETY: kill(2) with a pid read from fogd's own pid file.
    if unsafe { libc::kill(pid, libc::SIGHUP) } != 0 {
        bail!(
            "cannot signal process {pid}: {}",
            std::io::Error::last_os_error()
        );
    }
    println!(
        "asked fogd (pid {pid}) to reload {}",
        args.config.config.display()
    );
    Ok(ExitCode::SUCCESS)
}
