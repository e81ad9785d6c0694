//! `fogd check`: validate a config file, compile its components and load its models.

use std::process::ExitCode;

use super::ConfigArg;
use fogd::config::{self, ConfigErrors, error_at_key};
use fogd::sync::probe;

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
        let findings = probe::compile(&config, scratch.path())?;
        if let Some(reason) = &findings.models_unchecked {
            eprintln!("note: models not checked: inference is unavailable ({reason})");
        }
        let problems: Vec<_> = findings
            .problems
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
