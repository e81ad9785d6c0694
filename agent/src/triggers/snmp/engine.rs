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

/// Loads the engine (counting this start as one more boot), or creates one.
pub fn load(state_dir: &Path) -> Result<AuthoritativeEngine, SnmpError> {
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
            let engine_id = async_snmp::v3::generate_engine_id()
                .map_err(|e| SnmpError::Engine(e.to_string()))?;
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
