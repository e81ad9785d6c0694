//! The syslog trigger: UDP, TCP and TLS listeners (RFC 5426, RFC 6587, RFC 5425) whose messages become
//! events offered to the functions whose `syslog` trigger filters pass them. Refused inputs
//! are counted in `fogd_inputs_rejected_total{source="syslog"}`, messages cut to
//! `max_message_bytes` in `fogd_inputs_truncated_total{source="syslog"}`.

pub mod framing;
pub mod message;
mod tls;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use thiserror::Error;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

use super::Tasks;
use super::udp_socket::{self, BoundSocket};
use crate::config::{Network, SyslogConfig, source_allowed};
use crate::event::Source;
use crate::router::Dispatch;
use crate::telemetry::{Health, Metrics, Rejection};

use framing::Framer;
use message::Transport;

/// Bytes read from a TCP connection at a time.
const READ_CHUNK: usize = 16 * 1024;

#[derive(Debug, Error)]
pub enum SyslogError {
    #[error("cannot listen for syslog on {transport} {address}: {source}")]
    Bind {
        transport: &'static str,
        address: SocketAddr,
        source: std::io::Error,
    },
    #[error("syslog TLS listener {listen}: {reason}")]
    Tls { listen: SocketAddr, reason: String },
    #[error("syslog TLS listener {listen}: cannot read {path}: {source}")]
    Read {
        listen: SocketAddr,
        path: std::path::PathBuf,
        source: std::io::Error,
    },
}

/// What every listener shares.
struct Receiver {
    allowed: Vec<Network>,
    max_message_bytes: usize,
    idle_timeout: Duration,
    dispatch: Dispatch,
    metrics: Arc<Metrics>,
}

impl Receiver {
    fn allows(&self, peer: &SocketAddr) -> bool {
        source_allowed(&self.allowed, peer.ip())
    }

    fn reject(&self, reason: Rejection) {
        self.metrics.input_rejected(Source::Syslog, reason);
    }

    /// Offers a datagram's message: a full queue drops it (and counts the drop).
    fn offer(&self, bytes: &[u8], peer: SocketAddr, truncated: bool) {
        self.count_truncated(truncated);
        self.dispatch
            .offer(message::event(bytes, peer, Transport::Udp, truncated));
    }

    /// Delivers a stream's message, waiting for room in full queues: TCP then slows the
    /// sender instead of fogd losing its messages.
    async fn deliver(&self, frame: framing::Frame, peer: SocketAddr, transport: Transport) {
        self.count_truncated(frame.truncated);
        let event = message::event(&frame.message, peer, transport, frame.truncated);
        self.dispatch.deliver(event).await;
    }

    fn count_truncated(&self, truncated: bool) {
        if truncated {
            self.metrics.input_truncated(Source::Syslog);
        }
    }
}

/// Binds every listener and starts their tasks; the trigger lists the UDP addresses, then
/// the TCP ones, then the TLS ones, as bound.
pub async fn start(
    config: &SyslogConfig,
    dispatch: Dispatch,
    health: Arc<Health>,
) -> Result<Tasks, SyslogError> {
    let receiver = Arc::new(Receiver {
        allowed: config.allowed_sources.clone(),
        max_message_bytes: config.max_message_bytes,
        idle_timeout: config.idle_timeout.as_duration(),
        metrics: dispatch.metrics().clone(),
        dispatch,
    });
    let mut tasks = Tasks::new("syslog");
    let mut listening = Vec::new();
    for &address in &config.udp {
        let buffer = config.receive_buffer_kib as usize * 1024;
        let (socket, local, bound) = udp_socket::bind(address, buffer, "syslog receiver on UDP")
            .await
            .map_err(|source| SyslogError::Bind {
                transport: "udp",
                address,
                source,
            })?;
        listening.push(format!("udp {local}"));
        tasks.listening_on(local);
        tasks.push(tokio::spawn(receive_datagrams(
            socket,
            bound,
            receiver.clone(),
            tasks.shutdown_signal(),
        )));
    }
    let connections = Arc::new(Semaphore::new(config.max_connections));
    let plain = config.tcp.iter().map(|&address| Ok((address, None)));
    let secured = config
        .tls
        .iter()
        .map(|tls| Ok((tls.listen, Some(tls::acceptor(tls)?))));
    for listener in plain.chain(secured) {
        let (address, acceptor) = listener?;
        let transport = if acceptor.is_some() { "tls" } else { "tcp" };
        let bind = |source| SyslogError::Bind {
            transport,
            address,
            source,
        };
        let listener = TcpListener::bind(address).await.map_err(bind)?;
        let local = listener.local_addr().map_err(bind)?;
        tracing::info!(listen = %local, transport, "syslog receiver listening");
        listening.push(format!("{transport} {local}"));
        tasks.listening_on(local);
        tasks.push(tokio::spawn(accept_connections(
            listener,
            acceptor,
            receiver.clone(),
            connections.clone(),
            tasks.shutdown_signal(),
        )));
    }
    health.set(
        "syslog",
        true,
        format!("listening on {}", listening.join(", ")),
    );
    Ok(tasks)
}

/// One message per datagram (RFC 5426).
async fn receive_datagrams(
    socket: UdpSocket,
    bound: Option<BoundSocket>,
    receiver: Arc<Receiver>,
    shutdown: watch::Receiver<bool>,
) {
    let metrics = receiver.metrics.clone();
    udp_socket::receive_datagrams(
        &socket,
        bound,
        Source::Syslog,
        metrics,
        shutdown,
        |datagram, peer| {
            if !receiver.allows(&peer) {
                receiver.reject(Rejection::SourceNotAllowed);
                return;
            }
            let datagram = datagram.strip_suffix(b"\n").unwrap_or(datagram);
            let kept = datagram.len().min(receiver.max_message_bytes);
            receiver.offer(&datagram[..kept], peer, kept < datagram.len());
        },
    )
    .await;
}

async fn accept_connections(
    listener: TcpListener,
    acceptor: Option<TlsAcceptor>,
    receiver: Arc<Receiver>,
    connections: Arc<Semaphore>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut open = JoinSet::new();
    loop {
        tokio::select! {
            _ = shutdown.changed() => break,
            Some(_) = open.join_next(), if !open.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    if !receiver.allows(&peer) {
                        receiver.reject(Rejection::SourceNotAllowed);
                        continue;
                    }
                    let Ok(permit) = connections.clone().try_acquire_owned() else {
                        receiver.reject(Rejection::TooManyConnections);
                        tracing::warn!(%peer, "syslog connection refused: syslog.max_connections are open");
                        continue;
                    };
                    let receiver = receiver.clone();
                    let shutdown = shutdown.clone();
                    let acceptor = acceptor.clone();
                    open.spawn(async move {
                        match acceptor {
                            None => read_connection(stream, peer, Transport::Tcp, &receiver, shutdown).await,
                            Some(acceptor) => {
                                let handshake = tokio::time::timeout(receiver.idle_timeout, acceptor.accept(stream));
                                match handshake.await {
                                    Ok(Ok(stream)) => read_connection(stream, peer, Transport::Tls, &receiver, shutdown).await,
                                    Ok(Err(error)) => {
                                        receiver.reject(Rejection::TlsHandshake);
                                        tracing::warn!(%peer, %error, "syslog TLS handshake failed");
                                    }
                                    Err(_) => receiver.reject(Rejection::Idle),
                                }
                            }
                        }
                        drop(permit);
                    });
                }
                Err(error) => {
                    receiver.reject(Rejection::ReceiveError);
                    tracing::warn!(%error, "syslog accept failed");
                }
            },
        }
    }
    open.join_all().await;
}

/// Reads messages from one connection until it closes, idles, breaks its framing or fogd
/// stops.
async fn read_connection(
    mut stream: impl AsyncRead + Unpin,
    peer: SocketAddr,
    transport: Transport,
    receiver: &Receiver,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut framer = Framer::new(receiver.max_message_bytes);
    let mut buffer = vec![0; READ_CHUNK];
    let mut frames = Vec::new();
    loop {
        let read = tokio::select! {
            _ = shutdown.changed() => return,
            read = tokio::time::timeout(receiver.idle_timeout, stream.read(&mut buffer)) => read,
        };
        match read {
            Err(_) => {
                tracing::debug!(%peer, "syslog connection idle; closed");
                receiver.reject(Rejection::Idle);
                return;
            }
            Ok(Ok(0)) => break,
            Ok(Ok(length)) => {
                let framed = framer.feed(&buffer[..length], |frame| frames.push(frame));
                // Messages complete before a framing error are still delivered.
                for frame in frames.drain(..) {
                    receiver.deliver(frame, peer, transport).await;
                }
                if let Err(error) = framed {
                    receiver.reject(Rejection::Malformed);
                    tracing::warn!(%peer, %error, "syslog connection closed: its framing is broken");
                    return;
                }
            }
            Ok(Err(error)) => {
                tracing::debug!(%peer, %error, "syslog connection failed");
                break;
            }
        }
    }
    match framer.finish() {
        Ok(Some(frame)) => receiver.deliver(frame, peer, transport).await,
        Ok(None) => {}
        Err(error) => {
            receiver.reject(Rejection::Malformed);
            tracing::warn!(%peer, %error, "syslog connection ended mid-message");
        }
    }
}
