//! Shared helpers for fogd's end-to-end tests: the real guest components, a real runtime
//! with a real state database, log capture, and the real `fogd` binary as a child process.

pub mod agent;
pub mod certs;
pub mod daemon;
pub mod fleet;
pub mod hostile;
pub mod logs;
pub mod mosquitto;
pub mod mqtt_client;
pub mod nginx;
pub mod snmpd;
pub mod streams;
pub mod traffic;

/// How long a test waits for what it expects (a log line, a message, a condition, a server
/// to come up) before it fails.
pub const PATIENCE: std::time::Duration = std::time::Duration::from_secs(30);

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, OnceLock};

use fogd::config::{FunctionSpec, InferenceConfig, ModelSpec, RuntimeConfig, StateConfig};
use fogd::event::{Event, Source, new_event};
use fogd::inference::ModelRegistry;
use fogd::outbound::{ChannelSink, OutboundMessage, OutboundSink};
use fogd::runtime::{LoadError, LoadedFunction, Runtime, RuntimeSettings};
use fogd::snmp_client::SnmpTargets;
use fogd::state::StateDb;
use tokio::sync::mpsc;

/// The repository root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_owned()
}

/// Paths of the built guest components.
pub struct Components {
    pub config_drift: PathBuf,
    pub ddos_detector: PathBuf,
    pub echo: PathBuf,
    /// Built against `fogd:function@0.1.0`.
    pub legacy_echo: PathBuf,
    pub login_watch: PathBuf,
    pub predictive_maintenance: PathBuf,
    pub probe: PathBuf,
    pub threshold_alert: PathBuf,
    pub traffic_optimizer: PathBuf,
}

/// A deployment document (revision 1) running ddos-detector on a timer with the
/// flow-anomaly model and `reference` as its reference vectors; `pin` gives each artifact's
/// entry (URL, digest, size) from its file name and content.
pub fn detector_deployment(
    reference: &[u8],
    pin: impl Fn(&str, &[u8]) -> serde_json::Value,
) -> serde_json::Value {
    let model = std::fs::read(root().join("models/flow-anomaly/flow-anomaly.tflite"))
        .expect("the shipped model");
    let detector = std::fs::read(&components().ddos_detector).expect("the built detector");
    serde_json::json!({
        "schema": "fogd.deployment/v1",
        "revision": 1,
        "artifacts": {
            "ddos_detector.wasm": pin("ddos_detector.wasm", &detector),
            "flow-anomaly.tflite": pin("flow-anomaly.tflite", &model),
            "flow-anomaly.reference.json": pin("flow-anomaly.reference.json", reference)
        },
        "function": [{
            "name": "ddos-detector", "component": "ddos_detector.wasm",
            "grants": {"models": ["flow-anomaly"]},
            "trigger": [{"timer": {"every": "1s"}}]
        }],
        "model": [{"name": "flow-anomaly", "version": "1", "path": "flow-anomaly.tflite",
                   "reference": "flow-anomaly.reference.json"}],
        "health": {"window": "300ms"}
    })
}

/// Builds `wasi-functions/` once per test binary and returns the component paths.
pub fn components() -> &'static Components {
    static BUILT: OnceLock<Components> = OnceLock::new();
    BUILT.get_or_init(|| {
        let dir = root().join("wasi-functions");
        let status = nested_cargo()
            .args(["build", "--release", "--target", "wasm32-wasip2", "--quiet"])
            .current_dir(&dir)
            .env_remove("CARGO_TARGET_DIR")
            .status()
            .expect("cargo runs");
        assert!(
            status.success(),
            "building wasi-functions failed (is the wasm32-wasip2 target installed?)"
        );
        let out = dir.join("target/wasm32-wasip2/release");
        Components {
            config_drift: out.join("config_drift.wasm"),
            ddos_detector: out.join("ddos_detector.wasm"),
            echo: out.join("echo.wasm"),
            legacy_echo: out.join("legacy_echo.wasm"),
            login_watch: out.join("login_watch.wasm"),
            predictive_maintenance: out.join("predictive_maintenance.wasm"),
            probe: out.join("probe.wasm"),
            threshold_alert: out.join("threshold_alert.wasm"),
            traffic_optimizer: out.join("traffic_optimizer.wasm"),
        }
    })
}

/// The `fogd` binary, built from the current sources once per test binary. `cargo test`
/// does not rebuild another package's binaries, so this makes sure none is stale.
pub fn fogd_bin() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(|| build_binary("fogd")).clone()
}

/// The `fogctl` binary, built like [`fogd_bin`].
pub fn fogctl_bin() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(|| build_binary("fogctl")).clone()
}

/// fogctl's simulated fleet (`controller/examples/fleet_sim.rs`), built like [`fogd_bin`].
pub fn fleet_sim_bin() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| build("fogctl", Artifact::Example("fleet_sim")))
        .clone()
}

/// What [`build`] builds of a package.
enum Artifact<'a> {
    Binary(&'a str),
    Example(&'a str),
}

/// Builds the package's binary of the same name with the test's own profile and target dir.
/// `cargo` without the variables `cargo test` sets for a test process: build scripts that
/// watch them (ring's watches `CARGO_MANIFEST_DIR`) would otherwise see a change and rebuild
/// their crate and everything above it, fogd included.
fn nested_cargo() -> Command {
    let mut cargo = Command::new("cargo");
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy();
        if name.starts_with("CARGO_PKG_")
            || [
                "CARGO_MANIFEST_DIR",
                "CARGO_MANIFEST_PATH",
                "CARGO_CRATE_NAME",
                "CARGO_PRIMARY_PACKAGE",
                "CARGO_TARGET_TMPDIR",
            ]
            .contains(&name.as_ref())
        {
            cargo.env_remove(name.as_ref());
        }
    }
    cargo
}

fn build_binary(package: &str) -> PathBuf {
    build(package, Artifact::Binary(package))
}

fn build(package: &str, artifact: Artifact) -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    // Tests run from target/<profile>/deps/, this crate's binaries from target/<profile>/.
    let parent = exe.parent().expect("target/<profile>/[deps/]<binary>");
    let profile_dir = if parent.ends_with("deps") {
        parent.parent().expect("target/<profile>/deps/<test>")
    } else {
        parent
    };
    let profile = profile_dir
        .file_name()
        .and_then(|n| n.to_str())
        .expect("profile name");
    let target_dir = profile_dir.parent().expect("target dir");
    let (kind, name, output) = match artifact {
        Artifact::Binary(name) => ("--bin", name, profile_dir.join(name)),
        Artifact::Example(name) => ("--example", name, profile_dir.join("examples").join(name)),
    };
    let mut cargo = nested_cargo();
    cargo
        .args([
            "build",
            "--quiet",
            "-p",
            package,
            kind,
            name,
            "--target-dir",
        ])
        .arg(target_dir);
    if profile != "debug" {
        cargo.args(["--profile", profile]);
    }
    let status = cargo.current_dir(root()).status().expect("cargo runs");
    assert!(status.success(), "building {package}'s {name} failed");
    output
}

/// A runtime with a throw-away state database and cache, collecting everything published.
pub struct Harness {
    pub runtime: Runtime,
    pub state: StateDb,
    pub sink: Arc<dyn OutboundSink>,
    pub published: mpsc::Receiver<OutboundMessage>,
    pub dir: tempfile::TempDir,
}

impl Harness {
    pub fn new() -> Self {
        Self::with_state(StateConfig::default())
    }

    pub fn with_state(state_config: StateConfig) -> Self {
        Self::build(state_config, Arc::default(), SnmpTargets::default())
    }

    /// A harness whose functions can be granted the SNMP agents in `targets`.
    pub fn with_snmp_targets(targets: SnmpTargets) -> Self {
        Self::build(StateConfig::default(), Arc::default(), targets)
    }

    /// A harness whose functions can run the models in `models`.
    pub fn with_models(models: Arc<ModelRegistry>) -> Self {
        Self::build(StateConfig::default(), models, SnmpTargets::default())
    }

    fn build(state_config: StateConfig, models: Arc<ModelRegistry>, targets: SnmpTargets) -> Self {
        logs::capture();
        let dir = tempfile::tempdir().expect("temp dir");
        let state = StateDb::open(&dir.path().join("db"), &state_config).expect("state opens");
        let settings =
            RuntimeSettings::new(&RuntimeConfig::default(), &[], dir.path().join("cache"));
        let runtime = Runtime::new(settings)
            .expect("runtime starts")
            .with_models(models)
            .with_snmp_targets(Arc::new(targets));
        let (sink, published) = ChannelSink::new(1024);
        Self {
            runtime,
            state,
            sink: Arc::new(sink),
            published,
            dir,
        }
    }

    pub fn load(&self, spec: &FunctionSpec) -> Result<LoadedFunction, LoadError> {
        self.runtime.load(spec, &self.state, self.sink.clone())
    }

    /// Everything published so far.
    pub fn drain_published(&mut self) -> Vec<OutboundMessage> {
        let mut messages = Vec::new();
        while let Ok(message) = self.published.try_recv() {
            messages.push(message);
        }
        messages
    }
}

impl Default for Harness {
    fn default() -> Self {
        Self::new()
    }
}

/// A spec for `component` named `name` with default limits.
pub fn spec(name: &str, component: &Path) -> FunctionSpec {
    FunctionSpec::for_component(name, component.to_owned())
}

/// An invoke event with this subject and payload.
pub fn event(subject: &str, payload: impl Into<Vec<u8>>) -> Event {
    new_event(Source::Invoke, subject, payload.into())
}

/// Waits until `condition` holds, checking every few milliseconds; fails after 30 s.
pub async fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + PATIENCE;
    while !condition() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting until {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
}

/// [`wait_until`] for tests without a runtime, checking every millisecond: fine enough to
/// catch a daemon in a state that lasts a moment (it logs nothing then).
pub fn wait_until_blocking(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + PATIENCE;
    while !condition() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting until {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}

/// Calls the function and returns its output as text, panicking on failure.
pub fn call_text(function: &LoadedFunction, subject: &str, payload: &str) -> String {
    let output = function
        .call(&event(subject, payload))
        .outcome
        .unwrap_or_else(|error| panic!("{subject} failed: {error}"))
        .unwrap_or_default();
    String::from_utf8(output).expect("utf-8 output")
}

/// Calls the function and parses its output as JSON.
pub fn call_json(function: &LoadedFunction, subject: &str, payload: &str) -> serde_json::Value {
    let text = call_text(function, subject, payload);
    serde_json::from_str(&text)
        .unwrap_or_else(|error| panic!("{subject} returned non-JSON {text:?}: {error}"))
}

/// The LiteRT runtime library fetched by `models/fetch-runtime.sh` (which the test command
/// runs first).
pub fn litert_library() -> PathBuf {
    let arch = std::env::consts::ARCH;
    let path = root().join(format!("models/runtime/{arch}/libLiteRt.so"));
    assert!(
        path.is_file(),
        "{} is missing: run models/fetch-runtime.sh",
        path.display()
    );
    path
}

/// A model registry on the real LiteRT runtime, with nothing loaded yet.
pub fn model_registry() -> ModelRegistry {
    ModelRegistry::new(&InferenceConfig {
        runtime: Some(litert_library()),
        max_model_mib: 16,
    })
}

/// A `[[model]]` entry named flow-anomaly for `file` under `models/`.
pub fn flow_anomaly(version: &str, file: &str) -> ModelSpec {
    ModelSpec {
        name: "flow-anomaly".into(),
        version: version.into(),
        path: model_path(file),
        sha256: None,
        reference: None,
        shadow: false,
    }
}

/// A file under `models/`.
pub fn model_path(relative: &str) -> PathBuf {
    root().join("models").join(relative)
}

/// One case of `models/flow-anomaly/reference.json`: the Python interpreter's int8 output
/// for a quantized input (bytes as the runtime sees them).
pub struct ReferenceCase {
    pub class: String,
    pub input: Vec<u8>,
    pub output: Vec<u8>,
}

/// The flow-anomaly reference vectors and the output tensor's quantization.
pub struct ReferenceVectors {
    pub input_scale: f32,
    pub input_zero_point: i32,
    pub output_scale: f32,
    pub output_zero_point: i32,
    pub cases: Vec<ReferenceCase>,
}

impl ReferenceVectors {
    pub fn load() -> Self {
        let path = model_path("flow-anomaly/reference.json");
        let text = std::fs::read_to_string(&path).expect("reference vectors are readable");
        let json: serde_json::Value = serde_json::from_str(&text).expect("reference is JSON");
        let bytes = |v: &serde_json::Value| -> Vec<u8> {
            v.as_array()
                .expect("a list of int8 values")
                .iter()
                .map(|x| x.as_i64().expect("an integer") as i8 as u8)
                .collect()
        };
        let number = |v: &serde_json::Value| v.as_f64().expect("a number");
        Self {
            input_scale: number(&json["input"]["scale"]) as f32,
            input_zero_point: number(&json["input"]["zero_point"]) as i32,
            output_scale: number(&json["output"]["scale"]) as f32,
            output_zero_point: number(&json["output"]["zero_point"]) as i32,
            cases: json["cases"]
                .as_array()
                .expect("cases")
                .iter()
                .map(|case| ReferenceCase {
                    class: case["class"].as_str().expect("class").to_owned(),
                    input: bytes(&case["input_i8"]),
                    output: bytes(&case["output_i8"]),
                })
                .collect(),
        }
    }

    /// The float values a quantized input stands for.
    pub fn dequantize_input(&self, bytes: &[u8]) -> Vec<f32> {
        dequantize(bytes, self.input_scale, self.input_zero_point)
    }

    /// The float values a quantized output stands for.
    pub fn dequantize_output(&self, bytes: &[u8]) -> Vec<f32> {
        dequantize(bytes, self.output_scale, self.output_zero_point)
    }
}

fn dequantize(bytes: &[u8], scale: f32, zero_point: i32) -> Vec<f32> {
    bytes
        .iter()
        .map(|&b| (i32::from(b as i8) - zero_point) as f32 * scale)
        .collect()
}

/// Fails with the command's output unless it succeeded.
pub fn assert_success(output: &std::process::Output) {
    assert!(
        output.status.success(),
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}
