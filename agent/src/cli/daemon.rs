//! The running daemon as other commands find it: by its pid file, with the signal that asks
//! it to reload.

use anyhow::{Context, bail};
use fogd::config::Config;
use fogd::supervisor::pid_file;

/// Sends SIGHUP to the daemon running with `config`; `None` when its pid file is absent
/// (no daemon is running).
pub fn signal_daemon(config: &Config) -> anyhow::Result<Option<i32>> {
    let pid_file = pid_file(config);
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
