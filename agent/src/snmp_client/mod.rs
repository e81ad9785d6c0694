//! SNMP requests on functions' behalf to the agents the config names (`[[snmp.target]]`):
//! each target's address and credentials are resolved once, when the agent starts, and its
//! client (one UDP socket, shared by every function granted the target) is made on first use.
//! Poll jobs and the trap receiver use the same credentials code.

pub mod credentials;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_snmp::{Auth, Client, Oid, Retry, UdpHandle, Value, VarBind};
use thiserror::Error;
use tokio::sync::Mutex;

use crate::config::{SnmpConfig, SnmpTarget, SnmpUser};
use credentials::{CredentialError, client_auth, read_secret};

/// GETBULK repetitions per walk request.
const MAX_REPETITIONS: u32 = 25;
/// Most varbinds a walk returns, whatever the function asks for.
pub const MAX_WALK_VARBINDS: u32 = 10_000;

#[derive(Debug, Error)]
#[error("[[snmp.target]] {target:?}: {source}")]
pub struct TargetError {
    target: String,
    source: CredentialError,
}

impl TargetError {
    /// The target that could not be resolved.
    pub fn target(&self) -> &str {
        &self.target
    }
}

/// The configured targets, by name.
#[derive(Default)]
pub struct SnmpTargets {
    targets: HashMap<String, Arc<Target>>,
}

impl SnmpTargets {
    /// Resolves every `[[snmp.target]]`, reading community files and user keys.
    pub fn from_config(snmp: Option<&SnmpConfig>) -> Result<Self, TargetError> {
        let mut targets = HashMap::new();
        let users = snmp.map_or(&[][..], |snmp| snmp.users.as_slice());
        for target in snmp.iter().flat_map(|snmp| &snmp.targets) {
            let resolved = Target::resolve(target, users).map_err(|source| TargetError {
                target: target.name.clone(),
                source,
            })?;
            targets.insert(target.name.clone(), Arc::new(resolved));
        }
        Ok(Self { targets })
    }

    pub fn get(&self, name: &str) -> Option<&Arc<Target>> {
        self.targets.get(name)
    }
}

/// One agent functions may query.
pub struct Target {
    name: String,
    address: String,
    auth: Auth,
    timeout: Duration,
    retries: u32,
    client: Mutex<Option<Client<UdpHandle>>>,
}

impl Target {
    fn resolve(target: &SnmpTarget, users: &[SnmpUser]) -> Result<Self, CredentialError> {
        let community = target
            .community_file
            .as_deref()
            .map(read_secret)
            .transpose()?;
        Ok(Self {
            name: target.name.clone(),
            address: target.address.clone(),
            auth: client_auth(users, community, target.user.as_deref())?,
            timeout: target.timeout.as_duration(),
            retries: target.retries,
            client: Mutex::new(None),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The target's client, made on first use (again after a failed attempt).
    async fn client(&self) -> async_snmp::Result<Client<UdpHandle>> {
        let mut client = self.client.lock().await;
        if let Some(client) = client.as_ref() {
            return Ok(client.clone());
        }
        let retry = Retry::fixed(self.retries, Duration::ZERO)
            .map_err(|e| Box::new(async_snmp::Error::Config(e.to_string().into())))?;
        let connected = Client::builder(self.address.as_str(), self.auth.clone())
            .request_timeout(self.timeout)
            .retry(retry)
            .connect()
            .await?;
        *client = Some(connected.clone());
        Ok(connected)
    }

    pub async fn get(&self, oids: &[Oid]) -> async_snmp::Result<Vec<VarBind>> {
        Ok(self.client().await?.get_many(oids).await?.varbinds)
    }

    pub async fn get_next(&self, oids: &[Oid]) -> async_snmp::Result<Vec<VarBind>> {
        Ok(self.client().await?.get_next_many(oids).await?.varbinds)
    }

    /// Up to `max` varbinds under `subtree`.
    pub async fn walk(&self, subtree: Oid, max: u32) -> async_snmp::Result<Vec<VarBind>> {
        let client = self.client().await?;
        let mut walk = client.bulk_walk(subtree, MAX_REPETITIONS)?;
        let mut varbinds = Vec::new();
        while varbinds.len() < max.min(MAX_WALK_VARBINDS) as usize {
            match walk.next().await {
                Some(varbind) => varbinds.push(varbind?),
                None => break,
            }
        }
        Ok(varbinds)
    }

    pub async fn set(&self, varbinds: &[(Oid, Value)]) -> async_snmp::Result<Vec<VarBind>> {
        Ok(self.client().await?.set_many(varbinds).await?.varbinds)
    }
}
