//! `fogd check`: validate a config file, compile its components and load its models.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use super::ConfigArg;
use fogd::config::{self, Config, ConfigErrors, error_at_key};
use fogd::inference::{Availability, ModelRegistry};
use fogd::outbound::DiscardSink;
use fogd::runtime::{LoadError, Runtime, RuntimeSettings};
use fogd::state::StateDb;
use fogd::sync::Deployment;

#[derive(clap::Args)]
pub struct CheckArgs {
    #[command(flatten)]
    config: ConfigArg,
    /// Only parse and validate the file; do not compile components or load models.
    #[arg(long)]
    no_compile: bool,
}

pub fn run(args: CheckArgs) -> anyhow::Result<ExitCode> {
    let path = &args.config.config;
    let config = match config::load_file(path) {
        Ok(config) => config,
        Err(errors) => {
            eprintln!("{errors}");
            return Ok(ExitCode::FAILURE);
        }
    };
    if !args.no_compile {
        // A scratch cache: checking must not touch the daemon's state.
        let scratch = tempfile::tempdir()?;
        let problems: Vec<_> = compile(&config, scratch.path())?
            .into_iter()
            .map(|(key, message)| error_at_key(path, &key, message))
            .collect();
        if !problems.is_empty() {
            eprintln!("{}", ConfigErrors(problems));
            return Ok(ExitCode::FAILURE);
        }
    }
    println!(
        "{}: ok ({} function{})",
        path.display(),
        config.functions.len(),
        if config.functions.len() == 1 { "" } else { "s" }
    );
    Ok(ExitCode::SUCCESS)
}

/// Compiles every component of `config` into `cache_dir` and loads every model, with a
/// throw-away database; returns each problem with its key.
pub(super) fn compile(config: &Config, cache_dir: &Path) -> anyhow::Result<Vec<(String, String)>> {
    let state = StateDb::temporary(&config.state)?;
    let mut settings = RuntimeSettings::from_config(config);
    settings.cache_dir = cache_dir.to_owned();
    let mut problems = Vec::new();
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
            eprintln!("note: models not checked: inference is unavailable ({reason})");
        }
        Availability::Unavailable(_) => {}
    }
    let runtime = Runtime::new(settings)?.with_models(models);
    for (index, spec) in config.functions.iter().enumerate() {
        if let Err(error) = runtime.load(spec, &state, Arc::new(DiscardSink)) {
            let key = match error {
                LoadError::Model(_) => format!("function[{index}].model_shapes"),
                _ => format!("function[{index}].component"),
            };
            problems.push((key, error.to_string()));
        }
    }
    Ok(problems)
}

/// Builds the configuration that runs a staged revision (in `dir`) on this device and
/// compiles it into the daemon's cache (entries are content-addressed and written
/// atomically), so that switching to the revision loads instead of compiling. Models are
/// loaded and run on their reference vectors. Returns what keeps it from running.
pub fn probe(config: &Config, deployment: &Deployment, dir: &Path) -> Vec<String> {
    match deployment.configure(config, dir) {
        Ok(effective) => match compile(&effective, &effective.cache_dir()) {
            Ok(problems) => problems
                .into_iter()
                .map(|(key, message)| format!("{key}: {message}"))
                .collect(),
            Err(error) => vec![format!("{error:#}")],
        },
        Err(error) => vec![error.to_string()],
    }
}
