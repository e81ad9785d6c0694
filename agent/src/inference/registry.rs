//! The model registry: which version of each model is active, which one shadows it, and
//! which one it replaced. A new version is loaded and checked beside the active one, then
//! swapped in by replacing one `Arc`: calls already running keep the old version alive
//! until they return, new calls see the new one.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::Instant;

use serde::Serialize;

use super::confidence::{ConfidenceRecord, ConfidenceSnapshot};
use super::litert::{LiteRt, LoadedModel, locate_library};
use super::metrics::InferenceMetrics;
use super::model_file::ModelFile;
use super::shadow::{ShadowReport, ShadowStats};
use super::tensor::TensorSpec;
use super::{InferenceError, ModelError, reference};
use crate::config::{InferenceConfig, ModelSpec};

/// One loaded, checked version of a model.
pub struct ModelVersion {
    pub name: String,
    pub version: String,
    pub sha256: String,
    pub path: PathBuf,
    model: LoadedModel,
    confidence: ConfidenceRecord,
}

impl ModelVersion {
    pub fn inputs(&self) -> &[TensorSpec] {
        self.model.inputs()
    }

    pub fn outputs(&self) -> &[TensorSpec] {
        self.model.outputs()
    }

    fn same_artifact(&self, spec: &ModelSpec) -> bool {
        self.version == spec.version
            && self.path == spec.path
            && spec
                .sha256
                .as_deref()
                .is_none_or(|sha| sha.eq_ignore_ascii_case(&self.sha256))
    }

    fn compatible_with(&self, other: &ModelVersion) -> bool {
        let same = |a: &[TensorSpec], b: &[TensorSpec]| {
            a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.compatible_with(y))
        };
        same(self.inputs(), other.inputs()) && same(self.outputs(), other.outputs())
    }
}

struct ModelSlot {
    active: RwLock<Arc<ModelVersion>>,
    previous: Mutex<Option<Arc<ModelVersion>>>,
    shadow: RwLock<Option<(Arc<ModelVersion>, Arc<ShadowStats>)>>,
}

/// One version's confidence record.
#[derive(Debug, Clone, PartialEq)]
pub struct VersionConfidence {
    pub version: String,
    pub confidence: ConfidenceSnapshot,
}

/// A model's active version and the one it replaced, as [`ModelRegistry::confidence`] reads them.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelConfidence {
    pub active: VersionConfidence,
    pub previous: Option<VersionConfidence>,
}

/// What `sync` did to one model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyncAction {
    Loaded { version: String },
    Swapped { from: String, to: String },
    Unchanged,
    ShadowStarted { version: String },
    Removed,
}

impl std::fmt::Display for SyncAction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SyncAction::Loaded { version } => write!(f, "loaded version {version}"),
            SyncAction::Swapped { from, to } => write!(f, "swapped version {from} for {to}"),
            SyncAction::Unchanged => f.write_str("unchanged"),
            SyncAction::ShadowStarted { version } => write!(f, "shadowing with version {version}"),
            SyncAction::Removed => f.write_str("removed"),
        }
    }
}

/// Where the runtime came from, or why there is none.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "snake_case", tag = "state", content = "detail")]
pub enum Availability {
    Available(PathBuf),
    Unavailable(String),
}

/// One model as `/models` and `fogd models` show it.
#[derive(Debug, Clone, Serialize)]
pub struct ModelStatus {
    pub name: String,
    pub version: String,
    pub sha256: String,
    pub inputs: Vec<TensorSpec>,
    pub outputs: Vec<TensorSpec>,
    pub previous_version: Option<String>,
    pub shadow: Option<ShadowReport>,
}

/// Why inference is unavailable before any model was loaded.
const NO_MODELS: &str = "no models are configured";

pub struct ModelRegistry {
    /// The runtime library, opened when the first model is loaded (or at once by `new`).
    runtime: OnceLock<Result<Arc<LiteRt>, String>>,
    /// Where to look for the library; `None` for a registry that never opens it.
    inference: Option<InferenceConfig>,
    max_bytes: u64,
    slots: RwLock<BTreeMap<String, Arc<ModelSlot>>>,
    /// Why the last attempt to load each model's configured version failed.
    failures: Mutex<BTreeMap<String, String>>,
    metrics: InferenceMetrics,
}

impl ModelRegistry {
    /// Opens the runtime library. Without it the registry still exists and every call
    /// reports why inference is unavailable.
    pub fn new(config: &InferenceConfig) -> Self {
        let registry = Self::deferred(Some(config.clone()));
        registry.runtime();
        registry
    }

    /// The registry for `config`'s models, loaded. The runtime library is opened with the
    /// first model, so a host without models (yet: a reload or a deployment may bring some)
    /// does not map it.
    pub fn for_config(config: &crate::config::Config) -> Self {
        let registry = Self::deferred(Some(config.inference.clone()));
        registry.sync(&config.models);
        registry
    }

    /// A registry that never opens the runtime, for hosts that run no models.
    pub fn none() -> Self {
        Self::deferred(None)
    }

    fn deferred(inference: Option<InferenceConfig>) -> Self {
        Self {
            runtime: OnceLock::new(),
            max_bytes: inference
                .as_ref()
                .map_or(0, |config| u64::from(config.max_model_mib) * 1024 * 1024),
            inference,
            slots: RwLock::new(BTreeMap::new()),
            failures: Mutex::new(BTreeMap::new()),
            metrics: InferenceMetrics::new(),
        }
    }

    /// The runtime, opened on first use.
    fn runtime(&self) -> &Result<Arc<LiteRt>, String> {
        self.runtime.get_or_init(|| {
            let Some(config) = &self.inference else {
                return Err(NO_MODELS.to_owned());
            };
            let runtime = locate_library(config.runtime.as_deref())
                .map_err(|error| error.to_string())
                .and_then(|path| {
                    LiteRt::open(&path).map_err(|e| format!("{}: {e}", path.display()))
                });
            match &runtime {
                Ok(runtime) => {
                    tracing::info!(library = %runtime.path().display(), "inference runtime loaded");
                    self.metrics.set_available(true);
                }
                Err(reason) => {
                    tracing::warn!(%reason, "inference unavailable");
                    self.metrics.set_available(false);
                }
            }
            runtime
        })
    }

    /// The runtime if it was opened; why inference is unavailable otherwise.
    fn opened(&self) -> Result<&Arc<LiteRt>, &str> {
        match self.runtime.get() {
            Some(Ok(runtime)) => Ok(runtime),
            Some(Err(reason)) => Err(reason),
            None => Err(NO_MODELS),
        }
    }

    pub fn availability(&self) -> Availability {
        match self.opened() {
            Ok(runtime) => Availability::Available(runtime.path().to_path_buf()),
            Err(reason) => Availability::Unavailable(reason.to_owned()),
        }
    }

    pub fn metrics(&self) -> &InferenceMetrics {
        &self.metrics
    }

    /// Brings the registry in line with `specs`: loads new models, swaps changed versions
    /// in after checking them, starts or stops shadows, and forgets models no longer
    /// listed. A version that fails its checks leaves the current one active.
    pub fn sync(&self, specs: &[ModelSpec]) -> Vec<(String, Result<SyncAction, ModelError>)> {
        let results = self.apply(specs);
        if let Ok(mut failures) = self.failures.lock() {
            failures.clear();
            for (name, result) in &results {
                match result {
                    Ok(action) => tracing::info!(model = %name, %action, "model synced"),
                    Err(error) => {
                        tracing::error!(model = %name, %error, "model version refused");
                        failures.insert(name.clone(), error.to_string());
                    }
                }
            }
        }
        results
    }

    /// Models whose configured version could not be loaded at the last sync, with why.
    pub fn failures(&self) -> BTreeMap<String, String> {
        self.failures.lock().map(|f| f.clone()).unwrap_or_default()
    }

    fn apply(&self, specs: &[ModelSpec]) -> Vec<(String, Result<SyncAction, ModelError>)> {
        let mut results = Vec::new();
        for spec in specs.iter().filter(|s| !s.shadow) {
            results.push((spec.name.clone(), self.activate(spec)));
        }
        for spec in specs.iter().filter(|s| s.shadow) {
            results.push((spec.name.clone(), self.start_shadow(spec)));
        }
        let Ok(mut slots) = self.slots.write() else {
            return results;
        };
        slots.retain(|name, slot| {
            let listed = specs.iter().any(|s| &s.name == name && !s.shadow);
            if !listed {
                results.push((name.clone(), Ok(SyncAction::Removed)));
            } else if !specs.iter().any(|s| &s.name == name && s.shadow)
                && let Ok(mut shadow) = slot.shadow.write()
            {
                *shadow = None;
            }
            listed
        });
        results
    }

    /// Loads `spec` beside the active version (if any), checks it and swaps it in.
    pub fn activate(&self, spec: &ModelSpec) -> Result<SyncAction, ModelError> {
        let existing = self.slot(&spec.name);
        if let Some(slot) = &existing
            && read(&slot.active).same_artifact(spec)
        {
            return Ok(SyncAction::Unchanged);
        }
        let candidate = Arc::new(self.load(spec)?);
        let Some(slot) = existing else {
            let slot = Arc::new(ModelSlot {
                active: RwLock::new(candidate),
                previous: Mutex::new(None),
                shadow: RwLock::new(None),
            });
            if let Ok(mut slots) = self.slots.write() {
                slots.insert(spec.name.clone(), slot);
            }
            return Ok(SyncAction::Loaded {
                version: spec.version.clone(),
            });
        };
        let current = read(&slot.active);
        if !candidate.compatible_with(&current) {
            return Err(ModelError::SignatureChanged(spec.version.clone()));
        }
        let old = match slot.active.write() {
            Ok(mut active) => std::mem::replace(&mut *active, candidate),
            Err(_) => return Err(ModelError::Poisoned),
        };
        let from = old.version.clone();
        if let Ok(mut previous) = slot.previous.lock() {
            *previous = Some(old);
        }
        tracing::info!(model = %spec.name, from = %from, to = %spec.version, "model version swapped");
        Ok(SyncAction::Swapped {
            from,
            to: spec.version.clone(),
        })
    }

    /// Makes the previous version active again (the one just replaced becomes previous).
    pub fn rollback(&self, name: &str) -> Result<String, ModelError> {
        let slot = self
            .slot(name)
            .ok_or_else(|| ModelError::UnknownModel(name.to_owned()))?;
        let mut previous = slot.previous.lock().map_err(|_| ModelError::Poisoned)?;
        let restored = previous
            .take()
            .ok_or_else(|| ModelError::NoPreviousVersion(name.to_owned()))?;
        let version = restored.version.clone();
        let replaced = match slot.active.write() {
            Ok(mut active) => std::mem::replace(&mut *active, restored),
            Err(_) => return Err(ModelError::Poisoned),
        };
        *previous = Some(replaced);
        tracing::info!(model = %name, version = %version, "model rolled back");
        Ok(version)
    }

    fn start_shadow(&self, spec: &ModelSpec) -> Result<SyncAction, ModelError> {
        let slot = self
            .slot(&spec.name)
            .ok_or_else(|| ModelError::NothingToShadow(spec.name.clone()))?;
        if let Ok(shadow) = slot.shadow.read()
            && shadow.as_ref().is_some_and(|(v, _)| v.same_artifact(spec))
        {
            return Ok(SyncAction::Unchanged);
        }
        let candidate = Arc::new(self.load(spec)?);
        if !candidate.compatible_with(&read(&slot.active)) {
            return Err(ModelError::ShadowIncompatible(spec.version.clone()));
        }
        if let Ok(mut shadow) = slot.shadow.write() {
            *shadow = Some((candidate, Arc::new(ShadowStats::default())));
        }
        Ok(SyncAction::ShadowStarted {
            version: spec.version.clone(),
        })
    }

    fn load(&self, spec: &ModelSpec) -> Result<ModelVersion, ModelError> {
        let runtime = self
            .runtime()
            .as_ref()
            .map_err(|reason| ModelError::Unavailable(reason.clone()))?;
        let path = || spec.path.display().to_string();
        let file = ModelFile::open(&spec.path, spec.sha256.as_deref(), self.max_bytes).map_err(
            |source| ModelError::File {
                path: path(),
                source,
            },
        )?;
        let model =
            LoadedModel::new(runtime.clone(), file.bytes).map_err(|source| ModelError::Load {
                path: path(),
                source,
            })?;
        if let Some(reference) = &spec.reference {
            let cases =
                reference::check(&model, reference).map_err(|source| ModelError::Reference {
                    path: path(),
                    source,
                })?;
            tracing::info!(model = %spec.name, version = %spec.version, cases, "reference vectors reproduced");
        }
        Ok(ModelVersion {
            name: spec.name.clone(),
            version: spec.version.clone(),
            sha256: file.sha256,
            path: spec.path.clone(),
            model,
            confidence: ConfidenceRecord::default(),
        })
    }

    fn slot(&self, name: &str) -> Option<Arc<ModelSlot>> {
        self.slots.read().ok()?.get(name).cloned()
    }

    /// The active version of `name`.
    pub fn active(&self, name: &str) -> Result<Arc<ModelVersion>, InferenceError> {
        if let Err(reason) = self.opened() {
            return Err(InferenceError::Unavailable(reason.to_owned()));
        }
        self.slot(name)
            .map(|slot| read(&slot.active))
            .ok_or_else(|| InferenceError::UnknownModel(name.to_owned()))
    }

    /// Runs the active version of `name` on raw input tensors. If a shadow version is set,
    /// it runs on the same inputs afterwards; only its agreement and latency are kept.
    pub fn run(&self, name: &str, inputs: &[&[u8]]) -> Result<Vec<Vec<u8>>, InferenceError> {
        if let Err(reason) = self.opened() {
            self.metrics.record(name, "", "unavailable", None);
            return Err(InferenceError::Unavailable(reason.to_owned()));
        }
        let slot = self
            .slot(name)
            .ok_or_else(|| InferenceError::UnknownModel(name.to_owned()))?;
        let active = read(&slot.active);
        let started = Instant::now();
        let result = active.model.run(inputs);
        let elapsed = started.elapsed();
        let outcome = if result.is_ok() { "ok" } else { "error" };
        self.metrics
            .record(name, &active.version, outcome, Some(elapsed));
        let Ok(outputs) = &result else {
            return result;
        };
        active.confidence.record(active.outputs(), outputs);
        let shadow = slot.shadow.read().ok().and_then(|s| s.clone());
        if let Some((shadow, stats)) = shadow {
            let started = Instant::now();
            let shadow_result = shadow.model.run(inputs);
            let shadow_elapsed = started.elapsed();
            let agreed = stats.record(
                active.outputs(),
                outputs,
                shadow_result.as_deref().ok(),
                elapsed,
                shadow_elapsed,
            );
            self.metrics.record_shadow(name, &shadow.version, agreed);
        }
        result
    }

    /// The top-class confidence of `name`'s active version and of the version it replaced,
    /// each over the runs it served; `None` for an unknown model.
    pub fn confidence(&self, name: &str) -> Option<ModelConfidence> {
        let slot = self.slot(name)?;
        let of = |version: &ModelVersion| VersionConfidence {
            version: version.version.clone(),
            confidence: version.confidence.snapshot(),
        };
        let previous = slot
            .previous
            .lock()
            .ok()
            .and_then(|previous| previous.as_deref().map(of));
        Some(ModelConfidence {
            active: of(&read(&slot.active)),
            previous,
        })
    }

    /// Every model with its signature, previous version and shadow report.
    pub fn status(&self) -> Vec<ModelStatus> {
        let Ok(slots) = self.slots.read() else {
            return Vec::new();
        };
        slots
            .iter()
            .map(|(name, slot)| {
                let active = read(&slot.active);
                let previous_version = slot
                    .previous
                    .lock()
                    .ok()
                    .and_then(|p| p.as_ref().map(|v| v.version.clone()));
                let shadow = slot.shadow.read().ok().and_then(|s| {
                    s.as_ref()
                        .map(|(v, stats)| stats.report(&active.version, &v.version))
                });
                ModelStatus {
                    name: name.clone(),
                    version: active.version.clone(),
                    sha256: active.sha256.clone(),
                    inputs: active.inputs().to_vec(),
                    outputs: active.outputs().to_vec(),
                    previous_version,
                    shadow,
                }
            })
            .collect()
    }

    /// Checks `expected` shapes against the active version of `name`.
    pub fn check_shapes(
        &self,
        name: &str,
        inputs: &[Vec<u32>],
        outputs: &[Vec<u32>],
    ) -> Result<(), ModelError> {
        let active = self.active(name)?;
        let shapes = |t: &[TensorSpec]| t.iter().map(|s| s.shape.clone()).collect::<Vec<_>>();
        let (have_in, have_out) = (shapes(active.inputs()), shapes(active.outputs()));
        if !inputs.is_empty() && inputs != have_in.as_slice() {
            return Err(ModelError::Shapes {
                name: name.to_owned(),
                version: active.version.clone(),
                direction: "takes inputs",
                have: have_in,
                expected: inputs.to_vec(),
            });
        }
        if !outputs.is_empty() && outputs != have_out.as_slice() {
            return Err(ModelError::Shapes {
                name: name.to_owned(),
                version: active.version.clone(),
                direction: "gives outputs",
                have: have_out,
                expected: outputs.to_vec(),
            });
        }
        Ok(())
    }
}

fn read(lock: &RwLock<Arc<ModelVersion>>) -> Arc<ModelVersion> {
    // A poisoned lock still holds a complete Arc: the swap is a single assignment.
    match lock.read() {
        Ok(guard) => guard.clone(),
        Err(poisoned) => poisoned.into_inner().clone(),
    }
}

impl Default for ModelRegistry {
    fn default() -> Self {
        Self::none()
    }
}

/// `/models`: whether the runtime opened, and each model's status.
impl crate::telemetry::JsonPage for ModelRegistry {
    fn render(&self) -> serde_json::Value {
        serde_json::json!({
            "runtime": self.availability(),
            "models": self.status(),
        })
    }
}
