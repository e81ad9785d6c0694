//! Staging a signed document from local files (`fogd deploy`, factory images, air-gapped
//! sites): the document is verified, its artifacts copied from a directory and checked, the
//! result probed, and the revision sealed for the daemon to run.

use std::path::Path;

use crate::config::Config;

use super::{Deployment, RevisionStore, StoreError, TrustedKeys, probe};

#[derive(Debug, thiserror::Error)]
pub enum StageError {
    #[error("sync.trusted_keys is empty: this device accepts no deployments")]
    NoTrustedKeys,
    /// The document or its artifacts are refused; nothing was staged.
    #[error("refused: {0}")]
    Refused(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Stages the signed document `signed` with the artifacts in `artifacts`; returns its
/// revision. The running daemon switches to it when it reloads, or runs it at its next start.
pub fn stage(config: &Config, signed: &[u8], artifacts: &Path) -> Result<u64, StageError> {
    if config.sync.trusted_keys.is_empty() {
        return Err(StageError::NoTrustedKeys);
    }
    let trusted = TrustedKeys::new(&config.sync.trusted_keys);
    let store = RevisionStore::new(&config.state_dir);
    let refused = |reason: String| StageError::Refused(reason);
    let document = trusted
        .open(signed)
        .map_err(|error| refused(error.to_string()))?;
    let deployment = Deployment::parse(document, store.committed()?)
        .map_err(|error| refused(error.to_string()))?;
    let revision = deployment.revision;
    store
        .admits(revision, signed)
        .map_err(|error| refused(error.to_string()))?;
    let staged = store
        .prepare(signed, &deployment, artifacts)
        .map_err(|error| refused(error.to_string()))?;
    let problems = probe::probe(config, &deployment, staged.dir());
    if !problems.is_empty() {
        return Err(refused(problems.join("; ")));
    }
    staged.seal()?;
    Ok(revision)
}
