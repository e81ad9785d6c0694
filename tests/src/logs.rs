//! Captures fogd's log records in memory so tests can assert on them.

use std::io::Write;
use std::sync::{Mutex, OnceLock};

use tracing_subscriber::Layer;
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

static LOG: OnceLock<Mutex<Vec<u8>>> = OnceLock::new();

struct Capture;

impl Write for Capture {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        if let Some(log) = LOG.get()
            && let Ok(mut log) = log.lock()
        {
            log.extend_from_slice(bytes);
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Installs the capturing subscriber (once per test binary), with the log hook that counts
/// what async-snmp refuses only in its log, as the daemon has it.
pub fn capture() {
    if LOG.set(Mutex::new(Vec::new())).is_ok() {
        let captured = tracing_subscriber::fmt::layer()
            .with_writer(|| Capture)
            .with_ansi(false)
            .with_filter(LevelFilter::DEBUG);
        let _ = tracing_subscriber::registry()
            .with(fogd::triggers::snmp::decode_failures::counter())
            .with(captured)
            .try_init();
    }
}

/// Log lines containing every one of `needles`.
pub fn lines_with(needles: &[&str]) -> Vec<String> {
    let text = LOG
        .get()
        .and_then(|log| {
            log.lock()
                .ok()
                .map(|log| String::from_utf8_lossy(&log).into_owned())
        })
        .unwrap_or_default();
    text.lines()
        .filter(|line| needles.iter().all(|needle| line.contains(needle)))
        .map(str::to_owned)
        .collect()
}
