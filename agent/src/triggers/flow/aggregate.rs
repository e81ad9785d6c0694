//! One window of a `flow = { window, key }` trigger: records added as they arrive, one
//! aggregate per key, taken whole when the window closes (the README's flow window schema).

use std::collections::HashMap;
use std::net::IpAddr;

use foldhash::fast::RandomState;
use serde::Serialize;
use serde_json::{Map, Value};

use super::distinct::{Distinct, Ports, Sources, Talker};
use super::record::{FlowRecord, UDP, protocol_name};
use crate::config::FlowKey;

/// The most key fields one trigger may name.
pub const MAX_KEY_FIELDS: usize = 6;

/// One value of a key field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
enum Part {
    #[default]
    Unused,
    Address(IpAddr),
    Number(u32),
}

/// A record's values for the trigger's key fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Key([Part; MAX_KEY_FIELDS]);

fn masked(address: IpAddr, bits: u8) -> IpAddr {
    match address {
        IpAddr::V4(v4) => {
            let bits = u32::from(bits.min(32));
            let mask = u32::MAX.checked_shl(32 - bits).unwrap_or(0);
            IpAddr::V4((u32::from(v4) & mask).into())
        }
        IpAddr::V6(v6) => {
            let bits = u32::from(bits.min(128));
            let mask = u128::MAX.checked_shl(128 - bits).unwrap_or(0);
            IpAddr::V6((u128::from(v6) & mask).into())
        }
    }
}

fn part(field: FlowKey, record: &FlowRecord) -> Part {
    match field {
        FlowKey::SrcAddr => Part::Address(record.src_addr),
        FlowKey::DstAddr => Part::Address(record.dst_addr),
        FlowKey::SrcPrefix(bits) => Part::Address(masked(record.src_addr, bits)),
        FlowKey::DstPrefix(bits) => Part::Address(masked(record.dst_addr, bits)),
        FlowKey::SrcPort => Part::Number(u32::from(record.src_port)),
        FlowKey::DstPort => Part::Number(u32::from(record.dst_port)),
        FlowKey::Protocol => Part::Number(u32::from(record.protocol)),
        FlowKey::Exporter => Part::Address(record.exporter),
        FlowKey::InputInterface => Part::Number(record.input_interface),
        FlowKey::OutputInterface => Part::Number(record.output_interface),
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub flows: u64,
    pub packets: u64,
    pub bytes: u64,
}

impl Counts {
    fn add(&mut self, record: &FlowRecord) {
        self.flows += 1;
        self.packets += record.packets;
        self.bytes += record.bytes;
    }
}

/// Flows by their TCP flags.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct TcpFlags {
    pub syn: u64,
    pub syn_without_ack: u64,
    /// Packets of the flows with SYN and no ACK.
    pub syn_without_ack_packets: u64,
    pub rst: u64,
}

#[derive(Default)]
struct Aggregate {
    counts: Counts,
    tcp: TcpFlags,
    /// Per protocol number; few per key, so a list.
    protocols: Vec<(u8, Counts)>,
    sources: Sources,
    dst_ports: Ports,
    sampled: bool,
}

impl Aggregate {
    fn add(&mut self, record: &FlowRecord) {
        self.counts.add(record);
        if record.has_syn() {
            self.tcp.syn += 1;
            if record.has_syn_without_ack() {
                self.tcp.syn_without_ack += 1;
                self.tcp.syn_without_ack_packets += record.packets;
            }
        }
        if record.has_rst() {
            self.tcp.rst += 1;
        }
        match self
            .protocols
            .iter_mut()
            .find(|(p, _)| *p == record.protocol)
        {
            Some((_, counts)) => counts.add(record),
            None => {
                let mut counts = Counts::default();
                counts.add(record);
                self.protocols.push((record.protocol, counts));
            }
        }
        self.sources
            .add(record.src_addr, record.packets, record.bytes);
        self.dst_ports.add(record.dst_port);
        self.sampled |= record.sampling_rate > 1;
    }
}

/// The event payload of one aggregate.
#[derive(Debug, Serialize)]
pub struct WindowEvent {
    pub window: WindowTimes,
    /// Key field → value; empty for a trigger without keys and for the overflow aggregate.
    pub key: Map<String, Value>,
    /// This aggregate holds the records of every key past `max_keys`.
    pub overflow: bool,
    #[serde(flatten)]
    pub counts: Counts,
    pub tcp: TcpFlags,
    /// Packets of UDP flows (the share floods are measured by).
    pub udp_packets: u64,
    pub distinct_sources: Distinct,
    pub distinct_dst_ports: u64,
    /// Protocol name → counts.
    pub protocols: Map<String, Value>,
    /// Sources by bytes, heaviest first.
    pub top_sources: Vec<Talker>,
    /// False once memory bounds dropped light sources: a dropped one could outweigh the last
    /// listed.
    pub top_sources_exact: bool,
    /// Some records were sampled; counts are scaled estimates.
    pub sampled: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct WindowTimes {
    /// RFC 3339, when the window opened and closed.
    pub start: String,
    pub end: String,
    pub seconds: f64,
}

impl WindowEvent {
    /// `field=value,...`, `all` without keys, `overflow` for the overflow aggregate: the
    /// event's subject.
    pub fn subject(&self) -> String {
        if self.overflow {
            return "overflow".to_owned();
        }
        if self.key.is_empty() {
            return "all".to_owned();
        }
        let parts: Vec<String> = self
            .key
            .iter()
            .map(|(field, value)| match value {
                Value::String(text) => format!("{field}={text}"),
                other => format!("{field}={other}"),
            })
            .collect();
        parts.join(",")
    }
}

/// The aggregates of one open window.
pub struct Window {
    fields: Vec<FlowKey>,
    top: usize,
    max_keys: usize,
    aggregates: HashMap<Key, Aggregate, RandomState>,
    overflow: Option<Aggregate>,
}

impl Window {
    pub fn new(fields: &[FlowKey], top: usize, max_keys: usize) -> Self {
        Self {
            fields: fields.iter().take(MAX_KEY_FIELDS).copied().collect(),
            top,
            max_keys,
            aggregates: HashMap::default(),
            overflow: None,
        }
    }

    pub fn add(&mut self, record: &FlowRecord) {
        let mut key = Key([Part::Unused; MAX_KEY_FIELDS]);
        for (slot, &field) in key.0.iter_mut().zip(&self.fields) {
            *slot = part(field, record);
        }
        if let Some(aggregate) = self.aggregates.get_mut(&key) {
            aggregate.add(record);
        } else if self.aggregates.len() < self.max_keys {
            self.aggregates.entry(key).or_default().add(record);
        } else {
            self.overflow
                .get_or_insert_with(Aggregate::default)
                .add(record);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.aggregates.is_empty() && self.overflow.is_none()
    }

    /// Closes the window: its aggregates as event payloads, the overflow one last. The window
    /// is left empty for the next.
    pub fn take(&mut self, times: &WindowTimes) -> Vec<WindowEvent> {
        let mut events: Vec<WindowEvent> = self
            .aggregates
            .drain()
            .map(|(key, aggregate)| {
                let key = key_map(&self.fields, &key);
                event(aggregate, key, false, times, self.top)
            })
            .collect();
        events.sort_by_key(|event| std::cmp::Reverse(event.counts.bytes));
        if let Some(overflow) = self.overflow.take() {
            events.push(event(overflow, Map::new(), true, times, self.top));
        }
        events
    }
}

fn key_map(fields: &[FlowKey], key: &Key) -> Map<String, Value> {
    fields
        .iter()
        .zip(key.0)
        .map(|(&field, part)| {
            let value = match (field, part) {
                (FlowKey::SrcPrefix(bits) | FlowKey::DstPrefix(bits), Part::Address(a)) => {
                    let bits = if a.is_ipv4() { bits.min(32) } else { bits };
                    Value::String(format!("{a}/{bits}"))
                }
                (FlowKey::Protocol, Part::Number(n)) => {
                    Value::String(protocol_name(n as u8).into_owned())
                }
                (_, Part::Address(a)) => Value::String(a.to_string()),
                (_, Part::Number(n)) => Value::from(n),
                (_, Part::Unused) => Value::Null,
            };
            (field.field().to_owned(), value)
        })
        .collect()
}

fn event(
    aggregate: Aggregate,
    key: Map<String, Value>,
    overflow: bool,
    times: &WindowTimes,
    top: usize,
) -> WindowEvent {
    let (top_sources, top_sources_exact) = aggregate.sources.top(top);
    let udp_packets = aggregate
        .protocols
        .iter()
        .find(|(p, _)| *p == UDP)
        .map_or(0, |(_, counts)| counts.packets);
    let protocols = aggregate
        .protocols
        .iter()
        .map(|(protocol, counts)| {
            (
                protocol_name(*protocol).into_owned(),
                serde_json::to_value(counts).unwrap_or_default(),
            )
        })
        .collect();
    WindowEvent {
        window: times.clone(),
        key,
        overflow,
        counts: aggregate.counts,
        tcp: aggregate.tcp,
        udp_packets,
        distinct_sources: aggregate.sources.distinct(),
        distinct_dst_ports: aggregate.dst_ports.count(),
        protocols,
        top_sources,
        top_sources_exact,
        sampled: aggregate.sampled,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::triggers::flow::record::TCP;
    use std::net::Ipv4Addr;

    fn record(src: [u8; 4], dst: [u8; 4], dst_port: u16, tcp_flags: u8) -> FlowRecord {
        FlowRecord {
            src_addr: IpAddr::V4(Ipv4Addr::from(src)),
            dst_addr: IpAddr::V4(Ipv4Addr::from(dst)),
            dst_port,
            protocol: TCP,
            tcp_flags,
            packets: 2,
            bytes: 120,
            ..FlowRecord::empty(IpAddr::V4(Ipv4Addr::LOCALHOST))
        }
    }

    fn times() -> WindowTimes {
        WindowTimes {
            start: "2026-12-02T00:00:00Z".into(),
            end: "2026-12-02T00:00:01Z".into(),
            seconds: 1.0,
        }
    }

    #[test]
    fn records_aggregate_per_prefix_key_with_flag_counts() {
        let mut window = Window::new(&[FlowKey::DstPrefix(24)], 2, 10);
        window.add(&record([10, 0, 0, 1], [192, 0, 2, 1], 80, 0x02));
        window.add(&record([10, 0, 0, 2], [192, 0, 2, 200], 443, 0x12));
        window.add(&record([10, 0, 0, 1], [192, 0, 2, 7], 80, 0x04 | 0x10));
        window.add(&record([10, 0, 0, 9], [198, 51, 100, 1], 22, 0x02));
        let events = window.take(&times());
        assert!(window.is_empty());
        assert_eq!(events.len(), 2);
        let subnet = &events[0];
        assert_eq!(subnet.subject(), "dst_addr=192.0.2.0/24");
        assert_eq!(
            subnet.counts,
            Counts {
                flows: 3,
                packets: 6,
                bytes: 360
            }
        );
        assert_eq!(
            subnet.tcp,
            TcpFlags {
                syn: 2,
                syn_without_ack: 1,
                syn_without_ack_packets: 2,
                rst: 1
            }
        );
        assert_eq!(subnet.distinct_sources.count, 2);
        assert_eq!(subnet.distinct_dst_ports, 2);
        assert_eq!(subnet.top_sources[0].addr.to_string(), "10.0.0.1");
        assert_eq!(subnet.protocols["tcp"]["flows"], 3);
    }

    #[test]
    fn keys_past_the_limit_fold_into_one_overflow_aggregate() {
        let mut window = Window::new(&[FlowKey::DstAddr, FlowKey::Protocol], 5, 2);
        for host in 1..=5 {
            window.add(&record([10, 0, 0, 1], [192, 0, 2, host], 80, 0x02));
        }
        let events = window.take(&times());
        assert_eq!(events.len(), 3);
        let overflow = events.last().unwrap();
        assert!(overflow.overflow);
        assert_eq!(overflow.subject(), "overflow");
        assert_eq!(overflow.counts.flows, 3);
        assert!(events[0].subject().ends_with(",protocol=tcp"));
    }

    #[test]
    fn prefixes_mask_both_families() {
        assert_eq!(
            masked("192.0.2.77".parse().unwrap(), 24).to_string(),
            "192.0.2.0"
        );
        assert_eq!(
            masked("2001:db8:1:2::5".parse().unwrap(), 48).to_string(),
            "2001:db8:1::"
        );
        assert_eq!(
            masked("192.0.2.77".parse().unwrap(), 64).to_string(),
            "192.0.2.77"
        );
    }
}
