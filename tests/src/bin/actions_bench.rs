//! `fogd-actions-bench`: a guest's outbound requests against local servers, beside the
//! standard tools in the same run: HTTPS GETs to nginx over a kept-alive connection against
//! curl fetching the same URL over one connection, and SNMP gets to snmpd against `snmpget`.

use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use fogd::bench::Summary;
use fogd::config::{FunctionSpec, HttpGrant, Millis, SnmpAccess, parse_str};
use fogd::event::{Source, new_event};
use fogd::runtime::LoadedFunction;
use fogd::snmp_client::SnmpTargets;
use fogd_tests::certs::Pki;
use fogd_tests::nginx::Nginx;
use fogd_tests::snmpd::Snmpd;
use fogd_tests::{Harness, components, spec};

#[derive(Parser)]
#[command(
    name = "fogd-actions-bench",
    about = "A guest's HTTP and SNMP requests to local nginx and snmpd, beside curl and snmpget",
    after_help = "Example:\n  cargo run --release -p fogd-tests --bin fogd-actions-bench -- --iterations 2000"
)]
struct Args {
    /// Requests per measurement.
    #[arg(long, default_value_t = 2000)]
    iterations: u64,
    /// `snmpget` runs (each is a process, so fewer).
    #[arg(long, default_value_t = 200)]
    tool_iterations: u64,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let pki = Pki::generate("bench");
    let files = tempfile::tempdir()?;
    pki.write_server_files(files.path());
    std::fs::write(files.path().join("small.json"), br#"{"ok":true}"#)?;
    let nginx = Nginx::api(files.path(), &pki, false);
    let origin = format!("https://127.0.0.1:{}", nginx.port);
    let url = format!("{origin}/small.json");

    let snmpd = Snmpd::writable();
    snmpd.wait_ready();
    std::fs::write(files.path().join("community"), "fogd-ro\n")?;
    let config = parse_str(
        &format!(
            "[[snmp.target]]\nname = \"local\"\naddress = \"{}\"\ncommunity_file = \"community\"\n",
            snmpd.address()
        ),
        std::path::Path::new("bench.toml"),
        files.path(),
    )
    .map_err(|errors| anyhow::anyhow!("{errors}"))?;
    let targets = SnmpTargets::from_config(config.snmp.as_ref())?;

    let harness = Harness::with_snmp_targets(targets);
    let mut spec: FunctionSpec = spec("actions-bench", &components().probe);
    spec.limits.timeout = Millis(600_000);
    spec.limits.snmp_requests = u32::MAX;
    spec.grants.outbound_http.push(HttpGrant {
        ca_file: Some(files.path().join("ca.pem")),
        ..HttpGrant::for_origin(&origin)
    });
    spec.grants.snmp.insert("local".into(), SnmpAccess::Read);
    let function = harness.load(&spec)?;

    // Guests run as in the daemon: on the blocking pool of a runtime with one async thread.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let function = std::sync::Arc::new(function);
    let on_guest_thread = |subject: &'static str, request: serde_json::Value| {
        let function = function.clone();
        let iterations = args.iterations;
        runtime.block_on(async move {
            tokio::task::spawn_blocking(move || guest(&function, subject, &request, iterations))
                .await
                .context("the guest thread panicked")?
        })
    };
    let http = serde_json::json!({"url": url, "iterations": args.iterations});
    let guest_http = on_guest_thread("http-bench", http)?;
    let curl = curl(&url, &files.path().join("ca.pem"), args.iterations)?;
    let oid = "1.3.6.1.2.1.1.3.0";
    let snmp = serde_json::json!({"target": "local", "oid": oid, "iterations": args.iterations});
    let guest_snmp = on_guest_thread("snmp-bench", snmp)?;
    let snmpget = snmpget(&snmpd, oid, args.tool_iterations)?;

    for (what, summary) in [
        ("guest HTTPS GET, kept-alive (wasi:http)", &guest_http),
        ("curl, same URL, one connection", &curl),
        ("guest SNMP get (fogd:function/snmp)", &guest_snmp),
        ("snmpget, one process per get", &snmpget),
    ] {
        println!("{}", summary.to_text(what));
    }
    println!(
        "ratios (p50): guest HTTP / curl {:.2}, guest SNMP / snmpget {:.3}",
        guest_http.p50_us / curl.p50_us,
        guest_snmp.p50_us / snmpget.p50_us
    );
    Ok(())
}

/// One event of the probe's bench subject; the warm-up event opens the connections first.
fn guest(
    function: &LoadedFunction,
    subject: &str,
    request: &serde_json::Value,
    iterations: u64,
) -> anyhow::Result<Summary> {
    let run =
        |request: &serde_json::Value, expected: u64| -> anyhow::Result<(Vec<u64>, Duration)> {
            let event = new_event(Source::Invoke, subject, request.to_string().into_bytes());
            let start = Instant::now();
            let output = match function.call(&event).outcome {
                Ok(Some(output)) => output,
                Ok(None) => bail!("the probe returned nothing"),
                Err(error) => bail!("{subject} failed: {error}"),
            };
            let latencies: Vec<u64> = output
                .chunks_exact(4)
                .map(|c| u64::from(u32::from_le_bytes([c[0], c[1], c[2], c[3]])))
                .collect();
            if latencies.len() as u64 != expected {
                bail!("{subject} reported {} requests", latencies.len());
            }
            Ok((latencies, start.elapsed()))
        };
    let mut warm_up = request.clone();
    warm_up["iterations"] = 10.into();
    run(&warm_up, 10)?;
    let (mut latencies, elapsed) = run(request, iterations)?;
    Ok(Summary::from_latencies(&mut latencies, elapsed))
}

/// curl fetching `url` `iterations` times on one command line (one kept-alive connection),
/// each transfer's `time_total`; the first, which opens the connection, is left out.
fn curl(url: &str, ca: &std::path::Path, iterations: u64) -> anyhow::Result<Summary> {
    let mut command = Command::new("curl");
    command.args(["-s", "--cacert"]).arg(ca);
    for _ in 0..=iterations {
        command.args(["-o", "/dev/null", "-w", "%{time_total}\\n", url]);
    }
    let start = Instant::now();
    let output = command
        .output()
        .context("curl runs (Debian package `curl`)")?;
    let elapsed = start.elapsed();
    if !output.status.success() {
        bail!("curl failed: {}", String::from_utf8_lossy(&output.stderr));
    }
    let mut latencies: Vec<u64> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .skip(1)
        .filter_map(|line| line.trim().parse::<f64>().ok())
        .map(|seconds| (seconds * 1e9) as u64)
        .collect();
    if latencies.len() as u64 != iterations {
        bail!("curl reported {} transfers", latencies.len());
    }
    Ok(Summary::from_latencies(&mut latencies, elapsed))
}

/// `snmpget` run `iterations` times, each one's wall time.
fn snmpget(snmpd: &Snmpd, oid: &str, iterations: u64) -> anyhow::Result<Summary> {
    let start = Instant::now();
    let mut latencies = Vec::with_capacity(iterations as usize);
    for _ in 0..iterations {
        let began = Instant::now();
        if snmpd.get(oid).is_none() {
            bail!("snmpget got no answer");
        }
        latencies.push(began.elapsed().as_nanos() as u64);
    }
    Ok(Summary::from_latencies(&mut latencies, start.elapsed()))
}
