//! systemd integration: readiness, reload and stop notifications, and the watchdog. Every
//! call is a no-op when fogd does not run under systemd (no `NOTIFY_SOCKET`).

use std::time::Duration;

use sd_notify::NotifyState;

fn notify(states: &[NotifyState]) {
    if let Err(error) = sd_notify::notify(states) {
        tracing::warn!(%error, "cannot notify systemd");
    }
}

/// Functions are loaded and triggers listen.
pub fn ready() {
    notify(&[NotifyState::Ready, NotifyState::Status("serving")]);
}

/// A reload (SIGHUP) has begun.
pub fn reloading() {
    match NotifyState::monotonic_usec_now() {
        Ok(now) => notify(&[NotifyState::Reloading, now]),
        Err(_) => notify(&[NotifyState::Reloading]),
    }
}

/// Shutdown has begun.
pub fn stopping() {
    notify(&[
        NotifyState::Stopping,
        NotifyState::Status("draining events"),
    ]);
}

/// The agent checked itself and is alive.
pub fn watchdog() {
    notify(&[NotifyState::Watchdog]);
}

/// How often to pet the watchdog (half its timeout), if systemd set one.
pub fn watchdog_interval() -> Option<Duration> {
    sd_notify::watchdog_enabled().map(|timeout| timeout / 2)
}
