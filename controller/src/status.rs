//! `fogctl status`: the fleet table, from the devices' retained reports; `--json` for
//! scripts.

use std::collections::BTreeMap;
use std::io::IsTerminal;

use fogd_fleet::deployment::{Report, topics};

use crate::fleet::{self, BrokerArgs};
use crate::rollout::state_name;

/// Columns a terminal is taken to have when `COLUMNS` does not say.
const TERMINAL_WIDTH: usize = 80;
const DEVICE_WIDTH: usize = 20;

pub async fn show(broker: &BrokerArgs, json: bool) -> anyhow::Result<()> {
    let (link, snapshot) = fleet::read(broker, &[topics::ALL_REPORTED]).await?;
    link.close().await;
    if json {
        println!("{}", serde_json::to_string_pretty(&snapshot.reports)?);
        return Ok(());
    }
    let width = std::io::stdout().is_terminal().then(|| {
        std::env::var("COLUMNS")
            .ok()
            .and_then(|columns| columns.parse().ok())
            .unwrap_or(TERMINAL_WIDTH)
    });
    for line in table(&snapshot.reports, width) {
        println!("{line}");
    }
    for (device, error) in &snapshot.unreadable {
        println!("{device:<DEVICE_WIDTH$} unreadable report: {error}");
    }
    eprintln!("{} device(s)", snapshot.reports.len());
    Ok(())
}

/// The table's lines: a header, then a device a line. With a `width` (a terminal), long
/// device names and reasons are cut to fit, marked with `…`.
pub fn table(reports: &BTreeMap<String, Report>, width: Option<usize>) -> Vec<String> {
    let revision = |revision: Option<u64>| revision.map_or("-".to_owned(), |r| r.to_string());
    let row = |device: &str, cells: [&str; 6], reason: &str| {
        let line = format!(
            "{:<DEVICE_WIDTH$} {:>6} {:>6} {:<11} {:>6} {:>9} {:>6}  {}",
            cut(device, width.map(|_| DEVICE_WIDTH)),
            cells[0],
            cells[1],
            cells[2],
            cells[3],
            cells[4],
            cells[5],
            reason
        );
        cut(line.trim_end(), width)
    };
    let mut lines = vec![row(
        "DEVICE",
        ["COMMIT", "RUN", "STATE", "TARGET", "EVENTS", "FAILED"],
        "REASON",
    )];
    for report in reports.values() {
        let events: u64 = report.functions.values().map(|f| f.events).sum();
        let failures: u64 = report.functions.values().map(|f| f.failures).sum();
        lines.push(row(
            &report.device,
            [
                &revision(report.committed),
                &revision(report.running),
                &state_name(report.state),
                &revision(report.target),
                &events.to_string(),
                &failures.to_string(),
            ],
            report.reason.as_deref().unwrap_or(""),
        ));
    }
    lines
}

/// `text` within `width` characters, its end replaced by `…` when it is longer.
fn cut(text: &str, width: Option<usize>) -> String {
    match width {
        Some(width) if text.chars().count() > width => {
            let kept: String = text.chars().take(width.saturating_sub(1)).collect();
            format!("{kept}…")
        }
        _ => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fogd_fleet::deployment::SyncState;

    #[test]
    fn the_table_fits_eighty_columns_and_keeps_everything_without_a_terminal() {
        let mut failing = Report::new("gateway-in-the-far-north-building-7", &[]);
        failing.enter(SyncState::RolledBack, Some(12));
        failing.committed = Some(11);
        failing.running = Some(11);
        failing.reason = Some("function echo: 40 of 100 events failed (trap), above 5%".into());
        let reports = BTreeMap::from([(failing.device.clone(), failing)]);
        let terminal = table(&reports, Some(80));
        assert!(
            terminal.iter().all(|line| line.chars().count() <= 80),
            "{terminal:#?}"
        );
        assert!(terminal[0].starts_with("DEVICE"));
        assert!(
            terminal[1].starts_with("gateway-in-the-far-…     11     11 rolled-back"),
            "{terminal:#?}"
        );
        let piped = table(&reports, None);
        assert!(piped[1].contains("gateway-in-the-far-north-building-7"));
        assert!(piped[1].ends_with("above 5%"), "{piped:#?}");
    }
}
