//! The values of the `reason` labels, as types: a counter and the log line about it name
//! the same variant, and the text users query is written once, here.

use std::fmt;

macro_rules! label_values {
    ($(#[$meta:meta])* $name:ident { $($(#[$doc:meta])* $variant:ident => $text:literal,)* }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $($(#[$doc])* $variant,)*
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &[$name] = &[$($name::$variant,)*];

            /// The label value.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)*
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

label_values! {
    /// Why an input was refused before it became an event (`fogd_inputs_rejected_total`).
    Rejection {
        SourceNotAllowed => "source_not_allowed",
        BadCommunity => "bad_community",
        SecurityLevelTooLow => "security_level_too_low",
        UnknownUser => "unknown_user",
        WrongDigest => "wrong_digest",
        NotInTimeWindow => "not_in_time_window",
        UnsupportedSecurityLevel => "unsupported_security_level",
        DecryptionError => "decryption_error",
        UnknownEngineId => "unknown_engine_id",
        Malformed => "malformed",
        KernelBufferFull => "kernel_buffer_full",
        ReceiveError => "receive_error",
        TooLarge => "too_large",
        /// A TCP connection over the receiver's limit, closed on accept.
        TooManyConnections => "too_many_connections",
        /// A TCP connection closed after sending nothing for the idle timeout.
        Idle => "idle",
        /// A TLS connection whose handshake failed (no or an untrusted client certificate,
        /// no common protocol).
        TlsHandshake => "tls_handshake_failed",
        /// A poll that got no answer.
        Failed => "failed",
        /// A NetFlow v9 or IPFIX data set whose template the exporter has not sent (yet).
        TemplateMissing => "template_missing",
        /// An SNMP request, response or report PDU sent to the trap receiver.
        NotANotification => "not_a_notification",
    }
}

label_values! {
    /// Why a function's event was dropped (`fogd_events_dropped_total`).
    EventDrop {
        QueueFull => "queue_full",
        OutputUnavailable => "output_unavailable",
        DeadLettered => "dead_lettered",
    }
}

label_values! {
    /// Why an outbound message was dropped from a broker's outbox
    /// (`fogd_messages_dropped_total`).
    OutboxDrop {
        OutboxFull => "outbox_full",
        Expired => "expired",
        Corrupt => "corrupt",
        TooLarge => "too_large",
        Refused => "refused",
    }
}

label_values! {
    /// How a function's outbound request (HTTP, SNMP) ended (`fogd_outbound_requests_total`).
    RequestOutcome {
        /// Answered (whatever the HTTP status or SNMP error status).
        Answered => "answered",
        /// The function holds no grant for where the request went; nothing was sent.
        NotGranted => "not_granted",
        /// Refused by a limit of the function (its requests per event, its writes).
        LimitReached => "limit_reached",
        /// No answer within the event's deadline or the request's own timeout.
        Timeout => "timeout",
        /// The connection or the exchange failed (refused, TLS, protocol, authentication).
        Failed => "failed",
    }
}
