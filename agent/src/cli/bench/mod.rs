//! `fogd bench`: cold start, warm calls, kv and inference from a guest, measured on this
//! machine. The MQTT path through a broker is measured by `fogd-mqtt-bench` (tests/).

mod guest;
mod infer;
mod measure;

use std::process::ExitCode;

use clap::Subcommand;

#[derive(Subcommand)]
pub enum BenchCommand {
    /// Fresh store + instantiate + `handle` per event, on one thread (the cold-start path).
    ColdStart(guest::BenchArgs),
    /// `handle` called again and again on one kept instance.
    Warm(guest::BenchArgs),
    /// kv operations (alternating set and get) timed inside a guest.
    Kv(guest::BenchArgs),
    /// One model's inference latency, in the agent or from a guest.
    Infer(infer::InferBenchArgs),
}

pub fn run(command: BenchCommand) -> anyhow::Result<ExitCode> {
    fogd::telemetry::init_logging(&Default::default(), Vec::new());
    match command {
        BenchCommand::ColdStart(args) => {
            guest::report(&args, "cold-start", "echo", guest::cold_start)
        }
        BenchCommand::Warm(args) => guest::report(&args, "warm", "echo", guest::warm),
        BenchCommand::Kv(args) => guest::report(&args, "kv", "probe", guest::kv),
        BenchCommand::Infer(args) => {
            infer::run(args)?;
            Ok(ExitCode::SUCCESS)
        }
    }
}
