//! Which notifications are accepted: source networks, v1/v2c communities, and for v3 the
//! security level each user is configured for. Every refusal is counted by reason; a
//! refused inform is not answered.

use std::collections::HashMap;
use std::sync::Arc;

use crate::config::{Network, SnmpConfig, source_allowed};
use crate::event::Source;
use crate::telemetry::{Metrics, Rejection};
use async_snmp::SecurityLevel;
use async_snmp::notification::{NotificationAcceptance, NotificationEnvelope};

pub struct AcceptList {
    sources: Vec<Network>,
    communities: Vec<Vec<u8>>,
    levels: HashMap<Vec<u8>, SecurityLevel>,
    metrics: Arc<Metrics>,
}

impl AcceptList {
    pub fn new(config: &SnmpConfig, metrics: Arc<Metrics>) -> Self {
        Self {
            sources: config.allowed_sources.clone(),
            communities: config
                .communities
                .iter()
                .map(|c| c.as_bytes().to_vec())
                .collect(),
            levels: super::required_levels(&config.users),
            metrics,
        }
    }

    pub fn decide(&self, envelope: &NotificationEnvelope<'_>) -> NotificationAcceptance {
        match self.refusal(envelope) {
            None => NotificationAcceptance::Accept,
            Some(reason) => {
                self.metrics.input_rejected(Source::SnmpTrap, reason);
                tracing::debug!(source = %envelope.source, %reason, "SNMP notification refused");
                NotificationAcceptance::Reject
            }
        }
    }

    fn refusal(&self, envelope: &NotificationEnvelope<'_>) -> Option<Rejection> {
        if !source_allowed(&self.sources, envelope.source.ip()) {
            return Some(Rejection::SourceNotAllowed);
        }
        if let Some(community) = envelope.community {
            let known = self
                .communities
                .iter()
                .any(|c| constant_time_eq(c, community.as_bytes()));
            return (!known).then_some(Rejection::BadCommunity);
        }
        let required = envelope
            .username
            .and_then(|user| self.levels.get(user))
            .copied()
            .unwrap_or(SecurityLevel::AuthPriv);
        match envelope.security_level {
            Some(level) if level >= required => None,
            _ => Some(Rejection::SecurityLevelTooLow),
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
    fn communities_compare_exactly() {
        assert!(constant_time_eq(b"public", b"public"));
        assert!(!constant_time_eq(b"public", b"publiC"));
        assert!(!constant_time_eq(b"public", b"publi"));
    }
}
