//! `fogd deploy`: applies a signed deployment document without any cloud (factory images,
//! air-gapped sites). The document is verified, its artifacts copied from a directory and
//! checked, the result compiled, and the running daemon asked to switch to it.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

use super::ConfigArg;
use fogd::config;
use fogd::sync::local::{self, StageError};

#[derive(clap::Args)]
#[command(
    after_help = "Example:\n  fogd deploy deployment.signed.json --artifacts ./artifacts --config /etc/fogd/fogd.toml\n\n\
The document must be signed by a key in sync.trusted_keys and carry a revision above the \
committed one. Artifacts are read from DIR by their names in the document and checked \
against its sizes and SHA-256 digests. The running daemon (found through <state_dir>/fogd.pid) \
switches to the new revision at once; otherwise fogd starts on it next time."
)]
pub struct DeployArgs {
    /// The signed deployment document (`fogctl sign`).
    document: PathBuf,
    /// Directory holding the document's artifacts, by file name.
    #[arg(long, value_name = "DIR")]
    artifacts: PathBuf,
    #[command(flatten)]
    config: ConfigArg,
}

pub fn run(args: DeployArgs) -> anyhow::Result<ExitCode> {
    let config = config::load_file(&args.config.config)?;
    let signed = std::fs::read(&args.document)
        .with_context(|| format!("cannot read {}", args.document.display()))?;
    let revision = match local::stage(&config, &signed, &args.artifacts) {
        Ok(revision) => revision,
        Err(error @ StageError::NoTrustedKeys) => {
            eprintln!("{}: {error}", args.config.config.display());
            return Ok(ExitCode::FAILURE);
        }
        Err(error @ StageError::Refused(_)) => {
            eprintln!("{}: {error}", args.document.display());
            return Ok(ExitCode::FAILURE);
        }
        Err(error) => return Err(error.into()),
    };
    match super::daemon::signal_daemon(&config)? {
        Some(pid) => println!("revision {revision} staged; fogd (pid {pid}) is switching to it"),
        None => println!("revision {revision} staged; fogd runs it when it starts"),
    }
    Ok(ExitCode::SUCCESS)
}
