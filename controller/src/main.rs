//! fogctl: the fleet side of fogd. It keeps no state of its own: keys are files, documents
//! are files, and the fleet's state lives in the broker.

mod fleet;
mod keys;
mod link;
mod progress;
mod rollout;
mod status;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use fogd_fleet::deployment::{Deployment, FleetKey, SignedDocument, TrustedKeys, topics};

#[derive(Parser)]
#[command(
    name = "fogctl",
    version,
    about = "Signs fogd deployment documents and rolls them out to a fleet through its MQTT broker"
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
    /// Rolls a signed document out: a canary, then waves, each waiting for its devices'
    /// reports; stops and puts back the previous desired documents when failures pass the
    /// threshold.
    #[command(
        after_help = "Example:\n  fogctl rollout deployment.signed.json --broker broker.example:8883 --ca ca.pem \\\n    --cert ops.pem --key-file ops.key --group site-a --canary 1 --waves 10%,50%,100% \\\n    --failure-threshold 5% --wave-timeout 10m\n\nExits 0 when every device committed the revision, 1 when the rollout stopped or devices failed."
    )]
    Rollout {
        /// The signed document (`fogctl sign`).
        document: PathBuf,
        #[command(flatten)]
        target: Target,
        #[command(flatten)]
        broker: fleet::BrokerArgs,
    },
    /// Shows the fleet from the devices' retained reports: revision, state, health.
    #[command(
        after_help = "Example:\n  fogctl status --broker broker.example:8883 --ca ca.pem --cert ops.pem --key-file ops.key"
    )]
    Status {
        /// One JSON object per device, keyed by device id.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        broker: fleet::BrokerArgs,
    },
    /// Rolls the content of an earlier revision out again under a new revision number
    /// (devices never go back to a lower revision), signed with KEY.
    #[command(
        after_help = "Example:\n  fogctl rollback --to 41 --key fleet.key --group site-a --broker broker.example:8883 --ca ca.pem"
    )]
    Rollback {
        /// The revision whose content to restore (from the broker's archive of rollouts).
        #[arg(long, value_name = "REV")]
        to: u64,
        #[arg(long, value_name = "KEY")]
        key: PathBuf,
        #[command(flatten)]
        target: Target,
        #[command(flatten)]
        broker: fleet::BrokerArgs,
    },
}

/// Which devices a rollout reaches, and how.
#[derive(clap::Args)]
struct Target {
    /// Devices whose reports list this group.
    #[arg(
        long,
        value_name = "G",
        conflicts_with = "devices",
        required_unless_present = "devices"
    )]
    group: Option<String>,
    /// Device ids, comma-separated.
    #[arg(long, value_name = "ID,...", value_delimiter = ',')]
    devices: Vec<String>,
    /// Devices in the first wave.
    #[arg(long, value_name = "N", default_value_t = 1)]
    canary: usize,
    /// Cumulative shares of the remaining devices per wave.
    #[arg(long, value_name = "P%,...", default_value = "10%,50%,100%", value_parser = rollout::parse_shares)]
    waves: rollout::Shares,
    /// Share of failed devices, among those reached, that stops the rollout.
    #[arg(long, value_name = "P%", default_value = "0%", value_parser = rollout::parse_threshold)]
    failure_threshold: f64,
    /// Longest wait for a wave's devices to settle; those still busy count as failed.
    #[arg(long, value_name = "DURATION", default_value = "10m", value_parser = parse_duration)]
    wave_timeout: std::time::Duration,
}

fn parse_duration(text: &str) -> Result<std::time::Duration, fogd_fleet::config::DurationError> {
    fogd_fleet::config::Millis::parse(text).map(fogd_fleet::config::Millis::as_duration)
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
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
        Command::Rollout {
            document,
            target,
            broker,
        } => {
            let signed = std::fs::read(&document)
                .with_context(|| format!("cannot read {}", document.display()))?;
            let revision = revision_of(&signed)?;
            return tokio_runtime()?
                .block_on(roll_out(&broker, &target, |_| Ok((revision, signed))));
        }
        Command::Status { json, broker } => {
            tokio_runtime()?.block_on(status::show(&broker, json))?;
        }
        Command::Rollback {
            to,
            key,
            target,
            broker,
        } => {
            let key = FleetKey::read(&key)?;
            return tokio_runtime()?.block_on(roll_out(&broker, &target, |snapshot| {
                restore(to, &key, snapshot)
            }));
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Two threads: the broker connection's task reads the report stream while the other
/// keeps the rollout's books.
fn tokio_runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// The revision of a signed document, checking its content as a device would (the
/// signature is the devices' to check).
fn revision_of(signed: &[u8]) -> anyhow::Result<u64> {
    let signed: SignedDocument =
        serde_json::from_slice(signed).context("not a signed deployment document")?;
    Ok(Deployment::parse(signed.document, None)?.revision)
}

/// Reads the fleet from the broker, lets `choose` pick the revision and signed document to
/// roll out from what it holds, and rolls it out.
async fn roll_out(
    broker: &fleet::BrokerArgs,
    target: &Target,
    choose: impl FnOnce(&fleet::Snapshot) -> anyhow::Result<(u64, Vec<u8>)>,
) -> anyhow::Result<ExitCode> {
    let (mut link, mut snapshot) = fleet::read(
        broker,
        &[
            topics::ALL_REPORTED,
            topics::ALL_DESIRED,
            topics::ALL_ARCHIVED,
        ],
    )
    .await?;
    let result = match choose(&snapshot) {
        Ok((revision, signed)) => {
            roll_out_on(
                &mut link,
                broker,
                &mut snapshot,
                revision,
                signed.into(),
                target,
            )
            .await
        }
        Err(error) => Err(error),
    };
    link.close().await;
    result
}

async fn roll_out_on(
    link: &mut link::Link,
    broker: &fleet::BrokerArgs,
    snapshot: &mut fleet::Snapshot,
    revision: u64,
    signed: bytes::Bytes,
    target: &Target,
) -> anyhow::Result<ExitCode> {
    let devices = match &target.group {
        Some(group) => {
            let devices = snapshot.group(group);
            if devices.is_empty() {
                anyhow::bail!("no device reports group {group:?}");
            }
            devices
        }
        None => target.devices.clone(),
    };
    if let Some(bad) = devices.iter().find(|device| !topics::is_valid_id(device)) {
        anyhow::bail!("{bad:?} is not a device id");
    }
    let plan = rollout::Plan::new(
        &devices,
        target.canary,
        &target.waves.0,
        target.failure_threshold,
        target.wave_timeout,
    )
    .map_err(anyhow::Error::msg)?;
    eprintln!(
        "rolling out revision {revision} to {} device(s) in {} wave(s)",
        devices.len(),
        plan.waves.len()
    );
    let started = std::time::Instant::now();
    let summary = rollout::run(link, broker, snapshot, &plan, revision, &signed).await?;
    let committed = summary
        .results
        .values()
        .filter(|result| **result == rollout::DeviceResult::Committed)
        .count();
    eprintln!(
        "{}: {committed} of {} device(s) committed revision {revision} in {:.1}s",
        if summary.stopped { "stopped" } else { "done" },
        devices.len(),
        started.elapsed().as_secs_f64()
    );
    Ok(if committed == devices.len() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The content of archived revision `to` under the next revision number, signed.
fn restore(to: u64, key: &FleetKey, snapshot: &fleet::Snapshot) -> anyhow::Result<(u64, Vec<u8>)> {
    let trusted = TrustedKeys::from_hex([key.public_hex().as_str()])?;
    let archived = snapshot.archive.get(&to).ok_or_else(|| {
        anyhow::anyhow!(
            "revision {to} is not in the broker's archive ({})",
            topics::archive(to)
        )
    })?;
    let mut document = trusted
        .open(archived)
        .with_context(|| format!("archived revision {to}"))?;
    let revision = snapshot.highest_revision() + 1;
    document["revision"] = revision.into();
    Deployment::parse(document.clone(), None)?;
    eprintln!("restoring the content of revision {to} as revision {revision}");
    Ok((revision, serde_json::to_vec(&key.sign(document))?))
}
