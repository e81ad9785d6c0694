//! Cold start of the `echo` component: fogd's tuned engine against plain wasmtime setups, in
//! one run, on one thread. Every variant uses fogd's real host (WASI context, kv, grants); only
//! the engine configuration differs.
//!
//! `cargo bench -p fogd --bench cold_start [-- ITERATIONS]` (build the functions first:
//! `wasi-functions/build.sh`).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use fogd::bench::Summary;
use fogd::config::{FunctionSpec, RuntimeConfig, StateConfig};
use fogd::contract::NetworkFunctionPre;
use fogd::event::{Event, Source, new_event};
use fogd::host::{self, FunctionCaps, HostResources, HostState};
use fogd::inference::ModelRegistry;
use fogd::outbound::DiscardSink;
use fogd::runtime::{Runtime, RuntimeSettings};
use fogd::snmp_client::SnmpTargets;
use fogd::state::StateDb;
use fogd::telemetry::Metrics;
use wasmtime::component::{Component, Linker};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store};

fn echo_component() -> PathBuf {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../wasi-functions/target/wasm32-wasip2/release/echo.wasm");
    assert!(
        path.exists(),
        "{} is missing: run wasi-functions/build.sh",
        path.display()
    );
    path
}

fn measure(iterations: u64, mut call: impl FnMut()) -> Summary {
    for _ in 0..iterations / 10 {
        call();
    }
    let mut latencies = Vec::with_capacity(iterations as usize);
    let start = Instant::now();
    for _ in 0..iterations {
        let began = Instant::now();
        call();
        latencies.push(began.elapsed().as_nanos() as u64);
    }
    Summary::from_latencies(&mut latencies, start.elapsed())
}

/// A plain embedding: `Store::new` + `instantiate` + `handle` on an engine built from `config`.
fn plain(config: &Config, state: &StateDb, event: &Event, iterations: u64) -> Summary {
    let engine = Engine::new(config).expect("engine");
    let mut linker = Linker::new(&engine);
    host::add_to_linker(&mut linker).expect("linker");
    let component = Component::from_file(&engine, echo_component()).expect("component");
    let pre =
        NetworkFunctionPre::new(linker.instantiate_pre(&component).expect("pre")).expect("world");
    let resources = HostResources {
        state,
        sink: Arc::new(DiscardSink),
        models: &Arc::new(ModelRegistry::none()),
        metrics: &Metrics::new(),
        snmp_targets: &SnmpTargets::default(),
    };
    let spec = FunctionSpec::for_component("echo", echo_component());
    let caps = Arc::new(FunctionCaps::prepare(&spec, &resources, 16 << 20).expect("grants"));
    measure(iterations, || {
        let mut store = Store::new(&engine, HostState::new(caps.clone(), event.id.clone()));
        store.limiter(|state| state);
        let instance = pre.instantiate(&mut store).expect("instantiate");
        let output = instance.call_handle(&mut store, event).expect("call");
        assert!(output.is_ok());
    })
}

fn main() {
    let iterations: u64 = std::env::args()
        .skip(1)
        .find_map(|arg| arg.parse().ok())
        .unwrap_or(20_000);
    let state = StateDb::temporary(&StateConfig::default()).expect("state");
    let event = new_event(Source::Invoke, "bench", vec![b'x'; 100]);

    let mut default_config = Config::new();
    default_config.wasm_component_model(true);
    let mut pooling_config = default_config.clone();
    pooling_config.allocation_strategy(InstanceAllocationStrategy::Pooling(
        PoolingAllocationConfig::default(),
    ));

    let scratch = tempfile::tempdir().expect("temp dir");
    let spec = FunctionSpec::for_component("echo", echo_component());
    let runtime = Runtime::new(RuntimeSettings::new(
        &RuntimeConfig::default(),
        std::slice::from_ref(&spec),
        scratch.path().to_owned(),
    ))
    .expect("runtime");
    let function = runtime
        .load(&spec, &state, Arc::new(DiscardSink))
        .expect("load");

    let results = [
        (
            "wasmtime defaults (on-demand allocator)",
            plain(&default_config, &state, &event, iterations),
        ),
        (
            "wasmtime defaults + pooling allocator",
            plain(&pooling_config, &state, &event, iterations),
        ),
        (
            "fogd runtime",
            measure(iterations, || {
                assert!(function.call(&event).outcome.is_ok());
            }),
        ),
    ];
    let baseline = &results[0].1;
    println!("cold start of echo (100-byte payload), {iterations} iterations, one thread");
    println!(
        "{:<42} {:>9} {:>9} {:>9} {:>10} {:>9}",
        "variant", "p50 µs", "p99 µs", "mean µs", "events/s", "vs base"
    );
    for (name, summary) in &results {
        println!(
            "{:<42} {:>9.2} {:>9.2} {:>9.2} {:>10.0} {:>8.2}x",
            name,
            summary.p50_us,
            summary.p99_us,
            summary.mean_us,
            summary.per_second,
            summary.per_second / baseline.per_second
        );
    }
}
