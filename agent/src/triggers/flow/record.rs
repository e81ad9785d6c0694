//! One flow record, whatever protocol exported it: the fields fogd aggregates and batches.

use std::net::{IpAddr, Ipv4Addr};

use serde::Serialize;

/// A flow (or, from sFlow, one sampled packet) with its counts already scaled by the
/// exporter's sampling rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct FlowRecord {
    /// The address the export came from.
    pub exporter: IpAddr,
    pub src_addr: IpAddr,
    pub dst_addr: IpAddr,
    pub src_port: u16,
    pub dst_port: u16,
    /// IP protocol number (6 TCP, 17 UDP, 1 ICMP).
    pub protocol: u8,
    /// TCP flags seen over the flow, OR-ed (FIN 0x01, SYN 0x02, RST 0x04, ACK 0x10).
    pub tcp_flags: u8,
    pub packets: u64,
    pub bytes: u64,
    /// SNMP ifIndex of the interfaces the flow came in and went out on (0 when unknown).
    pub input_interface: u32,
    pub output_interface: u32,
    /// One in how many packets the exporter sampled; packets and bytes are multiplied by it.
    pub sampling_rate: u32,
}

pub const TCP: u8 = 6;
pub const UDP: u8 = 17;
pub const ICMP: u8 = 1;

const SYN: u8 = 0x02;
const RST: u8 = 0x04;
const ACK: u8 = 0x10;

impl FlowRecord {
    /// A record with every field empty, for decoders to fill in.
    pub fn empty(exporter: IpAddr) -> Self {
        let unspecified = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
        Self {
            exporter,
            src_addr: unspecified,
            dst_addr: unspecified,
            src_port: 0,
            dst_port: 0,
            protocol: 0,
            tcp_flags: 0,
            packets: 0,
            bytes: 0,
            input_interface: 0,
            output_interface: 0,
            sampling_rate: 1,
        }
    }

    /// Multiplies the counts by a sampling rate (0 and 1 both mean every packet).
    pub fn scaled(mut self, rate: u32) -> Self {
        let rate = rate.max(1);
        self.sampling_rate = rate;
        self.packets = self.packets.saturating_mul(u64::from(rate));
        self.bytes = self.bytes.saturating_mul(u64::from(rate));
        self
    }

    fn is_tcp_with(&self, flags: u8) -> bool {
        self.protocol == TCP && self.tcp_flags & flags == flags
    }

    pub fn has_syn(&self) -> bool {
        self.is_tcp_with(SYN)
    }

    /// A connection attempt never answered: what a SYN flood is made of.
    pub fn has_syn_without_ack(&self) -> bool {
        self.has_syn() && self.tcp_flags & ACK == 0
    }

    pub fn has_rst(&self) -> bool {
        self.is_tcp_with(RST)
    }
}

/// The name events use for an IP protocol number, or the number itself.
pub fn protocol_name(protocol: u8) -> std::borrow::Cow<'static, str> {
    match protocol {
        ICMP => "icmp".into(),
        TCP => "tcp".into(),
        UDP => "udp".into(),
        47 => "gre".into(),
        50 => "esp".into(),
        58 => "ipv6-icmp".into(),
        132 => "sctp".into(),
        other => other.to_string().into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn syn_without_ack_is_only_tcp_with_syn_and_no_ack() {
        let exporter = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let with = |protocol, tcp_flags| FlowRecord {
            protocol,
            tcp_flags,
            ..FlowRecord::empty(exporter)
        };
        assert!(with(TCP, SYN).has_syn_without_ack());
        assert!(!with(TCP, SYN | ACK).has_syn_without_ack());
        assert!(with(TCP, SYN | ACK).has_syn());
        assert!(!with(UDP, SYN).has_syn());
        assert!(with(TCP, RST | ACK).has_rst());
    }

    #[test]
    fn sampling_scales_counts_and_zero_means_unsampled() {
        let record = FlowRecord {
            packets: 3,
            bytes: 180,
            ..FlowRecord::empty(IpAddr::V4(Ipv4Addr::LOCALHOST))
        };
        let scaled = record.scaled(100);
        assert_eq!(
            (scaled.packets, scaled.bytes, scaled.sampling_rate),
            (300, 18_000, 100)
        );
        assert_eq!(record.scaled(0), record);
    }
}
