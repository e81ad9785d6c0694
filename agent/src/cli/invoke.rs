//! `fogd invoke`: one event through one function, with its result, publishes and timing.

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, bail};
use serde_json::json;

use fogd::config::{self, FunctionSpec, RuntimeConfig, StateConfig};
use fogd::event::{Source, new_event};
use fogd::inference::ModelRegistry;
use fogd::outbound::{ChannelSink, OutboundSink};
use fogd::runtime::{Runtime, RuntimeSettings};
use fogd::state::StateDb;

#[derive(clap::Args)]
#[command(
    after_help = "Examples:\n  fogd invoke --config fogd.toml threshold-alert --payload '{\"cpu\": 97}'\n  echo -n hello | fogd invoke --component echo.wasm --payload -"
)]
pub struct InvokeArgs {
    /// Config file holding the function (its kv namespace and grants are used).
    #[arg(
        short,
        long,
        value_name = "FILE",
        requires = "function",
        conflicts_with = "component"
    )]
    config: Option<PathBuf>,
    /// Name of the function in the config file.
    #[arg(value_name = "FUNCTION")]
    function: Option<String>,
    /// A component to run directly, with default limits, no grants and a throw-away kv store.
    #[arg(long, value_name = "FILE.wasm")]
    component: Option<PathBuf>,
    /// The event payload; `-` reads it from standard input.
    #[arg(long, value_name = "TEXT|-", default_value = "")]
    payload: String,
    /// The event subject.
    #[arg(long, default_value = "invoke")]
    subject: String,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

pub fn run(args: InvokeArgs) -> anyhow::Result<ExitCode> {
    let payload = if args.payload == "-" {
        let mut bytes = Vec::new();
        std::io::stdin()
            .read_to_end(&mut bytes)
            .context("cannot read the payload from stdin")?;
        bytes
    } else {
        args.payload.into_bytes()
    };

    let (spec, state, settings, models, _scratch) = match (&args.config, &args.component) {
        (Some(path), None) => {
            let config = config::load_file(path)?;
            fogd::telemetry::init_logging(&config.log, Vec::new());
            let Some(name) = args.function.as_deref() else {
                bail!("name the function to invoke");
            };
            let Some(spec) = config.functions.iter().find(|f| f.name == name).cloned() else {
                bail!("{}: no function named {name:?}", path.display());
            };
            let state = StateDb::open(&config.state_dir.join("db"), &config.state)
                .context("cannot open the agent's state (is `fogd run` using it? stop it or use --component)")?;
            let models = Arc::new(ModelRegistry::for_config(&config));
            (
                spec,
                state,
                RuntimeSettings::from_config(&config),
                models,
                None,
            )
        }
        (None, Some(component)) => {
            fogd::telemetry::init_logging(&Default::default(), Vec::new());
            let scratch = tempfile::tempdir()?;
            let spec = FunctionSpec::for_component("invoke", component.clone());
            let state = StateDb::temporary(&StateConfig::default())?;
            let settings = RuntimeSettings::new(
                &RuntimeConfig::default(),
                std::slice::from_ref(&spec),
                scratch.path().join("cache"),
            );
            (spec, state, settings, Arc::default(), Some(scratch))
        }
        _ => bail!("give either --config FILE FUNCTION or --component FILE.wasm"),
    };

    let runtime = Runtime::new(settings)?.with_models(models);
    let (sink, mut published) = ChannelSink::new(1024);
    let sink: Arc<dyn OutboundSink> = Arc::new(sink);
    let function = runtime.load(&spec, &state, sink)?;
    let mut event = new_event(Source::Invoke, args.subject, payload);
    event
        .attributes
        .push(("invoked-by".into(), "fogd invoke".into()));
    let report = function.call(&event);
    state.flush()?;

    let mut messages = Vec::new();
    while let Ok(message) = published.try_recv() {
        messages.push(message);
    }
    let elapsed_us = report.total.as_secs_f64() * 1e6;
    let instantiate_us = report.instantiate.as_secs_f64() * 1e6;
    if args.json {
        let published: Vec<_> = messages
            .iter()
            .map(|m| json!({"topic": m.topic, "payload": String::from_utf8_lossy(&m.payload), "retain": m.retain}))
            .collect();
        let body = match &report.outcome {
            Ok(output) => json!({
                "ok": true,
                "output": output.as_ref().map(|o| String::from_utf8_lossy(o).into_owned()),
            }),
            Err(error) => json!({"ok": false, "kind": error.kind(), "error": error.to_string()}),
        };
        let mut body = body;
        body["published"] = json!(published);
        body["elapsed_us"] = json!(elapsed_us);
        body["instantiate_us"] = json!(instantiate_us);
        body["load"] = json!(function.load_source().as_str());
        println!("{body}");
    } else {
        for message in &messages {
            eprintln!(
                "published to {}: {}",
                message.topic,
                String::from_utf8_lossy(&message.payload)
            );
        }
        match &report.outcome {
            Ok(Some(output)) => println!("{}", String::from_utf8_lossy(output)),
            Ok(None) => eprintln!("(no output)"),
            Err(error) => eprintln!("error ({}): {error}", error.kind()),
        }
        eprintln!(
            "{:.1} µs (instantiate {:.1} µs, component {})",
            elapsed_us,
            instantiate_us,
            function.load_source().as_str()
        );
    }
    Ok(if report.outcome.is_ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
