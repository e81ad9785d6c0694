//! Which notifications are accepted: source networks, v1/v2c communities, and for v3 the
//! security level each user is configured for. Every refusal is counted by reason; a
//! refused inform is not answered.

use crate::event::Source;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use async_snmp::SecurityLevel;
use async_snmp::notification::{NotificationAcceptance, NotificationEnvelope};
use ipnet::IpNet;

use crate::config::SnmpConfig;
use crate::telemetry::Metrics;

pub struct AcceptList {
    sources: Vec<IpNet>,
    communities: Vec<Vec<u8>>,
    levels: HashMap<Vec<u8>, SecurityLevel>,
    metrics: Arc<Metrics>,
}

/// `10.0.0.0/8`, or a single address such as `192.0.2.7`.
pub fn parse_network(text: &str) -> Result<IpNet, String> {
    text.parse::<IpNet>()
        .or_else(|_| text.parse::<IpAddr>().map(IpNet::from))
        .map_err(|e| e.to_string())
}

impl AcceptList {
    pub fn new(config: &SnmpConfig, metrics: Arc<Metrics>) -> anyhow::Result<Self> {
        let sources = config
            .allowed_sources
            .iter()
            .map(|s| parse_network(s).map_err(anyhow::Error::msg))
            .collect::<anyhow::Result<_>>()?;
        Ok(Self {
            sources,
            communities: config
                .communities
                .iter()
                .map(|c| c.as_bytes().to_vec())
                .collect(),
            levels: super::required_levels(&config.users),
            metrics,
        })
    }

    pub fn decide(&self, envelope: &NotificationEnvelope<'_>) -> NotificationAcceptance {
        match self.refusal(envelope) {
            None => NotificationAcceptance::Accept,
            Some(reason) => {
                self.metrics.input_rejected(Source::SnmpTrap, reason);
                tracing::debug!(source = %envelope.source, reason, "SNMP notification refused");
                NotificationAcceptance::Reject
            }
        }
    }

    fn refusal(&self, envelope: &NotificationEnvelope<'_>) -> Option<&'static str> {
        let source = envelope.source.ip().to_canonical();
        if !self.sources.is_empty() && !self.sources.iter().any(|net| net.contains(&source)) {
            return Some("source_not_allowed");
        }
        if let Some(community) = envelope.community {
            let known = self
                .communities
                .iter()
                .any(|c| constant_time_eq(c, community.as_bytes()));
            return (!known).then_some("bad_community");
        }
        let required = envelope
            .username
            .and_then(|user| self.levels.get(user))
            .copied()
            .unwrap_or(SecurityLevel::AuthPriv);
        match envelope.security_level {
            Some(level) if level >= required => None,
            _ => Some("security_level_too_low"),
        }
    }
}

/// Compares without stopping at the first difference, so timing does not reveal how much
/// of a guessed community was right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn networks_and_single_addresses_parse() {
        let net = parse_network("10.0.0.0/8").unwrap();
        assert!(net.contains(&"10.1.2.3".parse::<IpAddr>().unwrap()));
        let host = parse_network("192.0.2.7").unwrap();
        assert!(host.contains(&"192.0.2.7".parse::<IpAddr>().unwrap()));
        assert!(!host.contains(&"192.0.2.8".parse::<IpAddr>().unwrap()));
        assert!(parse_network("10.0.0.0/33").is_err());
    }

    #[test]
    fn communities_compare_exactly() {
        assert!(constant_time_eq(b"public", b"public"));
        assert!(!constant_time_eq(b"public", b"publiC"));
        assert!(!constant_time_eq(b"public", b"publi"));
    }
}
