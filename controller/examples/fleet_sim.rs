//! A simulated fleet for rollout benchmarks (`provisioning/bench-fleet.sh`): N devices in
//! one process, each with its own MQTT connection, following its desired topic and
//! reporting as fogd does. Each desired document is verified and parsed with fogd's own code,
//! then the device walks through downloading, staging, probing and watching to committed
//! without files or functions: what is measured is the control plane (broker, fogctl's
//! waves, the reports' fan-in), not the device's work, which `bench-deploy.sh` measures.
//!
//!   cargo run --release -p fogctl --example fleet_sim -- --broker 127.0.0.1:1883 \
//!       --devices 1000 --group sim --trust fleet.key.pub
//!
//! Prints `ready N` once every device is connected, subscribed and reported, then runs
//! until stopped.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use fogd_fleet::config::BrokerSpec;
use fogd_fleet::deployment::{Deployment, Report, SyncState, TrustedKeys, topics};
use fogd_fleet::mqtt::ConnectionSettings;
use fogd_fleet::mqtt::control::{ControlConnection, ControlEvent};
use tokio::sync::mpsc;

#[derive(Parser)]
struct Args {
    #[arg(long, value_name = "HOST:PORT")]
    broker: String,
    #[arg(long, default_value_t = 1000)]
    devices: usize,
    /// Device ids are `<prefix><n>`.
    #[arg(long, default_value = "sim-")]
    prefix: String,
    #[arg(long, default_value = "sim")]
    group: String,
    /// The fleet's public key file (hex).
    #[arg(long, value_name = "FILE")]
    trust: std::path::PathBuf,
    /// How long each device watches a revision before committing it.
    #[arg(long, default_value_t = 0)]
    watch_ms: u64,
    /// Devices (by id) that roll every revision back at the end of its window instead of
    /// committing it, as if a health gate tripped.
    #[arg(long, value_name = "ID,...", value_delimiter = ',')]
    roll_back: Vec<String>,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let key = std::fs::read_to_string(&args.trust)
        .with_context(|| format!("cannot read {}", args.trust.display()))?;
    let trusted = Arc::new(TrustedKeys::from_hex([key.trim()])?);
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(async move {
            let (ready, mut readiness) = mpsc::channel(args.devices.max(1));
            let width = args.devices.to_string().len();
            for index in 1..=args.devices {
                let device = format!("{}{index:0width$}", args.prefix);
                let spec: BrokerSpec = serde_json::from_value(serde_json::json!({
                    "name": "fleet",
                    "address": args.broker,
                    "client_id": format!("fleet-sim-{device}"),
                    "session_expiry": "0s",
                    "reconnect_min": "100ms",
                    "reconnect_max": "2s",
                }))?;
                let settings = ConnectionSettings::load(&spec)?;
                let gate_trips = args.roll_back.contains(&device);
                tokio::spawn(simulate(
                    settings,
                    Behaviour {
                        group: args.group.clone(),
                        watch: Duration::from_millis(args.watch_ms),
                        gate_trips,
                    },
                    device,
                    trusted.clone(),
                    ready.clone(),
                ));
            }
            for _ in 0..args.devices {
                readiness.recv().await;
            }
            println!("ready {}", args.devices);
            tokio::signal::ctrl_c().await?;
            Ok(())
        })
}

/// What a simulated device does with a revision.
struct Behaviour {
    group: String,
    /// How long it watches a revision.
    watch: Duration,
    /// Whether it rolls the revision back when the window ends.
    gate_trips: bool,
}

async fn simulate(
    settings: ConnectionSettings,
    behaviour: Behaviour,
    device: String,
    trusted: Arc<TrustedKeys>,
    ready: mpsc::Sender<()>,
) {
    let mut connection = ControlConnection::open(&settings, vec![topics::device_desired(&device)]);
    let reported = topics::reported(&device);
    let mut report = Report::new(&device, &[behaviour.group]);
    // Numbered as fogd numbers its reports.
    let publish = |connection: &mut ControlConnection, report: &mut Report| {
        report.sequence += 1;
        if let Ok(payload) = serde_json::to_vec(report) {
            let _ = connection.publish(&reported, payload, true);
        }
    };
    let mut announced = false;
    // The revision being watched, and when its window ends.
    let mut watching: Option<(u64, tokio::time::Instant)> = None;
    loop {
        let window_ends = async {
            match watching {
                Some((_, ends)) => tokio::time::sleep_until(ends).await,
                None => std::future::pending().await,
            }
        };
        let event = tokio::select! {
            event = connection.next() => event,
            () = window_ends => {
                if let Some((revision, _)) = watching.take() {
                    if behaviour.gate_trips {
                        report.running = report.committed;
                        report.enter(SyncState::RolledBack, Some(revision));
                        report.reason = Some("simulated: a health gate tripped".to_owned());
                    } else {
                        report.committed = Some(revision);
                        report.running = Some(revision);
                        report.enter(SyncState::Committed, Some(revision));
                    }
                    publish(&mut connection, &mut report);
                }
                continue;
            }
        };
        match event {
            ControlEvent::Connected => publish(&mut connection, &mut report),
            ControlEvent::Subscribed if !announced => {
                announced = connection.flush(Duration::from_secs(30)).await;
                if announced {
                    let _ = ready.send(()).await;
                }
            }
            // A document for the committed revision (fogctl puts it back after a stopped
            // rollout) needs nothing.
            ControlEvent::Message { payload, .. }
                if !payload.is_empty() && Some(revision_of(&payload)) != report.committed =>
            {
                let parsed = trusted
                    .open(&payload)
                    .map_err(|error| error.to_string())
                    .and_then(|document| {
                        Deployment::parse(document, report.committed)
                            .map_err(|error| error.to_string())
                    });
                match parsed {
                    Ok(deployment) => {
                        let revision = deployment.revision;
                        for state in [
                            SyncState::Downloading,
                            SyncState::Staging,
                            SyncState::Probing,
                            SyncState::Watching,
                        ] {
                            report.enter(state, Some(revision));
                            publish(&mut connection, &mut report);
                        }
                        watching = Some((revision, tokio::time::Instant::now() + behaviour.watch));
                    }
                    Err(reason) => {
                        report.enter(SyncState::Rejected, None);
                        report.reason = Some(reason);
                        publish(&mut connection, &mut report);
                    }
                }
            }
            _ => {}
        }
    }
}

/// The revision a document claims, before its signature is checked.
fn revision_of(payload: &[u8]) -> u64 {
    serde_json::from_slice::<serde_json::Value>(payload)
        .ok()
        .and_then(|value| value["document"]["revision"].as_u64())
        .unwrap_or(0)
}
