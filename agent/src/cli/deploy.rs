//! `fogd deploy`: applies a signed deployment document without any cloud (factory images,
//! air-gapped sites). The document is verified, its artifacts copied from a directory and
//! checked, the result compiled, and the running daemon asked to switch to it.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

use super::ConfigArg;
use fogd::config;
use fogd::sync::{Deployment, RevisionStore, TrustedKeys};

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
    if config.sync.trusted_keys.is_empty() {
        eprintln!(
            "{}: sync.trusted_keys is empty: this device accepts no deployments",
            args.config.config.display()
        );
        return Ok(ExitCode::FAILURE);
    }
    let trusted = TrustedKeys::from_hex(config.sync.trusted_keys.iter().map(String::as_str))?;
    let signed = std::fs::read(&args.document)
        .with_context(|| format!("cannot read {}", args.document.display()))?;
    let store = RevisionStore::new(&config.state_dir);
    let refused = |reason: String| {
        eprintln!("{}: refused: {reason}", args.document.display());
        Ok(ExitCode::FAILURE)
    };
    let document = match trusted.open(&signed) {
        Ok(document) => document,
        Err(error) => return refused(error.to_string()),
    };
    let deployment = match Deployment::parse(document, store.committed()?) {
        Ok(deployment) => deployment,
        Err(error) => return refused(error.to_string()),
    };
    let revision = deployment.revision;
    if let Err(reason) = store.admits(revision, &signed) {
        return refused(reason.to_string());
    }
    let staged = match store.prepare(&signed, &deployment, &args.artifacts) {
        Ok(staged) => staged,
        Err(error) => return refused(error.to_string()),
    };
    let problems = super::check::probe(&config, &deployment, staged.dir());
    if !problems.is_empty() {
        return refused(problems.join("; "));
    }
    staged.seal()?;
    match super::daemon::signal_daemon(&config)? {
        Some(pid) => println!("revision {revision} staged; fogd (pid {pid}) is switching to it"),
        None => println!("revision {revision} staged; fogd runs it when it starts"),
    }
    Ok(ExitCode::SUCCESS)
}
