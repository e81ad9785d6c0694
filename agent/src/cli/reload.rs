//! `fogd reload`: asks the running daemon to re-read its config (SIGHUP).

use std::process::ExitCode;

use anyhow::{Context, bail};

use super::ConfigArg;
use fogd::config::{self, Config};

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
    let pid = signal_daemon(&config)?.with_context(|| {
        format!(
            "cannot read {} (is `fogd run` running with this config?)",
            super::run::pid_file(&config).display()
        )
    })?;
    println!(
        "asked fogd (pid {pid}) to reload {}",
        args.config.config.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// Sends SIGHUP to the daemon running with `config`; `None` when its pid file is absent
/// (no daemon is running).
pub(super) fn signal_daemon(config: &Config) -> anyhow::Result<Option<i32>> {
    let pid_file = super::run::pid_file(config);
    let text = match std::fs::read_to_string(&pid_file) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => {
            return Err(error).with_context(|| format!("cannot read {}", pid_file.display()));
        }
    };
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
    Ok(Some(pid))
}
