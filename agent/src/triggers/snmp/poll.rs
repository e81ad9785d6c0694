//! SNMP poll jobs: each job is its own task with its own client, so a slow or dead target
//! delays nobody else, and runs one poll at a time (a tick that comes while the previous
//! poll is still waiting is skipped, so a target never gets more than one request in flight
//! from a job).

use std::sync::Arc;
use std::time::Duration;

use async_snmp::{Auth, Client, Oid, Retry, VarBind};
use serde_json::json;
use tokio::sync::watch;
use tokio::time::MissedTickBehavior;

use crate::config::{PollJob, SnmpConfig};
use crate::event::{Source, attributes, new_event};
use crate::router::Dispatch;
use crate::snmp_client::credentials::client_auth;
use crate::telemetry::{Health, Rejection};

use super::SnmpError;
use crate::triggers::Tasks;

/// GETBULK repetitions per walk request.
const MAX_REPETITIONS: u32 = 25;

/// Starts one task per job.
pub fn start(
    config: &SnmpConfig,
    dispatch: &Dispatch,
    health: &Arc<Health>,
) -> Result<Tasks, SnmpError> {
    let mut tasks = Tasks::new("snmp-poll");
    for job in &config.polls {
        let auth = auth(config, job)?;
        let get = job
            .get
            .iter()
            .map(|oid| Oid::parse(oid))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| SnmpError::poll_job(&job.name, e))?;
        let walk = job
            .walk
            .as_deref()
            .map(Oid::parse)
            .transpose()
            .map_err(|e| SnmpError::poll_job(&job.name, e))?;
        tasks.push(tokio::spawn(run(
            job.clone(),
            auth,
            get,
            walk,
            dispatch.clone(),
            health.clone(),
            tasks.shutdown_signal(),
        )));
    }
    Ok(tasks)
}

fn auth(config: &SnmpConfig, job: &PollJob) -> Result<Auth, SnmpError> {
    let community = job.community.as_ref().map(|c| c.clone().into_bytes());
    Ok(client_auth(&config.users, community, job.user.as_deref())?)
}

async fn run(
    job: PollJob,
    auth: Auth,
    get: Vec<Oid>,
    walk: Option<Oid>,
    dispatch: Dispatch,
    health: Arc<Health>,
    mut shutdown: watch::Receiver<bool>,
) {
    let component = format!("snmp/poll/{}", job.name);
    let mut ticker = tokio::time::interval(job.every.as_duration());
    ticker.set_missed_tick_behavior(MissedTickBehavior::Skip);
    let mut client = None;
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = shutdown.changed() => return,
        }
        if client.is_none() {
            match connect(&job, auth.clone()).await {
                Ok(connected) => client = Some(connected),
                Err(error) => {
                    tracing::warn!(job = %job.name, target = %job.target, %error, "SNMP poll cannot start");
                    health.set(component.clone(), false, error.to_string());
                    continue;
                }
            }
        }
        let Some(connected) = &client else { continue };
        let poll = tokio::select! {
            result = poll(connected, &get, walk.as_ref()) => result,
            _ = shutdown.changed() => return,
        };
        match poll {
            Ok(varbinds) => {
                health.set(
                    component.clone(),
                    true,
                    format!("{} values", varbinds.len()),
                );
                let payload = json!({
                    "job": job.name,
                    "target": job.target,
                    "varbinds": varbinds.iter().map(super::render::varbind).collect::<Vec<_>>(),
                });
                let mut event = new_event(
                    Source::SnmpPoll,
                    job.name.clone(),
                    payload.to_string().into_bytes(),
                );
                event.attributes = vec![(attributes::SNMP_TARGET.into(), job.target.clone())];
                dispatch.offer(event);
            }
            Err(error) => {
                tracing::warn!(job = %job.name, target = %job.target, %error, "SNMP poll failed");
                dispatch
                    .metrics()
                    .input_rejected(Source::SnmpPoll, Rejection::Failed);
                health.set(component.clone(), false, error.to_string());
            }
        }
    }
}

async fn connect(job: &PollJob, auth: Auth) -> Result<Client<async_snmp::UdpHandle>, SnmpError> {
    let retry = Retry::fixed(job.retries, Duration::ZERO)
        .map_err(|e| SnmpError::poll_job(&job.name, format!("retries: {e}")))?;
    Client::builder(job.target.as_str(), auth)
        .request_timeout(job.timeout.as_duration())
        .retry(retry)
        .connect()
        .await
        .map_err(|e| SnmpError::poll_job(&job.name, e))
}

async fn poll(
    client: &Client<async_snmp::UdpHandle>,
    get: &[Oid],
    walk: Option<&Oid>,
) -> async_snmp::Result<Vec<VarBind>> {
    let mut varbinds = Vec::new();
    if !get.is_empty() {
        varbinds.extend(client.get_many(get).await?.varbinds);
    }
    if let Some(subtree) = walk {
        varbinds.extend(
            client
                .bulk_walk(subtree.clone(), MAX_REPETITIONS)?
                .collect()
                .await?,
        );
    }
    Ok(varbinds)
}
