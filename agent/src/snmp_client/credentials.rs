//! SNMP credentials from the config: v2c communities and SNMPv3 users, whose secrets are
//! read from the files the config names (the config itself holds none).

use std::path::{Path, PathBuf};

use async_snmp::{Auth, AuthProtocol, PrivProtocol, UsmConfig};
use thiserror::Error;

use crate::config::SnmpUser;

#[derive(Debug, Error)]
pub enum CredentialError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("SNMP user {user:?}: {reason}")]
    User { user: String, reason: String },
}

impl CredentialError {
    fn user(user: &str, reason: impl ToString) -> Self {
        CredentialError::User {
            user: user.to_owned(),
            reason: reason.to_string(),
        }
    }
}

pub type AuthKey = Option<(AuthProtocol, Vec<u8>)>;
pub type PrivacyKey = Option<(PrivProtocol, Vec<u8>)>;

/// A secret file's contents without its trailing line break.
pub fn read_secret(path: &Path) -> Result<Vec<u8>, CredentialError> {
    let text = std::fs::read_to_string(path).map_err(|source| CredentialError::Read {
        path: path.to_owned(),
        source,
    })?;
    Ok(text.trim_end_matches(['\n', '\r']).as_bytes().to_vec())
}

/// Reads a user's passwords from their files (validation guarantees they are named).
pub fn read_keys(user: &SnmpUser) -> Result<(AuthKey, PrivacyKey), CredentialError> {
    let read = |file: &Option<PathBuf>| -> Result<Vec<u8>, CredentialError> {
        let path = file
            .as_ref()
            .ok_or_else(|| CredentialError::user(&user.name, "password file missing"))?;
        read_secret(path)
    };
    let auth = match &user.auth {
        Some(name) => Some((
            name.parse::<AuthProtocol>()
                .map_err(|e| CredentialError::user(&user.name, e))?,
            read(&user.auth_password_file)?,
        )),
        None => None,
    };
    let privacy = match &user.privacy {
        Some(name) => Some((
            name.parse::<PrivProtocol>()
                .map_err(|e| CredentialError::user(&user.name, e))?,
            read(&user.privacy_password_file)?,
        )),
        None => None,
    };
    Ok((auth, privacy))
}

/// A client's credentials: the `community` (v2c) or the `[[snmp.user]]` named `user` (v3).
pub fn client_auth(
    users: &[SnmpUser],
    community: Option<Vec<u8>>,
    user: Option<&str>,
) -> Result<Auth, CredentialError> {
    if let Some(community) = community {
        return Ok(Auth::v2c(community));
    }
    let name = user.ok_or_else(|| CredentialError::user("", "neither community nor user"))?;
    let user = users
        .iter()
        .find(|u| u.name == name)
        .ok_or_else(|| CredentialError::user(name, "no such [[snmp.user]]"))?;
    let (auth, privacy) = read_keys(user)?;
    let usm = UsmConfig::new(user.name.clone().into_bytes());
    let usm = match (auth, privacy) {
        (Some((auth, auth_key)), Some((privacy, privacy_key))) => usm
            .auth_priv(auth, auth_key, privacy, privacy_key)
            .map_err(|e| CredentialError::user(&user.name, e))?,
        (Some((auth, auth_key)), None) => usm
            .auth(auth, auth_key)
            .map_err(|e| CredentialError::user(&user.name, e))?,
        _ => usm,
    };
    Ok(Auth::Usm(usm))
}
