//! State the receiver's SNMPv3 engine keeps across restarts. Senders of v3 informs learn the
//! engine ID and boot count and refuse an engine whose boots go backwards
//! (`<state_dir>/snmp-engine.json`); DES privacy needs salts that never repeat, so it counts
//! its own epochs (`<state_dir>/snmp-des-salt.json`).

use std::path::Path;

use async_snmp::{
    AuthoritativeEngine, DesSaltState, PersistedAuthoritativeEngine, PersistedDesSaltState,
};
use serde::{Deserialize, Serialize};

use super::SnmpError;

#[derive(Serialize, Deserialize)]
struct Stored {
    engine_id: String,
    boots: u32,
}

/// RFC 3411's format for an engine ID that is neither an address nor text: octets
/// administratively assigned (here, random).
const FORMAT_OCTETS: u8 = 5;
/// The random octets after the format octet: unique enough that two gateways of one
/// enterprise never share an engine ID.
const RANDOM_OCTETS: usize = 8;

/// An engine ID in RFC 3411's format: the enterprise number with its top bit set (four
/// octets), the format octet, then random octets.
pub fn generate_engine_id(enterprise: u32) -> Result<Vec<u8>, SnmpError> {
    let mut random = [0u8; RANDOM_OCTETS];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut random)
        .map_err(|_| SnmpError::Engine("the system has no random source".into()))?;
    Ok(engine_id(enterprise, random))
}

fn engine_id(enterprise: u32, random: [u8; RANDOM_OCTETS]) -> Vec<u8> {
    let mut id = (enterprise | 0x8000_0000).to_be_bytes().to_vec();
    id.push(FORMAT_OCTETS);
    id.extend_from_slice(&random);
    id
}

/// Loads the engine (counting this start as one more boot), or creates one whose ID names
/// `enterprise`.
pub fn load(state_dir: &Path, enterprise: u32) -> Result<AuthoritativeEngine, SnmpError> {
    let path = state_dir.join("snmp-engine.json");
    let persist = {
        let path = path.clone();
        move |state: &PersistedAuthoritativeEngine| store(&path, state)
    };
    let engine = match std::fs::read(&path) {
        Ok(bytes) => {
            let stored: Stored =
                serde_json::from_slice(&bytes).map_err(|e| SnmpError::engine_state(&path, e))?;
            let engine_id = hex::decode(&stored.engine_id)
                .map_err(|e| SnmpError::engine_state(&path, format!("engine_id: {e}")))?;
            let previous = PersistedAuthoritativeEngine::new(engine_id, stored.boots)
                .map_err(|e| SnmpError::engine_state(&path, e))?;
            AuthoritativeEngine::restart(previous, persist)
                .map_err(|e| SnmpError::Engine(e.to_string()))?
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            let engine_id = generate_engine_id(enterprise)?;
            AuthoritativeEngine::install(engine_id, persist)
                .map_err(|e| SnmpError::Engine(e.to_string()))?
        }
        Err(source) => return Err(SnmpError::Read { path, source }),
    };
    Ok(engine)
}

fn store(path: &Path, state: &PersistedAuthoritativeEngine) -> std::io::Result<()> {
    write_durably(
        path,
        &Stored {
            engine_id: hex::encode(state.engine_id()),
            boots: state.engine_boots(),
        },
    )
}

#[derive(Serialize, Deserialize)]
struct StoredDesEpoch {
    boots: u32,
}

/// The DES salt epoch for this start (one more than the last).
pub fn des_salt(state_dir: &Path) -> Result<DesSaltState, SnmpError> {
    let path = state_dir.join("snmp-des-salt.json");
    let persist = {
        let path = path.clone();
        move |state: &PersistedDesSaltState| {
            write_durably(
                &path,
                &StoredDesEpoch {
                    boots: state.engine_boots(),
                },
            )
        }
    };
    let state = match std::fs::read(&path) {
        Ok(bytes) => {
            let stored: StoredDesEpoch =
                serde_json::from_slice(&bytes).map_err(|e| SnmpError::engine_state(&path, e))?;
            let previous = PersistedDesSaltState::new(stored.boots)
                .map_err(|e| SnmpError::engine_state(&path, e))?;
            DesSaltState::restart(previous, persist)
                .map_err(|e| SnmpError::Engine(e.to_string()))?
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            DesSaltState::install(persist).map_err(|e| SnmpError::Engine(e.to_string()))?
        }
        Err(source) => return Err(SnmpError::Read { path, source }),
    };
    Ok(state)
}

/// Writes state before it is used: beside the file, fsync, rename over it.
fn write_durably(path: &Path, value: &impl Serialize) -> std::io::Result<()> {
    use std::io::Write;
    let partial = path.with_extension("json.part");
    let mut file = std::fs::File::create(&partial)?;
    file.write_all(&serde_json::to_vec(value)?)?;
    file.sync_all()?;
    std::fs::rename(&partial, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engine_ids_follow_rfc_3411() {
        let id = engine_id(32473, [1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(
            id,
            [0x80, 0x00, 0x7e, 0xd9, 5, 1, 2, 3, 4, 5, 6, 7, 8],
            "top bit, enterprise 32473, format 5, the random octets"
        );
        async_snmp::v3::validate_engine_id(&id).unwrap();
    }

    #[test]
    fn a_new_engine_is_stored_with_the_enterprise_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let first = load(dir.path(), 9).unwrap();
        let id = first.engine_id().to_vec();
        assert_eq!(&id[..5], [0x80, 0, 0, 9, 5]);
        drop(first);
        let again = load(dir.path(), 10).unwrap();
        assert_eq!(
            again.engine_id().to_vec(),
            id,
            "the stored engine ID is kept"
        );
        assert_eq!(again.engine_boots(), 2);
    }
}
