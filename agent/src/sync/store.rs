//! Revisions on disk: `<state_dir>/revisions/<revision>/` holds a revision's artifacts and
//! its signed document; `committed` names the revision the device runs. A revision directory
//! appears by rename once every artifact in it is checked and the revision was probed, and
//! `committed` is replaced by rename, so a crash at any point leaves either the old or the
//! new state.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use thiserror::Error;

use super::document::{Artifact, Deployment};

/// The signed document inside a revision directory.
pub const DOCUMENT_FILE: &str = "deployment.json";
const COMMITTED_FILE: &str = "committed";
const ATTEMPTS_FILE: &str = "attempts";
const REFUSED_FILE: &str = "refused";
const STAGING_SUFFIX: &str = ".staging";

#[derive(Debug, Error)]
pub enum StoreError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("artifact {name}: {reason}")]
    Artifact { name: String, reason: String },
    #[error("{path} does not hold a revision number")]
    Corrupt { path: PathBuf },
    #[error("{path} is being staged by another process")]
    Busy { path: PathBuf },
    #[error(
        "revision {0} is already staged with another document; a revision number names one document"
    )]
    OtherDocument(u64),
    #[error("revision {revision} is below revision {newest}, which is staged or being watched")]
    BelowPending { revision: u64, newest: u64 },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_owned(),
        source,
    }
}

/// What [`RevisionStore::admits`] found for a document it lets in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    New,
    /// This very document is staged already.
    AlreadyStaged,
}

pub struct RevisionStore {
    dir: PathBuf,
}

impl RevisionStore {
    pub fn new(state_dir: &Path) -> Self {
        Self {
            dir: state_dir.join("revisions"),
        }
    }

    pub fn revision_dir(&self, revision: u64) -> PathBuf {
        self.dir.join(revision.to_string())
    }

    /// The revision the device runs, if it ever committed one.
    pub fn committed(&self) -> Result<Option<u64>, StoreError> {
        let path = self.dir.join(COMMITTED_FILE);
        match std::fs::read_to_string(&path) {
            Ok(text) => text
                .trim()
                .parse()
                .map(Some)
                .map_err(|_| StoreError::Corrupt { path }),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(error) => Err(io(&path)(error)),
        }
    }

    /// Copies the deployment's artifacts from `source` into `<revision>.staging/`, checking
    /// each one's size and SHA-256, and stores the signed document beside them. The revision
    /// exists for the daemon only once the result is [sealed](Staged::seal): what is still
    /// being staged or probed when the process dies is thrown away by the next attempt.
    pub fn prepare(
        &self,
        signed: &[u8],
        deployment: &Deployment,
        source: &Path,
    ) -> Result<Staged, StoreError> {
        let staging = self
            .dir
            .join(format!("{}{STAGING_SUFFIX}", deployment.revision));
        std::fs::create_dir_all(&self.dir).map_err(io(&self.dir))?;
        let lock = StagingLock::take(&staging)?.ok_or_else(|| StoreError::Busy {
            path: staging.clone(),
        })?;
        remove_dir_if_present(&staging)?;
        std::fs::create_dir_all(&staging).map_err(io(&staging))?;
        let staged = Staged {
            dir: staging,
            target: self.revision_dir(deployment.revision),
            store: self.dir.clone(),
            _lock: lock,
        };
        for (name, artifact) in &deployment.artifacts {
            copy_checked(name, artifact, &source.join(name), &staged.dir)?;
        }
        write_synced(&staged.dir.join(DOCUMENT_FILE), signed)?;
        Ok(staged)
    }

    /// Whether a signed document for `revision` may be staged beside what is stored: a
    /// revision number names exactly one document, and nothing goes in below a revision that
    /// is staged or being watched. `Err` says why not.
    pub fn admits(&self, revision: u64, signed: &[u8]) -> Result<Admission, StoreError> {
        let pending = self.pending()?;
        let staged = pending.contains(&revision);
        if staged && self.document(revision)? != signed {
            return Err(StoreError::OtherDocument(revision));
        }
        match pending.first() {
            Some(&newest) if newest > revision => {
                Err(StoreError::BelowPending { revision, newest })
            }
            _ if staged => Ok(Admission::AlreadyStaged),
            _ => Ok(Admission::New),
        }
    }

    /// Staged revisions above the committed one, newest first.
    pub fn pending(&self) -> Result<Vec<u64>, StoreError> {
        let committed = self.committed()?.unwrap_or(0);
        let mut revisions: Vec<u64> = self
            .revisions()?
            .into_iter()
            .filter(|revision| *revision > committed)
            .collect();
        revisions.sort_unstable_by(|a, b| b.cmp(a));
        Ok(revisions)
    }

    /// The signed document of a stored revision.
    pub fn document(&self, revision: u64) -> Result<Vec<u8>, StoreError> {
        let path = self.revision_dir(revision).join(DOCUMENT_FILE);
        std::fs::read(&path).map_err(io(&path))
    }

    /// Makes `revision` the committed one and removes all but the `keep` newest revisions
    /// up to it (newer staged ones stay).
    pub fn commit(&self, revision: u64, keep: u32) -> Result<(), StoreError> {
        let path = self.dir.join(COMMITTED_FILE);
        let temporary = self.dir.join(format!("{COMMITTED_FILE}.tmp"));
        write_synced(&temporary, format!("{revision}\n").as_bytes())?;
        std::fs::rename(&temporary, &path).map_err(io(&path))?;
        sync_dir(&self.dir)?;
        let mut older: Vec<u64> = self
            .revisions()?
            .into_iter()
            .filter(|stored| *stored <= revision)
            .collect();
        older.sort_unstable_by(|a, b| b.cmp(a));
        for stale in older.into_iter().skip(keep as usize) {
            self.discard(stale)?;
        }
        Ok(())
    }

    /// Counts one more start on a staged revision and returns the count. A revision that is
    /// started again and again without being committed brought the daemon down on the way.
    pub fn begin_attempt(&self, revision: u64) -> Result<u32, StoreError> {
        let path = self.revision_dir(revision).join(ATTEMPTS_FILE);
        let attempts = std::fs::read_to_string(&path)
            .ok()
            .and_then(|text| text.trim().parse::<u32>().ok())
            .unwrap_or(0)
            + 1;
        write_synced(&path, format!("{attempts}\n").as_bytes())?;
        Ok(attempts)
    }

    /// Checks that a stored revision's artifacts are still the files its document pins.
    pub fn verify(&self, deployment: &Deployment) -> Result<(), StoreError> {
        let dir = self.revision_dir(deployment.revision);
        for (name, artifact) in &deployment.artifacts {
            let path = dir.join(name);
            read_checked(name, artifact, &path, &mut std::io::sink(), &path)?;
        }
        Ok(())
    }

    /// Records that `revision` was refused or rolled back, and why, unless a higher one
    /// already was: the device does not try it, or any revision below it, again.
    pub fn record_refusal(&self, revision: u64, reason: &str) -> Result<(), StoreError> {
        if self
            .refused()
            .is_some_and(|(refused, _)| refused >= revision)
        {
            return Ok(());
        }
        std::fs::create_dir_all(&self.dir).map_err(io(&self.dir))?;
        let path = self.dir.join(REFUSED_FILE);
        let temporary = self.dir.join(format!("{REFUSED_FILE}.tmp"));
        write_synced(&temporary, format!("{revision}\n{reason}\n").as_bytes())?;
        std::fs::rename(&temporary, &path).map_err(io(&path))
    }

    /// The highest revision refused or rolled back, and why.
    pub fn refused(&self) -> Option<(u64, String)> {
        let text = std::fs::read_to_string(self.dir.join(REFUSED_FILE)).ok()?;
        let (revision, reason) = text.split_once('\n')?;
        Some((revision.trim().parse().ok()?, reason.trim_end().to_owned()))
    }

    /// Where a revision's artifacts are downloaded before it is staged.
    pub fn download_dir(&self, revision: u64) -> PathBuf {
        self.dir.join(format!("{revision}.download"))
    }

    /// Removes what staging left behind when its process died (`fogd deploy` killed while it
    /// copied or probed): every `<revision>.staging/` no living process is filling. Returns
    /// the folders removed.
    pub fn remove_abandoned_staging(&self) -> Result<Vec<PathBuf>, StoreError> {
        let mut removed = Vec::new();
        for entry in self.entries()? {
            let path = entry.path();
            let is_staging = path.is_dir()
                && path
                    .file_name()
                    .and_then(|name| name.to_str())
                    .is_some_and(|name| name.ends_with(STAGING_SUFFIX));
            if !is_staging {
                continue;
            }
            if let Some(lock) = StagingLock::take(&path)? {
                remove_dir_if_present(&path)?;
                drop(lock);
                removed.push(path);
            }
        }
        Ok(removed)
    }

    /// Removes a revision's directory (a refused or an old one).
    pub fn discard(&self, revision: u64) -> Result<(), StoreError> {
        remove_dir_if_present(&self.revision_dir(revision))
    }

    /// What the store's folder holds; nothing before the first revision was stored.
    fn entries(&self) -> Result<Vec<std::fs::DirEntry>, StoreError> {
        match std::fs::read_dir(&self.dir) {
            Ok(entries) => Ok(entries.filter_map(Result::ok).collect()),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(error) => Err(io(&self.dir)(error)),
        }
    }

    fn revisions(&self) -> Result<Vec<u64>, StoreError> {
        Ok(self
            .entries()?
            .into_iter()
            .filter(|entry| entry.path().join(DOCUMENT_FILE).is_file())
            .filter_map(|entry| entry.file_name().to_str()?.parse().ok())
            .collect())
    }
}

/// A revision being staged: complete and checked, not yet visible as a revision. Dropping
/// it removes it.
pub struct Staged {
    dir: PathBuf,
    target: PathBuf,
    store: PathBuf,
    _lock: StagingLock,
}

/// An exclusive advisory lock (`flock`) on `<revision>.staging.lock`, held while a process
/// fills `<revision>.staging/`; the kernel lets go of it when the process dies, so a staging
/// folder whose lock can be taken was abandoned.
struct StagingLock {
    path: PathBuf,
    _file: std::fs::File,
}

impl StagingLock {
    /// The lock of `staging`, or `None` if another process holds it.
    fn take(staging: &Path) -> Result<Option<Self>, StoreError> {
        use std::os::fd::AsRawFd;
        let mut name = staging.as_os_str().to_owned();
        name.push(".lock");
        let path = PathBuf::from(name);
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io(&path))?;
        // SAFETY: flock on a descriptor this function owns; no memory is involved.
        let taken = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0;
        // Not `then_some`: a lock built and dropped would unlink the holder's lock file.
        Ok(if taken {
            Some(Self { path, _file: file })
        } else {
            None
        })
    }
}

impl Drop for StagingLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

impl Staged {
    /// Where its artifacts are while it is probed.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Makes it a pending revision by renaming it into place.
    pub fn seal(self) -> Result<PathBuf, StoreError> {
        remove_dir_if_present(&self.target)?;
        std::fs::rename(&self.dir, &self.target).map_err(io(&self.target))?;
        sync_dir(&self.store)?;
        Ok(self.target.clone())
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        // Gone already once sealed; the lock goes after it.
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Copies one artifact into `dir`, checked as [`read_checked`] does.
fn copy_checked(
    name: &str,
    artifact: &Artifact,
    from: &Path,
    dir: &Path,
) -> Result<(), StoreError> {
    let path = dir.join(name);
    let mut output = std::fs::File::create(&path).map_err(io(&path))?;
    read_checked(name, artifact, from, &mut output, &path)?;
    output.sync_all().map_err(io(&path))
}

/// Streams the artifact in `from` to `output` (`output_path` names it in errors), refusing
/// it as soon as it is longer than announced, and when its length or digest differ at the
/// end.
fn read_checked(
    name: &str,
    artifact: &Artifact,
    from: &Path,
    output: &mut dyn Write,
    output_path: &Path,
) -> Result<(), StoreError> {
    let refuse = |reason: String| StoreError::Artifact {
        name: name.to_owned(),
        reason,
    };
    let mut input = std::fs::File::open(from)
        .map_err(|error| refuse(format!("cannot open {}: {error}", from.display())))?;
    let mut hasher = Sha256::new();
    let mut copied = 0u64;
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        let read = input
            .read(&mut buffer)
            .map_err(|error| refuse(format!("cannot read {}: {error}", from.display())))?;
        if read == 0 {
            break;
        }
        copied += read as u64;
        if copied > artifact.size {
            return Err(refuse(format!(
                "longer than the {} bytes the document gives",
                artifact.size
            )));
        }
        hasher.update(&buffer[..read]);
        output.write_all(&buffer[..read]).map_err(io(output_path))?;
    }
    if copied != artifact.size {
        return Err(refuse(format!(
            "{copied} bytes, the document gives {}",
            artifact.size
        )));
    }
    let digest = hex::encode(hasher.finalize());
    if !digest.eq_ignore_ascii_case(&artifact.sha256) {
        return Err(refuse(format!(
            "sha256 {digest} does not match the document's {}",
            artifact.sha256
        )));
    }
    Ok(())
}

fn write_synced(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    let mut file = std::fs::File::create(path).map_err(io(path))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(io(path))
}

fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    std::fs::File::open(dir)
        .and_then(|file| file.sync_all())
        .map_err(io(dir))
}

fn remove_dir_if_present(dir: &Path) -> Result<(), StoreError> {
    match std::fs::remove_dir_all(dir) {
        Err(error) if error.kind() != std::io::ErrorKind::NotFound => Err(io(dir)(error)),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn deployment(revision: u64, content: &[u8]) -> Deployment {
        Deployment::parse(
            json!({
                "schema": super::super::document::SCHEMA,
                "revision": revision,
                "artifacts": {"echo.wasm": {
                    "url": "https://files.example/echo.wasm",
                    "sha256": hex::encode(Sha256::digest(content)),
                    "size": content.len()
                }},
                "function": [{"name": "echo", "component": "echo.wasm"}]
            }),
            None,
        )
        .unwrap()
    }

    #[test]
    fn staged_revisions_are_pending_until_committed_and_old_ones_are_pruned() {
        let state = tempfile::tempdir().unwrap();
        let source = tempfile::tempdir().unwrap();
        std::fs::write(source.path().join("echo.wasm"), b"component bytes").unwrap();
        let store = RevisionStore::new(state.path());
        assert_eq!(store.committed().unwrap(), None);
        for revision in 1..=4 {
            let staged = store
                .prepare(
                    b"{}",
                    &deployment(revision, b"component bytes"),
                    source.path(),
                )
                .unwrap();
            assert!(store.pending().unwrap().iter().all(|r| *r < revision));
            let dir = staged.seal().unwrap();
            assert_eq!(
                std::fs::read(dir.join("echo.wasm")).unwrap(),
                b"component bytes"
            );
        }
        assert_eq!(store.pending().unwrap(), vec![4, 3, 2, 1]);
        let fourth = deployment(4, b"component bytes");
        store.verify(&fourth).unwrap();
        std::fs::write(store.revision_dir(4).join("echo.wasm"), b"component bytez").unwrap();
        assert!(
            store
                .verify(&fourth)
                .unwrap_err()
                .to_string()
                .contains("sha256")
        );
        assert_eq!(store.refused(), None);
        store
            .record_refusal(5, "function echo: 9 of 20 events failed")
            .unwrap();
        store.record_refusal(2, "older").unwrap();
        assert_eq!(
            store.refused(),
            Some((5, "function echo: 9 of 20 events failed".to_owned()))
        );
        store.commit(3, 2).unwrap();
        assert_eq!(store.committed().unwrap(), Some(3));
        assert_eq!(store.pending().unwrap(), vec![4]);
        assert!(!store.revision_dir(1).exists());
        assert!(store.revision_dir(2).exists());
        assert_eq!(store.document(4).unwrap(), b"{}");
    }

    #[test]
    fn staging_left_by_a_dead_process_is_removed_and_staging_in_progress_is_not() {
        let state = tempfile::tempdir().unwrap();
        let source = tempfile::tempdir().unwrap();
        std::fs::write(source.path().join("echo.wasm"), b"component bytes").unwrap();
        let store = RevisionStore::new(state.path());
        let abandoned = state.path().join("revisions/7.staging");
        std::fs::create_dir_all(&abandoned).unwrap();
        std::fs::write(abandoned.join("echo.wasm"), b"half").unwrap();
        let in_progress = store
            .prepare(b"{}", &deployment(8, b"component bytes"), source.path())
            .unwrap();
        assert_eq!(
            store.remove_abandoned_staging().unwrap(),
            vec![abandoned.clone()]
        );
        assert!(!abandoned.exists());
        assert!(!state.path().join("revisions/7.staging.lock").exists());
        assert!(in_progress.dir().join("echo.wasm").exists());
        assert!(matches!(
            store.prepare(b"{}", &deployment(8, b"component bytes"), source.path()),
            Err(StoreError::Busy { .. })
        ));
        in_progress.seal().unwrap();
        assert_eq!(store.pending().unwrap(), vec![8]);
        assert!(store.remove_abandoned_staging().unwrap().is_empty());
        let left: Vec<_> = std::fs::read_dir(state.path().join("revisions"))
            .unwrap()
            .map(|entry| entry.unwrap().file_name())
            .collect();
        assert_eq!(left, ["8"]);
    }

    #[test]
    fn a_revision_number_names_one_document_and_nothing_goes_in_below_a_staged_one() {
        let state = tempfile::tempdir().unwrap();
        let source = tempfile::tempdir().unwrap();
        std::fs::write(source.path().join("echo.wasm"), b"component bytes").unwrap();
        let store = RevisionStore::new(state.path());
        assert_eq!(store.admits(2, b"doc 2").ok(), Some(Admission::New));
        store
            .prepare(b"doc 2", &deployment(2, b"component bytes"), source.path())
            .unwrap()
            .seal()
            .unwrap();
        assert_eq!(
            store.admits(2, b"doc 2").ok(),
            Some(Admission::AlreadyStaged),
            "the same document again"
        );
        assert!(matches!(
            store.admits(2, b"other doc 2"),
            Err(StoreError::OtherDocument(2))
        ));
        assert!(matches!(
            store.admits(1, b"doc 1"),
            Err(StoreError::BelowPending {
                revision: 1,
                newest: 2
            })
        ));
        assert_eq!(store.admits(3, b"doc 3").ok(), Some(Admission::New));
    }

    #[test]
    fn a_revision_dropped_before_it_is_sealed_leaves_nothing() {
        let state = tempfile::tempdir().unwrap();
        let source = tempfile::tempdir().unwrap();
        std::fs::write(source.path().join("echo.wasm"), b"component bytes").unwrap();
        let store = RevisionStore::new(state.path());
        let staged = store
            .prepare(b"{}", &deployment(1, b"component bytes"), source.path())
            .unwrap();
        assert!(staged.dir().join("echo.wasm").is_file());
        drop(staged);
        assert!(store.pending().unwrap().is_empty());
        assert!(!state.path().join("revisions/1.staging").exists());
    }

    #[test]
    fn a_tampered_or_truncated_artifact_is_refused_and_nothing_is_staged() {
        let state = tempfile::tempdir().unwrap();
        let source = tempfile::tempdir().unwrap();
        let store = RevisionStore::new(state.path());
        for (content, expected) in [
            (&b"component bytez"[..], "sha256"),
            (&b"component"[..], "9 bytes, the document gives 15"),
            (&b"component bytes and more"[..], "longer than the 15 bytes"),
        ] {
            std::fs::write(source.path().join("echo.wasm"), content).unwrap();
            let Err(error) =
                store.prepare(b"{}", &deployment(1, b"component bytes"), source.path())
            else {
                panic!("{content:?} was staged");
            };
            assert!(error.to_string().contains(expected), "{error}");
            assert!(store.pending().unwrap().is_empty());
            assert!(!state.path().join("revisions/1.staging").exists());
        }
    }
}
