//! Key files: the private key as PKCS#8 PEM with mode 0600, the public key as one hex line
//! in `<key>.pub`.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::Context;
use fogd_fleet::deployment::FleetKey;

/// Writes a new key pair; returns the public key file's path.
pub fn generate(private: &Path) -> anyhow::Result<PathBuf> {
    let public = public_path(private);
    let (pem, key) = FleetKey::generate()?;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(private)
        .with_context(|| {
            format!(
                "cannot create {} (an existing key is never replaced)",
                private.display()
            )
        })?;
    file.write_all(pem.as_bytes())
        .and_then(|()| file.sync_all())
        .with_context(|| format!("cannot write {}", private.display()))?;
    std::fs::write(&public, format!("{}\n", key.public_hex()))
        .with_context(|| format!("cannot write {}", public.display()))?;
    Ok(public)
}

/// Each entry is a public key file or a hex key.
pub fn read_public(entries: &[String]) -> anyhow::Result<Vec<String>> {
    entries
        .iter()
        .map(|entry| {
            let path = Path::new(entry);
            if path.is_file() {
                std::fs::read_to_string(path)
                    .map(|text| text.trim().to_owned())
                    .with_context(|| format!("cannot read {entry}"))
            } else {
                Ok(entry.clone())
            }
        })
        .collect()
}

fn public_path(private: &Path) -> PathBuf {
    let mut name = private.as_os_str().to_owned();
    name.push(".pub");
    PathBuf::from(name)
}
