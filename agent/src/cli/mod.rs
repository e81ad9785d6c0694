//! Command-line interface: parsing and dispatch to one module per command.

mod bench;
mod check;
mod daemon;
mod deploy;
mod identity;
mod invoke;
mod reload;
mod run;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

const DEFAULT_CONFIG: &str = "/etc/fogd/fogd.toml";

#[derive(Parser)]
#[command(
    name = "fogd",
    version,
    about = "Edge node agent: runs WASI network functions when MQTT, SNMP or timer events arrive",
    long_about = "fogd hosts network functions compiled to WebAssembly components (WASI 0.2). \
Each event runs in a fresh instance with the capabilities its manifest grants: a private \
key/value store, publishing to granted topics, logs and its own config.\n\n\
Start with `fogd check --config FILE`, then `fogd run --config FILE`.",
    after_help = "Examples:\n  fogd run --config /etc/fogd/fogd.toml\n  fogd invoke --component echo.wasm --payload '{\"hello\":1}'\n  fogd bench cold-start --component echo.wasm --iterations 20000 --json"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the agent until SIGTERM or Ctrl-C (in-flight events finish first).
    Run(run::RunArgs),
    /// Ask the running daemon to re-read its config file (sends it SIGHUP).
    Reload(reload::ReloadArgs),
    /// Apply a signed deployment document locally, with its artifacts from a directory.
    Deploy(deploy::DeployArgs),
    /// Validate a config file and compile its components, reporting every problem.
    Check(check::CheckArgs),
    /// Run one event through a function and print its result and timing.
    Invoke(invoke::InvokeArgs),
    /// Device identity for mutual TLS: `init` makes the key and CSR, `install` the certificate.
    #[command(subcommand)]
    Identity(identity::IdentityCommand),
    /// Measure what this machine can take (cold start, warm calls, kv from a guest).
    #[command(subcommand)]
    Bench(bench::BenchCommand),
}

/// The config file argument shared by commands.
#[derive(clap::Args, Clone)]
struct ConfigArg {
    /// Path of the config file.
    #[arg(short, long, value_name = "FILE", env = "FOGD_CONFIG", default_value = DEFAULT_CONFIG)]
    config: PathBuf,
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run(args) => run::run(args),
        Command::Reload(args) => reload::run(args),
        Command::Deploy(args) => deploy::run(args),
        Command::Check(args) => check::run(args),
        Command::Invoke(args) => invoke::run(args),
        Command::Identity(command) => identity::run(command),
        Command::Bench(command) => bench::run(command),
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(2)
        }
    }
}

/// A multi-threaded tokio runtime for commands that need one; `threads` defaults to tokio's
/// choice (`TOKIO_WORKER_THREADS`, else one per CPU).
fn tokio_runtime(threads: Option<usize>) -> anyhow::Result<tokio::runtime::Runtime> {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(threads) = threads {
        builder.worker_threads(threads);
    }
    Ok(builder.enable_all().thread_name("fogd").build()?)
}
