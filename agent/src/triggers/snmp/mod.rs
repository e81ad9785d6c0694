//! SNMP triggers: the trap and inform receiver (v1, v2c, v3 USM, built on async-snmp, behind
//! fogd's own socket: [`relay`]). Each accepted notification becomes an event (subject = trap
//! OID) offered to the functions whose `snmp_trap` trigger matches; informs are answered
//! before that, so the sender stops retrying. Every datagram read is counted once: as an
//! event, as a discovery probe answered, or as a refusal under its reason
//! (`fogd_inputs_rejected_total{source="snmp-trap"}`).

mod accept;
pub mod decode_failures;
mod engine;
mod error;
pub mod payload;
mod peek;
mod poll;
mod relay;
pub mod render;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use async_snmp::notification::NotificationReceiver;
use async_snmp::{PrivProtocol, SecurityLevel};
use tokio::sync::watch;

use super::Tasks;
use crate::config::{SnmpConfig, SnmpUser};
use crate::event::Source;
use crate::router::Dispatch;
use crate::snmp_client::credentials::read_keys;
use crate::telemetry::{Health, Metrics, Rejection};

use super::udp_socket::{self, BoundSocket};
use accept::AcceptList;
pub use error::SnmpError;
pub use poll::start as start_polls;

/// How often the receiver's own rejection counters are copied into fogd's metrics.
const COUNTER_SYNC: Duration = Duration::from_secs(1);

/// Binds the receiver and starts its task.
pub async fn start_receiver(
    config: &SnmpConfig,
    listen: &str,
    state_dir: &std::path::Path,
    dispatch: Dispatch,
    health: Arc<Health>,
) -> Result<Tasks, SnmpError> {
    let metrics = dispatch.metrics().clone();
    let bind_error = |reason: String| SnmpError::Bind {
        listen: listen.to_owned(),
        reason,
    };
    let address: SocketAddr = listen.parse().map_err(|e| bind_error(format!("{e}")))?;
    let requested = config.receive_buffer_kib as usize * 1024;
    let (public, local, public_bound) = udp_socket::bind(address, requested, "SNMP receiver")
        .await
        .map_err(|e| bind_error(e.to_string()))?;
    let accept = Arc::new(AcceptList::new(config, metrics.clone()));
    let mut builder = NotificationReceiver::builder()
        .bind(RECEIVER_ON_LOOPBACK)
        .acceptance_policy({
            let accept = accept.clone();
            move |envelope: &async_snmp::notification::NotificationEnvelope<'_>| {
                accept.decide(envelope)
            }
        });
    if !config.users.is_empty() {
        builder = builder.authoritative_engine(engine::load(state_dir, config.engine_enterprise)?);
    }
    let uses_des = config.users.iter().any(|user| {
        matches!(
            user.privacy.as_deref().map(str::parse::<PrivProtocol>),
            Some(Ok(PrivProtocol::Des | PrivProtocol::Des3))
        )
    });
    if uses_des {
        builder = builder.des_salt_state(engine::des_salt(state_dir)?);
    }
    for user in &config.users {
        let (auth, privacy) = read_keys(user)?;
        builder = builder
            .usm_user(user.name.clone(), |u| match (auth, privacy) {
                (Some((auth, auth_key)), Some((privacy, privacy_key))) => {
                    u.auth_priv(auth, auth_key, privacy, privacy_key)
                }
                (Some((auth, auth_key)), None) => u.auth(auth, auth_key),
                _ => Ok(u),
            })
            .map_err(|e| SnmpError::user(&user.name, e))?;
    }
    let receiver = builder
        .build()
        .await
        .map_err(|e| bind_error(e.to_string()))?;
    let inner = BoundSocket::find(receiver.local_addr());
    if let Some(inner) = &inner {
        // The relay forwards as fast as it reads: the receiver needs the same room.
        let _ = inner.set_receive_buffer(requested);
    }
    let senders = Arc::new(relay::Senders::new(Arc::new(public), receiver.local_addr()));
    accept.knows(senders.clone());
    health.set("snmp", true, format!("listening on {local}"));
    let mut tasks = Tasks::new("snmp");
    tasks.listening_on(local);
    tasks.push(tokio::spawn(relay::run(
        senders.clone(),
        public_bound,
        config.allowed_sources.clone(),
        metrics.clone(),
        tasks.shutdown_signal(),
    )));
    let shutdown = tasks.shutdown_signal();
    tasks.push(tokio::spawn(receive(
        receiver, inner, senders, dispatch, metrics, shutdown,
    )));
    Ok(tasks)
}

/// Where async-snmp's receiver listens: only the relay sends to it.
const RECEIVER_ON_LOOPBACK: &str = "127.0.0.1:0";

/// The least security level each user's notifications must have: what the user is
/// configured for.
pub(crate) fn required_levels(users: &[SnmpUser]) -> HashMap<Vec<u8>, SecurityLevel> {
    users
        .iter()
        .map(|user| {
            let level = match (&user.auth, &user.privacy) {
                (Some(_), Some(_)) => SecurityLevel::AuthPriv,
                (Some(_), None) => SecurityLevel::AuthNoPriv,
                _ => SecurityLevel::NoAuthNoPriv,
            };
            (user.name.as_bytes().to_vec(), level)
        })
        .collect()
}

/// Receives until shutdown. The counter sync runs beside it rather than in the same
/// `select!`: dropping a `recv` future mid-datagram could lose that notification. The
/// counters' starting values are taken here, before the first `recv`: taken in the sync
/// task, they could already include datagrams rejected before that task first ran.
async fn receive(
    receiver: NotificationReceiver,
    socket: Option<BoundSocket>,
    senders: Arc<relay::Senders>,
    dispatch: Dispatch,
    metrics: Arc<Metrics>,
    mut shutdown: watch::Receiver<bool>,
) {
    let counters = RejectionCounters::new(&receiver, socket.as_ref(), &senders);
    let sync = tokio::spawn(sync_counters(
        counters,
        receiver.clone(),
        socket,
        senders.clone(),
        metrics.clone(),
        shutdown.clone(),
    ));
    loop {
        tokio::select! {
            _ = shutdown.changed() => break,
            received = receiver.recv() => match received {
                Ok(received) => {
                    let sender = senders.sender(received.source);
                    let event = payload::to_event(&received.notification, sender);
                    dispatch.offer(event);
                }
                Err(error) => {
                    metrics.input_rejected(Source::SnmpTrap, Rejection::ReceiveError);
                    tracing::warn!(%error, "SNMP receive failed");
                }
            },
        }
    }
    let _ = sync.await;
}

async fn sync_counters(
    mut counters: RejectionCounters,
    receiver: NotificationReceiver,
    socket: Option<BoundSocket>,
    senders: Arc<relay::Senders>,
    metrics: Arc<Metrics>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(COUNTER_SYNC);
    loop {
        tokio::select! {
            _ = shutdown.changed() => return,
            _ = tick.tick() => counters.sync(&receiver, socket.as_ref(), &senders, &metrics),
        }
    }
}

/// Counters kept by async-snmp (RFC 3414 usmStats), the kernel (for the receiver's loopback
/// socket; the relay's own is synced with its reads) and the log hook for what async-snmp
/// only logs, as last seen; each sync adds what grew to `inputs_rejected_total`. An unknown
/// engine ID is a refusal only past the discovery probes, which usmStats counts alike.
struct RejectionCounters {
    seen: [u64; 8],
}

const REASONS: [Rejection; 8] = [
    Rejection::UnknownUser,
    Rejection::WrongDigest,
    Rejection::NotInTimeWindow,
    Rejection::UnsupportedSecurityLevel,
    Rejection::DecryptionError,
    Rejection::UnknownEngineId,
    Rejection::Malformed,
    Rejection::KernelBufferFull,
];

impl RejectionCounters {
    fn new(
        receiver: &NotificationReceiver,
        socket: Option<&BoundSocket>,
        senders: &relay::Senders,
    ) -> Self {
        Self {
            seen: Self::read(receiver, socket, senders),
        }
    }

    fn read(
        receiver: &NotificationReceiver,
        socket: Option<&BoundSocket>,
        senders: &relay::Senders,
    ) -> [u64; 8] {
        let logged = senders.logged_refusals();
        [
            u64::from(receiver.usm_unknown_usernames()),
            u64::from(receiver.usm_wrong_digests()),
            u64::from(receiver.usm_not_in_time_windows()) + logged.outside_time_window(),
            u64::from(receiver.usm_unsupported_sec_levels()),
            u64::from(receiver.usm_decryption_errors()) + logged.decryption_failed(),
            u64::from(receiver.usm_unknown_engine_ids()).saturating_sub(senders.discoveries())
                + logged.foreign_engine(),
            logged.malformed(),
            socket.and_then(BoundSocket::kernel_drops).unwrap_or(0),
        ]
    }

    fn sync(
        &mut self,
        receiver: &NotificationReceiver,
        socket: Option<&BoundSocket>,
        senders: &relay::Senders,
        metrics: &Metrics,
    ) {
        let now = Self::read(receiver, socket, senders);
        for ((reason, now), seen) in REASONS.iter().zip(now).zip(&mut self.seen) {
            if now > *seen {
                metrics.inputs_rejected_by(Source::SnmpTrap, *reason, now - *seen);
                *seen = now;
            }
        }
    }
}
