//! Checks that serde cannot express: unique names, valid topic filters, sane limits.
//! Each problem is returned with the key path it concerns, so the loader can point at it.

use std::collections::HashSet;

use super::{Config, FunctionSpec, HttpGrant, HttpOrigin, SnmpConfig, SyslogConfig, TriggerSpec};
use crate::topic::{TopicFilter, render_template, subscription_filter, validate_topic_name};

type Problem = (String, String);

/// Largest linear memory a function may ask for.
const MAX_MEMORY_MIB: u32 = 4096;
/// Results are published like any message, so they share its largest size.
const MAX_RESULT_BYTES: u32 = super::MAX_PUBLISH_BYTES;

impl Config {
    /// Every problem of this configuration, each with its dotted key path.
    pub fn validate(&self) -> Vec<Problem> {
        let mut problems = Vec::new();
        if self.runtime.workers == Some(0) {
            problems.push(("runtime.workers".into(), "must be at least 1".into()));
        }
        if self.runtime.async_threads == Some(0) {
            problems.push(("runtime.async_threads".into(), "must be at least 1".into()));
        }
        if self.runtime.max_instances == 0 {
            problems.push(("runtime.max_instances".into(), "must be at least 1".into()));
        }
        if self.runtime.epoch_tick.0 == 0 {
            problems.push(("runtime.epoch_tick".into(), "must be at least 1ms".into()));
        }
        if self.state.max_key_bytes == 0 {
            problems.push(("state.max_key_bytes".into(), "must be at least 1".into()));
        }
        let mut brokers = HashSet::new();
        for (index, broker) in self.brokers.iter().enumerate() {
            let at = format!("broker[{index}]");
            if !brokers.insert(broker.name.as_str()) {
                problems.push((
                    format!("{at}.name"),
                    format!("duplicate broker name {:?}", broker.name),
                ));
            }
            if let Err(message) = validate_name(&broker.name) {
                problems.push((format!("{at}.name"), message));
            }
            if broker
                .address
                .rsplit_once(':')
                .is_none_or(|(_, port)| port.parse::<u16>().is_err())
            {
                problems.push((
                    format!("{at}.address"),
                    format!("{:?} is not host:port", broker.address),
                ));
            }
            if let Some(tls) = &broker.tls
                && tls.cert_file.is_some() != tls.key_file.is_some()
            {
                problems.push((
                    format!("{at}.tls"),
                    "cert_file and key_file go together".into(),
                ));
            }
            if broker.publish_timeout.0 == 0 {
                problems.push((
                    format!("{at}.publish_timeout"),
                    "must be at least 1ms".into(),
                ));
            }
            if broker.inflight == 0 {
                problems.push((format!("{at}.inflight"), "must be at least 1".into()));
            }
        }
        if let Some(snmp) = &self.snmp {
            validate_snmp(snmp, &mut problems);
        }
        if let Some(syslog) = &self.syslog {
            validate_syslog(syslog, &mut problems);
        }
        if self
            .flow
            .as_ref()
            .is_some_and(|f| f.template_timeout.0 == 0)
        {
            problems.push((
                "flow.template_timeout".into(),
                "must be at least 1ms".into(),
            ));
        }
        let mut names = HashSet::new();
        for (index, function) in self.functions.iter().enumerate() {
            let at = format!("function[{index}]");
            for (position, trigger) in function.triggers.iter().enumerate() {
                if let TriggerSpec::SnmpPoll(poll) = trigger
                    && !self
                        .snmp
                        .iter()
                        .flat_map(|s| &s.polls)
                        .any(|job| job.name == poll.job)
                {
                    problems.push((
                        format!("{at}.trigger[{position}].snmp_poll.job"),
                        format!("no [[snmp.poll]] job named {:?}", poll.job),
                    ));
                }
            }
            let receives = self.snmp.as_ref().is_some_and(|s| s.listen.is_some());
            if !receives
                && let Some(position) = function
                    .triggers
                    .iter()
                    .position(|t| matches!(t, TriggerSpec::SnmpTrap(_)))
            {
                problems.push((
                    format!("{at}.trigger[{position}].snmp_trap"),
                    "needs the receiver: snmp.listen in this file".into(),
                ));
            }
            let receives_syslog = self
                .syslog
                .as_ref()
                .is_some_and(|s| !s.udp.is_empty() || !s.tcp.is_empty() || !s.tls.is_empty());
            if !receives_syslog
                && let Some(position) = function
                    .triggers
                    .iter()
                    .position(|t| matches!(t, TriggerSpec::Syslog(_)))
            {
                problems.push((
                    format!("{at}.trigger[{position}].syslog"),
                    "needs the receiver: syslog.udp, syslog.tcp or [[syslog.tls]] in this file"
                        .into(),
                ));
            }
            let receives_flows = self.flow.as_ref().is_some_and(|f| !f.udp.is_empty());
            if !receives_flows
                && let Some(position) = function
                    .triggers
                    .iter()
                    .position(|t| matches!(t, TriggerSpec::Flow(_)))
            {
                problems.push((
                    format!("{at}.trigger[{position}].flow"),
                    "needs the collector: flow.udp in this file".into(),
                ));
            }
            if !names.insert(function.name.as_str()) {
                problems.push((
                    format!("{at}.name"),
                    format!("duplicate function name {:?}", function.name),
                ));
            }
            function.validate(&at, &mut problems);
            self.validate_broker_references(function, &at, &mut problems);
            self.validate_model_references(function, &at, &mut problems);
            self.validate_snmp_grants(function, &at, &mut problems);
        }
        self.validate_models(&mut problems);
        self.validate_sync(&mut problems);
        if self.sync.keep_revisions < 2 {
            problems.push((
                "sync.keep_revisions".into(),
                "must be at least 2 (the committed revision and one to roll back to)".into(),
            ));
        }
        problems
    }

    fn validate_sync(&self, problems: &mut Vec<Problem>) {
        let sync = &self.sync;
        let Some(broker) = &sync.broker else {
            return;
        };
        if !self.brokers.iter().any(|spec| &spec.name == broker) {
            problems.push((
                "sync.broker".into(),
                format!("no [[broker]] is named {broker:?}"),
            ));
        }
        if sync.trusted_keys.is_empty() {
            problems.push((
                "sync.trusted_keys".into(),
                "is empty: a device that follows the fleet must trust its key".into(),
            ));
        }
        if !crate::topic::is_plain_level(&sync.device_id()) {
            problems.push((
                "sync.device_id".into(),
                format!(
                    "{:?} cannot stand in a topic (no '/', '+', '#', '$')",
                    sync.device_id()
                ),
            ));
        }
        for (index, group) in sync.groups.iter().enumerate() {
            if !crate::topic::is_plain_level(group) {
                problems.push((
                    format!("sync.groups[{index}]"),
                    format!("{group:?} cannot stand in a topic (no '/', '+', '#', '$')"),
                ));
            }
        }
        if sync.report_every.0 == 0 {
            problems.push(("sync.report_every".into(), "must be at least 1ms".into()));
        }
    }

    fn validate_models(&self, problems: &mut Vec<Problem>) {
        if self.inference.max_model_mib == 0 {
            problems.push((
                "inference.max_model_mib".into(),
                "must be at least 1".into(),
            ));
        }
        let mut seen = HashSet::new();
        for (index, model) in self.models.iter().enumerate() {
            let at = format!("model[{index}]");
            if let Err(message) = validate_name(&model.name) {
                problems.push((format!("{at}.name"), message));
            }
            if !seen.insert((model.name.as_str(), model.shadow)) {
                let role = if model.shadow { "shadow" } else { "active" };
                problems.push((
                    format!("{at}.name"),
                    format!("a second {role} version of model {:?}", model.name),
                ));
            }
            if model.version.is_empty() {
                problems.push((format!("{at}.version"), "must not be empty".into()));
            }
            if let Some(sha) = &model.sha256
                && (sha.len() != 64 || !sha.bytes().all(|b| b.is_ascii_hexdigit()))
            {
                problems.push((format!("{at}.sha256"), "must be 64 hex digits".into()));
            }
        }
        for (index, model) in self.models.iter().enumerate() {
            if model.shadow
                && !self
                    .models
                    .iter()
                    .any(|m| m.name == model.name && !m.shadow)
            {
                problems.push((
                    format!("model[{index}].shadow"),
                    format!("model {:?} has no active version to shadow", model.name),
                ));
            }
        }
    }

    fn validate_model_references(
        &self,
        function: &FunctionSpec,
        at: &str,
        problems: &mut Vec<Problem>,
    ) {
        let known = |name: &str| self.models.iter().any(|m| m.name == name);
        for (index, name) in function.grants.models.iter().enumerate() {
            if !known(name) {
                problems.push((
                    format!("{at}.grants.models[{index}]"),
                    format!("no [[model]] named {name:?}"),
                ));
            }
        }
        for name in function.model_shapes.keys() {
            if !function.grants.models.contains(name) {
                problems.push((
                    format!("{at}.model_shapes.{name}"),
                    format!("model {name:?} is not in grants.models"),
                ));
            }
        }
    }

    fn validate_snmp_grants(&self, function: &FunctionSpec, at: &str, problems: &mut Vec<Problem>) {
        for name in function.grants.snmp.keys() {
            if !self
                .snmp
                .iter()
                .flat_map(|snmp| &snmp.targets)
                .any(|target| &target.name == name)
            {
                problems.push((
                    format!("{at}.grants.snmp.{name}"),
                    format!("no [[snmp.target]] named {name:?}"),
                ));
            }
        }
    }

    fn validate_broker_references(
        &self,
        function: &FunctionSpec,
        at: &str,
        problems: &mut Vec<Problem>,
    ) {
        let known = |name: &str| self.brokers.iter().any(|b| b.name == name);
        if let Some(name) = &function.broker
            && !known(name)
        {
            problems.push((
                format!("{at}.broker"),
                format!("no [[broker]] named {name:?}"),
            ));
        }
        for (index, trigger) in function.triggers.iter().enumerate() {
            let TriggerSpec::Mqtt(mqtt) = trigger else {
                continue;
            };
            let key = format!("{at}.trigger[{index}].mqtt");
            match &mqtt.broker {
                Some(name) if !known(name) => problems.push((
                    format!("{key}.broker"),
                    format!("no [[broker]] named {name:?}"),
                )),
                None if self.brokers.is_empty() => {
                    problems.push((key, "an mqtt trigger needs a [[broker]] connection".into()))
                }
                _ => {}
            }
        }
    }
}

impl FunctionSpec {
    /// Appends the problems of this function, keyed under `at` (e.g. `function[0]`).
    pub fn validate(&self, at: &str, problems: &mut Vec<Problem>) {
        if let Err(message) = validate_name(&self.name) {
            problems.push((format!("{at}.name"), message));
        }
        let limits = &self.limits;
        if limits.memory_mib == 0 || limits.memory_mib > MAX_MEMORY_MIB {
            problems.push((
                format!("{at}.limits.memory_mib"),
                format!("must be between 1 and {MAX_MEMORY_MIB}"),
            ));
        }
        if limits.timeout.0 == 0 {
            problems.push((
                format!("{at}.limits.timeout"),
                "must be at least 1ms".into(),
            ));
        }
        if limits.concurrency == 0 {
            problems.push((
                format!("{at}.limits.concurrency"),
                "must be at least 1".into(),
            ));
        }
        if limits.queue == 0 {
            problems.push((format!("{at}.limits.queue"), "must be at least 1".into()));
        }
        if limits.result_bytes > MAX_RESULT_BYTES {
            problems.push((
                format!("{at}.limits.result_bytes"),
                format!("must be at most {MAX_RESULT_BYTES} (the largest message fogd publishes)"),
            ));
        }
        for (key, value) in [
            ("publish_bytes", limits.publish_bytes),
            ("kv_write_bytes", limits.kv_write_bytes),
            ("kv_bytes", limits.kv_bytes),
            ("kv_keys", limits.kv_keys),
            ("http_response_bytes", limits.http_response_bytes),
            ("http_concurrency", limits.http_concurrency.into()),
            ("snmp_requests", limits.snmp_requests.into()),
        ] {
            if value == 0 {
                problems.push((format!("{at}.limits.{key}"), "must be at least 1".into()));
            }
        }
        for (index, filter) in self.grants.publish.iter().enumerate() {
            if let Err(error) = TopicFilter::parse(filter) {
                problems.push((format!("{at}.grants.publish[{index}]"), error.to_string()));
            }
        }
        for (index, grant) in self.grants.outbound_http.iter().enumerate() {
            validate_http_grant(
                grant,
                &format!("{at}.grants.outbound_http[{index}]"),
                problems,
            );
        }
        if let Some(output) = &self.output {
            validate_template(output, &format!("{at}.output"), problems);
        }
        if self.output_qos.is_some_and(|qos| qos > 2) {
            problems.push((format!("{at}.output_qos"), "must be 0, 1 or 2".into()));
        }
        for (index, trigger) in self.triggers.iter().enumerate() {
            let key = format!("{at}.trigger[{index}]");
            match trigger {
                TriggerSpec::Timer(timer) if timer.every.0 == 0 => {
                    problems.push((format!("{key}.timer.every"), "must be at least 1ms".into()))
                }
                TriggerSpec::Timer(_) => {}
                TriggerSpec::SnmpPoll(_) | TriggerSpec::Syslog(_) => {}
                TriggerSpec::Flow(flow) => {
                    if flow.window.is_some() && flow.max_keys >= self.limits.queue as usize {
                        problems.push((
                            format!("{key}.flow.max_keys"),
                            format!(
                                "a window of up to {} aggregates (max_keys and the overflow one) never fits limits.queue = {}: raise the queue or lower max_keys",
                                flow.max_keys + 1,
                                self.limits.queue
                            ),
                        ));
                    }
                    for (field, problem) in flow.problems() {
                        let at = match field {
                            "" => format!("{key}.flow"),
                            field => format!("{key}.flow.{field}"),
                        };
                        problems.push((at, problem));
                    }
                }
                TriggerSpec::SnmpTrap(trap) => {
                    if let Some(oid) = &trap.oid
                        && let Err(message) = validate_oid(oid)
                    {
                        problems.push((format!("{key}.snmp_trap.oid"), message));
                    }
                }
                TriggerSpec::Mqtt(mqtt) => {
                    if let Err(error) = subscription_filter(&mqtt.topic) {
                        problems.push((format!("{key}.mqtt.topic"), error.to_string()));
                    }
                    if mqtt.qos > 2 {
                        problems.push((format!("{key}.mqtt.qos"), "must be 0, 1 or 2".into()));
                    }
                    if let Some(dead_letter) = &mqtt.dead_letter {
                        validate_template(
                            dead_letter,
                            &format!("{key}.mqtt.dead_letter"),
                            problems,
                        );
                    }
                }
            }
        }
    }
}

fn validate_http_grant(grant: &HttpGrant, at: &str, problems: &mut Vec<Problem>) {
    if let Err(message) = HttpOrigin::parse(&grant.url) {
        problems.push((format!("{at}.url"), message));
    }
    if grant.client_cert.is_some() != grant.client_key.is_some() {
        problems.push((
            at.to_owned(),
            "give client_cert and client_key together".into(),
        ));
    }
    let names = grant.headers.keys().map(|name| ("headers", name));
    let secret_names = grant
        .secret_headers
        .keys()
        .map(|name| ("secret_headers", name));
    for (table, name) in names.chain(secret_names) {
        if !is_header_name(name) {
            problems.push((
                format!("{at}.{table}.{name}"),
                "is not an HTTP header name (letters, digits and !#$%&'*+-.^_`|~)".into(),
            ));
        }
    }
}

/// An RFC 9110 field name: one or more token characters.
fn is_header_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&byte))
}

fn validate_template(template: &str, key: &str, problems: &mut Vec<Problem>) {
    let sample = render_template(template, "f", "s/t");
    if let Err(error) = validate_topic_name(&sample) {
        problems.push((key.to_owned(), error.to_string()));
    }
}

/// A dotted numeric OID such as `1.3.6.1.6.3.1.1.5.3`.
fn validate_oid(oid: &str) -> Result<(), String> {
    let arcs: Vec<&str> = oid.split('.').collect();
    if arcs.len() < 2 || arcs.iter().any(|arc| arc.parse::<u32>().is_err()) {
        return Err(format!(
            "{oid:?} is not a numeric OID such as 1.3.6.1.6.3.1.1.5.3"
        ));
    }
    Ok(())
}

/// The longest syslog message fogd keeps (RFC 5425 receivers must take 2048 octets and
/// should take 8192; a gateway needs a bound).
const MAX_SYSLOG_MESSAGE_BYTES: usize = 1 << 20;

fn validate_syslog(syslog: &SyslogConfig, problems: &mut Vec<Problem>) {
    if syslog.max_message_bytes < 480 || syslog.max_message_bytes > MAX_SYSLOG_MESSAGE_BYTES {
        problems.push((
            "syslog.max_message_bytes".into(),
            format!("must be between 480 (RFC 5424's minimum) and {MAX_SYSLOG_MESSAGE_BYTES}"),
        ));
    }
    if syslog.max_connections == 0 {
        problems.push(("syslog.max_connections".into(), "must be at least 1".into()));
    }
    if syslog.idle_timeout.0 == 0 {
        problems.push(("syslog.idle_timeout".into(), "must be at least 1ms".into()));
    }
}

fn validate_snmp(snmp: &SnmpConfig, problems: &mut Vec<Problem>) {
    if let Some(listen) = &snmp.listen
        && listen.parse::<std::net::SocketAddr>().is_err()
    {
        problems.push((
            "snmp.listen".into(),
            format!("{listen:?} is not an address:port such as 0.0.0.0:162"),
        ));
    }
    if snmp.engine_enterprise >= 1 << 31 {
        problems.push((
            "snmp.engine_enterprise".into(),
            format!(
                "{} does not fit the engine ID's 31 bits for an enterprise number",
                snmp.engine_enterprise
            ),
        ));
    }
    let mut jobs = HashSet::new();
    for (index, job) in snmp.polls.iter().enumerate() {
        let at = format!("snmp.poll[{index}]");
        if !jobs.insert(job.name.as_str()) {
            problems.push((
                format!("{at}.name"),
                format!("duplicate job {:?}", job.name),
            ));
        }
        validate_credentials(
            snmp,
            &at,
            ("community", job.community.is_some()),
            job.user.as_deref(),
            problems,
        );
        if job.get.is_empty() && job.walk.is_none() {
            problems.push((
                at.clone(),
                "give get = [...] OIDs, a walk subtree, or both".into(),
            ));
        }
        for (oid_index, oid) in job.get.iter().enumerate() {
            if let Err(message) = validate_oid(oid) {
                problems.push((format!("{at}.get[{oid_index}]"), message));
            }
        }
        if let Some(walk) = &job.walk
            && let Err(message) = validate_oid(walk)
        {
            problems.push((format!("{at}.walk"), message));
        }
        if job.every.0 == 0 {
            problems.push((format!("{at}.every"), "must be at least 1ms".into()));
        }
    }
    let mut targets = HashSet::new();
    for (index, target) in snmp.targets.iter().enumerate() {
        let at = format!("snmp.target[{index}]");
        if !targets.insert(target.name.as_str()) {
            problems.push((
                format!("{at}.name"),
                format!("duplicate target {:?}", target.name),
            ));
        }
        if let Err(message) = validate_name(&target.name) {
            problems.push((format!("{at}.name"), message));
        }
        if super::split_host_port(&target.address)
            .and_then(|(_, port)| port?.parse::<u16>().ok())
            .is_none()
        {
            problems.push((
                format!("{at}.address"),
                format!("{:?} is not host:port", target.address),
            ));
        }
        validate_credentials(
            snmp,
            &at,
            ("community_file", target.community_file.is_some()),
            target.user.as_deref(),
            problems,
        );
        if target.timeout.0 == 0 {
            problems.push((format!("{at}.timeout"), "must be at least 1ms".into()));
        }
    }
    let mut names = HashSet::new();
    for (index, user) in snmp.users.iter().enumerate() {
        let at = format!("snmp.user[{index}]");
        if !names.insert(user.name.as_str()) {
            problems.push((
                format!("{at}.name"),
                format!("duplicate user {:?}", user.name),
            ));
        }
        if let Some(auth) = &user.auth {
            if auth.parse::<async_snmp::AuthProtocol>().is_err() {
                problems.push((
                    format!("{at}.auth"),
                    format!("{auth:?} is not MD5, SHA, SHA-224, SHA-256, SHA-384 or SHA-512"),
                ));
            }
            if user.auth_password_file.is_none() {
                problems.push((
                    format!("{at}.auth_password_file"),
                    "is needed with auth".into(),
                ));
            }
        }
        if let Some(privacy) = &user.privacy {
            if privacy.parse::<async_snmp::PrivProtocol>().is_err() {
                problems.push((
                    format!("{at}.privacy"),
                    format!("{privacy:?} is not DES, 3DES, AES, AES-192-BLUMENTHAL or AES-256-BLUMENTHAL"),
                ));
            }
            if user.auth.is_none() {
                problems.push((format!("{at}.privacy"), "needs auth as well".into()));
            }
            if user.privacy_password_file.is_none() {
                problems.push((
                    format!("{at}.privacy_password_file"),
                    "is needed with privacy".into(),
                ));
            }
        }
    }
}

/// One of a v2c community (the key named in `community`, and whether it is given) or a
/// known SNMPv3 user.
fn validate_credentials(
    snmp: &SnmpConfig,
    at: &str,
    (community_key, has_community): (&str, bool),
    user: Option<&str>,
    problems: &mut Vec<Problem>,
) {
    if has_community == user.is_some() {
        problems.push((
            at.to_owned(),
            format!("give either {community_key} (v2c) or user (v3)"),
        ));
    }
    if let Some(user) = user
        && !snmp.users.iter().any(|u| u.name == user)
    {
        problems.push((
            format!("{at}.user"),
            format!("no [[snmp.user]] named {user:?}"),
        ));
    }
}

fn validate_name(name: &str) -> Result<(), String> {
    let valid = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    if valid {
        Ok(())
    } else {
        Err(format!(
            "{name:?} is not a valid name: use 1 to 64 lower-case letters, digits, `-` or `_`"
        ))
    }
}
