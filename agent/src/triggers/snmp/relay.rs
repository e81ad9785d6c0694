//! fogd's own socket in front of async-snmp's receiver. Every datagram is read here first,
//! so each is counted on arrival (`fogd_datagrams_received_total{source="snmp-trap"}`); a
//! sender outside `allowed_sources` is refused before any decoding or cryptography; a PDU a
//! trap receiver does not take is counted instead of vanishing inside async-snmp; discovery
//! probes are told apart from refusals. The rest goes on to the receiver over loopback, each
//! sender through a socket of its own, so the receiver's answers (inform acknowledgements,
//! discovery reports) find their way back, and the event names the sender, not the relay.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::net::UdpSocket;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::decode_failures::{self, LoggedRefusals};
use super::peek::{self, Kind};
use crate::config::{Network, source_allowed};
use crate::event::Source;
use crate::telemetry::{Metrics, Rejection, SpacedLog};
use crate::triggers::udp_socket::{self, BoundSocket};

/// Senders with a socket of their own; past this, the one heard from least recently gives
/// up its socket (an answer still on its way to it is lost). Well within a service's default
/// descriptor limit, beside fogd's other sockets and files.
const MAX_SENDERS: usize = 256;
/// The largest answer the receiver sends.
const MAX_ANSWER: usize = 65_535;

/// The senders the relay forwards for, by the loopback address the receiver sees them at.
pub struct Senders {
    links: Mutex<Links>,
    public: Arc<UdpSocket>,
    receiver: SocketAddr,
    /// One buffer for every sender's answers: they are copied out one at a time.
    answers: Arc<Mutex<Vec<u8>>>,
    discoveries: AtomicU64,
    refusals: Arc<LoggedRefusals>,
}

#[derive(Default)]
struct Links {
    by_sender: HashMap<SocketAddr, Link>,
    sender_at: HashMap<SocketAddr, SocketAddr>,
    /// Counts forwarded datagrams: the last count a link was used at orders links by age.
    clock: u64,
}

struct Link {
    /// Sends without waiting on tokio's readiness, which a new socket does not have yet.
    socket: std::net::UdpSocket,
    local: SocketAddr,
    last_used: u64,
    answers: JoinHandle<()>,
}

impl Senders {
    /// Senders reaching `receiver` through the relay listening on `public`.
    pub fn new(public: Arc<UdpSocket>, receiver: SocketAddr) -> Self {
        Self {
            links: Mutex::default(),
            public,
            receiver,
            answers: Arc::new(Mutex::new(vec![0; MAX_ANSWER])),
            discoveries: AtomicU64::new(0),
            refusals: Arc::default(),
        }
    }

    /// What the engine only logged about these senders' datagrams.
    pub fn logged_refusals(&self) -> &LoggedRefusals {
        &self.refusals
    }

    /// The sender whose datagrams reach the receiver from `relayed`; any other address is
    /// its own.
    pub fn sender(&self, relayed: SocketAddr) -> SocketAddr {
        lock(&self.links)
            .sender_at
            .get(&relayed)
            .copied()
            .unwrap_or(relayed)
    }

    /// The discovery probes forwarded so far. The receiver counts each in its
    /// usmStatsUnknownEngineIDs too; they are not refusals.
    pub fn discoveries(&self) -> u64 {
        self.discoveries.load(Ordering::Relaxed)
    }

    fn forward(&self, datagram: &[u8], sender: SocketAddr) -> std::io::Result<()> {
        let mut links = lock(&self.links);
        links.clock += 1;
        let now = links.clock;
        if !links.by_sender.contains_key(&sender) {
            if links.by_sender.len() >= MAX_SENDERS {
                links.forget_oldest();
            }
            let link = self.link_for(sender, now)?;
            decode_failures::watch(link.local, self.refusals.clone());
            links.sender_at.insert(link.local, sender);
            links.by_sender.insert(sender, link);
        }
        let link = links
            .by_sender
            .get_mut(&sender)
            .ok_or_else(|| std::io::Error::other("the sender's link is gone"))?;
        link.last_used = now;
        link.socket.send_to(datagram, self.receiver).map(drop)
    }

    fn link_for(&self, sender: SocketAddr, now: u64) -> std::io::Result<Link> {
        let socket = std::net::UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))?;
        socket.set_nonblocking(true)?;
        let local = socket.local_addr()?;
        let answers = tokio::spawn(carry_answers(
            UdpSocket::from_std(socket.try_clone()?)?,
            self.public.clone(),
            sender,
            self.receiver,
            self.answers.clone(),
        ));
        Ok(Link {
            socket,
            local,
            last_used: now,
            answers,
        })
    }
}

impl Links {
    fn forget_oldest(&mut self) {
        let oldest = self
            .by_sender
            .iter()
            .min_by_key(|(_, link)| link.last_used)
            .map(|(sender, _)| *sender);
        if let Some(link) = oldest.and_then(|sender| self.by_sender.remove(&sender)) {
            link.answers.abort();
            decode_failures::unwatch(link.local);
            self.sender_at.remove(&link.local);
        }
    }
}

impl Drop for Links {
    fn drop(&mut self) {
        for link in self.by_sender.values() {
            link.answers.abort();
            decode_failures::unwatch(link.local);
        }
    }
}

/// Sends what the receiver answers on `link` to `sender`, from the relay's own address,
/// where the sender expects it.
async fn carry_answers(
    link: UdpSocket,
    public: Arc<UdpSocket>,
    sender: SocketAddr,
    receiver: SocketAddr,
    buffer: Arc<Mutex<Vec<u8>>>,
) {
    loop {
        if link.readable().await.is_err() {
            return;
        }
        let answer = {
            let mut buffer = lock(&buffer);
            match link.try_recv_from(&mut buffer) {
                Ok((length, from)) if from == receiver => buffer[..length].to_vec(),
                Ok(_) => continue,
                Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => continue,
                Err(error) => {
                    tracing::debug!(%sender, %error, "SNMP answer not read");
                    continue;
                }
            }
        };
        if let Err(error) = public.send_to(&answer, sender).await {
            tracing::warn!(%sender, %error, "SNMP answer not sent");
        }
    }
}

/// Reads every datagram on `public` until `shutdown`: counts it, refuses what the receiver
/// must not see, and forwards the rest.
pub async fn run(
    senders: Arc<Senders>,
    bound: Option<BoundSocket>,
    allowed_sources: Vec<Network>,
    metrics: Arc<Metrics>,
    shutdown: watch::Receiver<bool>,
) {
    let public = senders.public.clone();
    let counted = metrics.clone();
    let failures = SpacedLog::default();
    udp_socket::receive_datagrams(
        &public,
        bound,
        Source::SnmpTrap,
        metrics,
        shutdown,
        |datagram, sender| {
            let refuse = |reason| counted.input_rejected(Source::SnmpTrap, reason);
            if !source_allowed(&allowed_sources, sender.ip()) {
                return refuse(Rejection::SourceNotAllowed);
            }
            match peek::classify(datagram) {
                Kind::NotANotification => return refuse(Rejection::NotANotification),
                Kind::Discovery => {
                    senders.discoveries.fetch_add(1, Ordering::Relaxed);
                    counted.snmp_discovery();
                }
                Kind::Receiver => {}
            }
            match senders.forward(datagram, sender) {
                Ok(()) => {}
                Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => {
                    refuse(Rejection::KernelBufferFull)
                }
                Err(error) => {
                    refuse(Rejection::ReceiveError);
                    if let Some(count) = failures.report() {
                        tracing::warn!(%sender, %error, count, "SNMP datagrams not passed to the receiver");
                    }
                }
            }
        },
    )
    .await;
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn past_the_bound_the_sender_heard_from_least_recently_gives_up_its_socket() {
        let public = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
        let receiver = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let senders = Senders::new(public, receiver.local_addr().unwrap());
        let sender = |index: usize| SocketAddr::from(([192, 0, 2, 1], 1000 + index as u16));
        for index in 0..MAX_SENDERS {
            senders.forward(b"trap", sender(index)).unwrap();
        }
        senders.forward(b"again", sender(0)).unwrap();
        senders.forward(b"new", sender(MAX_SENDERS)).unwrap();

        let newest = {
            let links = lock(&senders.links);
            assert_eq!(links.by_sender.len(), MAX_SENDERS);
            assert_eq!(links.sender_at.len(), MAX_SENDERS);
            assert!(links.by_sender.contains_key(&sender(0)), "heard from again");
            assert!(!links.by_sender.contains_key(&sender(1)), "the oldest went");
            links.by_sender[&sender(MAX_SENDERS)].local
        };
        assert_eq!(senders.sender(newest), sender(MAX_SENDERS));

        let mut datagram = [0; 16];
        let (length, from) = receiver.recv_from(&mut datagram).await.unwrap();
        assert_eq!(&datagram[..length], b"trap");
        assert_eq!(senders.sender(from), sender(0));
    }
}
