//! Which notifications are accepted: v1/v2c communities, and for v3 the security level each
//! user is configured for (source networks are the relay's to check). Every refusal is
//! counted by reason; a refused inform is not answered.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use super::relay::Senders;
use crate::config::SnmpConfig;
use crate::event::Source;
use crate::telemetry::{Metrics, Rejection};
use async_snmp::SecurityLevel;
use async_snmp::notification::{NotificationAcceptance, NotificationEnvelope};

pub struct AcceptList {
    communities: Vec<Vec<u8>>,
    levels: HashMap<Vec<u8>, SecurityLevel>,
    metrics: Arc<Metrics>,
    /// Who the relayed addresses are, for the log.
    senders: OnceLock<Arc<Senders>>,
}

impl AcceptList {
    pub fn new(config: &SnmpConfig, metrics: Arc<Metrics>) -> Self {
        Self {
            communities: config
                .communities
                .iter()
                .map(|c| c.as_bytes().to_vec())
                .collect(),
            levels: super::required_levels(&config.users),
            metrics,
            senders: OnceLock::new(),
        }
    }

    /// The relay's senders, once the receiver it forwards to exists.
    pub fn knows(&self, senders: Arc<Senders>) {
        let _ = self.senders.set(senders);
    }

    pub fn decide(&self, envelope: &NotificationEnvelope<'_>) -> NotificationAcceptance {
        match self.refusal(envelope) {
            None => NotificationAcceptance::Accept,
            Some(reason) => {
                self.metrics.input_rejected(Source::SnmpTrap, reason);
                let source = self
                    .senders
                    .get()
                    .map_or(envelope.source, |senders| senders.sender(envelope.source));
                tracing::debug!(%source, %reason, "SNMP notification refused");
                NotificationAcceptance::Reject
            }
        }
    }

    fn refusal(&self, envelope: &NotificationEnvelope<'_>) -> Option<Rejection> {
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
