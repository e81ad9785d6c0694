//! Which configuration the daemon runs: the newest staged revision that still verifies,
//! else the committed revision, else the config file's own functions and models. A staged
//! revision becomes committed only once the agent ran on it through its watch window; one
//! that does not verify, does not fit the device, does not start, trips a gate, or was being
//! started or watched when fogd stopped twice, is discarded and the device goes back to
//! where it was.

use crate::config::Config;

use super::{
    Deployment, DocumentError, HealthGates, RevisionStore, SignatureError, StoreError, TrustedKeys,
};

/// Starts on a staged revision allowed before it is discarded: one that brought the daemon
/// down before its watch window ended, twice, is not tried a third time.
const MAX_ATTEMPTS: u32 = 2;

/// The configuration to start, and the revision it comes from.
pub struct Selected {
    pub config: Config,
    pub revision: Option<u64>,
    /// For a staged revision: the gates to watch before committing it.
    pub staged: Option<HealthGates>,
}

/// Chooses what to run on top of `base` (the config file).
pub fn select(base: &Config) -> Selected {
    let store = RevisionStore::new(&base.state_dir);
    let committed = match store.committed() {
        Ok(committed) => committed,
        Err(error) => {
            tracing::error!(%error, "cannot read the committed revision; running the config file's functions");
            return file_only(base);
        }
    };
    for revision in store.pending().unwrap_or_default() {
        match open(base, &store, revision, committed).and_then(|opened| {
            match store.begin_attempt(revision)? {
                attempt if attempt <= MAX_ATTEMPTS => Ok(opened),
                _ => Err(OpenError::TooManyAttempts),
            }
        }) {
            Ok((config, gates)) => {
                return Selected {
                    config,
                    revision: Some(revision),
                    staged: Some(gates),
                };
            }
            Err(reason) => {
                tracing::warn!(revision, %reason, "staged deployment refused; discarding it");
                forget(base, revision, &reason.to_string());
            }
        }
    }
    let Some(revision) = committed else {
        return file_only(base);
    };
    match open(base, &store, revision, None) {
        Ok((config, _)) => Selected {
            config,
            revision: Some(revision),
            staged: None,
        },
        Err(reason) => {
            tracing::error!(revision, %reason, "the committed deployment no longer verifies; running the config file's functions");
            file_only(base)
        }
    }
}

/// Records that the agent runs on a staged revision.
pub fn commit(base: &Config, revision: u64) {
    let store = RevisionStore::new(&base.state_dir);
    match store.commit(revision, base.sync.keep_revisions) {
        Ok(()) => tracing::info!(revision, "deployment committed"),
        Err(error) => {
            tracing::error!(revision, %error, "cannot record the committed revision; it is tried again at the next start")
        }
    }
}

/// Discards a staged revision that did not start or tripped a health gate.
pub fn refuse(base: &Config, revision: u64, reason: &str) {
    tracing::warn!(revision, reason, "deployment rolled back; discarding it");
    forget(base, revision, reason);
}

/// Records why a revision is refused, so it is not tried again, and removes its files.
fn forget(base: &Config, revision: u64, reason: &str) {
    let store = RevisionStore::new(&base.state_dir);
    if let Err(error) = store.record_refusal(revision, reason) {
        tracing::error!(revision, %error, "cannot record the rolled-back revision");
    }
    if let Err(error) = store.discard(revision) {
        tracing::error!(revision, %error, "cannot remove the failed revision");
    }
}

fn file_only(base: &Config) -> Selected {
    Selected {
        config: base.clone(),
        revision: None,
        staged: None,
    }
}

/// Why a stored revision is not run.
#[derive(Debug, thiserror::Error)]
enum OpenError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Signature(#[from] SignatureError),
    #[error(transparent)]
    Document(#[from] DocumentError),
    #[error("the directory of revision {expected} holds revision {found}")]
    OtherRevision { expected: u64, found: u64 },
    #[error("{0} (changed after staging)")]
    Changed(StoreError),
    #[error("fogd stopped {MAX_ATTEMPTS} times while starting or watching it")]
    TooManyAttempts,
}

/// Re-verifies a stored revision (its directory may have been changed since it was staged)
/// and builds the configuration that runs it.
fn open(
    base: &Config,
    store: &RevisionStore,
    revision: u64,
    committed: Option<u64>,
) -> Result<(Config, HealthGates), OpenError> {
    let trusted = TrustedKeys::new(&base.sync.trusted_keys);
    let document = trusted.open(&store.document(revision)?)?;
    let deployment = Deployment::parse(document, committed)?;
    if deployment.revision != revision {
        return Err(OpenError::OtherRevision {
            expected: revision,
            found: deployment.revision,
        });
    }
    store.verify(&deployment).map_err(OpenError::Changed)?;
    let config = deployment.configure(base, &store.revision_dir(revision))?;
    Ok((config, deployment.health))
}
