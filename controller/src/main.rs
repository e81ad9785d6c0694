//! fogctl: the fleet side of fogd. It keeps no state of its own: keys are files, documents
//! are files, and the fleet's state lives in the broker.

mod keys;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use fogd::sync::{Deployment, FleetKey, TrustedKeys};

#[derive(Parser)]
#[command(
    name = "fogctl",
    version,
    about = "Signs fogd deployment documents for a fleet"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Creates the fleet signing key: KEY (PKCS#8 PEM, mode 0600) and KEY.pub (the public
    /// key, hex, for the devices' `sync.trusted_keys`).
    #[command(after_help = "Example:\n  fogctl keygen --out fleet.key")]
    Keygen {
        /// Where to write the private key; never overwritten.
        #[arg(long, value_name = "KEY")]
        out: PathBuf,
    },
    /// Checks a deployment document and signs it.
    #[command(
        after_help = "Example:\n  fogctl sign deployment.json --key fleet.key --out deployment.signed.json"
    )]
    Sign {
        /// The deployment document (JSON, schema fogd.deployment/v1).
        document: PathBuf,
        #[arg(long, value_name = "KEY")]
        key: PathBuf,
        /// Where to write the signed document; standard output if omitted.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// Checks a signed document's signature and content, as a device would.
    #[command(
        after_help = "Example:\n  fogctl verify deployment.signed.json --trust fleet.key.pub"
    )]
    Verify {
        document: PathBuf,
        /// A public key file (hex) or the hex key itself; repeat for several.
        #[arg(long, value_name = "KEY", required = true)]
        trust: Vec<String>,
    },
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Keygen { out } => {
            let public = keys::generate(&out)?;
            println!("wrote {} and {}", out.display(), public.display());
        }
        Command::Sign { document, key, out } => {
            let text = std::fs::read(&document)
                .with_context(|| format!("cannot read {}", document.display()))?;
            let value: serde_json::Value = serde_json::from_slice(&text)
                .with_context(|| format!("{} is not JSON", document.display()))?;
            let deployment = Deployment::parse(value.clone(), None)
                .with_context(|| format!("{} cannot be deployed", document.display()))?;
            let key = FleetKey::read(&key)?;
            let signed = serde_json::to_string_pretty(&key.sign(value))? + "\n";
            match out {
                Some(out) => {
                    std::fs::write(&out, signed)
                        .with_context(|| format!("cannot write {}", out.display()))?;
                    eprintln!(
                        "signed revision {} as {}",
                        deployment.revision,
                        out.display()
                    );
                }
                None => print!("{signed}"),
            }
        }
        Command::Verify { document, trust } => {
            let trusted =
                TrustedKeys::from_hex(keys::read_public(&trust)?.iter().map(String::as_str))?;
            let bytes = std::fs::read(&document)
                .with_context(|| format!("cannot read {}", document.display()))?;
            let value = trusted.open(&bytes)?;
            let deployment = Deployment::parse(value, None)?;
            println!(
                "revision {}: {} functions, {} models, {} artifacts; signature good",
                deployment.revision,
                deployment.functions.len(),
                deployment.models.len(),
                deployment.artifacts.len()
            );
        }
    }
    Ok(())
}
