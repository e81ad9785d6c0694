//! What a function may reach beyond its own kv namespace: topics, environment, models,
//! HTTP origins and SNMP targets. Nothing is granted by default.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Grants {
    /// MQTT topic filters the function may publish to (`+` and `#` allowed).
    #[serde(default)]
    pub publish: Vec<String>,
    /// Environment variables visible to the guest (name = value). The host's own
    /// environment is never inherited.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Models the function may run through the `inference` interface.
    #[serde(default)]
    pub models: Vec<String>,
    /// Origins the function may send HTTP requests to through `wasi:http/outgoing-handler`:
    /// `"https://api.example.net"`, `"http://192.0.2.1:8080"`, `"https://*.example.org"`, or a
    /// table with the origin as `url` and its TLS settings and headers.
    #[serde(default, deserialize_with = "http_grants")]
    pub outbound_http: Vec<HttpGrant>,
    /// `[[snmp.target]]`s the function may query (`"read"`) or also set (`"write"`),
    /// by target name.
    #[serde(default)]
    pub snmp: BTreeMap<String, SnmpAccess>,
}

/// One granted HTTP origin.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpGrant {
    /// `scheme://host[:port]`; the host may start with `*.` to grant its subdomains.
    pub url: String,
    /// PEM file of the certificate authorities to trust for this origin instead of the
    /// system's.
    pub ca_file: Option<PathBuf>,
    /// PEM certificate chain presented to servers that ask for one (mutual TLS)...
    pub client_cert: Option<PathBuf>,
    /// ...and its private key.
    pub client_key: Option<PathBuf>,
    /// Headers fogd adds to every request to this origin, replacing the guest's own.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Headers whose value is read from a file (an API token, say): added like `headers`,
    /// never shown to the guest, never logged.
    #[serde(default)]
    pub secret_headers: BTreeMap<String, PathBuf>,
}

impl HttpGrant {
    /// A grant of `url`'s origin alone: the system's roots, no client certificate, no headers.
    pub fn for_origin(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            ca_file: None,
            client_cert: None,
            client_key: None,
            headers: BTreeMap::new(),
            secret_headers: BTreeMap::new(),
        }
    }

    /// Resolves the grant's files against `base`.
    pub fn resolve_paths(&mut self, base: &Path) {
        for path in [
            &mut self.ca_file,
            &mut self.client_cert,
            &mut self.client_key,
        ]
        .into_iter()
        .flatten()
        {
            *path = base.join(&*path);
        }
        for path in self.secret_headers.values_mut() {
            *path = base.join(&*path);
        }
    }
}

/// A grant is either its origin alone (a string) or a table.
fn http_grant<'de, D: Deserializer<'de>>(deserializer: D) -> Result<HttpGrant, D::Error> {
    struct GrantVisitor;

    impl<'de> Visitor<'de> for GrantVisitor {
        type Value = HttpGrant;

        fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
            formatter.write_str("an origin such as \"https://api.example.net\" or a table with url")
        }

        fn visit_str<E: de::Error>(self, url: &str) -> Result<HttpGrant, E> {
            Ok(HttpGrant::for_origin(url))
        }

        fn visit_map<M: MapAccess<'de>>(self, map: M) -> Result<HttpGrant, M::Error> {
            HttpGrant::deserialize(de::value::MapAccessDeserializer::new(map))
        }
    }

    deserializer.deserialize_any(GrantVisitor)
}

/// A list entry of `grants.outbound_http`.
struct HttpGrantEntry(HttpGrant);

impl<'de> Deserialize<'de> for HttpGrantEntry {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        http_grant(deserializer).map(HttpGrantEntry)
    }
}

fn http_grants<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<HttpGrant>, D::Error> {
    let entries = Vec::<HttpGrantEntry>::deserialize(deserializer)?;
    Ok(entries.into_iter().map(|entry| entry.0).collect())
}

/// How a function may use an SNMP target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SnmpAccess {
    /// `get`, `get-next` and `walk`.
    Read,
    /// Those and `set`.
    Write,
}

/// `http` or `https`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpScheme {
    Http,
    Https,
}

impl HttpScheme {
    pub fn default_port(self) -> u16 {
        match self {
            HttpScheme::Http => 80,
            HttpScheme::Https => 443,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            HttpScheme::Http => "http",
            HttpScheme::Https => "https",
        }
    }
}

/// A granted origin: requests go only to a matching scheme, host and port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpOrigin {
    pub scheme: HttpScheme,
    /// Lower case; for `*.example.org`, the suffix `.example.org`.
    host: String,
    wildcard: bool,
    pub port: u16,
}

impl HttpOrigin {
    /// Parses `scheme://host[:port]` (a trailing `/` allowed, nothing else after the host).
    pub fn parse(url: &str) -> Result<Self, String> {
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| format!("{url:?} is not scheme://host[:port]"))?;
        let scheme = match scheme.to_ascii_lowercase().as_str() {
            "http" => HttpScheme::Http,
            "https" => HttpScheme::Https,
            other => return Err(format!("scheme {other:?} is not http or https")),
        };
        let authority = rest.strip_suffix('/').unwrap_or(rest);
        if authority.contains(['/', '?', '#', '@']) {
            return Err(format!(
                "{url:?} grants an origin: scheme://host[:port], without a path, query or user"
            ));
        }
        let (host, port) = split_host_port(authority)
            .ok_or_else(|| format!("{url:?} has no valid host[:port]"))?;
        let port = match port {
            Some(port) => port
                .parse::<u16>()
                .ok()
                .filter(|&port| port != 0)
                .ok_or_else(|| format!("port {port:?} is not 1 to 65535"))?,
            None => scheme.default_port(),
        };
        let host = host.to_ascii_lowercase();
        let (host, wildcard) = match host.strip_prefix("*.") {
            Some(suffix) => (format!(".{suffix}"), true),
            None => (host, false),
        };
        if host.contains('*') || host.is_empty() || host == "." {
            return Err(format!(
                "{url:?}: a wildcard may only open the host, as in *.example.org"
            ));
        }
        Ok(Self {
            scheme,
            host,
            wildcard,
            port,
        })
    }

    /// Whether a request to `scheme://host:port` is within this grant. `host` is compared
    /// without case; `*.example.org` covers `a.example.org` and `b.a.example.org`, not
    /// `example.org`.
    pub fn matches(&self, scheme: HttpScheme, host: &str, port: u16) -> bool {
        if scheme != self.scheme || port != self.port {
            return false;
        }
        let host = host.to_ascii_lowercase();
        if self.wildcard {
            host.len() > self.host.len() && host.ends_with(&self.host)
        } else {
            host == self.host
        }
    }
}

impl fmt::Display for HttpOrigin {
    fn fmt(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        let star = if self.wildcard { "*" } else { "" };
        write!(
            formatter,
            "{}://{star}{}:{}",
            self.scheme.as_str(),
            self.host,
            self.port
        )
    }
}

/// `host`, `host:port`, `[v6]` or `[v6]:port`.
pub fn split_host_port(authority: &str) -> Option<(&str, Option<&str>)> {
    if let Some(rest) = authority.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        return match after {
            "" => Some((host, None)),
            after => Some((host, Some(after.strip_prefix(':')?))),
        };
    }
    match authority.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && !host.contains(':') => Some((host, Some(port))),
        Some(_) => None,
        None if authority.is_empty() => None,
        None => Some((authority, None)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_origin_matches_its_scheme_host_and_port_only() {
        let origin = HttpOrigin::parse("https://API.example.net").unwrap();
        assert!(origin.matches(HttpScheme::Https, "api.example.net", 443));
        assert!(origin.matches(HttpScheme::Https, "Api.Example.Net", 443));
        assert!(!origin.matches(HttpScheme::Http, "api.example.net", 443));
        assert!(!origin.matches(HttpScheme::Https, "api.example.net", 8443));
        assert!(!origin.matches(HttpScheme::Https, "api.example.net.evil.org", 443));
        let with_port = HttpOrigin::parse("http://192.0.2.1:8080/").unwrap();
        assert!(with_port.matches(HttpScheme::Http, "192.0.2.1", 8080));
        assert!(!with_port.matches(HttpScheme::Http, "192.0.2.1", 80));
        let v6 = HttpOrigin::parse("http://[2001:db8::1]:8080").unwrap();
        assert!(v6.matches(HttpScheme::Http, "2001:db8::1", 8080));
    }

    #[test]
    fn a_wildcard_grants_subdomains_but_not_the_domain() {
        let origin = HttpOrigin::parse("https://*.example.org").unwrap();
        assert!(origin.matches(HttpScheme::Https, "a.example.org", 443));
        assert!(origin.matches(HttpScheme::Https, "b.a.example.org", 443));
        assert!(!origin.matches(HttpScheme::Https, "example.org", 443));
        assert!(!origin.matches(HttpScheme::Https, "badexample.org", 443));
    }

    #[test]
    fn origins_with_more_than_an_origin_are_refused() {
        for url in [
            "ftp://example.org",
            "example.org",
            "https://example.org/api",
            "https://user@example.org",
            "https://example.org:0",
            "https://example.org:99999",
            "https://a.*.org",
            "https://*",
            "https://",
        ] {
            assert!(HttpOrigin::parse(url).is_err(), "{url} was accepted");
        }
    }
}
