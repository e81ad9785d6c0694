//! `fogd:function/snmp`: get, get-next, a bounded walk and set, to the `[[snmp.target]]`s a
//! function is granted (`read`, or `write` for set too), within the event's request budget
//! and deadline. The guest names the target; it never sees an address, community or key.
//! Like HTTP requests, a set takes effect when it is made, whatever `effects` says.

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use async_snmp::{ErrorStatus, Oid, Value, VarBind};
use bytes::Bytes;
use wasmtime::component::{HasSelf, Linker};

use super::{Capability, GrantError, HostResources, HostState};
use crate::config::{FunctionSpec, SnmpAccess};
use crate::contract::snmp::{self, Error, Host, Varbind};
use crate::snmp_client::Target;
use crate::telemetry::{OutboundRequestMetrics, RequestOutcome};

/// The targets one function may query, and its per-event request budget.
pub struct SnmpGrants {
    targets: Vec<(Arc<Target>, SnmpAccess)>,
    requests_per_event: u32,
    metrics: Arc<OutboundRequestMetrics>,
}

impl Capability for SnmpGrants {
    fn prepare(spec: &FunctionSpec, resources: &HostResources) -> Result<Self, GrantError> {
        let targets = spec
            .grants
            .snmp
            .iter()
            .map(|(name, access)| match resources.snmp_targets.get(name) {
                Some(target) => Ok((target.clone(), *access)),
                None => Err(GrantError::Snmp(name.clone())),
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            targets,
            requests_per_event: spec.limits.snmp_requests,
            metrics: Arc::new(resources.metrics.outbound_requests(&spec.name, "snmp")),
        })
    }

    fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
        snmp::add_to_linker::<_, HasSelf<_>>(linker, |state| state)
    }
}

impl SnmpGrants {
    /// Counts of this function's requests to `target` that ended as `outcome`.
    pub fn request_count(&self, target: &str, outcome: RequestOutcome) -> u64 {
        self.metrics.request_count(target, outcome)
    }
}

impl HostState {
    /// The granted target named `name`, if the grant allows `needed` and the event has
    /// requests left; counts the request.
    fn snmp_target(&mut self, name: &str, needed: SnmpAccess) -> Result<Arc<Target>, Error> {
        let grants = &self.caps.grants.snmp;
        let granted = grants
            .targets
            .iter()
            .find(|(target, _)| target.name() == name)
            .filter(|(_, access)| needed == SnmpAccess::Read || *access == SnmpAccess::Write);
        let Some((target, _)) = granted else {
            grants
                .metrics
                .request(super::http::NOT_GRANTED, RequestOutcome::NotGranted);
            tracing::warn!(function = %self.caps.name, event_id = %self.event_id(), target = name, write = needed == SnmpAccess::Write, "SNMP request refused: target not granted");
            return Err(Error::NotGranted(name.to_owned()));
        };
        if !self.requests.take_snmp_request(grants.requests_per_event) {
            grants
                .metrics
                .request(target.name(), RequestOutcome::LimitReached);
            return Err(Error::LimitReached(grants.requests_per_event));
        }
        Ok(target.clone())
    }

    /// Runs one request within the event's deadline, blocking this (guest) thread.
    fn run_snmp<Request>(
        &mut self,
        target: &Target,
        request: Request,
    ) -> Result<Vec<Varbind>, Error>
    where
        Request: Future<Output = async_snmp::Result<Vec<VarBind>>>,
    {
        let deadline = self.requests.deadline();
        let started = Instant::now();
        let answer = wasmtime_wasi::runtime::in_tokio(async {
            tokio::time::timeout_at(deadline.into(), request).await
        });
        let metrics = &self.caps.grants.snmp.metrics;
        let outcome = match answer {
            Err(_) => {
                self.requests.mark_deadline_hit();
                Err(Error::Timeout)
            }
            Ok(Err(error)) => Err(request_error(&error)),
            Ok(Ok(varbinds)) => Ok(varbinds.iter().map(to_guest).collect()),
        };
        let label = match &outcome {
            Ok(_) | Err(Error::Agent(_)) => {
                metrics.answered_after(target.name(), started.elapsed());
                RequestOutcome::Answered
            }
            Err(Error::Timeout) => RequestOutcome::Timeout,
            Err(_) => RequestOutcome::Failed,
        };
        metrics.request(target.name(), label);
        outcome
    }
}

impl Host for HostState {
    fn get(&mut self, target: String, oids: Vec<String>) -> Result<Vec<Varbind>, Error> {
        let oids = parse_oids(&oids)?;
        let target = self.snmp_target(&target, SnmpAccess::Read)?;
        self.run_snmp(&target, target.get(&oids))
    }

    fn get_next(&mut self, target: String, oids: Vec<String>) -> Result<Vec<Varbind>, Error> {
        let oids = parse_oids(&oids)?;
        let target = self.snmp_target(&target, SnmpAccess::Read)?;
        self.run_snmp(&target, target.get_next(&oids))
    }

    fn walk(
        &mut self,
        target: String,
        subtree: String,
        max_varbinds: u32,
    ) -> Result<Vec<Varbind>, Error> {
        let subtree = parse_oid(&subtree)?;
        let target = self.snmp_target(&target, SnmpAccess::Read)?;
        self.run_snmp(&target, target.walk(subtree, max_varbinds))
    }

    fn set(&mut self, target: String, varbinds: Vec<Varbind>) -> Result<Vec<Varbind>, Error> {
        let varbinds = varbinds
            .into_iter()
            .map(|varbind| Ok((parse_oid(&varbind.oid)?, from_guest(varbind.value)?)))
            .collect::<Result<Vec<_>, Error>>()?;
        let target = self.snmp_target(&target, SnmpAccess::Write)?;
        self.run_snmp(&target, target.set(&varbinds))
    }
}

fn parse_oid(oid: &str) -> Result<Oid, Error> {
    Oid::parse(oid).map_err(|error| Error::InvalidRequest(format!("OID {oid:?}: {error}")))
}

fn parse_oids(oids: &[String]) -> Result<Vec<Oid>, Error> {
    oids.iter().map(|oid| parse_oid(oid)).collect()
}

fn to_guest(varbind: &VarBind) -> Varbind {
    use snmp::Value as Guest;
    let value = match &varbind.value {
        Value::Integer(value) => Guest::Integer(*value),
        Value::Gauge32(value) | Value::UInteger32(value) => Guest::Unsigned(*value),
        Value::Counter32(value) => Guest::Counter32(*value),
        Value::Counter64(value) => Guest::Counter64(*value),
        Value::TimeTicks(value) => Guest::Timeticks(*value),
        Value::IpAddress([a, b, c, d]) => Guest::IpAddress((*a, *b, *c, *d)),
        Value::ObjectIdentifier(oid) => Guest::Oid(oid.to_string()),
        Value::OctetString(bytes) | Value::Nsap(bytes) => Guest::OctetString(bytes.to_vec()),
        Value::Opaque(bytes) => Guest::Opaque(bytes.to_vec()),
        Value::NoSuchObject => Guest::NoSuchObject,
        Value::NoSuchInstance => Guest::NoSuchInstance,
        Value::EndOfMibView => Guest::EndOfMibView,
        _ => Guest::Null,
    };
    Varbind {
        oid: varbind.oid.to_string(),
        value,
    }
}

fn from_guest(value: snmp::Value) -> Result<Value, Error> {
    use snmp::Value as Guest;
    Ok(match value {
        Guest::Integer(value) => Value::Integer(value),
        Guest::Unsigned(value) => Value::Gauge32(value),
        Guest::Counter32(value) => Value::Counter32(value),
        Guest::Counter64(value) => Value::Counter64(value),
        Guest::Timeticks(value) => Value::TimeTicks(value),
        Guest::IpAddress((a, b, c, d)) => Value::IpAddress([a, b, c, d]),
        Guest::Oid(oid) => Value::ObjectIdentifier(parse_oid(&oid)?),
        Guest::OctetString(bytes) => Value::OctetString(Bytes::from(bytes)),
        Guest::Opaque(bytes) => Value::Opaque(Bytes::from(bytes)),
        Guest::Null => Value::Null,
        Guest::NoSuchObject | Guest::NoSuchInstance | Guest::EndOfMibView => {
            return Err(Error::InvalidRequest(
                "an exception is not a value that can be set".into(),
            ));
        }
    })
}

/// What a failed request means to the guest. Error texts name the target's address at most,
/// never its community or keys.
fn request_error(error: &async_snmp::Error) -> Error {
    use async_snmp::Error as Snmp;
    match error {
        Snmp::SharedOperation { source } => request_error(source),
        Snmp::Exchange { source, .. } => request_error(source),
        Snmp::Timeout { .. } => Error::Timeout,
        Snmp::Snmp { status, index, .. } => Error::Agent((error_status(*status), *index)),
        Snmp::Auth { .. } => Error::AuthFailure("the agent refused the credentials".into()),
        Snmp::Report { status, .. } => Error::AuthFailure(status.to_string()),
        other => Error::Failed(other.to_string()),
    }
}

fn error_status(status: ErrorStatus) -> snmp::ErrorStatus {
    use snmp::ErrorStatus as Guest;
    match status {
        ErrorStatus::TooBig => Guest::TooBig,
        ErrorStatus::NoSuchName => Guest::NoSuchName,
        ErrorStatus::BadValue => Guest::BadValue,
        ErrorStatus::ReadOnly => Guest::ReadOnly,
        ErrorStatus::GenErr => Guest::GenErr,
        ErrorStatus::NoAccess => Guest::NoAccess,
        ErrorStatus::WrongType => Guest::WrongType,
        ErrorStatus::WrongLength => Guest::WrongLength,
        ErrorStatus::WrongEncoding => Guest::WrongEncoding,
        ErrorStatus::WrongValue => Guest::WrongValue,
        ErrorStatus::NoCreation => Guest::NoCreation,
        ErrorStatus::InconsistentValue => Guest::InconsistentValue,
        ErrorStatus::ResourceUnavailable => Guest::ResourceUnavailable,
        ErrorStatus::CommitFailed => Guest::CommitFailed,
        ErrorStatus::UndoFailed => Guest::UndoFailed,
        ErrorStatus::AuthorizationError => Guest::AuthorizationError,
        ErrorStatus::NotWritable => Guest::NotWritable,
        ErrorStatus::InconsistentName => Guest::InconsistentName,
        _ => Guest::Other,
    }
}
