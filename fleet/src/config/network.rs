//! Address ranges in the config file (`10.0.0.0/8`, or one address such as `192.0.2.7`),
//! parsed when the file loads.

use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Deserializer, de};
use thiserror::Error;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Network(pub IpNet);

#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{0:?} is not an address or network such as 10.0.0.0/8")]
pub struct NetworkError(String);

impl Network {
    pub fn parse(text: &str) -> Result<Self, NetworkError> {
        text.parse::<IpNet>()
            .or_else(|_| text.parse::<IpAddr>().map(IpNet::from))
            .map(Network)
            .map_err(|_| NetworkError(text.to_owned()))
    }

    pub fn contains(&self, address: &IpAddr) -> bool {
        self.0.contains(address)
    }
}

/// Whether `allowed_sources` lets `address` in: an empty list lets everyone in, and an
/// IPv4 sender reaching a dual-stack socket (as `::ffff:a.b.c.d`) is matched as IPv4.
pub fn source_allowed(allowed_sources: &[Network], address: IpAddr) -> bool {
    let address = address.to_canonical();
    allowed_sources.is_empty() || allowed_sources.iter().any(|net| net.contains(&address))
}

impl fmt::Display for Network {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl<'de> Deserialize<'de> for Network {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Network::parse(&text).map_err(de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn networks_and_single_addresses_parse() {
        let net = Network::parse("10.0.0.0/8").unwrap();
        assert!(net.contains(&"10.1.2.3".parse().unwrap()));
        assert!(!net.contains(&"11.0.0.1".parse().unwrap()));
        let host = Network::parse("192.0.2.7").unwrap();
        assert!(host.contains(&"192.0.2.7".parse().unwrap()));
        assert!(!host.contains(&"192.0.2.8".parse().unwrap()));
        assert!(Network::parse("10.0.0.0/33").is_err());
        assert!(Network::parse("gateway").is_err());
    }

    #[test]
    fn an_empty_list_allows_every_source_and_mapped_ipv4_matches_as_ipv4() {
        let lab = [Network::parse("192.0.2.0/24").unwrap()];
        assert!(source_allowed(&[], "203.0.113.1".parse().unwrap()));
        assert!(source_allowed(&lab, "::ffff:192.0.2.9".parse().unwrap()));
        assert!(!source_allowed(&lab, "::ffff:203.0.113.1".parse().unwrap()));
    }
}
