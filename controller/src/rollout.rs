//! Rolling a signed document out wave by wave: a canary first, then growing shares of the
//! devices. Each wave's devices get the document on their desired topic (retained); the
//! wave ends when every one of them committed the revision, rolled it back, rejected it, or
//! the wave timed out. When the failures pass the threshold, the rollout stops and the
//! devices it touched get their previous desired document back.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use bytes::Bytes;
use fogd_fleet::deployment::{Report, SyncState, topics};
use fogd_fleet::mqtt::control::ControlEvent;

use crate::fleet::{self, BrokerArgs, Snapshot};
use crate::link::Link;
use crate::progress::WaveProgress;

/// Time for the broker to take the documents fogctl publishes.
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(15);

#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// Devices per wave, in order; the first is the canary when there is one.
    pub waves: Vec<Vec<String>>,
    /// Whether the first wave is a canary.
    pub canary: bool,
    /// Largest share of failed devices among those touched, 0 to 1, before stopping.
    pub failure_threshold: f64,
    pub wave_timeout: Duration,
}

impl Plan {
    /// `canary` devices first, then the rest in cumulative shares (`shares` in percent,
    /// rising, the last 100).
    pub fn new(
        devices: &[String],
        canary: usize,
        shares: &[f64],
        failure_threshold: f64,
        wave_timeout: Duration,
    ) -> Result<Self, String> {
        if devices.is_empty() {
            return Err("no devices to roll out to".to_owned());
        }
        if shares.is_empty() || shares.windows(2).any(|pair| pair[0] >= pair[1]) {
            return Err("waves must rise, e.g. 10%,50%,100%".to_owned());
        }
        if shares.iter().any(|share| *share <= 0.0 || *share > 100.0)
            || shares.last() != Some(&100.0)
        {
            return Err("waves are shares above 0% and the last one is 100%".to_owned());
        }
        let canary = canary.min(devices.len());
        let mut waves = Vec::new();
        if canary > 0 {
            waves.push(devices[..canary].to_vec());
        }
        let rest = &devices[canary..];
        let mut start = 0;
        for share in shares {
            let end = ((rest.len() as f64 * share / 100.0).ceil() as usize).min(rest.len());
            if end > start {
                waves.push(rest[start..end].to_vec());
                start = end;
            }
        }
        Ok(Self {
            waves,
            canary: canary > 0,
            failure_threshold,
            wave_timeout,
        })
    }
}

/// Cumulative shares of devices per wave, in percent.
#[derive(Debug, Clone, PartialEq)]
pub struct Shares(pub Vec<f64>);

/// Parses `10%,50%,100%`.
pub fn parse_shares(text: &str) -> Result<Shares, String> {
    text.split(',')
        .map(|part| {
            part.trim()
                .trim_end_matches('%')
                .parse::<f64>()
                .map_err(|_| format!("{part:?} is not a share like 10%"))
        })
        .collect::<Result<_, _>>()
        .map(Shares)
}

/// Parses `5%` or `5` (percent) into 0.05.
pub fn parse_threshold(text: &str) -> Result<f64, String> {
    let value: f64 = text
        .trim()
        .trim_end_matches('%')
        .parse()
        .map_err(|_| format!("{text:?} is not a percentage like 10%"))?;
    if !(0.0..=100.0).contains(&value) {
        return Err(format!("{text:?} is not between 0% and 100%"));
    }
    Ok(value / 100.0)
}

/// How a device ended its wave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceResult {
    Committed,
    Failed(String),
}

/// Whether `report` settles `revision` for its device.
pub fn settled(report: &Report, revision: u64) -> Option<DeviceResult> {
    if report
        .committed
        .is_some_and(|committed| committed >= revision)
    {
        return Some(DeviceResult::Committed);
    }
    if report.target == Some(revision)
        && matches!(report.state, SyncState::RolledBack | SyncState::Rejected)
    {
        return Some(DeviceResult::Failed(format!(
            "{}: {}",
            state_name(report.state),
            report.reason.as_deref().unwrap_or("no reason given")
        )));
    }
    None
}

pub fn state_name(state: SyncState) -> String {
    serde_json::to_value(state)
        .ok()
        .and_then(|value| value.as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// How the rollout ended.
pub struct Summary {
    pub results: BTreeMap<String, DeviceResult>,
    pub stopped: bool,
}

/// Runs the plan: publishes `signed` (revision `revision`) wave by wave. `snapshot` holds
/// the retained state read before, and is kept up to date.
pub async fn run(
    link: &mut Link,
    broker: &BrokerArgs,
    snapshot: &mut Snapshot,
    plan: &Plan,
    revision: u64,
    signed: &Bytes,
) -> anyhow::Result<Summary> {
    let previous: BTreeMap<String, Option<Bytes>> = plan
        .waves
        .iter()
        .flatten()
        .map(|device| (device.clone(), snapshot.desired.get(device).cloned()))
        .collect();
    link.publish(topics::archive(revision), signed.to_vec(), true);
    let mut results = BTreeMap::new();
    let mut touched = Vec::new();
    let total_waves = plan.waves.len();
    for (index, wave) in plan.waves.iter().enumerate() {
        let label = if index == 0 && plan.canary {
            format!("wave {}/{total_waves} (canary)", index + 1)
        } else {
            format!("wave {}/{total_waves}", index + 1)
        };
        eprintln!("{label}: {} device(s): {}", wave.len(), abbreviated(wave));
        for device in wave {
            link.publish(topics::device_desired(device), signed.to_vec(), true);
            touched.push(device.clone());
        }
        let missed_before = snapshot.missed_total();
        let outcome = Wave {
            label: &label,
            devices: wave,
            revision,
            timeout: plan.wave_timeout,
        }
        .judge(link, broker, snapshot)
        .await?;
        let missed = snapshot.missed_total() - missed_before;
        if missed > 0 {
            eprintln!(
                "  {missed} report(s) never reached fogctl (the broker dropped them); \
                 the devices were judged by their retained reports"
            );
        }
        for (device, result) in outcome {
            match &result {
                DeviceResult::Committed => eprintln!("  {device}: committed {revision}"),
                DeviceResult::Failed(reason) => eprintln!("  {device}: FAILED ({reason})"),
            }
            results.insert(device, result);
        }
        let failed = results
            .values()
            .filter(|result| matches!(result, DeviceResult::Failed(_)))
            .count();
        let share = failed as f64 / touched.len() as f64;
        eprintln!(
            "{label} done: {} of {} device(s) so far failed ({:.0}%, threshold {:.0}%)",
            failed,
            touched.len(),
            share * 100.0,
            plan.failure_threshold * 100.0
        );
        if failed > 0 && share > plan.failure_threshold {
            eprintln!(
                "stopping the rollout; {} touched device(s) get their previous desired document back",
                touched.len()
            );
            for device in &touched {
                let payload = previous
                    .get(device)
                    .cloned()
                    .flatten()
                    .map(|bytes| bytes.to_vec())
                    .unwrap_or_default();
                link.publish(topics::device_desired(device), payload, true);
            }
            flush(link).await?;
            return Ok(Summary {
                results,
                stopped: true,
            });
        }
    }
    flush(link).await?;
    Ok(Summary {
        results,
        stopped: false,
    })
}

async fn flush(link: &Link) -> anyhow::Result<()> {
    if link.flush(PUBLISH_TIMEOUT).await {
        Ok(())
    } else {
        anyhow::bail!("the broker did not acknowledge fogctl's publishes")
    }
}

/// Quiet time after which fogctl re-reads the retained reports of a wave's unsettled
/// devices, at most: it starts at the settle time and doubles while re-reads find nothing new.
const MAX_QUIET: Duration = Duration::from_secs(30);

/// One wave's devices, waiting to settle on `revision`.
struct Wave<'a> {
    label: &'a str,
    devices: &'a [String],
    revision: u64,
    timeout: Duration,
}

impl Wave<'_> {
    /// Follows the wave's reports until each device settled or the timeout passed. The
    /// stream of reports is progress; the verdict on a device that did not commit comes from
    /// its retained report, read again at the end of the wave, so a report the broker
    /// dropped on its way to fogctl never fails a device. Whenever the stream goes quiet
    /// with devices unsettled, their retained reports are read again too.
    async fn judge(
        &self,
        link: &mut Link,
        broker: &BrokerArgs,
        snapshot: &mut Snapshot,
    ) -> anyhow::Result<BTreeMap<String, DeviceResult>> {
        let mut waiting: BTreeSet<String> = self.devices.iter().cloned().collect();
        let mut results = BTreeMap::new();
        let mut progress = WaveProgress::new(self.label, self.devices.len());
        let deadline = tokio::time::Instant::now() + self.timeout;
        for device in self.devices {
            self.check(snapshot, device, &mut waiting, &mut results, &mut progress);
        }
        let mut quiet = broker.settle();
        while !waiting.is_empty() {
            let wake = deadline.min(tokio::time::Instant::now() + quiet);
            match tokio::time::timeout_at(wake, link.next()).await {
                Ok(Some(ControlEvent::Message { topic, payload, .. })) => {
                    if let Some(device) = snapshot.take(&topic, payload)
                        && waiting.contains(&device)
                    {
                        self.check(snapshot, &device, &mut waiting, &mut results, &mut progress);
                        quiet = broker.settle();
                    }
                }
                Ok(Some(ControlEvent::Disconnected(error))) => {
                    eprintln!("  broker connection: {error}");
                }
                Ok(Some(_)) => {}
                Ok(None) => anyhow::bail!("{}: the connection ended", broker.broker),
                Err(_) if tokio::time::Instant::now() >= deadline => break,
                Err(_) => {
                    let unsettled = waiting.len();
                    self.reread(broker, snapshot, &mut waiting, &mut results, &mut progress)
                        .await;
                    if waiting.len() == unsettled {
                        quiet = (quiet * 2).min(MAX_QUIET);
                    }
                }
            }
        }
        // Every device that did not commit is judged by what it last told the broker.
        let doubtful: BTreeSet<String> = results
            .iter()
            .filter(|(_, result)| **result != DeviceResult::Committed)
            .map(|(device, _)| device.clone())
            .chain(waiting.iter().cloned())
            .collect();
        if doubtful.is_empty() {
            progress.finish();
            return Ok(results);
        }
        let streamed: BTreeMap<String, DeviceResult> = doubtful
            .iter()
            .filter_map(|device| Some((device.clone(), results.remove(device)?)))
            .collect();
        let mut waiting = doubtful;
        let without_report = self
            .reread(broker, snapshot, &mut waiting, &mut results, &mut progress)
            .await;
        for device in waiting {
            // Kept when the re-read did not answer for it.
            if let Some(failure) = streamed.get(&device) {
                results.insert(device, failure.clone());
                continue;
            }
            let last = match snapshot.reports.get(&device) {
                Some(report) if !without_report.contains(&device) => describe(report),
                _ => "no retained report".to_owned(),
            };
            progress.settled(&device, false);
            results.insert(
                device,
                DeviceResult::Failed(format!("timed out after {:?}; {last}", self.timeout)),
            );
        }
        progress.finish();
        Ok(results)
    }

    /// Reads the retained reports of the devices in `waiting` and settles those they
    /// settle; returns the devices without one. A failed re-read leaves them waiting.
    async fn reread(
        &self,
        broker: &BrokerArgs,
        snapshot: &mut Snapshot,
        waiting: &mut BTreeSet<String>,
        results: &mut BTreeMap<String, DeviceResult>,
        progress: &mut WaveProgress,
    ) -> BTreeSet<String> {
        let devices: Vec<String> = waiting.iter().cloned().collect();
        match fleet::reread(broker, &devices, snapshot).await {
            Ok(without_report) => {
                for device in &devices {
                    self.check(snapshot, device, waiting, results, progress);
                }
                without_report
            }
            Err(error) => {
                eprintln!("  cannot read the retained reports again: {error:#}");
                BTreeSet::new()
            }
        }
    }

    /// Settles `device` if its report settles the revision, and prints its progress.
    fn check(
        &self,
        snapshot: &Snapshot,
        device: &str,
        waiting: &mut BTreeSet<String>,
        results: &mut BTreeMap<String, DeviceResult>,
        progress: &mut WaveProgress,
    ) {
        let Some(report) = snapshot.reports.get(device) else {
            return;
        };
        if let Some(result) = settled(report, self.revision) {
            let result = match result {
                DeviceResult::Failed(reason) => {
                    DeviceResult::Failed(format!("{reason}; {}", age_of(report)))
                }
                committed => committed,
            };
            progress.settled(device, result == DeviceResult::Committed);
            waiting.remove(device);
            results.insert(device.to_owned(), result);
        } else if report.target == Some(self.revision) {
            progress.applying(device, device_state(report));
        }
    }
}

/// A device's state on its way to the revision, as a progress line shows it.
fn device_state(report: &Report) -> String {
    match report.progress {
        Some(progress) if report.state == SyncState::Downloading => format!(
            "{} {}/{} bytes",
            state_name(report.state),
            progress.bytes,
            progress.total
        ),
        _ => state_name(report.state),
    }
}

/// Devices named in a progress line: the first few, then how many more.
fn abbreviated(devices: &[String]) -> String {
    const NAMED: usize = 10;
    if devices.len() <= NAMED {
        return devices.join(", ");
    }
    format!(
        "{}, and {} more",
        devices[..NAMED].join(", "),
        devices.len() - NAMED
    )
}

/// A device's retained report in a line: its state, the revision it is about, its age.
fn describe(report: &Report) -> String {
    let target = report
        .target
        .map(|revision| format!(" revision {revision}"))
        .unwrap_or_default();
    format!(
        "retained report: {}{target}, {}",
        state_name(report.state),
        age_of(report)
    )
}

fn age_of(report: &Report) -> String {
    match report.age() {
        Some(age) => format!("{:.1}s in that state", age.as_secs_f64()),
        None => "age unknown".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn devices(count: usize) -> Vec<String> {
        (1..=count).map(|n| format!("gw-{n:02}")).collect()
    }

    #[test]
    fn waves_start_with_the_canary_and_grow_by_cumulative_shares() {
        let plan = Plan::new(
            &devices(21),
            1,
            &[10.0, 50.0, 100.0],
            0.0,
            Duration::from_secs(1),
        )
        .unwrap();
        let sizes: Vec<usize> = plan.waves.iter().map(Vec::len).collect();
        assert_eq!(sizes, vec![1, 2, 8, 10]);
        assert_eq!(plan.waves[0], vec!["gw-01".to_owned()]);
        assert_eq!(plan.waves.iter().flatten().count(), 21);
        let plan = Plan::new(&devices(3), 5, &[100.0], 0.0, Duration::from_secs(1)).unwrap();
        assert_eq!(plan.waves, vec![devices(3)]);
    }

    #[test]
    fn bad_wave_lists_and_thresholds_are_refused() {
        for shares in [&[50.0, 10.0, 100.0][..], &[10.0, 50.0], &[0.0, 100.0], &[]] {
            assert!(
                Plan::new(&devices(4), 1, shares, 0.0, Duration::from_secs(1)).is_err(),
                "{shares:?}"
            );
        }
        assert!(Plan::new(&[], 1, &[100.0], 0.0, Duration::from_secs(1)).is_err());
        assert_eq!(
            parse_shares("10%, 50%,100").unwrap(),
            Shares(vec![10.0, 50.0, 100.0])
        );
        assert_eq!(parse_threshold("25%").unwrap(), 0.25);
        assert!(parse_threshold("120%").is_err());
        assert!(parse_shares("ten%").is_err());
    }

    #[test]
    fn reports_settle_on_commit_or_on_a_failure_of_the_same_revision() {
        let mut report = Report::new("gw-1", &[]);
        report.enter(SyncState::Downloading, Some(4));
        assert_eq!(settled(&report, 4), None);
        report.enter(SyncState::RolledBack, Some(4));
        report.reason = Some("function echo: 9 of 20 events failed".to_owned());
        assert!(
            matches!(settled(&report, 4), Some(DeviceResult::Failed(reason)) if reason.contains("rolled-back: function echo"))
        );
        assert_eq!(settled(&report, 5), None);
        report.committed = Some(5);
        assert_eq!(settled(&report, 5), Some(DeviceResult::Committed));
    }
}
