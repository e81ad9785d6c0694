//! A receiver's UDP socket as the kernel sees it: its receive buffer and the datagrams the
//! kernel dropped because that buffer was full. async-snmp binds the socket itself and does
//! not expose it, so it is found among this process's descriptors by its bound address.

use std::net::SocketAddr;
use std::os::fd::RawFd;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::sync::watch;

use crate::event::Source;
use crate::telemetry::{Metrics, Rejection};

/// The receiver's socket: its descriptor and the inode `/proc/net/udp*` lists it under.
pub struct BoundSocket {
    fd: RawFd,
    inode: u64,
}

impl BoundSocket {
    /// The UDP socket of this process bound to exactly `address`.
    pub fn find(address: SocketAddr) -> Option<Self> {
        let entries = std::fs::read_dir("/proc/self/fd").ok()?;
        for entry in entries.flatten() {
            let Some(fd) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<RawFd>().ok())
            else {
                continue;
            };
            if is_udp_socket_bound_to(fd, address) {
                return Some(Self {
                    fd,
                    inode: inode(fd)?,
                });
            }
        }
        None
    }

    /// A socket this process opened itself; it must outlive the returned value.
    pub fn of(socket: &impl std::os::fd::AsRawFd) -> Option<Self> {
        let fd = socket.as_raw_fd();
        Some(Self {
            fd,
            inode: inode(fd)?,
        })
    }

    /// Asks for a receive buffer of `bytes` and returns what the kernel granted. Linux
    /// reports twice the usable size, and caps the request at `net.core.rmem_max` unless the
    /// process may pass it (CAP_NET_ADMIN, `SO_RCVBUFFORCE`).
    pub fn set_receive_buffer(&self, bytes: usize) -> std::io::Result<usize> {
        let requested = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
        let set = |option: libc::c_int| {
            // SAFETY: setsockopt on a descriptor this process owns, with an int option value
            // of the right size.
            unsafe {
                libc::setsockopt(
                    self.fd,
                    libc::SOL_SOCKET,
                    option,
                    (&raw const requested).cast(),
                    size_of::<libc::c_int>() as libc::socklen_t,
                ) == 0
            }
        };
        if !set(libc::SO_RCVBUFFORCE) && !set(libc::SO_RCVBUF) {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: getsockopt on a descriptor this process owns, into an int of the right size.
        unsafe {
            let mut granted: libc::c_int = 0;
            let mut length = size_of::<libc::c_int>() as libc::socklen_t;
            if libc::getsockopt(
                self.fd,
                libc::SOL_SOCKET,
                libc::SO_RCVBUF,
                (&raw mut granted).cast(),
                &raw mut length,
            ) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(usize::try_from(granted).unwrap_or(0))
        }
    }

    /// Datagrams the kernel dropped for this socket since it was opened.
    pub fn kernel_drops(&self) -> Option<u64> {
        ["/proc/net/udp", "/proc/net/udp6"]
            .iter()
            .filter_map(|table| std::fs::read_to_string(table).ok())
            .find_map(|text| drops_for_inode(&text, self.inode))
    }
}

/// How often the kernel's drop counts are copied into fogd's metrics.
const KERNEL_DROPS_SYNC: Duration = Duration::from_secs(1);

/// The largest UDP datagram.
const MAX_DATAGRAM: usize = 65_535;

/// Hands every datagram `socket` receives to `datagram` until `shutdown`, counting each
/// (`fogd_datagrams_received_total`), and receive errors and the kernel's drops (the socket's
/// `bound` view) as `source`'s rejections.
pub async fn receive_datagrams(
    socket: &UdpSocket,
    bound: Option<BoundSocket>,
    source: Source,
    metrics: Arc<Metrics>,
    mut shutdown: watch::Receiver<bool>,
    mut datagram: impl FnMut(&[u8], SocketAddr),
) {
    let drops = tokio::spawn(sync_kernel_drops(
        bound,
        source,
        metrics.clone(),
        shutdown.clone(),
    ));
    let datagrams = metrics.datagrams_received(source);
    let mut buffer = vec![0; MAX_DATAGRAM];
    loop {
        tokio::select! {
            _ = shutdown.changed() => break,
            received = socket.recv_from(&mut buffer) => match received {
                Ok((length, peer)) => {
                    datagrams.inc();
                    datagram(&buffer[..length], peer)
                }
                Err(error) => {
                    metrics.input_rejected(source, Rejection::ReceiveError);
                    tracing::warn!(%error, source = source.as_str(), "UDP receive failed");
                }
            },
        }
    }
    let _ = drops.await;
}

/// Adds the datagrams the kernel dropped for `socket` since the last look to `source`'s
/// rejections (`kernel_buffer_full`), until `shutdown`.
async fn sync_kernel_drops(
    socket: Option<BoundSocket>,
    source: Source,
    metrics: Arc<Metrics>,
    mut shutdown: watch::Receiver<bool>,
) {
    let Some(socket) = socket else { return };
    let mut seen = socket.kernel_drops().unwrap_or(0);
    let mut tick = tokio::time::interval(KERNEL_DROPS_SYNC);
    loop {
        tokio::select! {
            _ = shutdown.changed() => return,
            _ = tick.tick() => {
                let now = socket.kernel_drops().unwrap_or(seen);
                if now > seen {
                    metrics.inputs_rejected_by(source, Rejection::KernelBufferFull, now - seen);
                    seen = now;
                }
            }
        }
    }
}

/// Binds a receiver's socket to `address` with a receive buffer of `buffer_bytes` (as far as
/// the kernel grants), logging that `receiver` listens; returns it, where it listens, and the
/// view that reads its kernel drops.
pub async fn bind(
    address: SocketAddr,
    buffer_bytes: usize,
    receiver: &str,
) -> std::io::Result<(UdpSocket, SocketAddr, Option<BoundSocket>)> {
    let socket = UdpSocket::bind(address).await?;
    let local = socket.local_addr()?;
    let bound = BoundSocket::of(&socket);
    size_and_announce(bound.as_ref(), buffer_bytes, receiver, local);
    Ok((socket, local, bound))
}

/// Sizes a receiver's buffer to `requested` bytes and logs that `receiver` (e.g. "SNMP
/// receiver") listens on `local`, with what the kernel granted.
pub fn size_and_announce(
    socket: Option<&BoundSocket>,
    requested: usize,
    receiver: &str,
    local: SocketAddr,
) {
    match socket.map(|s| s.set_receive_buffer(requested)) {
        // Linux reports twice what it keeps for datagrams; less than twice the request
        // means it was capped.
        Some(Ok(granted)) if granted / 2 < requested => {
            tracing::warn!(listen = %local, receive_buffer_bytes = granted / 2, requested_bytes = requested, "{receiver} listening with a smaller receive buffer than asked: the kernel caps it at net.core.rmem_max (raise it with sysctl, or run with CAP_NET_ADMIN)")
        }
        Some(Ok(granted)) => {
            tracing::info!(listen = %local, receive_buffer_bytes = granted / 2, "{receiver} listening")
        }
        Some(Err(error)) => {
            tracing::warn!(listen = %local, %error, "{receiver} listening; cannot size its receive buffer")
        }
        None => {
            tracing::warn!(listen = %local, "{receiver} listening; its socket was not found to size its buffer")
        }
    }
}

fn is_udp_socket_bound_to(fd: RawFd, address: SocketAddr) -> bool {
    // SAFETY: getsockopt/getsockname write at most the sizes passed; a descriptor that is
    // not a socket makes them fail, which is checked.
    unsafe {
        let mut kind: libc::c_int = 0;
        let mut length = size_of::<libc::c_int>() as libc::socklen_t;
        if libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_TYPE,
            (&raw mut kind).cast(),
            &raw mut length,
        ) != 0
            || kind != libc::SOCK_DGRAM
        {
            return false;
        }
        let mut storage: libc::sockaddr_storage = std::mem::zeroed();
        let mut length = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        if libc::getsockname(fd, (&raw mut storage).cast(), &raw mut length) != 0 {
            return false;
        }
        socket_address(&storage) == Some(address)
    }
}

fn socket_address(storage: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match i32::from(storage.ss_family) {
        libc::AF_INET => {
            // SAFETY: the family says the storage holds a sockaddr_in.
            let v4 = unsafe { &*(std::ptr::from_ref(storage).cast::<libc::sockaddr_in>()) };
            Some(SocketAddr::from((
                u32::from_be(v4.sin_addr.s_addr).to_be_bytes(),
                u16::from_be(v4.sin_port),
            )))
        }
        libc::AF_INET6 => {
            // SAFETY: the family says the storage holds a sockaddr_in6.
            let v6 = unsafe { &*(std::ptr::from_ref(storage).cast::<libc::sockaddr_in6>()) };
            Some(SocketAddr::from((
                v6.sin6_addr.s6_addr,
                u16::from_be(v6.sin6_port),
            )))
        }
        _ => None,
    }
}

/// The socket's inode, from its `/proc/self/fd` link (`socket:[N]`); the same on 32- and
/// 64-bit targets, unlike `stat.st_ino`.
fn inode(fd: RawFd) -> Option<u64> {
    let link = std::fs::read_link(format!("/proc/self/fd/{fd}")).ok()?;
    link.to_str()?
        .strip_prefix("socket:[")?
        .strip_suffix(']')?
        .parse()
        .ok()
}

/// The `drops` column (the last) of the `/proc/net/udp` row whose `inode` column matches.
fn drops_for_inode(table: &str, inode: u64) -> Option<u64> {
    table.lines().skip(1).find_map(|line| {
        let columns: Vec<&str> = line.split_whitespace().collect();
        let row_inode: u64 = columns.get(9)?.parse().ok()?;
        (row_inode == inode).then(|| columns.last()?.parse().ok())?
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_socket_sizes_its_buffer_and_reads_its_drops() {
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let found = BoundSocket::find(socket.local_addr().unwrap()).expect("socket found");
        assert!(found.set_receive_buffer(256 * 1024).unwrap() >= 4096);
        assert_eq!(found.kernel_drops(), Some(0));
    }

    #[test]
    fn reads_the_drops_column_of_the_matching_row() {
        let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops\n\
          1: 0100007F:A411 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 4242 2 0000000000000000 17\n";
        assert_eq!(drops_for_inode(table, 4242), Some(17));
        assert_eq!(drops_for_inode(table, 1), None);
    }
}
