//! `fogd bench infer`: one model's latency through the registry (what the host pays per
//! call) or from a guest through the `inference` interface (what a function sees).

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, bail};
use serde_json::json;

use fogd::bench::Summary;

use super::measure::{Measurement, guest_latencies, measure, shipped_component};
use fogd::config::{FunctionSpec, InferenceConfig, ModelSpec, RuntimeConfig, StateConfig};
use fogd::event::{Source, new_event};
use fogd::inference::{ModelRegistry, TensorSpec, reference_inputs};
use fogd::outbound::DiscardSink;
use fogd::runtime::{Runtime, RuntimeSettings};
use fogd::state::StateDb;

/// The name the measured model is registered under.
const MODEL: &str = "bench";

#[derive(clap::Args)]
#[command(after_help = "Examples:\n  \
fogd bench infer --model models/flow-anomaly/flow-anomaly.tflite --reference models/flow-anomaly/reference.json\n  \
fogd bench infer --model flow-anomaly.tflite --component probe.wasm --json\n\n\
Without --reference the input is every value at 0.5. From a guest, the shipped `probe` function \
(or --component) times `run-f32` calls inside the guest.")]
pub struct InferBenchArgs {
    /// The .tflite model to measure.
    #[arg(long, value_name = "FILE.tflite")]
    model: PathBuf,
    /// Reference vectors (models/README.md); the first case's input is the one measured.
    #[arg(long, value_name = "FILE.json")]
    reference: Option<PathBuf>,
    /// LiteRT's libLiteRt.so (default: $FOGD_LITERT_LIB, then the standard locations).
    #[arg(long, value_name = "FILE.so")]
    runtime: Option<PathBuf>,
    /// Measure from a guest through the `inference` interface instead of in the agent.
    #[arg(long)]
    from_guest: bool,
    /// The probe component to measure from (implies --from-guest).
    #[arg(long, value_name = "FILE.wasm")]
    component: Option<PathBuf>,
    #[command(flatten)]
    measurement: Measurement,
}

pub fn run(args: InferBenchArgs) -> anyhow::Result<()> {
    let registry = Arc::new(ModelRegistry::new(&InferenceConfig {
        runtime: args.runtime.clone(),
        ..InferenceConfig::default()
    }));
    registry
        .activate(&ModelSpec {
            name: MODEL.into(),
            version: "1".into(),
            path: args.model.clone(),
            sha256: None,
            reference: args.reference.clone(),
            shadow: false,
        })
        .map_err(anyhow::Error::msg)
        .with_context(|| format!("cannot load {}", args.model.display()))?;
    let active = registry.active(MODEL)?;
    let [input_spec] = active.inputs() else {
        bail!(
            "the benchmark feeds one input tensor; this model takes {}",
            active.inputs().len()
        );
    };
    let input = match &args.reference {
        Some(path) => reference_inputs(path)
            .map_err(anyhow::Error::msg)?
            .swap_remove(0),
        None => input_spec
            .encode_f32(&vec![0.5; input_spec.elements()])
            .map_err(anyhow::Error::msg)?,
    };
    if input.len() != input_spec.byte_len() {
        bail!(
            "the reference input has {} bytes; the model's input takes {}",
            input.len(),
            input_spec.byte_len()
        );
    }

    let (what, summary) = if args.from_guest || args.component.is_some() {
        (
            "infer from a guest",
            from_guest(&args, registry, input_spec, &input)?,
        )
    } else {
        (
            "infer in the agent",
            in_agent(&args.measurement, &registry, &input)?,
        )
    };
    args.measurement.print(what, &summary)
}

fn in_agent(
    measurement: &Measurement,
    registry: &ModelRegistry,
    input: &[u8],
) -> anyhow::Result<Summary> {
    for _ in 0..measurement.warmup {
        registry.run(MODEL, &[input])?;
    }
    measure(measurement.iterations, || {
        registry.run(MODEL, &[input])?;
        Ok(())
    })
}

/// The probe's `infer-bench` subject times N `run-f32` calls inside the guest.
fn from_guest(
    args: &InferBenchArgs,
    registry: Arc<ModelRegistry>,
    input_spec: &TensorSpec,
    input: &[u8],
) -> anyhow::Result<Summary> {
    let component = match &args.component {
        Some(path) => path.clone(),
        None => shipped_component("probe")?,
    };
    let scratch = tempfile::tempdir()?;
    let mut spec = FunctionSpec::for_component("bench", component);
    spec.grants.models = vec![MODEL.into()];
    let settings = RuntimeSettings::new(
        &RuntimeConfig::default(),
        std::slice::from_ref(&spec),
        scratch.path().join("cache"),
    );
    let runtime = Runtime::new(settings)?.with_models(registry);
    let state = StateDb::temporary(&StateConfig::default())?;
    let function = runtime.load(&spec, &state, Arc::new(DiscardSink))?;
    let values = input_spec.decode_f32(input).map_err(anyhow::Error::msg)?;

    let call = |iterations: u64| {
        let request = json!({"model": MODEL, "inputs": [values], "iterations": iterations});
        let event = new_event(
            Source::Invoke,
            "infer-bench",
            request.to_string().into_bytes(),
        );
        guest_latencies(&function, &event, iterations)
    };
    call(args.measurement.warmup)?;
    let (mut latencies, elapsed) = call(args.measurement.iterations)?;
    Ok(Summary::from_latencies(&mut latencies, elapsed))
}
