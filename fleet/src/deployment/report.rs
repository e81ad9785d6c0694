//! What a device tells the fleet (`fogd/v1/devices/<id>/reported`, retained) and the topics
//! the fleet and its devices meet on. fogctl reads the same types.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Where a device stands with its latest deployment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SyncState {
    /// No deployment yet; the device runs its config file.
    Idle,
    Downloading,
    /// Artifacts are checked and stored.
    Staging,
    /// Components are compiled and models loaded with their reference vectors.
    Probing,
    /// The revision runs through its gate window.
    Watching,
    Committed,
    /// The revision was activated and tripped a gate, or did not start.
    RolledBack,
    /// The revision was refused before activation.
    Rejected,
}

impl SyncState {
    /// Whether the device is done with its target revision, for better or worse.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            SyncState::Idle | SyncState::Committed | SyncState::RolledBack | SyncState::Rejected
        )
    }
}

/// A function's events since the agent last started.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FunctionHealth {
    pub events: u64,
    pub failures: u64,
}

/// Download progress of the target revision.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Progress {
    pub bytes: u64,
    pub total: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub device: String,
    #[serde(default)]
    pub groups: Vec<String>,
    /// The revision the device falls back to: its last committed one.
    pub committed: Option<u64>,
    /// The revision the agent runs now (the committed one, or one being watched).
    pub running: Option<u64>,
    /// The revision the state is about.
    pub target: Option<u64>,
    pub state: SyncState,
    /// Why the target was rejected or rolled back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<Progress>,
    #[serde(default)]
    pub functions: BTreeMap<String, FunctionHealth>,
    /// fogd's version.
    pub agent: String,
    /// Reports the agent published since it started, this one included. A reader that sees
    /// it jump by more than one missed the reports in between.
    #[serde(default)]
    pub sequence: u64,
    /// When the device entered `state`, in milliseconds since the Unix epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<u64>,
}

impl Report {
    pub fn new(device: &str, groups: &[String]) -> Self {
        Self {
            device: device.to_owned(),
            groups: groups.to_vec(),
            committed: None,
            running: None,
            target: None,
            state: SyncState::Idle,
            reason: None,
            progress: None,
            functions: BTreeMap::new(),
            agent: env!("CARGO_PKG_VERSION").to_owned(),
            sequence: 0,
            since: Some(unix_millis()),
        }
    }

    /// Moves to `state` for `target`, forgetting the previous reason and progress; `since`
    /// changes only when the state or its target does.
    pub fn enter(&mut self, state: SyncState, target: Option<u64>) {
        if self.state != state || self.target != target {
            self.since = Some(unix_millis());
        }
        self.state = state;
        self.target = target;
        self.reason = None;
        self.progress = None;
    }

    /// How long the device has been in its state, by the reader's clock; `None` when the
    /// report does not say since when (an older agent), or the clocks disagree.
    pub fn age(&self) -> Option<std::time::Duration> {
        let since = self.since?;
        unix_millis()
            .checked_sub(since)
            .map(std::time::Duration::from_millis)
    }
}

fn unix_millis() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_millis() as u64)
}

/// The topics of the `fogd/v1` tree.
pub mod topics {
    pub const ROOT: &str = "fogd/v1";

    pub fn device_desired(device: &str) -> String {
        format!("{ROOT}/devices/{device}/desired")
    }

    pub fn group_desired(group: &str) -> String {
        format!("{ROOT}/groups/{group}/desired")
    }

    pub fn reported(device: &str) -> String {
        format!("{ROOT}/devices/{device}/reported")
    }

    /// Every device's report.
    pub const ALL_REPORTED: &str = "fogd/v1/devices/+/reported";
    /// Every device's desired document.
    pub const ALL_DESIRED: &str = "fogd/v1/devices/+/desired";

    /// Signed documents fogctl rolled out, kept retained for `fogctl rollback`.
    pub fn archive(revision: u64) -> String {
        format!("{ROOT}/revisions/{revision}")
    }

    pub const ALL_ARCHIVED: &str = "fogd/v1/revisions/+";

    /// The device id in a `devices/<id>/...` topic.
    pub fn device_of(topic: &str) -> Option<&str> {
        topic
            .strip_prefix(ROOT)?
            .strip_prefix("/devices/")?
            .split('/')
            .next()
    }

    pub use crate::topic::is_plain_level as is_valid_id;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_round_trip_with_kebab_case_states() {
        let mut report = Report::new("gw-1", &["site-a".to_owned()]);
        report.enter(SyncState::RolledBack, Some(7));
        report.reason = Some("function echo: 5 of 20 events failed".to_owned());
        let text = serde_json::to_string(&report).unwrap();
        assert!(text.contains("\"state\":\"rolled-back\""), "{text}");
        assert_eq!(serde_json::from_str::<Report>(&text).unwrap(), report);
        assert!(SyncState::RolledBack.is_final());
        assert!(!SyncState::Watching.is_final());
    }

    #[test]
    fn a_report_knows_since_when_it_is_in_its_state() {
        let mut report = Report::new("gw-1", &[]);
        report.enter(SyncState::Watching, Some(3));
        report.since = Some(1);
        report.reason = Some("slow".to_owned());
        report.enter(SyncState::Watching, Some(3));
        assert_eq!(report.since, Some(1));
        assert_eq!(report.reason, None);
        assert!(report.age().is_some_and(|age| age.as_secs() > 1_000_000));
        report.enter(SyncState::Committed, Some(3));
        assert!(report.since > Some(1));
        report.since = Some(u64::MAX);
        assert_eq!(report.age(), None);
        // A report from an agent that does not say since when.
        let old: Report = serde_json::from_str(
            r#"{"device":"gw-1","committed":null,"running":null,"target":null,"state":"idle","agent":"0.1.0"}"#,
        )
        .unwrap();
        assert_eq!((old.sequence, old.since), (0, None));
    }

    #[test]
    fn topics_name_devices_and_refuse_wildcards() {
        assert_eq!(topics::reported("gw-1"), "fogd/v1/devices/gw-1/reported");
        assert_eq!(
            topics::device_of("fogd/v1/devices/gw-1/reported"),
            Some("gw-1")
        );
        assert_eq!(topics::device_of("fogd/v1/groups/a/desired"), None);
        assert!(topics::is_valid_id("gw-1.site_a"));
        for bad in ["", "a/b", "a+", "#", "$sys", "a\nb"] {
            assert!(!topics::is_valid_id(bad), "{bad:?}");
        }
    }
}
