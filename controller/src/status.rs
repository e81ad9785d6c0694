//! `fogctl status`: the fleet table, from the devices' retained reports.

use fogd_fleet::deployment::topics;

use crate::fleet::{self, BrokerArgs};
use crate::rollout::state_name;

pub async fn show(broker: &BrokerArgs, json: bool) -> anyhow::Result<()> {
    let (link, snapshot) = fleet::read(broker, &[topics::ALL_REPORTED]).await?;
    link.close().await;
    if json {
        println!("{}", serde_json::to_string_pretty(&snapshot.reports)?);
        return Ok(());
    }
    let revision = |revision: Option<u64>| revision.map_or("-".to_owned(), |r| r.to_string());
    println!(
        "{:<24} {:>9} {:>7} {:<12} {:>6} {:>9} {:>8}  REASON",
        "DEVICE", "COMMITTED", "RUNNING", "STATE", "TARGET", "EVENTS", "FAILURES"
    );
    for report in snapshot.reports.values() {
        let events: u64 = report.functions.values().map(|f| f.events).sum();
        let failures: u64 = report.functions.values().map(|f| f.failures).sum();
        println!(
            "{:<24} {:>9} {:>7} {:<12} {:>6} {:>9} {:>8}  {}",
            report.device,
            revision(report.committed),
            revision(report.running),
            state_name(report.state),
            revision(report.target),
            events,
            failures,
            report.reason.as_deref().unwrap_or("")
        );
    }
    for (device, error) in &snapshot.unreadable {
        println!("{device:<24} unreadable report: {error}");
    }
    eprintln!("{} device(s)", snapshot.reports.len());
    Ok(())
}
