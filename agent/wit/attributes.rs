// The attribute names fogd sets on events (the README's event schema documents them). The
// agent and the guest SDK both include this file, so the two cannot disagree.

/// Timer events: the timer that fired, `<function>/timer<index>` (a timer reaches only its
/// own function even when two timers share a display name).
pub const TIMER: &str = "timer";
/// MQTT events: the name of the broker connection the message arrived on.
pub const MQTT_BROKER: &str = "mqtt.broker";
/// `0`, `1` or `2`.
pub const MQTT_QOS: &str = "mqtt.qos";
/// `true` if the broker delivered a retained message.
pub const MQTT_RETAIN: &str = "mqtt.retain";
/// `true` if the broker marked the message as a redelivery.
pub const MQTT_DUP: &str = "mqtt.dup";
/// The MQTT v5 response topic of a request.
pub const MQTT_RESPONSE_TOPIC: &str = "mqtt.response_topic";
/// MQTT v5 correlation data, as lower-case hex.
pub const MQTT_CORRELATION_DATA: &str = "mqtt.correlation_data";
/// The MQTT v5 content type.
pub const MQTT_CONTENT_TYPE: &str = "mqtt.content_type";
/// Prefix of MQTT v5 user properties: `mqtt.user.<name>`.
pub const MQTT_USER_PREFIX: &str = "mqtt.user.";
/// SNMP traps: `1`, `2c` or `3`.
pub const SNMP_VERSION: &str = "snmp.version";
/// `trap` or `inform`.
pub const SNMP_PDU: &str = "snmp.pdu";
/// The sender's address and port.
pub const SNMP_SOURCE: &str = "snmp.source";
/// SNMP polls: the polled agent.
pub const SNMP_TARGET: &str = "snmp.target";
/// Syslog messages: the facility name (`kern`, `auth`, `local7`...), when the message has a PRI.
pub const SYSLOG_FACILITY: &str = "syslog.facility";
/// The severity name (`emerg` ... `debug`), when the message has a PRI.
pub const SYSLOG_SEVERITY: &str = "syslog.severity";
/// The HOSTNAME header field, when present.
pub const SYSLOG_HOSTNAME: &str = "syslog.hostname";
/// The APP-NAME (RFC 5424) or tag (RFC 3164), when present.
pub const SYSLOG_APP_NAME: &str = "syslog.app_name";
/// The sender's address and port.
pub const SYSLOG_SOURCE: &str = "syslog.source";
/// `udp`, `tcp` or `tls`.
pub const SYSLOG_TRANSPORT: &str = "syslog.transport";
/// Flow events: the trigger that made them, `<function>/flow<index>`.
pub const FLOW_TRIGGER: &str = "flow.trigger";
/// `window`, `batch` or `counters`: what the payload holds.
pub const FLOW_KIND: &str = "flow.kind";
