//! How far a wave has got, on stderr while `fogctl rollout` waits: on a terminal one line
//! redrawn in place with a bar (devices committed, failed, applying, waiting, and the time
//! since the wave began); otherwise a plain line when the counts change, at most once a
//! second, so a log stays readable. Small waves also get a line per device state change.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

/// Waves with at most this many devices also show each device's state changes.
const DETAILED_WAVE: usize = 10;
/// Redraws of the terminal line, at most.
const REDRAW_EVERY: Duration = Duration::from_millis(100);
/// Plain lines, at most.
const LINE_EVERY: Duration = Duration::from_secs(1);
const BAR_WIDTH: usize = 24;

pub struct WaveProgress {
    label: String,
    total: usize,
    committed: BTreeSet<String>,
    failed: BTreeSet<String>,
    applying: BTreeSet<String>,
    started: Instant,
    terminal: bool,
    drawn_at: Option<Instant>,
    drawn: String,
    device_lines: BTreeMap<String, String>,
}

impl WaveProgress {
    pub fn new(label: &str, total: usize) -> Self {
        Self {
            label: label.to_owned(),
            total,
            committed: BTreeSet::new(),
            failed: BTreeSet::new(),
            applying: BTreeSet::new(),
            started: Instant::now(),
            terminal: std::io::stderr().is_terminal(),
            drawn_at: None,
            drawn: String::new(),
            device_lines: BTreeMap::new(),
        }
    }

    /// `device` is working on the revision; `state` says how far (shown for small waves).
    pub fn applying(&mut self, device: &str, state: String) {
        self.applying.insert(device.to_owned());
        if self.total <= DETAILED_WAVE && self.device_lines.get(device) != Some(&state) {
            self.print_above(&format!("  {device}: {state}"));
            self.device_lines.insert(device.to_owned(), state);
        }
        self.draw(false);
    }

    /// `device` has settled: committed, or failed.
    pub fn settled(&mut self, device: &str, committed: bool) {
        self.applying.remove(device);
        let settled = if committed {
            &mut self.committed
        } else {
            &mut self.failed
        };
        settled.insert(device.to_owned());
        self.draw(false);
    }

    /// The last state of the wave, ending the redrawn line.
    pub fn finish(&mut self) {
        self.draw(true);
        if self.terminal {
            eprintln!();
        }
    }

    /// The summary: counts, a bar on a terminal, the time since the wave began.
    pub fn line(&self) -> String {
        let settled = self.committed.len() + self.failed.len();
        let waiting = self.total.saturating_sub(settled + self.applying.len());
        let counts = format!(
            "{}/{} committed, {} failed, {} applying, {} waiting ({:.1}s)",
            self.committed.len(),
            self.total,
            self.failed.len(),
            self.applying.len(),
            waiting,
            self.started.elapsed().as_secs_f64()
        );
        if !self.terminal {
            return format!("{}: {counts}", self.label);
        }
        let filled = (settled * BAR_WIDTH)
            .checked_div(self.total)
            .unwrap_or(BAR_WIDTH);
        format!(
            "{} [{}{}] {counts}",
            self.label,
            "#".repeat(filled),
            ".".repeat(BAR_WIDTH - filled)
        )
    }

    fn draw(&mut self, force: bool) {
        let every = if self.terminal {
            REDRAW_EVERY
        } else {
            LINE_EVERY
        };
        let due = self.drawn_at.is_none_or(|at| at.elapsed() >= every);
        if !force && !due {
            return;
        }
        let line = self.line();
        let counts = |line: &str| line.rsplit_once(" (").map(|(counts, _)| counts.to_owned());
        if !self.terminal && !force && counts(&line) == counts(&self.drawn) {
            return;
        }
        if self.terminal {
            let mut stderr = std::io::stderr().lock();
            let _ = write!(stderr, "\r\x1b[2K{line}");
            let _ = stderr.flush();
        } else {
            eprintln!("{line}");
        }
        self.drawn = line;
        self.drawn_at = Some(Instant::now());
    }

    /// A line printed above the redrawn one.
    fn print_above(&mut self, text: &str) {
        if self.terminal && !self.drawn.is_empty() {
            eprint!("\r\x1b[2K");
            eprintln!("{text}");
            eprint!("{}", self.drawn);
        } else {
            eprintln!("{text}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plain(label: &str, total: usize) -> WaveProgress {
        let mut progress = WaveProgress::new(label, total);
        progress.terminal = false;
        progress
    }

    #[test]
    fn the_summary_counts_each_device_once_in_its_latest_state() {
        let mut progress = plain("wave 1/2", 4);
        progress.applying("gw-1", "downloading".into());
        progress.applying("gw-2", "watching".into());
        progress.applying("gw-2", "watching".into());
        progress.settled("gw-1", true);
        progress.settled("gw-3", false);
        let line = progress.line();
        assert!(
            line.starts_with("wave 1/2: 1/4 committed, 1 failed, 1 applying, 1 waiting ("),
            "{line}"
        );
    }

    #[test]
    fn a_terminal_gets_a_bar_of_the_settled_share() {
        let mut progress = WaveProgress::new("wave 2/2", 4);
        progress.terminal = true;
        progress.committed.insert("gw-1".into());
        progress.failed.insert("gw-2".into());
        let line = progress.line();
        let bar = format!("[{}{}]", "#".repeat(12), ".".repeat(12));
        assert!(
            line.starts_with(&format!("wave 2/2 {bar} 1/4 committed")),
            "{line}"
        );
    }
}
