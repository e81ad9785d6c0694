//! `[syslog]`: the syslog receiver's listeners and limits, and the `syslog` trigger's filters.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, de};

use super::{Millis, Network};

/// The syslog receiver: UDP and TCP listeners (RFC 3164 and RFC 5424 messages; TCP framed by
/// octet counting or newlines, RFC 6587).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyslogConfig {
    /// UDP addresses to receive on, e.g. `["0.0.0.0:514"]`.
    #[serde(default)]
    pub udp: Vec<SocketAddr>,
    /// TCP addresses to accept connections on, e.g. `["0.0.0.0:601"]`.
    #[serde(default)]
    pub tcp: Vec<SocketAddr>,
    /// TLS listeners (RFC 5425), `[[syslog.tls]]`.
    #[serde(default)]
    pub tls: Vec<SyslogTls>,
    /// Source networks accepted; empty accepts any sender.
    #[serde(default)]
    pub allowed_sources: Vec<Network>,
    /// Socket receive buffer of each UDP listener (`SO_RCVBUF`).
    #[serde(default = "default_receive_buffer_kib")]
    pub receive_buffer_kib: u32,
    /// TCP and TLS connections open at once, over all listeners; more are closed on accept.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// Longest message kept; a longer one is truncated to this and counted.
    #[serde(default = "default_max_message_bytes")]
    pub max_message_bytes: usize,
    /// A TCP connection that sends nothing for this long is closed.
    #[serde(default = "default_idle_timeout")]
    pub idle_timeout: Millis,
}

/// One TLS listener: its address, the receiver's certificate and key, and, to require and
/// verify client certificates, the CA that issues them.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyslogTls {
    pub listen: SocketAddr,
    /// PEM certificate chain.
    pub cert_file: PathBuf,
    /// PEM private key.
    pub key_file: PathBuf,
    /// PEM CA certificates; when given, a client must present a certificate they issued.
    pub client_ca_file: Option<PathBuf>,
}

fn default_receive_buffer_kib() -> u32 {
    1024
}

fn default_max_connections() -> usize {
    256
}

fn default_max_message_bytes() -> usize {
    8192
}

fn default_idle_timeout() -> Millis {
    Millis(60_000)
}

/// `syslog = { severity = "warning", app_name = "sshd", pattern = "Failed password" }`: runs a
/// function for messages that pass every filter given (none given: every message).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyslogTrigger {
    /// Facilities accepted, by name (`kern`, `auth`, `local0`...); empty accepts all.
    #[serde(default)]
    pub facility: Vec<Facility>,
    /// The least severe level accepted (`warning` accepts warning, err, crit, alert, emerg).
    pub severity: Option<Severity>,
    /// Exact hostname.
    pub hostname: Option<String>,
    /// Exact app name (RFC 5424 APP-NAME, or the RFC 3164 tag).
    pub app_name: Option<String>,
    /// A regular expression the message must match somewhere.
    pub pattern: Option<Pattern>,
}

macro_rules! named_codes {
    ($(#[$meta:meta])* $name:ident, $what:literal { $($variant:ident => $text:literal = $code:literal,)* }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum $name {
            $($variant,)*
        }

        impl $name {
            /// The name used in config and events.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)*
                }
            }

            /// The number in the message's PRI.
            pub fn code(self) -> u8 {
                match self {
                    $($name::$variant => $code,)*
                }
            }

            pub fn from_code(code: u8) -> Option<Self> {
                match code {
                    $($code => Some($name::$variant),)*
                    _ => None,
                }
            }
        }

        impl FromStr for $name {
            type Err = String;

            fn from_str(text: &str) -> Result<Self, String> {
                match text {
                    $($text => Ok($name::$variant),)*
                    _ => Err(format!(
                        concat!("{:?} is not a ", $what, " (one of: {})"),
                        text,
                        [$($text),*].join(", ")
                    )),
                }
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                String::deserialize(deserializer)?.parse().map_err(de::Error::custom)
            }
        }
    };
}

named_codes! {
    /// A syslog facility (RFC 5424 section 6.2.1).
    Facility, "syslog facility" {
        Kern => "kern" = 0,
        User => "user" = 1,
        Mail => "mail" = 2,
        Daemon => "daemon" = 3,
        Auth => "auth" = 4,
        Syslog => "syslog" = 5,
        Lpr => "lpr" = 6,
        News => "news" = 7,
        Uucp => "uucp" = 8,
        Cron => "cron" = 9,
        Authpriv => "authpriv" = 10,
        Ftp => "ftp" = 11,
        Ntp => "ntp" = 12,
        Audit => "audit" = 13,
        Alert => "alert" = 14,
        Clock => "clock" = 15,
        Local0 => "local0" = 16,
        Local1 => "local1" = 17,
        Local2 => "local2" = 18,
        Local3 => "local3" = 19,
        Local4 => "local4" = 20,
        Local5 => "local5" = 21,
        Local6 => "local6" = 22,
        Local7 => "local7" = 23,
    }
}

named_codes! {
    /// A syslog severity; a lower code is more severe.
    Severity, "syslog severity" {
        Emerg => "emerg" = 0,
        Alert => "alert" = 1,
        Crit => "crit" = 2,
        Err => "err" = 3,
        Warning => "warning" = 4,
        Notice => "notice" = 5,
        Info => "info" = 6,
        Debug => "debug" = 7,
    }
}

/// A regular expression, compiled when the config loads.
#[derive(Clone)]
pub struct Pattern(pub regex::Regex);

impl Pattern {
    pub fn is_match(&self, text: &str) -> bool {
        self.0.is_match(text)
    }
}

impl PartialEq for Pattern {
    fn eq(&self, other: &Self) -> bool {
        self.0.as_str() == other.0.as_str()
    }
}

impl fmt::Debug for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.0.as_str(), f)
    }
}

impl<'de> Deserialize<'de> for Pattern {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        regex::Regex::new(&text)
            .map(Pattern)
            .map_err(|error| de::Error::custom(format!("not a regular expression: {error}")))
    }
}

impl SyslogTrigger {
    /// Whether a message with these header fields and text passes every filter.
    /// `message` is asked for only when a pattern needs it.
    pub fn accepts<'m>(
        &self,
        facility: Option<Facility>,
        severity: Option<Severity>,
        hostname: Option<&str>,
        app_name: Option<&str>,
        message: impl FnOnce() -> Option<&'m str>,
    ) -> bool {
        (self.facility.is_empty() || facility.is_some_and(|f| self.facility.contains(&f)))
            && self
                .severity
                .is_none_or(|least| severity.is_some_and(|s| s.code() <= least.code()))
            && self.hostname.as_deref().is_none_or(|h| hostname == Some(h))
            && self.app_name.as_deref().is_none_or(|a| app_name == Some(a))
            && self
                .pattern
                .as_ref()
                .is_none_or(|p| message().is_some_and(|m| p.is_match(m)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trigger(toml_text: &str) -> SyslogTrigger {
        toml::from_str(toml_text).unwrap()
    }

    #[test]
    fn severity_is_a_minimum_and_facilities_a_set() {
        let t = trigger("severity = \"warning\"\nfacility = [\"auth\", \"local7\"]");
        let pass = |f, s| t.accepts(Some(f), Some(s), None, None, || None);
        assert!(pass(Facility::Auth, Severity::Err));
        assert!(pass(Facility::Local7, Severity::Warning));
        assert!(!pass(Facility::Auth, Severity::Notice));
        assert!(!pass(Facility::Kern, Severity::Emerg));
        assert!(!t.accepts(None, Some(Severity::Emerg), None, None, || None));
    }

    #[test]
    fn hostname_app_and_pattern_must_all_match() {
        let t = trigger(
            "hostname = \"r1\"\napp_name = \"sshd\"\npattern = \"Failed password for \\\\w+\"",
        );
        let message = || Some("Failed password for root from 192.0.2.9");
        assert!(t.accepts(None, None, Some("r1"), Some("sshd"), message));
        assert!(!t.accepts(None, None, Some("r2"), Some("sshd"), message));
        assert!(!t.accepts(None, None, Some("r1"), None, message));
        assert!(!t.accepts(None, None, Some("r1"), Some("sshd"), || Some("Accepted")));
    }

    #[test]
    fn unknown_names_and_bad_patterns_are_refused_with_the_reason() {
        let error = toml::from_str::<SyslogTrigger>("severity = \"loud\"").unwrap_err();
        assert!(
            error
                .to_string()
                .contains("\"loud\" is not a syslog severity"),
            "{error}"
        );
        let error = toml::from_str::<SyslogTrigger>("pattern = \"(\"").unwrap_err();
        assert!(
            error.to_string().contains("not a regular expression"),
            "{error}"
        );
    }
}
