//! What the `fogd bench` commands share: how long to measure and how to print, where the
//! shipped components are, and timing an operation on the host or inside a guest.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use fogd::bench::Summary;
use fogd::event::Event;
use fogd::runtime::LoadedFunction;

/// How long to measure and how to print the result; shared by the `fogd bench` commands.
#[derive(clap::Args)]
pub struct Measurement {
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
pub fn shipped_component(name: &str) -> anyhow::Result<PathBuf> {
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

pub fn measure(
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

/// Calls a probe subject that times `expected` operations inside the guest and returns each
/// one's latency in nanoseconds (little-endian u32); also returns the call's wall time.
pub fn guest_latencies(
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
