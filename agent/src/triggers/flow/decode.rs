//! Datagrams to flow records: NetFlow v5, v9 and IPFIX with `netflow_parser` (templates kept
//! per exporter and observation domain), sFlow v5 with `flowparser-sflow` and the sampled
//! packet headers with `etherparse`. Sampling rates, from v5 headers, v9 and IPFIX options
//! data or sFlow samples, scale each record's counts.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use etherparse::{LaxNetSlice, LaxSlicedPacket, TransportSlice};
use flowparser_sflow::counter_records::GenericInterface;
use flowparser_sflow::{AddressType, CounterRecord, SflowParser, SflowSample};
use netflow_parser::scoped_parser::AutoScopedParser;
use netflow_parser::static_versions::v5::V5;
use netflow_parser::variable_versions::ipfix::lookup::IANAIPFixField;
use netflow_parser::variable_versions::{ipfix, v9};
use netflow_parser::{FieldValue, IpfixField, NetflowPacket, NetflowParser, TtlConfig, V9Field};
use serde::Serialize;

use super::record::FlowRecord;

/// Exporters whose templates are kept at once; the least recently heard is forgotten first.
const MAX_EXPORTERS: usize = 1_000;

/// sFlow's header protocol numbers for the sampled packet's first layer.
const SFLOW_ETHERNET: u32 = 1;
const SFLOW_IPV4: u32 = 11;
const SFLOW_IPV6: u32 = 12;

/// What one datagram held besides its records.
#[derive(Debug, Default)]
pub struct Decoded {
    /// Data sets whose template the exporter has not sent yet (their records are lost).
    pub template_misses: u64,
    /// Why the datagram, or its rest, could not be read.
    pub malformed: Option<String>,
    /// sFlow interface counter samples.
    pub counters: Vec<InterfaceCounters>,
}

/// One sFlow counter sample's generic interface counters (sFlow v5 `if_counters`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct InterfaceCounters {
    pub agent: IpAddr,
    pub sub_agent_id: u32,
    pub if_index: u32,
    pub if_speed: u64,
    /// ifOperStatus (bit 1) and ifAdminStatus (bit 0) as sFlow reports them.
    pub if_status: u32,
    pub in_octets: u64,
    pub in_unicast_packets: u32,
    pub in_discards: u32,
    pub in_errors: u32,
    pub out_octets: u64,
    pub out_unicast_packets: u32,
    pub out_discards: u32,
    pub out_errors: u32,
}

/// Decodes the datagrams of every exporter; one per listener.
pub struct Decoder {
    netflow: AutoScopedParser,
    sflow: SflowParser,
    /// The sampling rate options data announced, per exporter and observation domain (v9
    /// source ID).
    sampling: HashMap<(IpAddr, u32), u32>,
}

/// A v9 or IPFIX set, as far as records and sampling go.
enum Set<'a, R> {
    /// Options data, with the sampling rate it announces if any.
    Sampling(Option<u32>),
    Data(&'a [R]),
    /// Data whose template is unknown.
    NoTemplate,
    Other,
}

/// The protocol a datagram's first bytes announce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Protocol {
    NetFlow,
    Sflow,
}

fn protocol_of(datagram: &[u8]) -> Option<Protocol> {
    match datagram {
        // sFlow's version is 32 bits; NetFlow v5's 16-bit version is followed by a non-zero
        // record count.
        [0, 0, 0, 5, ..] => Some(Protocol::Sflow),
        [0, 5 | 9 | 10, ..] => Some(Protocol::NetFlow),
        _ => None,
    }
}

impl Decoder {
    /// `template_timeout`: a template not refreshed for this long is forgotten.
    pub fn new(template_timeout: Duration) -> Self {
        let builder = NetflowParser::builder()
            .with_allowed_versions(&[5, 9, 10])
            .with_ttl(TtlConfig::new(
                template_timeout.max(Duration::from_millis(1)),
            ));
        let netflow = AutoScopedParser::try_with_builder(builder)
            .and_then(|parser| parser.with_max_sources(MAX_EXPORTERS))
            .unwrap_or_default();
        Self {
            netflow,
            sflow: SflowParser::default(),
            sampling: HashMap::new(),
        }
    }

    /// Appends the records of one datagram from `exporter` to `records`.
    pub fn decode(
        &mut self,
        datagram: &[u8],
        exporter: SocketAddr,
        records: &mut Vec<FlowRecord>,
    ) -> Decoded {
        let mut decoded = Decoded::default();
        match protocol_of(datagram) {
            Some(Protocol::NetFlow) => {
                self.decode_netflow(datagram, exporter, records, &mut decoded)
            }
            Some(Protocol::Sflow) => self.decode_sflow(datagram, exporter, records, &mut decoded),
            None => {
                decoded.malformed = Some(match datagram.get(..2) {
                    Some(version) => format!(
                        "version {} is not NetFlow v5, v9, IPFIX or sFlow v5",
                        u16::from_be_bytes([version[0], version[1]])
                    ),
                    None => "shorter than any flow export header".to_owned(),
                })
            }
        }
        decoded
    }

    fn decode_netflow(
        &mut self,
        datagram: &[u8],
        exporter: SocketAddr,
        records: &mut Vec<FlowRecord>,
        decoded: &mut Decoded,
    ) {
        let parsed = self.netflow.parse_from_source(exporter, datagram);
        let address = exporter.ip().to_canonical();
        for packet in &parsed.packets {
            match packet {
                NetflowPacket::V5(v5) => v5_records(v5, address, records),
                NetflowPacket::V9(v9) => self.v9_records(v9, address, records, decoded),
                NetflowPacket::IPFix(ipfix) => self.ipfix_records(ipfix, address, records, decoded),
                _ => {}
            }
        }
        if let Some(error) = parsed.error {
            decoded.malformed = Some(error.to_string());
        }
    }

    fn v9_records(
        &mut self,
        packet: &v9::V9,
        exporter: IpAddr,
        records: &mut Vec<FlowRecord>,
        decoded: &mut Decoded,
    ) {
        let sets = packet.flowsets.iter().map(|set| match &set.body {
            v9::FlowSetBody::OptionsData(options) => {
                Set::Sampling(options.fields.iter().find_map(|data| {
                    data.options_fields
                        .iter()
                        .find_map(|(field, value)| v9_sampling(field, value))
                }))
            }
            v9::FlowSetBody::Data(data) => Set::Data(&data.fields),
            v9::FlowSetBody::NoTemplate(_) => Set::NoTemplate,
            _ => Set::Other,
        });
        let domain = (exporter, packet.header.source_id);
        self.templated_records(domain, sets, |f, e, r| v9_record(f, e, r), records, decoded);
    }

    fn ipfix_records(
        &mut self,
        packet: &ipfix::IPFix,
        exporter: IpAddr,
        records: &mut Vec<FlowRecord>,
        decoded: &mut Decoded,
    ) {
        let sets = packet.flowsets.iter().map(|set| match &set.body {
            ipfix::FlowSetBody::OptionsData(options) => {
                Set::Sampling(options.fields.iter().find_map(|f| ipfix_sampling(f)))
            }
            ipfix::FlowSetBody::Data(data) => Set::Data(&data.fields),
            ipfix::FlowSetBody::NoTemplate(_) => Set::NoTemplate,
            _ => Set::Other,
        });
        let domain = (exporter, packet.header.observation_domain_id);
        self.templated_records(
            domain,
            sets,
            |f, e, r| ipfix_record(f, e, r),
            records,
            decoded,
        );
    }

    /// The records of a v9 or IPFIX message's sets, in order: options data on the way
    /// changes the sampling rate of the data sets after it.
    fn templated_records<'a, R: 'a>(
        &mut self,
        domain: (IpAddr, u32),
        sets: impl Iterator<Item = Set<'a, R>>,
        record: impl Fn(&R, IpAddr, u32) -> FlowRecord,
        records: &mut Vec<FlowRecord>,
        decoded: &mut Decoded,
    ) {
        for set in sets {
            match set {
                Set::Sampling(Some(rate)) => {
                    self.sampling.insert(domain, rate);
                }
                Set::Data(data) => {
                    let rate = self.sampling.get(&domain).copied().unwrap_or(1);
                    records.extend(data.iter().map(|fields| record(fields, domain.0, rate)));
                }
                Set::NoTemplate => decoded.template_misses += 1,
                Set::Sampling(None) | Set::Other => {}
            }
        }
    }

    fn decode_sflow(
        &self,
        datagram: &[u8],
        exporter: SocketAddr,
        records: &mut Vec<FlowRecord>,
        decoded: &mut Decoded,
    ) {
        let parsed = self.sflow.parse_bytes(datagram);
        let exporter = exporter.ip().to_canonical();
        for datagram in &parsed.datagrams {
            let agent = match datagram.agent_address {
                AddressType::IPv4(v4) => IpAddr::V4(v4),
                AddressType::IPv6(v6) => IpAddr::V6(v6),
            };
            for sample in &datagram.samples {
                match sample {
                    SflowSample::Flow(flow) => sflow_records(
                        &flow.records,
                        Interfaces(flow.input, flow.output),
                        flow.sampling_rate,
                        exporter,
                        records,
                    ),
                    SflowSample::ExpandedFlow(flow) => sflow_records(
                        &flow.records,
                        Interfaces(flow.input_value, flow.output_value),
                        flow.sampling_rate,
                        exporter,
                        records,
                    ),
                    SflowSample::Counter(counter) => {
                        interface_counters(&counter.records, agent, datagram.sub_agent_id, decoded)
                    }
                    SflowSample::ExpandedCounter(counter) => {
                        interface_counters(&counter.records, agent, datagram.sub_agent_id, decoded)
                    }
                    _ => {}
                }
            }
        }
        if let Some(error) = parsed.error {
            decoded.malformed = Some(error.to_string());
        }
    }
}

fn v5_records(packet: &V5, exporter: IpAddr, records: &mut Vec<FlowRecord>) {
    // The top two bits are the sampling mode, the rest the interval.
    let rate = u32::from(packet.header.sampling_interval & 0x3fff);
    records.extend(packet.flowsets.iter().map(|flow| {
        FlowRecord {
            src_addr: IpAddr::V4(flow.src_addr),
            dst_addr: IpAddr::V4(flow.dst_addr),
            src_port: flow.src_port,
            dst_port: flow.dst_port,
            protocol: flow.protocol_number,
            tcp_flags: flow.tcp_flags,
            packets: u64::from(flow.d_pkts),
            bytes: u64::from(flow.d_octets),
            input_interface: u32::from(flow.input),
            output_interface: u32::from(flow.output),
            ..FlowRecord::empty(exporter)
        }
        .scaled(rate)
    }));
}

fn tcp_flags(value: &FieldValue) -> u8 {
    match value {
        FieldValue::TcpControlBits(bits, _) => u16::from(*bits) as u8,
        other => other.as_u8().unwrap_or(0),
    }
}

fn address(value: &FieldValue) -> Option<IpAddr> {
    match value {
        FieldValue::Ip4Addr(v4) => Some(IpAddr::V4(*v4)),
        FieldValue::Ip6Addr(v6) => Some(IpAddr::V6(*v6)),
        _ => None,
    }
}

fn number<T: TryFrom<u64>>(value: &FieldValue) -> Option<T> {
    value.as_u64().and_then(|n| T::try_from(n).ok())
}

fn v9_sampling(field: &V9Field, value: &FieldValue) -> Option<u32> {
    match field {
        V9Field::SamplingInterval | V9Field::FlowSamplerRandomInterval => number(value),
        _ => None,
    }
}

fn v9_record(fields: &[(V9Field, FieldValue)], exporter: IpAddr, rate: u32) -> FlowRecord {
    let mut record = FlowRecord::empty(exporter);
    let mut rate = rate;
    for (field, value) in fields {
        match field {
            V9Field::Ipv4SrcAddr | V9Field::Ipv6SrcAddr => {
                record.src_addr = address(value).unwrap_or(record.src_addr)
            }
            V9Field::Ipv4DstAddr | V9Field::Ipv6DstAddr => {
                record.dst_addr = address(value).unwrap_or(record.dst_addr)
            }
            V9Field::L4SrcPort => record.src_port = number(value).unwrap_or(0),
            V9Field::L4DstPort => record.dst_port = number(value).unwrap_or(0),
            V9Field::Protocol => record.protocol = value.as_u8().unwrap_or(0),
            V9Field::TcpFlags => record.tcp_flags = tcp_flags(value),
            V9Field::InPkts => record.packets = value.as_u64().unwrap_or(0),
            V9Field::InBytes => record.bytes = value.as_u64().unwrap_or(0),
            V9Field::InputSnmp => record.input_interface = number(value).unwrap_or(0),
            V9Field::OutputSnmp => record.output_interface = number(value).unwrap_or(0),
            other => rate = v9_sampling(other, value).unwrap_or(rate),
        }
    }
    record.scaled(rate)
}

/// The sampling rate an IPFIX options record announces: samplingInterval, or PSAMP's
/// packet interval and space (one selected of every interval + space).
fn ipfix_sampling(fields: &[(IpfixField, FieldValue)]) -> Option<u32> {
    let mut interval = None;
    let mut selected = None;
    let mut space = 0u32;
    for (field, value) in fields {
        match field {
            IpfixField::IANA(
                IANAIPFixField::SamplingInterval | IANAIPFixField::SamplerRandomInterval,
            ) => interval = number(value),
            IpfixField::IANA(IANAIPFixField::SamplingPacketInterval) => selected = number(value),
            IpfixField::IANA(IANAIPFixField::SamplingPacketSpace) => {
                space = number(value).unwrap_or(0)
            }
            _ => {}
        }
    }
    interval.or_else(|| {
        selected
            .filter(|&s: &u32| s > 0)
            .map(|s| s.saturating_add(space) / s)
    })
}

fn ipfix_record(fields: &[(IpfixField, FieldValue)], exporter: IpAddr, rate: u32) -> FlowRecord {
    let mut record = FlowRecord::empty(exporter);
    for (field, value) in fields {
        let IpfixField::IANA(field) = field else {
            continue;
        };
        match field {
            IANAIPFixField::SourceIpv4address | IANAIPFixField::SourceIpv6address => {
                record.src_addr = address(value).unwrap_or(record.src_addr)
            }
            IANAIPFixField::DestinationIpv4address | IANAIPFixField::DestinationIpv6address => {
                record.dst_addr = address(value).unwrap_or(record.dst_addr)
            }
            IANAIPFixField::SourceTransportPort => record.src_port = number(value).unwrap_or(0),
            IANAIPFixField::DestinationTransportPort => {
                record.dst_port = number(value).unwrap_or(0)
            }
            IANAIPFixField::ProtocolIdentifier => record.protocol = value.as_u8().unwrap_or(0),
            IANAIPFixField::TcpControlBits => record.tcp_flags = tcp_flags(value),
            IANAIPFixField::PacketDeltaCount | IANAIPFixField::PacketTotalCount => {
                record.packets = value.as_u64().unwrap_or(0)
            }
            IANAIPFixField::OctetDeltaCount | IANAIPFixField::OctetTotalCount => {
                record.bytes = value.as_u64().unwrap_or(0)
            }
            IANAIPFixField::IngressInterface => record.input_interface = number(value).unwrap_or(0),
            IANAIPFixField::EgressInterface => record.output_interface = number(value).unwrap_or(0),
            _ => {}
        }
    }
    let rate = ipfix_sampling(fields).unwrap_or(rate);
    record.scaled(rate)
}

/// A flow sample's input and output interface fields (format in the top two bits, then
/// the ifIndex).
struct Interfaces(u32, u32);

fn sflow_records(
    samples: &[flowparser_sflow::FlowRecord],
    interfaces: Interfaces,
    rate: u32,
    exporter: IpAddr,
    records: &mut Vec<FlowRecord>,
) {
    let base = FlowRecord {
        packets: 1,
        input_interface: interfaces.0 & 0x3fff_ffff,
        output_interface: interfaces.1 & 0x3fff_ffff,
        ..FlowRecord::empty(exporter)
    };
    // A sample describes one packet, perhaps several ways: the first readable one is kept.
    let packet = samples.iter().find_map(|sample| match sample {
        flowparser_sflow::FlowRecord::RawPacketHeader(raw) => {
            sampled_header(raw.header_protocol, &raw.header, base)
        }
        flowparser_sflow::FlowRecord::SampledIpv4(ip) => Some(sampled_ip(
            base,
            (IpAddr::V4(ip.src_ip), ip.src_port),
            (IpAddr::V4(ip.dst_ip), ip.dst_port),
            [ip.protocol, ip.tcp_flags, ip.length],
        )),
        flowparser_sflow::FlowRecord::SampledIpv6(ip) => Some(sampled_ip(
            base,
            (IpAddr::V6(ip.src_ip), ip.src_port),
            (IpAddr::V6(ip.dst_ip), ip.dst_port),
            [ip.protocol, ip.tcp_flags, ip.length],
        )),
        _ => None,
    });
    if let Some(packet) = packet {
        records.push(packet.scaled(rate));
    }

    /// A sampled IPv4 or IPv6 record: its endpoints, then protocol, TCP flags and length
    /// (sFlow carries each in 32 bits).
    fn sampled_ip(
        base: FlowRecord,
        src: (IpAddr, u32),
        dst: (IpAddr, u32),
        [protocol, tcp_flags, length]: [u32; 3],
    ) -> FlowRecord {
        FlowRecord {
            src_addr: src.0,
            dst_addr: dst.0,
            src_port: src.1 as u16,
            dst_port: dst.1 as u16,
            protocol: protocol as u8,
            tcp_flags: tcp_flags as u8,
            bytes: u64::from(length),
            ..base
        }
    }

    /// The addresses, ports and flags of a sampled packet's headers (often cut short).
    fn sampled_header(protocol: u32, header: &[u8], base: FlowRecord) -> Option<FlowRecord> {
        let sliced = match protocol {
            SFLOW_ETHERNET => LaxSlicedPacket::from_ethernet(header).ok()?,
            SFLOW_IPV4 | SFLOW_IPV6 => LaxSlicedPacket::from_ip(header).ok()?,
            _ => return None,
        };
        let mut record = base;
        match sliced.net? {
            // Bytes are the IP packet's, as NetFlow and IPFIX count them.
            LaxNetSlice::Ipv4(ip) => {
                let header = ip.header();
                record.src_addr = IpAddr::V4(header.source_addr());
                record.dst_addr = IpAddr::V4(header.destination_addr());
                record.protocol = header.protocol().0;
                record.bytes = u64::from(header.total_len());
            }
            LaxNetSlice::Ipv6(ip) => {
                let header = ip.header();
                record.src_addr = IpAddr::V6(header.source_addr());
                record.dst_addr = IpAddr::V6(header.destination_addr());
                record.protocol = ip.payload().ip_number.0;
                record.bytes = 40 + u64::from(header.payload_length());
            }
            LaxNetSlice::Arp(_) => return None,
        }
        match sliced.transport {
            Some(TransportSlice::Tcp(tcp)) => {
                record.src_port = tcp.source_port();
                record.dst_port = tcp.destination_port();
                // The flags byte of the TCP header (FIN 0x01 ... CWR 0x80).
                record.tcp_flags = tcp.slice().get(13).copied().unwrap_or(0);
            }
            Some(TransportSlice::Udp(udp)) => {
                record.src_port = udp.source_port();
                record.dst_port = udp.destination_port();
            }
            _ => {}
        }
        Some(record)
    }
}

fn interface_counters(
    records: &[CounterRecord],
    agent: IpAddr,
    sub_agent_id: u32,
    decoded: &mut Decoded,
) {
    for record in records {
        if let CounterRecord::GenericInterface(counters) = record {
            decoded
                .counters
                .push(InterfaceCounters::of(counters, agent, sub_agent_id));
        }
    }
}

impl InterfaceCounters {
    fn of(counters: &GenericInterface, agent: IpAddr, sub_agent_id: u32) -> Self {
        Self {
            agent,
            sub_agent_id,
            if_index: counters.if_index,
            if_speed: counters.if_speed,
            if_status: counters.if_status,
            in_octets: counters.if_in_octets,
            in_unicast_packets: counters.if_in_ucast_pkts,
            in_discards: counters.if_in_discards,
            in_errors: counters.if_in_errors,
            out_octets: counters.if_out_octets,
            out_unicast_packets: counters.if_out_ucast_pkts,
            out_discards: counters.if_out_discards,
            out_errors: counters.if_out_errors,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(values: &[u32]) -> Vec<u8> {
        values.iter().flat_map(|v| v.to_be_bytes()).collect()
    }

    /// An sFlow v5 datagram from agent 192.0.2.1 with one counter sample holding generic
    /// interface counters for ifIndex 3.
    fn counter_sample_datagram() -> Vec<u8> {
        let mut record = words(&[3, 6]);
        record.extend(1_000_000_000u64.to_be_bytes());
        record.extend(words(&[1, 3]));
        record.extend(123_456u64.to_be_bytes());
        record.extend(words(&[1000, 0, 0, 2, 5, 0]));
        record.extend(654_321u64.to_be_bytes());
        record.extend(words(&[900, 0, 0, 1, 4, 0]));
        let mut sample = words(&[7, 3, 1, 1, record.len() as u32]);
        sample.extend(record);
        let mut datagram = words(&[5, 1, 0xc000_0201, 0, 1, 1000, 1, 2, sample.len() as u32]);
        datagram.extend(sample);
        datagram
    }

    #[test]
    fn sflow_counter_samples_become_interface_counters() {
        let mut decoder = Decoder::new(Duration::from_secs(60));
        let mut records = Vec::new();
        let from: SocketAddr = "192.0.2.1:6343".parse().unwrap();
        let decoded = decoder.decode(&counter_sample_datagram(), from, &mut records);
        assert!(records.is_empty());
        assert_eq!(decoded.malformed, None);
        let [counters] = &decoded.counters[..] else {
            panic!("{:?}", decoded.counters);
        };
        assert_eq!(counters.agent.to_string(), "192.0.2.1");
        assert_eq!(counters.if_index, 3);
        assert_eq!(counters.if_status, 3);
        assert_eq!((counters.in_octets, counters.in_errors), (123_456, 5));
        assert_eq!((counters.out_octets, counters.out_discards), (654_321, 1));
    }

    /// A datagram softflowd sent (the fuzz seeds hold each behind a two-byte length).
    fn softflowd_export(seed: &[u8]) -> &[u8] {
        &seed[2..]
    }

    #[test]
    fn templates_expire_unless_resent_and_data_without_one_is_a_miss_per_set() {
        for (first, data) in [
            (
                &include_bytes!("../../../../fuzz/corpus/flow_decode/softflowd-v9-0")[..],
                &include_bytes!("../../../../fuzz/corpus/flow_decode/softflowd-v9-1")[..],
            ),
            (
                &include_bytes!("../../../../fuzz/corpus/flow_decode/softflowd-v10-0")[..],
                &include_bytes!("../../../../fuzz/corpus/flow_decode/softflowd-v10-1")[..],
            ),
        ] {
            let timeout = Duration::from_millis(50);
            let mut decoder = Decoder::new(timeout);
            let from: SocketAddr = "192.0.2.1:2055".parse().unwrap();
            let mut records = Vec::new();
            // Templates, options and data; then data only, which the templates decode.
            decoder.decode(softflowd_export(first), from, &mut records);
            let with_templates = records.len();
            assert!(with_templates > 0);
            let decoded = decoder.decode(softflowd_export(data), from, &mut records);
            assert_eq!(decoded.template_misses, 0);
            assert!(records.len() > with_templates);
            // The templates age past their timeout without being resent: the same data is
            // now a miss, not records.
            std::thread::sleep(timeout * 2);
            records.clear();
            let decoded = decoder.decode(softflowd_export(data), from, &mut records);
            assert_eq!((records.len(), decoded.template_misses), (0, 1));
            // Another exporter's templates are its own: it never sent any.
            let other: SocketAddr = "192.0.2.2:2055".parse().unwrap();
            decoder.decode(softflowd_export(first), from, &mut records);
            let decoded = decoder.decode(softflowd_export(data), other, &mut records);
            assert_eq!(decoded.template_misses, 1);
        }
    }

    #[test]
    fn datagrams_of_no_flow_protocol_are_malformed_with_the_version_named() {
        let mut decoder = Decoder::new(Duration::from_secs(60));
        let from: SocketAddr = "192.0.2.1:2055".parse().unwrap();
        let decoded = decoder.decode(&[0, 7, 1, 2], from, &mut Vec::new());
        assert_eq!(
            decoded.malformed.as_deref(),
            Some("version 7 is not NetFlow v5, v9, IPFIX or sFlow v5")
        );
        let decoded = decoder.decode(&[9], from, &mut Vec::new());
        assert!(decoded.malformed.is_some());
    }
}
