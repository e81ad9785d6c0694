//! The deployment document (schema `fogd.deployment/v1`, see `fleet/schema/`): a revision,
//! the artifacts it needs, and the functions and models to run. Functions and models have
//! exactly the shape of fogd.toml's `[[function]]` and `[[model]]` tables and go through the
//! same parser and checks; their file names (`component`, `path`, `reference`) name
//! artifacts, which the device stores in one directory per revision. Relative paths resolve
//! against that directory, as a config file's resolve against the file's directory.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;

use serde::Deserialize;
use serde_json::Value;
use thiserror::Error;

use crate::config::{Config, FunctionSpec, Millis, ModelSpec};

pub const SCHEMA: &str = "fogd.deployment/v1";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Deployment {
    /// Always [`SCHEMA`].
    pub schema: String,
    /// Rises with every document the fleet publishes; a device never goes back to a lower one.
    pub revision: u64,
    /// Files the functions and models need, by file name.
    #[serde(default)]
    pub artifacts: BTreeMap<String, Artifact>,
    #[serde(default, rename = "function")]
    pub functions: Vec<FunctionSpec>,
    #[serde(default, rename = "model")]
    pub models: Vec<ModelSpec>,
    /// When an activated revision is kept or rolled back.
    #[serde(default)]
    pub health: HealthGates,
}

/// A file to download.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Artifact {
    /// `https://` URL.
    pub url: String,
    /// Expected SHA-256 of the file, hex.
    pub sha256: String,
    /// Expected size in bytes.
    pub size: u64,
}

/// The window after activation and the limits that roll a revision back.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthGates {
    /// How long the new revision is watched before it is committed.
    #[serde(default = "default_window")]
    pub window: Millis,
    /// Events a function must have handled in the window before its error rate counts.
    #[serde(default = "default_min_events")]
    pub min_events: u64,
    /// Highest share of failed events per function, 0 to 1.
    #[serde(default = "default_max_error_rate")]
    pub max_error_rate: f64,
    /// Highest 99th percentile of a function's event time in the window; no gate if unset.
    #[serde(default)]
    pub max_p99_latency: Option<Millis>,
    /// Highest change, 0 to 1, of a model's mean top-class confidence against the version
    /// this revision replaced (over the runs each served); no gate if unset.
    #[serde(default)]
    pub max_confidence_drift: Option<f64>,
}

fn default_window() -> Millis {
    Millis(30_000)
}

fn default_min_events() -> u64 {
    20
}

fn default_max_error_rate() -> f64 {
    0.05
}

impl Default for HealthGates {
    fn default() -> Self {
        Self {
            window: default_window(),
            min_events: default_min_events(),
            max_error_rate: default_max_error_rate(),
            max_p99_latency: None,
            max_confidence_drift: None,
        }
    }
}

/// Why a verified document cannot be applied.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum DocumentError {
    #[error("not a deployment document: {0}")]
    Malformed(String),
    #[error("revision {revision} is not above the committed revision {committed}")]
    Stale { revision: u64, committed: u64 },
    #[error("{}", .0.iter().map(|(key, message)| format!("{key}: {message}")).collect::<Vec<_>>().join("; "))]
    Invalid(Vec<(String, String)>),
}

impl DocumentError {
    /// Short label for reports and metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            DocumentError::Malformed(_) => "malformed",
            DocumentError::Stale { .. } => "stale_revision",
            DocumentError::Invalid(_) => "invalid",
        }
    }
}

impl Deployment {
    /// Parses a verified document and checks what its own content can tell: the schema,
    /// the revision against the device's `committed` one (anti-rollback), and that every
    /// file it names is one of its artifacts, each with a URL, a digest and a size.
    pub fn parse(document: Value, committed: Option<u64>) -> Result<Self, DocumentError> {
        let deployment: Deployment = serde_path_to_error::deserialize(document)
            .map_err(|error| DocumentError::Malformed(error.to_string()))?;
        if deployment.schema != SCHEMA {
            return Err(DocumentError::Malformed(format!(
                "schema {:?} is not {SCHEMA:?}",
                deployment.schema
            )));
        }
        if let Some(committed) = committed
            && deployment.revision <= committed
        {
            return Err(DocumentError::Stale {
                revision: deployment.revision,
                committed,
            });
        }
        let problems = deployment.problems();
        if problems.is_empty() {
            Ok(deployment)
        } else {
            Err(DocumentError::Invalid(problems))
        }
    }

    fn problems(&self) -> Vec<(String, String)> {
        let mut problems = Vec::new();
        if self.revision == 0 {
            problems.push(("revision".into(), "must be at least 1".into()));
        }
        for (name, artifact) in &self.artifacts {
            let at = format!("artifacts.{name}");
            if !is_plain_file_name(name) {
                problems.push((at.clone(), "must be a plain file name".into()));
            }
            if !artifact.url.starts_with("https://") {
                problems.push((format!("{at}.url"), "must be an https:// URL".into()));
            }
            if artifact.sha256.len() != 64
                || !artifact.sha256.bytes().all(|b| b.is_ascii_hexdigit())
            {
                problems.push((format!("{at}.sha256"), "must be 64 hex digits".into()));
            }
        }
        let mut used = HashSet::new();
        let mut artifact_named = |key: String, file: &Path| {
            let name = file.to_str().unwrap_or_default();
            if self.artifacts.contains_key(name) {
                used.insert(name.to_owned());
            } else {
                problems.push((key, format!("{name:?} is not in artifacts")));
            }
        };
        for (index, function) in self.functions.iter().enumerate() {
            artifact_named(format!("function[{index}].component"), &function.component);
        }
        for (index, model) in self.models.iter().enumerate() {
            artifact_named(format!("model[{index}].path"), &model.path);
            if let Some(reference) = &model.reference {
                artifact_named(format!("model[{index}].reference"), reference);
            }
        }
        for name in self.artifacts.keys().filter(|name| !used.contains(*name)) {
            problems.push((format!("artifacts.{name}"), "is not used".into()));
        }
        let health = &self.health;
        if !(0.0..=1.0).contains(&health.max_error_rate) {
            problems.push((
                "health.max_error_rate".into(),
                "must be within 0 to 1".into(),
            ));
        }
        if health
            .max_confidence_drift
            .is_some_and(|drift| !(0.0..=1.0).contains(&drift))
        {
            problems.push((
                "health.max_confidence_drift".into(),
                "must be within 0 to 1".into(),
            ));
        }
        if health.max_p99_latency == Some(Millis(0)) {
            problems.push(("health.max_p99_latency".into(), "must be above 0ms".into()));
        }
        problems
    }

    /// The device's configuration with this revision's functions and models in place of its
    /// own, files resolved in `artifact_dir`, checked like a config file (names, limits,
    /// grants, triggers, and references to the device's brokers, SNMP jobs and models).
    pub fn configure(&self, device: &Config, artifact_dir: &Path) -> Result<Config, DocumentError> {
        let mut config = device.clone();
        config.functions = self.functions.clone();
        config.models = self.models.clone();
        for function in &mut config.functions {
            function.resolve_paths(artifact_dir);
        }
        for model in &mut config.models {
            if model.sha256.is_none() {
                model.sha256 = model
                    .path
                    .to_str()
                    .and_then(|name| self.artifacts.get(name))
                    .map(|artifact| artifact.sha256.clone());
            }
            model.resolve_paths(artifact_dir);
        }
        let problems = config.validate();
        if problems.is_empty() {
            Ok(config)
        } else {
            Err(DocumentError::Invalid(problems))
        }
    }
}

fn is_plain_file_name(name: &str) -> bool {
    !name.is_empty() && name != "." && name != ".." && !name.contains(['/', '\\', '\0'])
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const SHA: &str = "a5e5fc6d1b9ef7ce1b4586d67ce223ad28284352d3b0a7601cdf7de9efc2ad0f";

    fn document(revision: u64) -> Value {
        json!({
            "schema": SCHEMA,
            "revision": revision,
            "artifacts": {
                "echo.wasm": {"url": "https://files.example/echo.wasm", "sha256": SHA, "size": 44_000},
                "flow.tflite": {"url": "https://files.example/flow.tflite", "sha256": SHA, "size": 4_792}
            },
            "function": [{
                "name": "echo",
                "component": "echo.wasm",
                "output": "out/{subject}",
                "limits": {"timeout": "50ms"},
                "grants": {"models": ["flow"]},
                "trigger": [{"mqtt": {"topic": "in/#", "qos": 1}}]
            }],
            "model": [{"name": "flow", "version": "2", "path": "flow.tflite"}],
            "health": {"window": "10s", "max_error_rate": 0.1}
        })
    }

    #[test]
    fn a_document_parses_with_the_config_file_shapes() {
        let deployment = Deployment::parse(document(7), Some(6)).unwrap();
        assert_eq!(deployment.revision, 7);
        assert_eq!(deployment.functions[0].limits.timeout, Millis(50));
        assert_eq!(deployment.health.window, Millis(10_000));
        assert_eq!(deployment.health.min_events, 20);
    }

    #[test]
    fn an_old_or_equal_revision_is_refused() {
        assert_eq!(
            Deployment::parse(document(7), Some(7)).unwrap_err(),
            DocumentError::Stale {
                revision: 7,
                committed: 7
            }
        );
        assert_eq!(
            Deployment::parse(document(3), Some(7))
                .unwrap_err()
                .reason(),
            "stale_revision"
        );
    }

    #[test]
    fn files_must_be_artifacts_and_artifacts_must_be_pinned() {
        let mut value = document(1);
        value["function"][0]["component"] = json!("../etc/passwd");
        value["artifacts"]["flow.tflite"]["url"] = json!("http://files.example/flow.tflite");
        value["artifacts"]["flow.tflite"]["sha256"] = json!("abc");
        let DocumentError::Invalid(problems) = Deployment::parse(value, None).unwrap_err() else {
            panic!("expected problems");
        };
        let keys: Vec<&str> = problems.iter().map(|(key, _)| key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "artifacts.flow.tflite.url",
                "artifacts.flow.tflite.sha256",
                "function[0].component",
                "artifacts.echo.wasm"
            ]
        );
    }

    #[test]
    fn health_gates_are_checked() {
        let mut value = document(1);
        value["health"] = json!({"max_p99_latency": "0ms", "max_confidence_drift": 1.5});
        let DocumentError::Invalid(problems) = Deployment::parse(value, None).unwrap_err() else {
            panic!("expected problems");
        };
        let keys: Vec<&str> = problems.iter().map(|(key, _)| key.as_str()).collect();
        assert_eq!(
            keys,
            ["health.max_confidence_drift", "health.max_p99_latency"]
        );
        let mut value = document(1);
        value["health"] = json!({"max_p99_latency": "25ms", "max_confidence_drift": 0.2});
        let health = Deployment::parse(value, None).unwrap().health;
        assert_eq!(health.max_p99_latency, Some(Millis(25)));
        assert_eq!(health.max_confidence_drift, Some(0.2));
    }

    #[test]
    fn unknown_fields_and_schemas_are_malformed_with_their_path() {
        let mut value = document(1);
        value["function"][0]["limits"]["memory"] = json!(3);
        let error = Deployment::parse(value, None).unwrap_err();
        assert!(error.to_string().contains("function[0].limits"), "{error}");
        let mut value = document(1);
        value["schema"] = json!("fogd.deployment/v9");
        assert_eq!(
            Deployment::parse(value, None).unwrap_err().reason(),
            "malformed"
        );
    }

    const SCHEMA_FILE: &str = include_str!("../../schema/deployment-v1.schema.json");
    const EXAMPLE: &str = include_str!("../../schema/example-deployment.json");

    /// Every key name found anywhere in `value`.
    fn keys(value: &Value, found: &mut HashSet<String>) {
        match value {
            Value::Object(map) => {
                for (key, item) in map {
                    found.insert(key.clone());
                    keys(item, found);
                }
            }
            Value::Array(items) => items.iter().for_each(|item| keys(item, found)),
            _ => {}
        }
    }

    #[test]
    fn the_published_example_parses_and_uses_every_field_the_schema_names() {
        let example: Value = serde_json::from_str(EXAMPLE).unwrap();
        Deployment::parse(example.clone(), None).unwrap();
        let schema: Value = serde_json::from_str(SCHEMA_FILE).unwrap();
        let mut named = HashSet::new();
        let mut objects = vec![&schema];
        while let Some(object) = objects.pop() {
            if let Some(properties) = object.get("properties").and_then(Value::as_object) {
                named.extend(properties.keys().cloned());
                objects.extend(properties.values());
            }
            if let Some(defs) = object.get("$defs").and_then(Value::as_object) {
                objects.extend(
                    defs.iter()
                        .filter(|(name, _)| *name != "signed")
                        .map(|(_, def)| def),
                );
            }
        }
        let mut used = HashSet::new();
        keys(&example, &mut used);
        let missing: Vec<_> = named.difference(&used).collect();
        assert!(missing.is_empty(), "the example does not use {missing:?}");
    }

    #[test]
    fn configure_resolves_files_and_checks_against_the_device_config() {
        let deployment = Deployment::parse(document(2), None).unwrap();
        let device = crate::config::parse_str(
            "[[broker]]\nname = \"local\"\naddress = \"127.0.0.1:1883\"\n",
            Path::new("fogd.toml"),
            Path::new("/etc/fogd"),
        )
        .unwrap();
        let config = deployment
            .configure(&device, Path::new("/var/lib/fogd/revisions/2"))
            .unwrap();
        assert_eq!(
            config.functions[0].component,
            Path::new("/var/lib/fogd/revisions/2/echo.wasm")
        );
        assert_eq!(config.models[0].sha256.as_deref(), Some(SHA));

        let mut value = document(2);
        value["function"][0]["broker"] = json!("cloud");
        let deployment = Deployment::parse(value, None).unwrap();
        let error = deployment
            .configure(&device, Path::new("/tmp"))
            .unwrap_err();
        assert!(error.to_string().contains("function[0].broker"), "{error}");
    }
}
