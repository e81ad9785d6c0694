//! `fogd bench`: cold start, warm calls, kv and inference from a guest, measured on this
//! machine.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Subcommand;

use fogd::bench::Summary;
use fogd::config::{FunctionSpec, RuntimeConfig, StateConfig};
use fogd::event::{Event, Source, new_event};
use fogd::outbound::DiscardSink;
use fogd::runtime::{LoadedFunction, Runtime, RuntimeSettings};
use fogd::state::StateDb;

#[derive(Subcommand)]
pub enum BenchCommand {
    /// Fresh store + instantiate + `handle` per event, on one thread (the cold-start path).
    ColdStart(BenchArgs),
    /// `handle` called again and again on one kept instance.
    Warm(BenchArgs),
    /// kv operations (alternating set and get) timed inside a guest.
    Kv(BenchArgs),
    /// One model's inference latency, in the agent or from a guest.
    Infer(super::bench_infer::InferBenchArgs),
    /// Message in → function → result out through a broker, against the broker alone.
    Mqtt(super::bench_mqtt::MqttBenchArgs),
}

#[derive(clap::Args)]
#[command(
    after_help = "Without --component, the shipped `echo` (or `probe` for kv) is looked up in \
$FOGD_FUNCTIONS_DIR, /usr/share/fogd/functions and wasi-functions/target/wasm32-wasip2/release."
)]
pub struct BenchArgs {
    /// The component to measure.
    #[arg(long, value_name = "FILE.wasm")]
    component: Option<PathBuf>,
    /// Size of the event payload in bytes.
    #[arg(long, default_value_t = 100)]
    payload_bytes: usize,
    #[command(flatten)]
    measurement: Measurement,
}

/// How long to measure and how to print the result; shared by the `fogd bench` commands.
#[derive(clap::Args)]
pub(super) struct Measurement {
    /// Measured iterations (for kv: operations; for infer: calls).
    #[arg(long, default_value_t = 20_000)]
    pub iterations: u64,
    /// Unmeasured iterations first.
    #[arg(long, default_value_t = 1_000)]
    pub warmup: u64,
    /// Print the summary as JSON (keys: p50_us, p99_us, mean_us, per_second, iterations).
    #[arg(long)]
    pub json: bool,
}

impl Measurement {
    pub fn print(&self, what: &str, summary: &Summary) -> anyhow::Result<()> {
        if self.json {
            println!("{}", serde_json::to_string(summary)?);
        } else {
            println!("{}", summary.to_text(what));
        }
        Ok(())
    }
}

/// Where shipped components are looked for, in order.
pub(super) fn shipped_component(name: &str) -> anyhow::Result<PathBuf> {
    let file = format!("{}.wasm", name.replace('-', "_"));
    let mut dirs = Vec::new();
    if let Some(dir) = std::env::var_os("FOGD_FUNCTIONS_DIR") {
        dirs.push(PathBuf::from(dir));
    }
    dirs.push(PathBuf::from("/usr/share/fogd/functions"));
    dirs.push(PathBuf::from("wasi-functions/target/wasm32-wasip2/release"));
    dirs.iter()
        .map(|dir| dir.join(&file))
        .find(|path| path.exists())
        .with_context(|| {
            format!("cannot find the shipped component {file}; pass --component FILE.wasm")
        })
}

pub fn run(command: BenchCommand) -> anyhow::Result<ExitCode> {
    fogd::telemetry::init_logging(&Default::default());
    match command {
        BenchCommand::ColdStart(args) => report(&args, "cold-start", "echo", cold_start),
        BenchCommand::Warm(args) => report(&args, "warm", "echo", warm),
        BenchCommand::Kv(args) => report(&args, "kv", "probe", kv),
        BenchCommand::Infer(args) => {
            super::bench_infer::run(args)?;
            Ok(ExitCode::SUCCESS)
        }
        BenchCommand::Mqtt(args) => {
            super::tokio_runtime(None)?.block_on(super::bench_mqtt::run(args))?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Loads the component, runs one measurement and prints its summary.
fn report(
    args: &BenchArgs,
    what: &str,
    default_component: &str,
    measurement: fn(&LoadedFunction, &BenchArgs) -> anyhow::Result<Summary>,
) -> anyhow::Result<ExitCode> {
    let component = match &args.component {
        Some(path) => path.clone(),
        None => shipped_component(default_component)?,
    };
    let scratch = tempfile::tempdir()?;
    let function = load(&component, scratch.path())?;
    let summary = measurement(&function, args)?;
    args.measurement.print(what, &summary)?;
    Ok(ExitCode::SUCCESS)
}

fn bench_event(args: &BenchArgs) -> Event {
    new_event(Source::Invoke, "bench", vec![b'x'; args.payload_bytes])
}

fn load(component: &Path, scratch: &Path) -> anyhow::Result<LoadedFunction> {
    let spec = FunctionSpec::for_component("bench", component.to_owned());
    let settings = RuntimeSettings::new(
        &RuntimeConfig::default(),
        std::slice::from_ref(&spec),
        scratch.join("cache"),
    );
    let runtime = Runtime::new(settings)?;
    let state = StateDb::temporary(&StateConfig::default())?;
    Ok(runtime.load(&spec, &state, Arc::new(DiscardSink))?)
}

pub(super) fn measure(
    iterations: u64,
    mut operation: impl FnMut() -> anyhow::Result<()>,
) -> anyhow::Result<Summary> {
    let mut latencies = Vec::with_capacity(iterations as usize);
    let start = Instant::now();
    for _ in 0..iterations {
        let began = Instant::now();
        operation()?;
        latencies.push(began.elapsed().as_nanos() as u64);
    }
    Ok(Summary::from_latencies(&mut latencies, start.elapsed()))
}

fn cold_start(function: &LoadedFunction, args: &BenchArgs) -> anyhow::Result<Summary> {
    let event = bench_event(args);
    let call = || match function.call(&event).outcome {
        Ok(_) => Ok(()),
        Err(error) => bail!("the function failed: {error}"),
    };
    for _ in 0..args.measurement.warmup {
        call()?;
    }
    measure(args.measurement.iterations, call)
}

fn warm(function: &LoadedFunction, args: &BenchArgs) -> anyhow::Result<Summary> {
    let event = bench_event(args);
    let mut instance = function.warm_instance()?;
    let mut call = || match instance.call(&event) {
        Ok(_) => Ok(()),
        Err(error) => bail!("the function failed: {error}"),
    };
    for _ in 0..args.measurement.warmup {
        call()?;
    }
    measure(args.measurement.iterations, call)
}

/// Calls a probe subject that times `expected` operations inside the guest and returns each
/// one's latency in nanoseconds (little-endian u32); also returns the call's wall time.
pub(super) fn guest_latencies(
    function: &LoadedFunction,
    event: &Event,
    expected: u64,
) -> anyhow::Result<(Vec<u64>, Duration)> {
    let start = Instant::now();
    let output = match function.call(event).outcome {
        Ok(Some(output)) => output,
        Ok(None) => bail!("the component returned nothing; is it the probe function?"),
        Err(error) => bail!("the function failed: {error}"),
    };
    let elapsed = start.elapsed();
    let latencies: Vec<u64> = output
        .chunks_exact(4)
        .map(|chunk| u64::from(u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]])))
        .collect();
    if latencies.len() as u64 != expected {
        bail!(
            "the guest reported {} operations, expected {expected}",
            latencies.len()
        );
    }
    Ok((latencies, elapsed))
}

/// kv operations through the probe function's `kv-bench` subject.
fn kv(function: &LoadedFunction, args: &BenchArgs) -> anyhow::Result<Summary> {
    let run = |operations: u64| {
        let event = new_event(
            Source::Invoke,
            "kv-bench",
            operations.to_string().into_bytes(),
        );
        guest_latencies(function, &event, operations)
    };
    run(args.measurement.warmup)?;
    let (mut latencies, elapsed) = run(args.measurement.iterations)?;
    Ok(Summary::from_latencies(&mut latencies, elapsed))
}
