//! `fogd deploy` against a running daemon: a signed revision is verified, staged, run,
//! watched and committed, or rolled back when its health gate trips; replays, tampered
//! artifacts, other keys and documents that do not fit the device are refused and change
//! nothing.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use fogd::sync::FleetKey;
use fogd_tests::daemon::Daemon;
use fogd_tests::{components, fogd_bin};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

struct Site {
    dir: tempfile::TempDir,
    key: FleetKey,
    config: PathBuf,
}

impl Site {
    /// A device config with no functions of its own, trusting a new fleet key.
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let (_, key) = FleetKey::generate().unwrap();
        let config = dir.path().join("fogd.toml");
        std::fs::write(
            &config,
            format!(
                r#"
                    state_dir = "state"
                    [metrics]
                    address = "127.0.0.1:0"
                    [sync]
                    trusted_keys = ["{}"]
                "#,
                key.public_hex()
            ),
        )
        .unwrap();
        Self { dir, key, config }
    }

    /// The site with LiteRT configured, for revisions that bring models.
    fn with_inference(self) -> Self {
        let mut config = std::fs::read_to_string(&self.config).unwrap();
        config.push_str(&format!(
            "[inference]\nruntime = \"{}\"\n",
            fogd_tests::litert_library().display()
        ));
        std::fs::write(&self.config, config).unwrap();
        self
    }

    /// A revision running echo every 50 ms, with `component` as its artifact.
    fn document(&self, revision: u64, component: &[u8], extra: Value) -> Value {
        let mut function = json!({
            "name": "echo",
            "component": "echo.wasm",
            "output": "deployed/{subject}",
            "trigger": [{"timer": {"every": "50ms", "name": format!("rev{revision}")}}]
        });
        if let (Some(function), Some(extra)) = (function.as_object_mut(), extra.as_object()) {
            function.extend(extra.clone());
        }
        json!({
            "schema": "fogd.deployment/v1",
            "revision": revision,
            "artifacts": {"echo.wasm": {
                "url": "https://artifacts.example/echo.wasm",
                "sha256": hex::encode(Sha256::digest(component)),
                "size": component.len()
            }},
            "function": [function],
            "health": {"window": "300ms"}
        })
    }

    /// Writes the signed document and an artifact directory holding `component`.
    fn write(
        &self,
        name: &str,
        key: &FleetKey,
        document: Value,
        component: &[u8],
    ) -> (PathBuf, PathBuf) {
        let signed = self.dir.path().join(format!("{name}.json"));
        std::fs::write(&signed, serde_json::to_vec(&key.sign(document)).unwrap()).unwrap();
        let artifacts = self.dir.path().join(format!("{name}-artifacts"));
        std::fs::create_dir_all(&artifacts).unwrap();
        std::fs::write(artifacts.join("echo.wasm"), component).unwrap();
        (signed, artifacts)
    }

    fn deploy(&self, signed: &Path, artifacts: &Path) -> Output {
        Command::new(fogd_bin())
            .arg("deploy")
            .arg(signed)
            .arg("--artifacts")
            .arg(artifacts)
            .arg("--config")
            .arg(&self.config)
            .output()
            .expect("fogd deploy runs")
    }

    fn revision_dir(&self, revision: u64) -> PathBuf {
        self.dir.path().join(format!("state/revisions/{revision}"))
    }

    /// Starts fogd and deploys revision 1 (echo), waiting until it is committed.
    fn running_revision_1(&self, echo: &[u8]) -> Daemon {
        let mut daemon = Daemon::start(&self.config);
        let (signed, artifacts) =
            self.write("rev1", &self.key, self.document(1, echo, json!({})), echo);
        assert!(self.deploy(&signed, &artifacts).status.success());
        daemon.wait_for(&["deployment committed", "revision=1"]);
        daemon
    }

    /// Revision `revision` running the probe every 20 ms on `subject` with `payload` (and
    /// the flow-anomaly model's `version` from the shipped `file` if given), signed and
    /// written with its artifacts.
    fn probe_revision(
        &self,
        revision: u64,
        subject: &str,
        payload: &str,
        model: Option<(&str, &str)>,
        health: Value,
    ) -> (PathBuf, PathBuf) {
        let probe = std::fs::read(&components().probe).unwrap();
        let mut document = self.document(
            revision,
            &probe,
            json!({
                "trigger": [{"timer": {"every": "20ms", "name": subject, "payloads": [payload]}}]
            }),
        );
        document["health"] = health;
        let model_file = model.map(|(version, file)| {
            document["function"][0]["grants"] = json!({"models": ["flow-anomaly"]});
            let bytes =
                std::fs::read(fogd_tests::root().join("models/flow-anomaly").join(file)).unwrap();
            document["artifacts"][file] = json!({
                "url": format!("https://artifacts.example/{file}"),
                "sha256": hex::encode(Sha256::digest(&bytes)),
                "size": bytes.len()
            });
            document["model"] = json!([{"name": "flow-anomaly", "version": version, "path": file}]);
            (file, bytes)
        });
        let (signed, artifacts) =
            self.write(&format!("rev{revision}"), &self.key, document, &probe);
        if let Some((file, bytes)) = model_file {
            std::fs::write(artifacts.join(file), bytes).unwrap();
        }
        (signed, artifacts)
    }

    /// Revision 1 is committed and revision 2 is gone.
    fn assert_back_on_revision_1(&self) {
        assert_eq!(
            std::fs::read_to_string(self.dir.path().join("state/revisions/committed")).unwrap(),
            "1\n"
        );
        assert!(!self.revision_dir(2).exists());
    }
}

fn refused_with(output: &Output, needle: &str) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains(needle), "stderr lacks {needle:?}: {stderr}");
}

#[test]
fn a_signed_revision_runs_is_committed_and_survives_a_restart() {
    let site = Site::new();
    let echo = std::fs::read(&components().echo).unwrap();
    let mut daemon = Daemon::start(&site.config);
    daemon.wait_for(&["fogd ready", "functions=0"]);

    let (signed, artifacts) =
        site.write("rev1", &site.key, site.document(1, &echo, json!({})), &echo);
    let output = site.deploy(&signed, &artifacts);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(String::from_utf8_lossy(&output.stdout).contains("revision 1 staged; fogd (pid"));
    daemon.wait_for_next(&["fogd ready", "functions=1"]);
    daemon.wait_for_next(&["deployment committed", "revision=1"]);
    daemon.wait_for_next(&["publish", "deployed/rev1"]);
    assert_eq!(
        std::fs::read_to_string(site.dir.path().join("state/revisions/committed")).unwrap(),
        "1\n"
    );

    // The same document again, or an older one, is a replay.
    refused_with(
        &site.deploy(&signed, &artifacts),
        "not above the committed revision 1",
    );

    let (_, lines) = daemon.terminate();
    assert!(
        lines.iter().all(|line| !line.contains("ERROR")),
        "{lines:#?}"
    );
    let mut daemon = Daemon::start(&site.config);
    daemon.wait_for(&["running deployment", "revision=1"]);
    daemon.wait_for(&["publish", "deployed/rev1"]);
    daemon.terminate();
}

#[test]
fn tampered_artifacts_other_keys_and_misfits_are_refused_and_nothing_changes() {
    let site = Site::new();
    let echo = std::fs::read(&components().echo).unwrap();

    let mut tampered = echo.clone();
    let last = tampered.len() - 1;
    tampered[last] ^= 0xff;
    let (signed, artifacts) = site.write(
        "tampered",
        &site.key,
        site.document(2, &echo, json!({})),
        &tampered,
    );
    refused_with(
        &site.deploy(&signed, &artifacts),
        "artifact echo.wasm: sha256",
    );
    assert!(!site.revision_dir(2).exists());

    let (_, stranger) = FleetKey::generate().unwrap();
    let (signed, artifacts) = site.write(
        "stranger",
        &stranger,
        site.document(3, &echo, json!({})),
        &echo,
    );
    refused_with(
        &site.deploy(&signed, &artifacts),
        "which this device does not trust",
    );

    let misfit = site.document(4, &echo, json!({"broker": "cloud"}));
    let (signed, artifacts) = site.write("misfit", &site.key, misfit, &echo);
    refused_with(&site.deploy(&signed, &artifacts), "function[0].broker");
    assert!(!site.revision_dir(4).exists());

    let (signed, artifacts) = site.write(
        "not-wasm",
        &site.key,
        site.document(5, b"not wasm", json!({})),
        b"not wasm",
    );
    refused_with(&site.deploy(&signed, &artifacts), "function[0].component");
    assert!(!site.revision_dir(5).exists());

    let mut signed_document: Value = serde_json::from_slice(
        &std::fs::read(
            site.write(
                "edited",
                &site.key,
                site.document(6, &echo, json!({})),
                &echo,
            )
            .0,
        )
        .unwrap(),
    )
    .unwrap();
    signed_document["document"]["revision"] = json!(60);
    let edited = site.dir.path().join("edited.json");
    std::fs::write(&edited, signed_document.to_string()).unwrap();
    refused_with(
        &site.deploy(&edited, &site.dir.path().join("edited-artifacts")),
        "does not match the document",
    );

    assert!(!site.dir.path().join("state/revisions/committed").exists());
}

#[test]
fn a_revision_staged_while_fogd_is_stopped_runs_at_start_unless_changed_on_disk() {
    let site = Site::new();
    let echo = std::fs::read(&components().echo).unwrap();
    let (signed, artifacts) =
        site.write("rev1", &site.key, site.document(1, &echo, json!({})), &echo);
    let output = site.deploy(&signed, &artifacts);
    assert!(
        String::from_utf8_lossy(&output.stdout)
            .contains("revision 1 staged; fogd runs it when it starts")
    );
    let (signed, artifacts) =
        site.write("rev2", &site.key, site.document(2, &echo, json!({})), &echo);
    assert!(site.deploy(&signed, &artifacts).status.success());

    // Revision 2's component is changed after staging: at start it is discarded and the
    // device runs revision 1 instead.
    let staged = site.revision_dir(2).join("echo.wasm");
    let mut bytes = std::fs::read(&staged).unwrap();
    bytes.push(0);
    std::fs::write(&staged, bytes).unwrap();
    let mut daemon = Daemon::start(&site.config);
    daemon.wait_for(&[
        "staged deployment refused",
        "revision=2",
        "changed after staging",
    ]);
    daemon.wait_for(&["deployment committed", "revision=1"]);
    daemon.wait_for(&["publish", "deployed/rev1"]);
    assert!(!site.revision_dir(2).exists());
    daemon.terminate();
}

#[test]
fn a_revision_whose_functions_fail_is_rolled_back_to_the_committed_one() {
    let site = Site::new();
    let echo = std::fs::read(&components().echo).unwrap();
    let probe = std::fs::read(&components().probe).unwrap();
    let mut daemon = site.running_revision_1(&echo);

    // The probe fails every event whose subject is "fail".
    let mut failing = site.document(
        2,
        &probe,
        json!({"trigger": [{"timer": {"every": "20ms", "name": "fail"}}]}),
    );
    failing["health"] = json!({"window": "30s", "min_events": 5, "max_error_rate": 0.5});
    let (signed, artifacts) = site.write("rev2", &site.key, failing, &probe);
    assert!(site.deploy(&signed, &artifacts).status.success());
    daemon.wait_for_next(&[
        "running deployment; watching it before committing",
        "revision=2",
    ]);
    let tripped = daemon.wait_for_next(&["deployment rolled back", "revision=2"]);
    // Every event failed; the gate trips once at least 5 were handled.
    assert!(
        tripped.contains("function echo: ")
            && tripped.contains("events failed (100%, the gate is 50%)"),
        "{tripped}"
    );
    let rolled = daemon.wait_for_next(&[
        "rolled back from the revision whose gate tripped",
        "revision=2",
    ]);
    let elapsed_ms: u64 = rolled
        .split("elapsed_ms=")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|value| value.parse().ok())
        .expect("elapsed_ms in the log line");
    assert!(elapsed_ms < 1_000, "{rolled}");
    daemon.wait_for(&["running deployment revision=1"]);
    daemon.wait_for_next(&["publish", "deployed/rev1"]);
    site.assert_back_on_revision_1();
    daemon.terminate();
}

#[test]
fn a_revision_whose_p99_event_time_passes_its_gate_is_rolled_back() {
    let site = Site::new();
    let echo = std::fs::read(&components().echo).unwrap();
    let mut daemon = site.running_revision_1(&echo);

    // Each event keeps the probe busy for 15 ms; the gate allows a p99 of 5 ms.
    let (signed, artifacts) = site.probe_revision(
        2,
        "busy",
        "15",
        None,
        json!({"window": "30s", "min_events": 5, "max_p99_latency": "5ms"}),
    );
    assert!(site.deploy(&signed, &artifacts).status.success());
    let tripped = daemon.wait_for_next(&["deployment rolled back", "revision=2"]);
    assert!(
        tripped.contains("function echo: p99 event time") && tripped.contains("(the gate is 5 ms)"),
        "{tripped}"
    );
    daemon.wait_for(&["running deployment revision=1"]);
    site.assert_back_on_revision_1();
    daemon.terminate();
}

#[test]
fn a_model_version_whose_confidence_drifts_from_the_previous_one_is_rolled_back() {
    let site = Site::new().with_inference();
    // Half way between a UDP flood and a scan from the reference vectors: version 1 is
    // sure of it (0.96), version 2 much less (0.58).
    let reference: Value = serde_json::from_slice(
        &std::fs::read(fogd_tests::root().join("models/flow-anomaly/reference.json")).unwrap(),
    )
    .unwrap();
    let features = |case: usize| {
        reference["cases"][case]["input_f32"]
            .as_array()
            .unwrap()
            .clone()
    };
    let between: Vec<f64> = features(16)
        .iter()
        .zip(features(24))
        .map(|(a, b)| (a.as_f64().unwrap() + b.as_f64().unwrap()) / 2.0)
        .collect();
    let request = json!({"model": "flow-anomaly", "inputs": [between]}).to_string();
    let gates = |window: &str| json!({"window": window, "min_events": 5, "max_p99_latency": "2s", "max_confidence_drift": 0.2});

    let mut daemon = Daemon::start(&site.config);
    let (signed, artifacts) = site.probe_revision(
        1,
        "infer",
        &request,
        Some(("1", "flow-anomaly.tflite")),
        gates("300ms"),
    );
    assert!(site.deploy(&signed, &artifacts).status.success());
    daemon.wait_for(&["deployment committed", "revision=1"]);
    // Version 1 needs the gate's minimum of runs to be a baseline.
    for _ in 0..5 {
        daemon.wait_for_next(&["publish", "deployed/infer"]);
    }

    let (signed, artifacts) = site.probe_revision(
        2,
        "infer",
        &request,
        Some(("2", "flow-anomaly-v2.tflite")),
        gates("30s"),
    );
    assert!(site.deploy(&signed, &artifacts).status.success());
    let tripped = daemon.wait_for_next(&["deployment rolled back", "revision=2"]);
    assert!(
        tripped.contains("model flow-anomaly: mean confidence 0.58")
            && tripped.contains("of version 2 against 0.96 for version 1")
            && tripped.contains("the gate is 0.20"),
        "{tripped}"
    );
    daemon.wait_for_next(&["running deployment revision=1"]);
    site.assert_back_on_revision_1();
    daemon.terminate();
}

#[test]
fn a_revision_fogd_was_killed_under_twice_is_not_tried_a_third_time() {
    let site = Site::new();
    let echo = std::fs::read(&components().echo).unwrap();
    let mut daemon = site.running_revision_1(&echo);

    let mut second = site.document(2, &echo, json!({}));
    second["health"] = json!({"window": "60s"});
    let (signed, artifacts) = site.write("rev2", &site.key, second, &echo);
    assert!(site.deploy(&signed, &artifacts).status.success());
    for _ in 0..2 {
        daemon.wait_for_next(&["watching it before committing", "revision=2"]);
        // Dropping the daemon kills it with SIGKILL, in the middle of the watch window.
        drop(daemon);
        daemon = Daemon::start(&site.config);
    }
    daemon.wait_for(&[
        "staged deployment refused",
        "revision=2",
        "fogd stopped 2 times",
    ]);
    daemon.wait_for(&["running deployment revision=1"]);
    daemon.wait_for(&["publish", "deployed/rev1"]);
    site.assert_back_on_revision_1();
    daemon.terminate();
}

#[test]
fn a_revision_brings_a_model_to_a_device_that_had_none() {
    let site = Site::new().with_inference();
    let model_dir = fogd_tests::root().join("models/flow-anomaly");
    let model = std::fs::read(model_dir.join("flow-anomaly.tflite")).unwrap();
    let reference = std::fs::read(model_dir.join("reference.json")).unwrap();
    let detector = std::fs::read(&components().ddos_detector).unwrap();
    let pin = |_: &str, bytes: &[u8]| json!({"url": "https://artifacts.example/file", "sha256": hex::encode(Sha256::digest(bytes)), "size": bytes.len()});
    let document = fogd_tests::detector_deployment(&reference, pin);
    let (signed, artifacts) = site.write("model", &site.key, document, &detector);
    std::fs::rename(
        artifacts.join("echo.wasm"),
        artifacts.join("ddos_detector.wasm"),
    )
    .unwrap();
    std::fs::write(artifacts.join("flow-anomaly.tflite"), &model).unwrap();
    std::fs::write(artifacts.join("flow-anomaly.reference.json"), &reference).unwrap();

    let mut daemon = Daemon::start(&site.config);
    daemon.wait_for(&["fogd ready", "functions=0"]);
    let output = site.deploy(&signed, &artifacts);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    daemon.wait_for_next(&[
        "reference vectors reproduced",
        "model=flow-anomaly",
        "cases=32",
    ]);
    daemon.wait_for_next(&["deployment committed", "revision=1"]);
    daemon.terminate();
}

#[test]
fn staging_left_by_a_killed_deploy_is_removed_at_the_next_start() {
    let site = Site::new();
    // What a `fogd deploy` killed while copying leaves: a half-filled staging folder and
    // its lock file, held by no process.
    let staging = site.dir.path().join("state/revisions/3.staging");
    std::fs::create_dir_all(&staging).unwrap();
    std::fs::write(staging.join("echo.wasm"), b"half a component").unwrap();
    std::fs::write(site.dir.path().join("state/revisions/3.staging.lock"), b"").unwrap();
    let mut daemon = Daemon::start(&site.config);
    daemon.wait_for(&[
        "removed a revision whose staging was interrupted",
        "3.staging",
    ]);
    daemon.wait_for(&["fogd ready"]);
    assert!(!staging.exists());
    assert!(
        !site
            .dir
            .path()
            .join("state/revisions/3.staging.lock")
            .exists()
    );
    daemon.terminate();
}

#[test]
fn during_a_watch_window_another_document_or_a_lower_revision_is_refused() {
    let site = Site::new();
    let echo = std::fs::read(&components().echo).unwrap();
    let mut daemon = site.running_revision_1(&echo);
    let mut watched = site.document(3, &echo, json!({}));
    watched["health"] = json!({"window": "60s"});
    let (signed, artifacts) = site.write("rev3", &site.key, watched, &echo);
    assert!(site.deploy(&signed, &artifacts).status.success());
    daemon.wait_for_next(&[
        "running deployment; watching it before committing",
        "revision=3",
    ]);

    let (other, artifacts) = site.write(
        "rev3-other",
        &site.key,
        site.document(3, &echo, json!({"output": "other/{subject}"})),
        &echo,
    );
    refused_with(
        &site.deploy(&other, &artifacts),
        "revision 3 is already staged with another document",
    );
    let (lower, artifacts) =
        site.write("rev2", &site.key, site.document(2, &echo, json!({})), &echo);
    refused_with(
        &site.deploy(&lower, &artifacts),
        "revision 2 is below revision 3, which is staged or being watched",
    );
    assert!(!site.revision_dir(2).exists());
    // Revision 3 is still the one watched, with its own document.
    assert_eq!(
        std::fs::read(site.revision_dir(3).join("deployment.json")).unwrap(),
        std::fs::read(&signed).unwrap()
    );
    daemon.wait_for(&["publish", "deployed/rev3"]);
    daemon.terminate();
}
