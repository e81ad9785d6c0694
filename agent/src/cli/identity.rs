//! `fogd identity`: the device key, its signing request, and installing the certificate.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Subcommand;

use fogd::identity;

const DEFAULT_DIR: &str = "/var/lib/fogd/identity";

#[derive(Subcommand)]
pub enum IdentityCommand {
    /// Create the device key (ECDSA P-256, mode 0600) and a CSR naming the device.
    #[command(
        after_help = "Example:\n  fogd identity init --device-id gw-0017\n  # send /var/lib/fogd/identity/device.csr to the fleet CA; the key stays here"
    )]
    Init {
        /// The device id, put in the request's common name.
        #[arg(long)]
        device_id: String,
        #[arg(long, default_value = DEFAULT_DIR)]
        dir: PathBuf,
        /// Replace an existing key (the old certificate stops working).
        #[arg(long)]
        force: bool,
    },
    /// Check that a certificate belongs to the device key, then install it with its CA.
    Install {
        /// PEM certificate (chain) issued for the device's CSR.
        #[arg(long)]
        cert: PathBuf,
        /// PEM certificate of the CA that brokers of this fleet use.
        #[arg(long)]
        ca: PathBuf,
        #[arg(long, default_value = DEFAULT_DIR)]
        dir: PathBuf,
    },
}

pub fn run(command: IdentityCommand) -> anyhow::Result<ExitCode> {
    match command {
        IdentityCommand::Init {
            device_id,
            dir,
            force,
        } => {
            let csr = identity::init(&dir, &device_id, force)?;
            println!("key: {}", dir.join(identity::KEY_FILE).display());
            println!("certificate signing request: {}", csr.display());
        }
        IdentityCommand::Install { cert, ca, dir } => {
            identity::install(&dir, &cert, &ca)?;
            println!(
                "installed {} and {}",
                dir.join(identity::CERT_FILE).display(),
                dir.join(identity::CA_FILE).display()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
