//! rustls client settings shared by the outbound paths (artifact downloads, functions' HTTP):
//! trust roots from a CA file or the system, and an optional client certificate.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ClientConfig, RootCertStore};
use thiserror::Error;

/// A TLS file that cannot be used, named with why.
#[derive(Debug, Error)]
#[error("{path}: {reason}")]
pub struct TlsFileError {
    pub path: String,
    pub reason: String,
}

impl TlsFileError {
    fn new(path: &Path, reason: impl ToString) -> Self {
        Self {
            path: path.display().to_string(),
            reason: reason.to_string(),
        }
    }
}

/// The CA certificates in `ca_file`, or the system's roots without one.
pub fn roots(ca_file: Option<&Path>) -> Result<RootCertStore, TlsFileError> {
    let mut roots = RootCertStore::empty();
    match ca_file {
        Some(path) => {
            let pem = std::fs::read(path).map_err(|error| TlsFileError::new(path, error))?;
            for certificate in CertificateDer::pem_slice_iter(&pem).flatten() {
                roots
                    .add(certificate)
                    .map_err(|error| TlsFileError::new(path, error))?;
            }
            if roots.is_empty() {
                return Err(TlsFileError::new(path, "holds no certificate"));
            }
        }
        None => {
            for certificate in rustls_native_certs::load_native_certs().certs {
                let _ = roots.add(certificate);
            }
        }
    }
    Ok(roots)
}

/// A client certificate chain and its key, for servers that ask for one.
pub struct ClientIdentity<'a> {
    pub cert_file: &'a Path,
    pub key_file: &'a Path,
}

/// Client settings trusting `roots`, presenting `identity` when the server asks.
pub fn client_config(
    roots: RootCertStore,
    identity: Option<ClientIdentity>,
) -> Result<ClientConfig, TlsFileError> {
    let builder =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|error| TlsFileError::new(Path::new("rustls"), error))?
            .with_root_certificates(roots);
    let Some(identity) = identity else {
        return Ok(builder.with_no_client_auth());
    };
    let pem = std::fs::read(identity.cert_file)
        .map_err(|error| TlsFileError::new(identity.cert_file, error))?;
    let chain: Vec<_> = CertificateDer::pem_slice_iter(&pem).flatten().collect();
    if chain.is_empty() {
        return Err(TlsFileError::new(
            identity.cert_file,
            "holds no certificate",
        ));
    }
    let key = PrivateKeyDer::from_pem_file(identity.key_file)
        .map_err(|error| TlsFileError::new(identity.key_file, error))?;
    builder
        .with_client_auth_cert(chain, key)
        .map_err(|error| TlsFileError::new(identity.key_file, error))
}
