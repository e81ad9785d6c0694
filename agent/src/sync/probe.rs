//! Trying a configuration before it runs: every component compiled into a cache and every
//! model loaded, with a throw-away database. `fogd check` runs it on a config file; a staged
//! revision is probed before it may be activated.

use std::path::Path;
use std::sync::Arc;

use crate::config::Config;
use crate::host::GrantError;
use crate::inference::{Availability, ModelRegistry};
use crate::outbound::DiscardSink;
use crate::runtime::{LoadError, Runtime, RuntimeError, RuntimeSettings};
use crate::snmp_client::SnmpTargets;
use crate::state::{StateDb, StateError};

use super::Deployment;

/// What keeps a configuration from running, each problem with its key.
pub struct Findings {
    pub problems: Vec<(String, String)>,
    /// Why models were not checked, when inference is unavailable and models are configured.
    pub models_unchecked: Option<String>,
}

/// Why the probe itself could not run.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
}

/// Compiles every component of `config` into `cache_dir` and loads every model.
pub fn compile(config: &Config, cache_dir: &Path) -> Result<Findings, ProbeError> {
    let state = StateDb::temporary(&config.state)?;
    let mut settings = RuntimeSettings::from_config(config);
    settings.cache_dir = cache_dir.to_owned();
    let mut problems = Vec::new();
    let mut models_unchecked = None;
    let models = Arc::new(ModelRegistry::for_config(config));
    match models.availability() {
        Availability::Available(_) => {
            for (name, error) in models.failures() {
                let index = config
                    .models
                    .iter()
                    .position(|m| m.name == name)
                    .unwrap_or(0);
                problems.push((format!("model[{index}].path"), error));
            }
        }
        Availability::Unavailable(reason) if !config.models.is_empty() => {
            models_unchecked = Some(reason);
        }
        Availability::Unavailable(_) => {}
    }
    let targets = SnmpTargets::from_config(config.snmp.as_ref()).unwrap_or_else(|error| {
        let index = config
            .snmp
            .iter()
            .flat_map(|snmp| &snmp.targets)
            .position(|target| target.name == error.target())
            .unwrap_or(0);
        problems.push((format!("snmp.target[{index}]"), error.to_string()));
        SnmpTargets::default()
    });
    let runtime = Runtime::new(settings)?
        .with_models(models)
        .with_snmp_targets(Arc::new(targets));
    for (index, spec) in config.functions.iter().enumerate() {
        if let Err(error) = runtime.load(spec, &state, Arc::new(DiscardSink)) {
            let at = format!("function[{index}]");
            let problem = match &error {
                LoadError::Grant(GrantError::Model(_)) => {
                    (format!("{at}.model_shapes"), error.to_string())
                }
                LoadError::Grant(GrantError::Snmp(target)) => {
                    (format!("{at}.grants.snmp.{target}"), error.to_string())
                }
                LoadError::Grant(GrantError::Http { index, reason }) => (
                    format!("{at}.grants.outbound_http[{index}]"),
                    reason.clone(),
                ),
                _ => (format!("{at}.component"), error.to_string()),
            };
            problems.push(problem);
        }
    }
    Ok(Findings {
        problems,
        models_unchecked,
    })
}

/// Builds the configuration that runs a staged revision (in `dir`) on this device and
/// compiles it into the daemon's cache (entries are content-addressed and written
/// atomically), so that switching to the revision loads instead of compiling. Models are
/// loaded and run on their reference vectors. Returns what keeps it from running.
pub fn probe(config: &Config, deployment: &Deployment, dir: &Path) -> Vec<String> {
    match deployment.configure(config, dir) {
        Ok(effective) => match compile(&effective, &effective.cache_dir()) {
            Ok(findings) => findings
                .problems
                .into_iter()
                .map(|(key, message)| format!("{key}: {message}"))
                .collect(),
            Err(error) => vec![error.to_string()],
        },
        Err(error) => vec![error.to_string()],
    }
}
