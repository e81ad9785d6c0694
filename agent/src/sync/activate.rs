//! Which configuration the daemon runs: the newest staged revision that still verifies,
//! else the committed revision, else the config file's own functions and models. A staged
//! revision becomes committed only once the agent started on it; one that does not verify,
//! does not fit the device, or does not start is discarded and the device stays where it was.

use std::path::Path;

use crate::config::Config;

use super::{Deployment, RevisionStore, TrustedKeys};

/// The configuration to start, and the revision it comes from.
pub struct Selected {
    pub config: Config,
    pub revision: Option<u64>,
    /// A staged revision, to be committed once the agent runs on it.
    pub staged: bool,
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
        match open(base, &store, revision, committed) {
            Ok(config) => {
                return Selected {
                    config,
                    revision: Some(revision),
                    staged: true,
                };
            }
            Err(reason) => {
                tracing::warn!(revision, %reason, "staged deployment refused; discarding it");
                if let Err(error) = store.discard(revision) {
                    tracing::error!(revision, %error, "cannot remove the refused revision");
                }
            }
        }
    }
    let Some(revision) = committed else {
        return file_only(base);
    };
    match open(base, &store, revision, None) {
        Ok(config) => Selected {
            config,
            revision: Some(revision),
            staged: false,
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

/// Discards a staged revision the agent could not start on.
pub fn refuse(base: &Config, revision: u64, reason: &str) {
    tracing::warn!(
        revision,
        reason,
        "deployment failed to start; discarding it"
    );
    if let Err(error) = RevisionStore::new(&base.state_dir).discard(revision) {
        tracing::error!(revision, %error, "cannot remove the failed revision");
    }
}

fn file_only(base: &Config) -> Selected {
    Selected {
        config: base.clone(),
        revision: None,
        staged: false,
    }
}

/// Re-verifies a stored revision (its directory may have been changed since it was staged)
/// and builds the configuration that runs it.
fn open(
    base: &Config,
    store: &RevisionStore,
    revision: u64,
    committed: Option<u64>,
) -> Result<Config, String> {
    let trusted = TrustedKeys::from_hex(base.sync.trusted_keys.iter().map(String::as_str))
        .map_err(|error| error.to_string())?;
    let signed = store
        .document(revision)
        .map_err(|error| error.to_string())?;
    let document = trusted.open(&signed).map_err(|error| error.to_string())?;
    let deployment = Deployment::parse(document, committed).map_err(|error| error.to_string())?;
    if deployment.revision != revision {
        return Err(format!(
            "the directory of revision {revision} holds revision {}",
            deployment.revision
        ));
    }
    let dir = store.revision_dir(revision);
    verify_artifacts(&deployment, &dir)?;
    deployment
        .configure(base, &dir)
        .map_err(|error| error.to_string())
}

fn verify_artifacts(deployment: &Deployment, dir: &Path) -> Result<(), String> {
    use sha2::{Digest, Sha256};
    for (name, artifact) in &deployment.artifacts {
        let bytes =
            std::fs::read(dir.join(name)).map_err(|error| format!("artifact {name}: {error}"))?;
        let digest = hex::encode(Sha256::digest(&bytes));
        if bytes.len() as u64 != artifact.size || !digest.eq_ignore_ascii_case(&artifact.sha256) {
            return Err(format!("artifact {name} was changed after staging"));
        }
    }
    Ok(())
}
