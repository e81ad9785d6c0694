//! The real `fogd` binary as a child process, with its log read line by line so tests wait
//! on what it reports rather than on time.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::Instant;

use crate::PATIENCE;

pub struct Daemon {
    child: Child,
    lines: Receiver<String>,
    /// Every line read so far.
    pub seen: Vec<String>,
}

impl Daemon {
    /// Starts `fogd run --config <config>` with plain-text logs.
    pub fn start(config: &Path) -> Self {
        let mut child = Command::new(crate::fogd_bin())
            .args(["run", "--config"])
            .arg(config)
            .env("NO_COLOR", "1")
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("fogd starts");
        let stderr = child.stderr.take().expect("piped stderr");
        let (sender, lines) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if sender.send(line).is_err() {
                    return;
                }
            }
        });
        Self {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Waits for a log line containing every needle; returns it.
    pub fn wait_for(&mut self, needles: &[&str]) -> String {
        if let Some(line) = self.seen.iter().find(|l| has_all(l, needles)) {
            return line.clone();
        }
        self.wait_for_next(needles)
    }

    /// Like `wait_for`, but only for lines logged after the last line with `after` (read or
    /// not): for lines whose order among themselves is not fixed.
    pub fn wait_for_after(&mut self, after: &[&str], needles: &[&str]) -> String {
        let matches = |line: &String, wanted: &[&str]| wanted.iter().all(|n| line.contains(n));
        let start = self
            .seen
            .iter()
            .rposition(|line| matches(line, after))
            .map_or(0, |index| index + 1);
        if let Some(line) = self.seen[start..]
            .iter()
            .find(|line| matches(line, needles))
        {
            return line.clone();
        }
        self.wait_for_next(needles)
    }

    /// Like `wait_for`, but only for lines not read yet (e.g. the second "fogd ready").
    pub fn wait_for_next(&mut self, needles: &[&str]) -> String {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if has_all(&line, needles) {
                        return line;
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    panic!(
                        "no log line with {needles:?} within {PATIENCE:?}; log so far:\n{}",
                        self.seen.join("\n")
                    )
                }
                Err(RecvTimeoutError::Disconnected) => {
                    panic!(
                        "fogd exited before logging {needles:?}; log:\n{}",
                        self.seen.join("\n")
                    )
                }
            }
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Sends SIGTERM and waits for the process to exit, collecting the rest of its log.
    pub fn terminate(mut self) -> (ExitStatus, Vec<String>) {
        // SAFETY: plain kill(2) on our own child's pid.
        unsafe { libc::kill(self.pid(), libc::SIGTERM) };
        let status = self.child.wait().expect("fogd exits");
        // The reader thread ends at end-of-file, which drops the sender and ends this loop.
        let rest: Vec<String> = self.lines.iter().collect();
        self.seen.extend(rest);
        (status, std::mem::take(&mut self.seen))
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One plain HTTP/1.1 GET; the whole response, status line included.
/// Whether `line` has every needle. A needle `key=value` is a field and matches it whole
/// (`revision=1` is not `revision=12`); any other needle is a piece of the text.
fn has_all(line: &str, needles: &[&str]) -> bool {
    needles.iter().all(|needle| match needle.split_once('=') {
        Some((key, value))
            if !value.is_empty()
                && !key.is_empty()
                && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') =>
        {
            line.split_whitespace().any(|token| token == *needle)
        }
        _ => line.contains(needle),
    })
}

pub fn http_get(address: &str, path: &str) -> String {
    let mut stream = TcpStream::connect(address).expect("metrics endpoint accepts");
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: fogd\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response
}

/// The metrics address from the "fogd ready" line, e.g. `metrics=Some(127.0.0.1:40001)`.
pub fn metrics_address(ready_line: &str) -> String {
    let start = ready_line.find("Some(").expect("metrics enabled") + 5;
    let end = start + ready_line[start..].find(')').unwrap();
    ready_line[start..end].to_owned()
}

/// Resident memory of a process, in KiB (`VmRSS` in `/proc/<pid>/status`).
pub fn resident_kib(pid: i32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix("VmRSS:"))
                .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}
