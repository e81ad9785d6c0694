//! Compiled components on disk. An entry's name is a digest of the component bytes and the
//! engine's compatibility hash, so a changed component or engine setting never loads a stale
//! entry; a sidecar digest of the compiled bytes catches corruption before anything is mapped.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

use super::LoadError;

/// How a component came to be loaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoadSource {
    /// Deserialized from a valid cache entry.
    Cache,
    /// Compiled now (and written to the cache).
    Compiled,
}

impl LoadSource {
    pub fn as_str(self) -> &'static str {
        match self {
            LoadSource::Cache => "cache",
            LoadSource::Compiled => "compiled",
        }
    }
}

pub struct ComponentCache {
    dir: PathBuf,
}

impl ComponentCache {
    pub fn new(dir: PathBuf) -> Self {
        Self { dir }
    }

    /// Loads the component in `wasm_path`, from the cache when possible.
    pub fn load(
        &self,
        engine: &Engine,
        wasm_path: &Path,
    ) -> Result<(Component, LoadSource), LoadError> {
        let wasm = std::fs::read(wasm_path).map_err(|source| LoadError::Read {
            path: wasm_path.to_owned(),
            source,
        })?;
        let key = cache_key(engine, &wasm);
        let entry = self.dir.join(format!("{key}.cwasm"));
        let digest_file = self.dir.join(format!("{key}.sha256"));

        if entry.exists() {
            match load_entry(engine, &entry, &digest_file) {
                Ok(component) => return Ok((component, LoadSource::Cache)),
                Err(reason) => {
                    tracing::warn!(entry = %entry.display(), %reason, "discarding corrupt cache entry; recompiling");
                    let _ = std::fs::remove_file(&entry);
                    let _ = std::fs::remove_file(&digest_file);
                }
            }
        }

        let compiled = engine
            .precompile_component(&wasm)
            .map_err(|error| LoadError::Invalid {
                path: wasm_path.to_owned(),
                reason: format!("{error:#}"),
            })?;
        self.store(&entry, &digest_file, &compiled)?;
        // SAFETY: `compiled` was produced by this engine a moment ago.
        let component = unsafe { Component::deserialize(engine, &compiled) }.map_err(|error| {
            LoadError::Invalid {
                path: wasm_path.to_owned(),
                reason: format!("{error:#}"),
            }
        })?;
        Ok((component, LoadSource::Compiled))
    }

    fn store(&self, entry: &Path, digest_file: &Path, compiled: &[u8]) -> Result<(), LoadError> {
        let write = || -> std::io::Result<()> {
            std::fs::create_dir_all(&self.dir)?;
            write_atomically(
                digest_file,
                hex::encode(Sha256::digest(compiled)).as_bytes(),
            )?;
            write_atomically(entry, compiled)
        };
        write().map_err(|source| LoadError::Cache {
            dir: self.dir.clone(),
            source,
        })
    }
}

fn cache_key(engine: &Engine, wasm: &[u8]) -> String {
    let mut engine_hasher = DefaultHasher::new();
    engine
        .precompile_compatibility_hash()
        .hash(&mut engine_hasher);
    let mut digest = Sha256::new();
    digest.update(wasm);
    digest.update(engine_hasher.finish().to_le_bytes());
    digest.update(env!("CARGO_PKG_VERSION").as_bytes());
    hex::encode(digest.finalize())
}

/// Why a cache entry is not used.
#[derive(Debug, thiserror::Error)]
enum EntryError {
    #[error("digest unreadable: {0}")]
    Digest(std::io::Error),
    #[error("entry unreadable: {0}")]
    Entry(std::io::Error),
    #[error("digest mismatch")]
    Mismatch,
    #[error("{0:#}")]
    Deserialize(wasmtime::Error),
}

fn load_entry(engine: &Engine, entry: &Path, digest_file: &Path) -> Result<Component, EntryError> {
    let expected = std::fs::read_to_string(digest_file).map_err(EntryError::Digest)?;
    let compiled = std::fs::read(entry).map_err(EntryError::Entry)?;
    if hex::encode(Sha256::digest(&compiled)) != expected.trim() {
        return Err(EntryError::Mismatch);
    }
    // SAFETY: the entry's digest matches the one written beside it when this engine
    // configuration compiled it; the key covers the component and the engine settings.
    unsafe { Component::deserialize_file(engine, entry) }.map_err(EntryError::Deserialize)
}

fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let temporary = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&temporary, bytes)?;
    std::fs::rename(&temporary, path)
}
