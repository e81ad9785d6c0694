//! Desired document to running revision on one device, over the fleet path: the signed
//! document published to the device's desired topic on Mosquitto (mutual TLS), the artifacts
//! downloaded from nginx over HTTPS, staged, probed (components compiled, the model run on its
//! reference vectors) and activated by `fogd run`. Baseline in the same run: the same kind of
//! revision applied with `fogd deploy` from local files on the same daemon.
//!
//! Each revision holds the shipped functions (echo, threshold-alert, ddos-detector) and the
//! flow-anomaly model with its 32 reference vectors. "new components" revisions carry
//! components no revision had before (a custom section names the revision), so they are
//! compiled; "unchanged components" revisions reuse the previous revision's components, which
//! the cache already holds. The model gets a new version every revision.
//!
//!   cargo bench -p fogd-tests --bench deploy_over_mqtt -- [--runs N] [--json]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use fogd_tests::daemon::Daemon;
use fogd_tests::fleet::{Fleet, with_custom_section};
use fogd_tests::mqtt_client::TestClient;
use fogd_tests::{components, fogd_bin, root};
use serde_json::{Value, json};

/// How a revision reaches the daemon.
#[derive(Clone, Copy, PartialEq)]
enum Route {
    Local,
    Mqtt,
}

struct Bench {
    fleet: Fleet,
    config: PathBuf,
    daemon: Daemon,
    publisher: TestClient,
    revision: u64,
    /// The revision whose components the next "unchanged components" revision reuses.
    components_of: u64,
}

impl Bench {
    /// The shipped functions and model as revision `self.revision`, served by nginx and
    /// left in the fleet's artifact directory for `fogd deploy`.
    fn document(&self, components_of: u64) -> Value {
        let built = components();
        let functions = [
            ("echo.wasm", &built.echo),
            ("threshold_alert.wasm", &built.threshold_alert),
            ("ddos_detector.wasm", &built.ddos_detector),
        ];
        let mut artifacts = serde_json::Map::new();
        for (name, path) in functions {
            let component = std::fs::read(path).expect("built component");
            // The section's size tells revisions apart: a component no revision had before.
            let marked = with_custom_section(&component, components_of as u32);
            artifacts.insert(name.to_owned(), self.fleet.serve(name, &marked));
        }
        let model_dir = root().join("models/flow-anomaly");
        for (name, file) in [
            ("flow-anomaly.tflite", "flow-anomaly.tflite"),
            ("flow-anomaly.reference.json", "reference.json"),
        ] {
            let bytes = std::fs::read(model_dir.join(file)).expect("shipped model");
            artifacts.insert(name.to_owned(), self.fleet.serve(name, &bytes));
        }
        json!({
            "schema": "fogd.deployment/v1",
            "revision": self.revision,
            "artifacts": artifacts,
            "function": [
                {"name": "echo", "component": "echo.wasm", "output": "echo/{subject}",
                 "trigger": [{"mqtt": {"topic": "ping/#", "qos": 1}}]},
                {"name": "threshold-alert", "component": "threshold_alert.wasm",
                 "grants": {"publish": ["alerts/#"]},
                 "trigger": [{"mqtt": {"topic": "telemetry/+", "qos": 1}}]},
                {"name": "ddos-detector", "component": "ddos_detector.wasm",
                 "grants": {"publish": ["mitigation/#"], "models": ["flow-anomaly"]},
                 "trigger": [{"mqtt": {"topic": "flows/+", "qos": 0}}]}
            ],
            "model": [{"name": "flow-anomaly", "version": self.revision.to_string(),
                       "path": "flow-anomaly.tflite", "reference": "flow-anomaly.reference.json"}],
            "health": {"window": "200ms"}
        })
    }

    /// Applies the next revision by `route` and returns the time until the daemon runs it.
    async fn apply(&mut self, route: Route, new_components: bool) -> Duration {
        self.revision += 1;
        if new_components {
            self.components_of = self.revision;
        }
        let signed = self.fleet.sign(
            &format!("rev{}", self.revision),
            self.document(self.components_of),
        );
        let started = Instant::now();
        match route {
            Route::Local => self.deploy_locally(&signed),
            Route::Mqtt => {
                let bytes = std::fs::read(&signed).expect("signed document");
                self.publisher
                    .publish("fogd/v1/devices/gw-1/desired", bytes, 1)
                    .await;
            }
        }
        let revision = format!("revision={} ", self.revision);
        self.daemon.wait_for_next(&[
            "running deployment; watching it before committing",
            &revision,
        ]);
        let elapsed = started.elapsed();
        self.daemon
            .wait_for_next(&["deployment committed", revision.trim_end()]);
        elapsed
    }

    fn deploy_locally(&self, signed: &Path) {
        let output = Command::new(fogd_bin())
            .arg("deploy")
            .arg(signed)
            .arg("--artifacts")
            .arg(self.fleet.dir.path().join("artifacts"))
            .arg("--config")
            .arg(&self.config)
            .output()
            .expect("fogd deploy runs");
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

fn median(times: &[Duration]) -> Duration {
    let mut sorted = times.to_vec();
    sorted.sort();
    sorted[sorted.len() / 2]
}

fn ms(time: Duration) -> f64 {
    (time.as_secs_f64() * 1e4).round() / 10.0
}

// The waits on the daemon's log block; the publisher's connection runs on a worker.
#[tokio::main(flavor = "multi_thread", worker_threads = 1)]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let runs: usize = args
        .iter()
        .position(|a| a == "--runs")
        .and_then(|i| args.get(i + 1))
        .map(|n| n.parse().expect("--runs takes a number"))
        .unwrap_or(5);
    let as_json = args.iter().any(|a| a == "--json");

    let fleet = Fleet::new();
    let config = fleet.device("gw-1");
    let mut daemon = Daemon::start(&config);
    daemon.wait_for(&["sync connection up"]);
    let publisher = TestClient::connect(fleet.broker.port, "bench-controller", &[]).await;
    let mut bench = Bench {
        fleet,
        config,
        daemon,
        publisher,
        revision: 0,
        components_of: 0,
    };
    // Warms the page cache and LiteRT; not counted.
    bench.apply(Route::Mqtt, true).await;

    let cases = [
        ("new components", true, Route::Local),
        ("new components", true, Route::Mqtt),
        ("unchanged components", false, Route::Local),
        ("unchanged components", false, Route::Mqtt),
    ];
    let mut times = vec![Vec::new(); cases.len()];
    for run in 0..runs {
        for (index, (_, new_components, route)) in cases.iter().enumerate() {
            times[index].push(bench.apply(*route, *new_components).await);
        }
        eprintln!("run {} of {runs} done", run + 1);
    }

    let medians: Vec<Duration> = times.iter().map(|t| median(t)).collect();
    if as_json {
        let results: Vec<Value> = cases
            .iter()
            .zip(&times)
            .zip(&medians)
            .map(|(((components, _, route), times), median)| {
                json!({
                    "components": components,
                    "route": if *route == Route::Local { "fogd deploy" } else { "mqtt+https" },
                    "times_ms": times.iter().map(|t| ms(*t)).collect::<Vec<_>>(),
                    "median_ms": ms(*median),
                })
            })
            .collect();
        println!("{}", json!({"runs": runs, "results": results}));
    } else {
        println!("| components | route | runs (ms) | median | vs fogd deploy |");
        println!("|---|---|---|---|---|");
        for (index, (components, _, route)) in cases.iter().enumerate() {
            let baseline = medians[index - index % 2];
            println!(
                "| {components} | {} | {} | {} ms | {:.2}× |",
                if *route == Route::Local {
                    "`fogd deploy`"
                } else {
                    "MQTT + HTTPS"
                },
                times[index]
                    .iter()
                    .map(|t| ms(*t).to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
                ms(medians[index]),
                medians[index].as_secs_f64() / baseline.as_secs_f64()
            );
        }
    }
    let (status, log) = bench.daemon.terminate();
    assert!(status.success(), "{}", log.join("\n"));
}
