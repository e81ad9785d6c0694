//! Why the SNMP receiver or a poll job could not start.

use std::path::PathBuf;

use thiserror::Error;

use crate::snmp_client::credentials::CredentialError;

#[derive(Debug, Error)]
pub enum SnmpError {
    #[error("{path}: {reason}")]
    EngineState { path: PathBuf, reason: String },
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("SNMP engine: {0}")]
    Engine(String),
    #[error("SNMP user {user:?}: {reason}")]
    User { user: String, reason: String },
    #[error("cannot receive SNMP notifications on {listen}: {reason}")]
    Bind { listen: String, reason: String },
    #[error("SNMP poll job {job:?}: {reason}")]
    PollJob { job: String, reason: String },
    #[error(transparent)]
    Credentials(#[from] CredentialError),
}

impl SnmpError {
    pub(super) fn engine_state(path: &std::path::Path, reason: impl ToString) -> Self {
        SnmpError::EngineState {
            path: path.to_owned(),
            reason: reason.to_string(),
        }
    }

    pub(super) fn user(user: &str, reason: impl ToString) -> Self {
        SnmpError::User {
            user: user.to_owned(),
            reason: reason.to_string(),
        }
    }

    pub(super) fn poll_job(job: &str, reason: impl ToString) -> Self {
        SnmpError::PollJob {
            job: job.to_owned(),
            reason: reason.to_string(),
        }
    }
}
