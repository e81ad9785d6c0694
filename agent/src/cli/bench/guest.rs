//! Cold start, warm calls and kv from a guest, on one thread.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::bail;

use super::measure::{Measurement, guest_latencies, measure, shipped_component};
use fogd::bench::Summary;
use fogd::config::{FunctionSpec, RuntimeConfig, StateConfig};
use fogd::event::{Event, Source, new_event};
use fogd::outbound::DiscardSink;
use fogd::runtime::{LoadedFunction, Runtime, RuntimeSettings};
use fogd::state::StateDb;

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
    #[arg(long, default_value_t = 100, conflicts_with = "payload")]
    payload_bytes: usize,
    /// The event payload itself (JSON for a function that parses it), instead of
    /// `--payload-bytes` of filler.
    #[arg(long, value_name = "TEXT")]
    payload: Option<String>,
    #[command(flatten)]
    measurement: Measurement,
}

/// Loads the component, runs one measurement and prints its summary.
pub fn report(
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
    let payload = match &args.payload {
        Some(text) => text.clone().into_bytes(),
        None => vec![b'x'; args.payload_bytes],
    };
    new_event(Source::Invoke, "bench", payload)
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

pub fn cold_start(function: &LoadedFunction, args: &BenchArgs) -> anyhow::Result<Summary> {
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

pub fn warm(function: &LoadedFunction, args: &BenchArgs) -> anyhow::Result<Summary> {
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

/// kv operations through the probe function's `kv-bench` subject.
pub fn kv(function: &LoadedFunction, args: &BenchArgs) -> anyhow::Result<Summary> {
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
