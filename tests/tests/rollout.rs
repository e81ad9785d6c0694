//! `fogctl rollout` against a simulated fleet (`controller/examples/fleet_sim.rs`, one MQTT
//! connection per device, reporting as fogd does) through a real Mosquitto whose queue for
//! fogctl overflows during the burst of reports.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use fogd_tests::mosquitto::{BrokerOptions, Mosquitto};
use fogd_tests::{fleet_sim_bin, fogctl_bin, root};

const DEVICES: usize = 200;

/// The simulated devices whose health gate trips: one in the second wave, one in the third.
const GATE_TRIPS: [&str; 2] = ["sim-050", "sim-150"];

struct SimulatedFleet {
    child: Child,
}

impl SimulatedFleet {
    /// Starts the devices and returns once every one is connected and has reported.
    fn start(broker: &Mosquitto, trust: &Path) -> Self {
        let mut child = Command::new(fleet_sim_bin())
            .args([
                "--broker",
                &broker.address(),
                "--devices",
                &DEVICES.to_string(),
            ])
            .arg("--trust")
            .arg(trust)
            .args(["--roll-back", &GATE_TRIPS.join(",")])
            .stdout(Stdio::piped())
            .spawn()
            .expect("fleet_sim starts");
        let stdout = child.stdout.take().expect("piped stdout");
        let first = BufReader::new(stdout)
            .lines()
            .next()
            .and_then(Result::ok)
            .unwrap_or_default();
        assert_eq!(first, format!("ready {DEVICES}"));
        Self { child }
    }
}

impl Drop for SimulatedFleet {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn fogctl(dir: &Path, args: &[&str]) -> std::process::Output {
    Command::new(fogctl_bin())
        .args(args)
        .current_dir(dir)
        .output()
        .expect("fogctl runs")
}

#[test]
fn a_rollout_judges_every_device_by_its_retained_report_when_the_broker_drops_reports() {
    // The broker lets fogctl have 10 reports in flight (as a broker capping the receive
    // maximum would) and queues 10 more; the rest of the burst is dropped.
    let broker = Mosquitto::with(BrokerOptions {
        extra: "max_queued_messages 10".to_owned(),
        ..BrokerOptions::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let keygen = fogctl(dir.path(), &["keygen", "--out", "fleet.key"]);
    assert!(keygen.status.success());
    let _fleet = SimulatedFleet::start(&broker, &dir.path().join("fleet.key.pub"));
    let example = root().join("fleet/schema/example-deployment.json");
    let sign = fogctl(
        dir.path(),
        &[
            "sign",
            example.to_str().unwrap(),
            "--key",
            "fleet.key",
            "--out",
            "signed.json",
        ],
    );
    assert!(
        sign.status.success(),
        "{}",
        String::from_utf8_lossy(&sign.stderr)
    );
    let devices: Vec<String> = (1..=DEVICES).map(|n| format!("sim-{n:03}")).collect();
    let rollout = fogctl(
        dir.path(),
        &[
            "rollout",
            "signed.json",
            "--broker",
            &broker.address(),
            "--devices",
            &devices.join(","),
            "--canary",
            "10",
            "--waves",
            "50%,100%",
            "--failure-threshold",
            "5%",
            "--wave-timeout",
            "60s",
            "--receive-maximum",
            "10",
        ],
    );
    let progress = String::from_utf8_lossy(&rollout.stderr);
    assert!(
        broker.log().contains("Outgoing messages are being dropped"),
        "the broker dropped nothing, so this tested nothing:\n{progress}"
    );
    assert!(
        progress.contains("report(s) never reached fogctl (the broker dropped them)"),
        "{progress}"
    );
    assert!(!progress.contains("timed out"), "{progress}");
    for device in &devices {
        let verdict = if GATE_TRIPS.contains(&device.as_str()) {
            format!("  {device}: FAILED (rolled-back: simulated: a health gate tripped; ")
        } else {
            format!("  {device}: committed 12\n")
        };
        assert_eq!(
            progress.matches(&verdict).count(),
            1,
            "{verdict}\n{progress}"
        );
    }
    assert!(
        progress.contains(&format!(
            "done: 198 of {DEVICES} device(s) committed revision 12"
        )),
        "{progress}"
    );
    assert_eq!(rollout.status.code(), Some(1), "{progress}");
}
