//! The device identity: an ECDSA P-256 key that never leaves the device, a certificate
//! signing request naming the device, and the certificate the fleet's CA issues for it.
//!
//! Files in the identity directory: `device.key` (mode 0600), `device.csr`, and after
//! installation `device.pem` and `ca.pem`. They are what a `[[broker]]`'s `tls` uses for
//! mutual TLS.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use rcgen::{CertificateParams, DnType, KeyPair, PKCS_ECDSA_P256_SHA256};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;
use thiserror::Error;

pub const KEY_FILE: &str = "device.key";
pub const CSR_FILE: &str = "device.csr";
pub const CERT_FILE: &str = "device.pem";
pub const CA_FILE: &str = "ca.pem";

#[derive(Debug, Error)]
pub enum IdentityError {
    #[error(
        "{0} already exists; the device key is never replaced silently (pass --force to make a new one)"
    )]
    KeyExists(PathBuf),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot create the key or request: {0}")]
    Generate(String),
    #[error("{path} holds no PEM {what}")]
    NoPem { path: PathBuf, what: &'static str },
    #[error("the certificate in {cert} does not belong to the device key: {reason}")]
    Mismatch { cert: PathBuf, reason: String },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> IdentityError + '_ {
    move |source| IdentityError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Writes `bytes` to `path`, readable only by the owner.
fn write_private(path: &Path, bytes: &[u8]) -> Result<(), IdentityError> {
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(io(path))?;
    file.write_all(bytes).map_err(io(path))
}

/// Creates the device key and a CSR whose common name is `device_id`; returns the CSR path.
pub fn init(dir: &Path, device_id: &str, force: bool) -> Result<PathBuf, IdentityError> {
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let key_path = dir.join(KEY_FILE);
    if key_path.exists() && !force {
        return Err(IdentityError::KeyExists(key_path));
    }
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)
        .map_err(|e| IdentityError::Generate(e.to_string()))?;
    let mut params = CertificateParams::new(Vec::<String>::new())
        .map_err(|e| IdentityError::Generate(e.to_string()))?;
    params
        .distinguished_name
        .push(DnType::CommonName, device_id);
    let csr = params
        .serialize_request(&key)
        .and_then(|csr| csr.pem())
        .map_err(|e| IdentityError::Generate(e.to_string()))?;
    write_private(&key_path, key.serialize_pem().as_bytes())?;
    let csr_path = dir.join(CSR_FILE);
    std::fs::write(&csr_path, csr).map_err(io(&csr_path))?;
    Ok(csr_path)
}

/// Checks that `cert` (a PEM chain, device certificate first) belongs to the device key and
/// that `ca` holds a certificate, then copies both into the identity directory.
pub fn install(dir: &Path, cert: &Path, ca: &Path) -> Result<(), IdentityError> {
    let key_path = dir.join(KEY_FILE);
    let chain = read_certificates(cert)?;
    read_certificates(ca)?;
    let key_pem = std::fs::read(&key_path).map_err(io(&key_path))?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|_| IdentityError::NoPem {
        path: key_path.clone(),
        what: "private key",
    })?;
    let provider = rustls::crypto::ring::default_provider();
    let signing_key =
        provider
            .key_provider
            .load_private_key(key)
            .map_err(|e| IdentityError::Mismatch {
                cert: cert.to_owned(),
                reason: e.to_string(),
            })?;
    CertifiedKey::new(chain, signing_key)
        .keys_match()
        .map_err(|e| IdentityError::Mismatch {
            cert: cert.to_owned(),
            reason: e.to_string(),
        })?;
    for (from, name) in [(cert, CERT_FILE), (ca, CA_FILE)] {
        let to = dir.join(name);
        std::fs::copy(from, &to).map_err(io(&to))?;
    }
    Ok(())
}

fn read_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, IdentityError> {
    let pem = std::fs::read(path).map_err(io(path))?;
    let certificates: Vec<_> = CertificateDer::pem_slice_iter(&pem).flatten().collect();
    if certificates.is_empty() {
        return Err(IdentityError::NoPem {
            path: path.to_owned(),
            what: "certificate",
        });
    }
    Ok(certificates)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use rcgen::{BasicConstraints, IsCa, Issuer};

    use super::*;

    /// A CA, and a certificate it issues for `key_pem`.
    fn issue(key_pem: &str, dir: &Path) -> (PathBuf, PathBuf) {
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(ca_params, ca_key);
        let device_key = KeyPair::from_pem(key_pem).unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, "gw-1");
        let cert = params.signed_by(&device_key, &issuer).unwrap();
        let (cert_path, ca_path) = (dir.join("issued.pem"), dir.join("issuer.pem"));
        std::fs::write(&cert_path, cert.pem()).unwrap();
        std::fs::write(&ca_path, ca.pem()).unwrap();
        (cert_path, ca_path)
    }

    #[test]
    fn init_makes_a_private_key_and_a_request_and_never_replaces_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let csr = init(dir.path(), "gw-1", false).unwrap();
        let mode = std::fs::metadata(dir.path().join(KEY_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(
            std::fs::read_to_string(csr)
                .unwrap()
                .starts_with("-----BEGIN CERTIFICATE REQUEST-----")
        );
        assert!(matches!(
            init(dir.path(), "gw-1", false),
            Err(IdentityError::KeyExists(_))
        ));
        assert!(init(dir.path(), "gw-1", true).is_ok());
    }

    #[test]
    fn install_accepts_the_device_certificate_and_refuses_another() {
        let dir = tempfile::tempdir().unwrap();
        init(dir.path(), "gw-1", false).unwrap();
        let key_pem = std::fs::read_to_string(dir.path().join(KEY_FILE)).unwrap();
        let (cert, ca) = issue(&key_pem, dir.path());
        install(dir.path(), &cert, &ca).unwrap();
        assert!(dir.path().join(CERT_FILE).exists() && dir.path().join(CA_FILE).exists());

        let other = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)
            .unwrap()
            .serialize_pem();
        let (foreign, ca) = issue(&other, dir.path());
        let error = install(dir.path(), &foreign, &ca).unwrap_err();
        assert!(matches!(error, IdentityError::Mismatch { .. }), "{error}");
        assert!(
            error
                .to_string()
                .contains("does not belong to the device key"),
            "{error}"
        );
    }
}
