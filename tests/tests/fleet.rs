//! Fleet sync end to end with real parts: Mosquitto with mutual TLS as the fleet's broker,
//! nginx serving artifacts over HTTPS, three `fogd run` processes following their desired
//! state, and `fogctl` rolling out, reading status and rolling back.

use std::collections::BTreeMap;

use fogd::sync::{FleetKey, Report, SyncState};
use fogd_tests::daemon::Daemon;
use fogd_tests::fleet::{Fleet, text, with_custom_section};
use fogd_tests::{components, wait_until_blocking};
use serde_json::{Value, json};

/// The devices of group `site-a`, as fogctl finds them from their reports.
const GROUP: &[&str] = &["--group", "site-a"];
/// One canary, then everyone else.
const CANARY_FIRST: &[&str] = &["--canary", "1", "--waves", "100%", "--wave-timeout", "60s"];

fn terminate_all(devices: Vec<Daemon>) {
    for daemon in devices {
        let (status, log) = daemon.terminate();
        assert!(status.success(), "{}", log.join("\n"));
    }
}

fn committed(status: &BTreeMap<String, Report>, device: &str) -> Option<u64> {
    status.get(device).and_then(|report| report.committed)
}

#[test]
fn a_rollout_reaches_every_device_and_a_failing_canary_stops_the_next_one() {
    let fleet = Fleet::new();
    let echo = std::fs::read(&components().echo).unwrap();
    let probe = std::fs::read(&components().probe).unwrap();
    let mut devices: Vec<Daemon> = ["gw-1", "gw-2", "gw-3"]
        .iter()
        .map(|id| fleet.start(id))
        .collect();
    let status = fleet.status();
    assert_eq!(status.len(), 3, "{status:?}");
    assert!(
        status
            .values()
            .all(|report| report.state == SyncState::Idle)
    );

    let good = fleet.sign("rev1", fleet.document(1, "echo.wasm", &echo, "tick"));
    let plan = [
        "--canary",
        "1",
        "--waves",
        "50%,100%",
        "--wave-timeout",
        "60s",
    ];
    let (code, progress) = fleet.rollout(&good, GROUP, &plan);
    assert_eq!(code, Some(0), "{progress}");
    assert!(
        progress.contains("wave 1/3 (canary): 1 device(s): gw-1"),
        "{progress}"
    );
    assert!(
        progress.contains("done: 3 of 3 device(s) committed revision 1"),
        "{progress}"
    );
    // Without a terminal, each wave's progress comes as plain lines, the last one final.
    assert!(
        progress.contains("wave 1/3 (canary): 1/1 committed, 0 failed, 0 applying, 0 waiting ("),
        "{progress}"
    );
    for daemon in &mut devices {
        daemon.wait_for(&["deployment committed", "revision=1"]);
    }
    let status = fleet.status();
    for device in ["gw-1", "gw-2", "gw-3"] {
        assert_eq!(committed(&status, device), Some(1), "{status:?}");
        assert_eq!(status[device].state, SyncState::Committed);
        // Numbered from the idle report at start through the states of revision 1.
        assert!(status[device].sequence > 2, "{status:?}");
        assert!(status[device].age().is_some(), "{status:?}");
    }
    let table = fleet.fogctl(&["status"]);
    assert!(
        text(&table.stdout)
            .lines()
            .any(|line| line.starts_with("gw-2") && line.contains("committed")),
        "{}",
        text(&table.stdout)
    );
    // Each device downloaded the artifact once.
    assert_eq!(
        fleet
            .files
            .requests()
            .iter()
            .filter(|line| line.contains("GET /echo.wasm"))
            .count(),
        3
    );

    // The probe fails every event whose subject is "fail": the canary's gate trips, it
    // rolls back by itself, and the rollout stops before anyone else changes.
    let bad = fleet.sign("rev2", fleet.document(2, "probe.wasm", &probe, "fail"));
    let (code, progress) = fleet.rollout(&bad, &["--devices", "gw-1,gw-2,gw-3"], CANARY_FIRST);
    assert_eq!(code, Some(1), "{progress}");
    assert!(
        progress.contains("gw-1: FAILED (rolled-back: function echo: "),
        "{progress}"
    );
    assert!(progress.contains("stopping the rollout"), "{progress}");
    assert!(!progress.contains("wave 2/2"), "{progress}");
    devices[0].wait_for(&[
        "rolled back from the revision whose gate tripped",
        "revision=2",
    ]);
    let status = fleet.status();
    assert_eq!(committed(&status, "gw-1"), Some(1));
    assert_eq!(status["gw-1"].state, SyncState::RolledBack);
    assert_eq!(status["gw-1"].target, Some(2));
    for device in ["gw-2", "gw-3"] {
        assert_eq!(status[device].committed, Some(1), "{status:?}");
        assert_eq!(status[device].target, Some(1), "{status:?}");
    }
    assert_eq!(
        fleet
            .files
            .requests()
            .iter()
            .filter(|line| line.contains("GET /probe.wasm"))
            .count(),
        1,
        "only the canary fetched the failing revision"
    );

    // Rolling back to revision 1's content issues it as revision 3 (devices never go down).
    let output = fleet.fogctl(&[
        "rollback",
        "--to",
        "1",
        "--key",
        fleet.key_file.to_str().unwrap(),
        "--devices",
        "gw-1",
        "--waves",
        "100%",
        "--wave-timeout",
        "60s",
    ]);
    let progress = text(&output.stderr);
    assert!(output.status.success(), "{progress}");
    assert!(
        progress.contains("restoring the content of revision 1 as revision 3"),
        "{progress}"
    );
    assert_eq!(committed(&fleet.status(), "gw-1"), Some(3));
    terminate_all(devices);
}

#[test]
fn tampered_foreign_and_replayed_documents_are_rejected_and_an_offline_device_converges() {
    let fleet = Fleet::new();
    let echo = std::fs::read(&components().echo).unwrap();
    let mut devices: Vec<Daemon> = ["gw-1", "gw-2", "gw-3"]
        .iter()
        .map(|id| fleet.start(id))
        .collect();
    let first = fleet.document(1, "echo.wasm", &echo, "tick");
    let first_signed = fleet.sign("rev1", first);
    let all_at_once = ["--canary", "0", "--waves", "100%", "--wave-timeout", "60s"];
    let (code, progress) = fleet.rollout(&first_signed, GROUP, &all_at_once);
    assert_eq!(code, Some(0), "{progress}");

    // The artifact server hands out a file with one byte changed.
    let tampered = fleet.document(2, "tampered.wasm", &echo, "tick");
    let mut changed = echo.clone();
    changed[100] ^= 0xff;
    std::fs::write(fleet.dir.path().join("artifacts/tampered.wasm"), &changed).unwrap();
    let signed = fleet.sign("rev2", tampered);
    let (code, progress) = fleet.rollout(&signed, &["--devices", "gw-2"], &all_at_once);
    assert_eq!(code, Some(1), "{progress}");
    assert!(
        progress.contains("gw-2: FAILED (rejected: artifact tampered.wasm: sha256"),
        "{progress}"
    );

    // A document signed by a key the devices do not trust, straight onto gw-3's topic.
    let (_, stranger) = FleetKey::generate().unwrap();
    let foreign = fleet.dir.path().join("foreign.json");
    let document = fleet.document(3, "echo.wasm", &echo, "tick");
    std::fs::write(
        &foreign,
        serde_json::to_vec(&stranger.sign(document)).unwrap(),
    )
    .unwrap();
    fleet.publish_raw("fogd/v1/devices/gw-3/desired", &foreign);
    devices[2].wait_for(&["desired document refused", "does not trust"]);

    let status = fleet.status();
    assert_eq!(status["gw-2"].state, SyncState::Rejected);
    assert_eq!(status["gw-2"].target, Some(2));
    assert_eq!(status["gw-3"].state, SyncState::Rejected);
    assert!(
        status["gw-3"]
            .reason
            .as_deref()
            .unwrap_or("")
            .contains("does not trust"),
        "{status:?}"
    );
    for device in ["gw-1", "gw-2", "gw-3"] {
        assert_eq!(committed(&status, device), Some(1), "{status:?}");
    }

    // gw-3 is away during the next rollout; the others go ahead, and gw-3 takes the
    // revision when it comes back.
    let (exit, _) = devices.pop().unwrap().terminate();
    assert!(exit.success());
    let fourth = fleet.sign("rev4", fleet.document(4, "echo.wasm", &echo, "tock"));
    let plan = [
        "--canary",
        "1",
        "--failure-threshold",
        "50%",
        "--wave-timeout",
        "5s",
    ];
    let (code, progress) = fleet.rollout(&fourth, GROUP, &plan);
    assert_eq!(code, Some(1), "{progress}");
    assert!(progress.contains("gw-3: FAILED (timed out"), "{progress}");
    assert!(
        progress.contains("done: 2 of 3 device(s) committed revision 4"),
        "{progress}"
    );
    let mut returning = Daemon::start(&fleet.device("gw-3"));
    returning.wait_for(&["deployment committed", "revision=4"]);
    let status = fleet.status();
    for device in ["gw-1", "gw-2", "gw-3"] {
        assert_eq!(committed(&status, device), Some(4), "{status:?}");
    }

    // An old revision, correctly signed, replayed onto gw-3.
    fleet.publish_raw("fogd/v1/devices/gw-3/desired", &first_signed);
    returning.wait_for(&[
        "desired revision refused",
        "is not above the committed revision 4",
    ]);
    assert_eq!(committed(&fleet.status(), "gw-3"), Some(4));
    devices.push(returning);
    terminate_all(devices);
}

#[test]
fn a_download_cut_by_kill_9_resumes_where_it_stopped() {
    // 256 KiB/s: the 1 MiB artifact takes four seconds to arrive.
    let fleet = Fleet::with_artifact_rate(Some(256 * 1024));
    let echo = std::fs::read(&components().echo).unwrap();
    let config = fleet.device("gw-1");
    let mut daemon = Daemon::start(&config);
    daemon.wait_for(&["sync connection up"]);
    let padded = with_custom_section(&echo, 1024 * 1024);
    let signed = fleet.sign("rev1", fleet.document(1, "padded.wasm", &padded, "tick"));
    fleet.publish_raw("fogd/v1/devices/gw-1/desired", &signed);
    daemon.wait_for(&["applying desired revision", "revision=1"]);

    let partial = config
        .parent()
        .unwrap()
        .join("state/revisions/1.download/padded.wasm");
    wait_until_blocking("the download starts", || {
        std::fs::metadata(&partial).map_or(0, |m| m.len()) >= 256 * 1024
    });
    // SAFETY: plain kill(2) on our own child's pid.
    unsafe { libc::kill(daemon.pid(), libc::SIGKILL) };
    drop(daemon);
    let held = std::fs::metadata(&partial).unwrap().len();
    assert!(held < padded.len() as u64, "{held}");

    let mut daemon = Daemon::start(&config);
    daemon.wait_for(&["deployment committed", "revision=1"]);
    let requests = fleet.files.requests();
    let downloads: Vec<&String> = requests
        .iter()
        .filter(|l| l.contains("GET /padded.wasm"))
        .collect();
    assert_eq!(downloads.len(), 2, "{requests:?}");
    // The second request asked for the rest only: nginx answered 206 Partial Content.
    assert!(downloads[1].contains("\" 206 "), "{requests:?}");
    let (status, _) = daemon.terminate();
    assert!(status.success());
}

#[test]
fn kill_9_while_a_revision_is_probed_leaves_the_committed_one_and_it_applies_after_restart() {
    let fleet = Fleet::new();
    let echo = std::fs::read(&components().echo).unwrap();
    let config = fleet.device("gw-1");
    let state = config.parent().unwrap().join("state/revisions");
    let mut daemon = Daemon::start(&config);
    daemon.wait_for(&["sync connection up"]);
    let desired = "fogd/v1/devices/gw-1/desired";
    fleet.publish_raw(
        desired,
        &fleet.sign("rev1", fleet.document(1, "echo.wasm", &echo, "tick")),
    );
    daemon.wait_for(&["deployment committed", "revision=1"]);

    // Revision 2 brings the detector and the model: probing compiles the component and runs
    // the model's reference vectors, which is when fogd is killed.
    let reference =
        std::fs::read(fogd_tests::root().join("models/flow-anomaly/reference.json")).unwrap();
    let mut second =
        fogd_tests::detector_deployment(&reference, |name, bytes| fleet.serve(name, bytes));
    second["revision"] = json!(2);
    fleet.publish_raw(desired, &fleet.sign("rev2", second));
    let probing = state.join("2.staging/deployment.json");
    wait_until_blocking("revision 2 is being staged", || probing.exists());
    // SAFETY: plain kill(2) on our own child's pid.
    unsafe { libc::kill(daemon.pid(), libc::SIGKILL) };
    drop(daemon);
    assert!(
        probing.exists() && !state.join("2").exists(),
        "fogd was killed after revision 2 was probed; the test needs a slower probe"
    );

    let mut daemon = Daemon::start(&config);
    // The half-staged revision is not run: the device starts on what it committed, then
    // stages and probes revision 2 again from the downloads it kept.
    daemon.wait_for(&["running deployment revision=1"]);
    daemon.wait_for(&["deployment committed", "revision=2"]);
    assert!(!state.join("2.staging").exists());
    assert!(!state.join("2.download").exists());
    for artifact in ["ddos_detector.wasm", "flow-anomaly.tflite"] {
        let fetched = fleet
            .files
            .requests()
            .iter()
            .filter(|line| line.contains(&format!("GET /{artifact}")))
            .count();
        assert_eq!(fetched, 1, "{artifact} was downloaded {fetched} times");
    }
    let (status, _) = daemon.terminate();
    assert!(status.success());
}

#[test]
fn a_reload_moves_a_device_to_another_group() {
    let fleet = Fleet::new();
    let echo = std::fs::read(&components().echo).unwrap();
    let config = fleet.device("gw-1");
    let mut daemon = Daemon::start(&config);
    daemon.wait_for(&["sync connection up"]);
    let moved = std::fs::read_to_string(&config)
        .unwrap()
        .replace("groups = [\"site-a\"]", "groups = [\"site-b\"]");
    std::fs::write(&config, moved).unwrap();
    // SAFETY: plain kill(2) on our own child's pid.
    unsafe { libc::kill(daemon.pid(), libc::SIGHUP) };
    daemon.wait_for_next(&[
        "following the fleet's desired state",
        "groups/site-b/desired",
    ]);
    daemon.wait_for_next(&["sync connection up"]);

    let signed = fleet.sign("rev1", fleet.document(1, "echo.wasm", &echo, "tick"));
    fleet.publish_raw("fogd/v1/groups/site-b/desired", &signed);
    daemon.wait_for_next(&["deployment committed", "revision=1"]);
    let status = fleet.status();
    assert_eq!(status["gw-1"].groups, ["site-b"], "{status:?}");
    assert_eq!(committed(&status, "gw-1"), Some(1));
    let (status, log) = daemon.terminate();
    assert!(status.success(), "{}", log.join("\n"));
}

#[test]
fn a_model_that_misses_its_reference_vectors_stops_the_rollout_at_the_canary() {
    let fleet = Fleet::new();
    let mut devices: Vec<Daemon> = ["gw-1", "gw-2"].iter().map(|id| fleet.start(id)).collect();
    // The reference vectors expect another class for the first case than the model gives.
    let path = fogd_tests::root().join("models/flow-anomaly/reference.json");
    let mut reference: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    reference["cases"][0]["output_i8"] = json!([-128, 127, -128, -128]);
    let reference = serde_json::to_vec(&reference).unwrap();
    let document =
        fogd_tests::detector_deployment(&reference, |name, bytes| fleet.serve(name, bytes));
    let signed = fleet.sign("model", document);
    let (code, progress) = fleet.rollout(&signed, GROUP, CANARY_FIRST);
    assert_eq!(code, Some(1), "{progress}");
    assert!(progress.contains("gw-1: probing"), "{progress}");
    assert!(
        progress.contains("gw-1: FAILED (rejected: model[0].path: ")
            && progress.contains("reference"),
        "{progress}"
    );
    assert!(progress.contains("stopping the rollout"), "{progress}");
    let status = fleet.status();
    assert_eq!(status["gw-1"].state, SyncState::Rejected);
    assert_eq!(status["gw-1"].committed, None);
    assert_eq!(status["gw-2"].state, SyncState::Idle, "{status:?}");
    let fetched = fleet
        .files
        .requests()
        .iter()
        .filter(|line| line.contains("GET /flow-anomaly.tflite"))
        .count();
    assert_eq!(fetched, 1, "only the canary fetched the model");
    devices[0].wait_for(&["desired revision rejected", "revision=1"]);
    terminate_all(std::mem::take(&mut devices));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_event_fails_while_a_device_switches_revisions_under_load() {
    let fleet = Fleet::new();
    let echo = std::fs::read(&components().echo).unwrap();
    let device = fleet.start("gw-1");
    // echo answers every message on load/+ with a result on results/load/<n>.
    let document = |revision: u64| {
        let mut document = fleet.document(revision, "echo.wasm", &echo, "tick");
        document["function"][0]["trigger"] =
            json!([{"mqtt": {"topic": "load/+", "qos": 1, "broker": "cloud"}}]);
        document["function"][0]["output"] = json!("results/{subject}");
        document
    };
    let first = fleet.sign("rev1", document(1));
    let all_at_once = ["--canary", "0", "--waves", "100%", "--wave-timeout", "60s"];
    let devices = ["--devices", "gw-1"];
    let (code, progress) = fleet.rollout(&first, &devices, &all_at_once);
    assert_eq!(code, Some(0), "{progress}");

    let mut results =
        fogd_tests::mqtt_client::TestClient::connect(fleet.broker.port, "results", &["results/#"])
            .await;
    let publisher =
        fogd_tests::mqtt_client::TestClient::connect(fleet.broker.port, "load", &[]).await;
    // Messages flow, about one per millisecond, from before the switch to revision 2 starts
    // until after it ended.
    let second = fleet.sign("rev2", document(2));
    let mut command = Some(
        fleet.fogctl_command(
            &[
                &["rollout", second.to_str().unwrap()][..],
                &devices,
                &all_at_once,
            ]
            .concat(),
        ),
    );
    let mut switch = None;
    let mut sent = 0;
    let mut after_switch = 0;
    while after_switch < 200 {
        publisher
            .publish(&format!("load/{sent}"), sent.to_string(), 1)
            .await;
        sent += 1;
        if sent == 200
            && let Some(mut command) = command.take()
        {
            switch = Some(tokio::task::spawn_blocking(move || command.output()));
        }
        if switch.as_ref().is_some_and(|task| task.is_finished()) {
            after_switch += 1;
        }
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    }
    let output = switch.unwrap().await.unwrap().expect("fogctl runs");
    assert!(output.status.success(), "{}", text(&output.stderr));
    let mut answered = std::collections::BTreeSet::new();
    results
        .collect_until(std::time::Duration::from_secs(60), |received| {
            if let Some(last) = received.last() {
                answered.insert(last.topic.clone());
            }
            answered.len() == sent
        })
        .await;
    let status = fleet.status();
    assert_eq!(committed(&status, "gw-1"), Some(2), "{status:?}");
    let (exit, log) = device.terminate();
    assert!(exit.success());
    assert!(
        log.iter()
            .any(|line| line.contains("deployment committed") && line.contains("revision=2")),
        "{}",
        log.join("\n")
    );
    assert!(
        !log.iter().any(|line| line.contains("event failed")),
        "{}",
        log.join("\n")
    );
}
