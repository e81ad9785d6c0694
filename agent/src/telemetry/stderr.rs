//! What native libraries print on stderr (LiteRT announces its XNNPACK delegate there) is
//! caught and logged as fogd's own lines, instead of landing raw between them. The log
//! writes to a copy of stderr made at start ([`log_output`]), so descriptor 2 can be pointed
//! elsewhere while a library call runs ([`captured`]) without catching fogd's own logs.

use std::fs::File;
use std::io::{Read, Seek, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::{Mutex, OnceLock};

static LOG_OUTPUT: OnceLock<File> = OnceLock::new();
/// One capture at a time: descriptor 2 is the process's.
static CAPTURING: Mutex<()> = Mutex::new(());

/// Where the log writes: a copy of stderr, taken once. Until then (and if it cannot be
/// copied), `None`, and nothing is captured.
pub fn log_output() -> Option<&'static File> {
    if let Some(file) = LOG_OUTPUT.get() {
        return Some(file);
    }
    // SAFETY: dup of descriptor 2 returns a new descriptor this process owns, or -1.
    let copy = unsafe { libc::dup(libc::STDERR_FILENO) };
    if copy < 0 {
        return None;
    }
    // SAFETY: `copy` is a fresh descriptor nothing else owns.
    let file = File::from(unsafe { OwnedFd::from_raw_fd(copy) });
    Some(LOG_OUTPUT.get_or_init(|| file))
}

/// The log's writer: the copy of stderr, or stderr itself if there is none.
pub fn writer() -> LogWriter {
    match log_output() {
        Some(file) => LogWriter::Copy(file),
        None => LogWriter::Stderr(std::io::stderr()),
    }
}

pub enum LogWriter {
    Copy(&'static File),
    Stderr(std::io::Stderr),
}

impl Write for LogWriter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        match self {
            LogWriter::Copy(file) => (*file).write(bytes),
            LogWriter::Stderr(stderr) => stderr.write(bytes),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            LogWriter::Copy(file) => (*file).flush(),
            LogWriter::Stderr(stderr) => stderr.flush(),
        }
    }
}

/// Runs `library_call` with what it prints on stderr caught: `library` lines in LiteRT's
/// form (`INFO: …`, `WARNING: …`, `ERROR: …`) become log events at that level (info as
/// debug: announcements, not news); anything else is written to the log output unchanged.
pub fn captured<T>(library: &'static str, library_call: impl FnOnce() -> T) -> T {
    let Some(output) = LOG_OUTPUT.get() else {
        return library_call();
    };
    let _one_at_a_time = CAPTURING
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let Some(swap) = Swap::begin() else {
        return library_call();
    };
    let result = library_call();
    let text = swap.end(output);
    for line in text.lines().filter(|line| !line.trim().is_empty()) {
        relay(library, line, output);
    }
    result
}

fn relay(library: &'static str, line: &str, mut output: &File) {
    if let Some(message) = line.strip_prefix("INFO: ") {
        tracing::debug!(library, "{message}");
    } else if let Some(message) = line.strip_prefix("WARNING: ") {
        tracing::warn!(library, "{message}");
    } else if let Some(message) = line.strip_prefix("ERROR: ") {
        tracing::error!(library, "{message}");
    } else {
        let _ = writeln!(output, "{line}");
    }
}

/// Descriptor 2 pointed at an anonymous file for the time of a call. A file rather than a
/// pipe: a library that prints more than a pipe holds cannot block on it.
struct Swap {
    capture: File,
}

impl Swap {
    fn begin() -> Option<Self> {
        // SAFETY: memfd_create with a static name; the result is checked.
        let memfd = unsafe { libc::memfd_create(c"fogd-stderr".as_ptr(), libc::MFD_CLOEXEC) };
        if memfd < 0 {
            return None;
        }
        // SAFETY: a fresh descriptor nothing else owns.
        let capture = File::from(unsafe { OwnedFd::from_raw_fd(memfd) });
        // SAFETY: both descriptors are open; dup2 replaces descriptor 2 atomically.
        if unsafe { libc::dup2(capture.as_raw_fd(), libc::STDERR_FILENO) } < 0 {
            return None;
        }
        Some(Self { capture })
    }

    /// Points descriptor 2 back at `stderr` (the copy taken at start) and returns what was
    /// written meanwhile.
    fn end(mut self, stderr: &File) -> String {
        // SAFETY: `stderr` is open; dup2 puts it back as descriptor 2 atomically.
        unsafe { libc::dup2(stderr.as_raw_fd(), libc::STDERR_FILENO) };
        let mut bytes = Vec::new();
        let _ = self.capture.rewind();
        let _ = self.capture.read_to_end(&mut bytes);
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_a_call_prints_on_stderr_is_caught_and_stderr_comes_back() {
        let before = std::fs::read_link("/proc/self/fd/2").unwrap();
        let stderr = log_output().unwrap();
        let swap = Swap::begin().unwrap();
        let line = b"INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\n";
        // SAFETY: writing a buffer of its own length to descriptor 2.
        unsafe { libc::write(libc::STDERR_FILENO, line.as_ptr().cast(), line.len()) };
        assert!(
            swap.end(stderr)
                .contains("INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\n")
        );
        assert_eq!(std::fs::read_link("/proc/self/fd/2").unwrap(), before);
    }
}
