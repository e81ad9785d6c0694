//! The rustls configuration of a syslog TLS listener (RFC 5425): the receiver's certificate,
//! and client certificates verified against a CA when one is configured.

use std::path::Path;
use std::sync::Arc;

use rustls::RootCertStore;
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

use super::SyslogError;
use crate::config::SyslogTls;

pub fn acceptor(tls: &SyslogTls) -> Result<TlsAcceptor, SyslogError> {
    let error = |reason: String| SyslogError::Tls {
        listen: tls.listen,
        reason,
    };
    let chain = certificates(&tls.cert_file, tls)?;
    let key = PrivateKeyDer::from_pem_slice(&read(&tls.key_file, tls)?)
        .map_err(|_| error(format!("no private key in {}", tls.key_file.display())))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| error(e.to_string()))?;
    let builder = match &tls.client_ca_file {
        Some(ca_file) => {
            let mut roots = RootCertStore::empty();
            for certificate in certificates(ca_file, tls)? {
                roots.add(certificate).map_err(|e| error(e.to_string()))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| error(format!("client CA: {e}")))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let config = builder
        .with_single_cert(chain, key)
        .map_err(|e| error(format!("certificate and key: {e}")))?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

fn read(path: &Path, tls: &SyslogTls) -> Result<Vec<u8>, SyslogError> {
    std::fs::read(path).map_err(|source| SyslogError::Read {
        listen: tls.listen,
        path: path.to_owned(),
        source,
    })
}

fn certificates(path: &Path, tls: &SyslogTls) -> Result<Vec<CertificateDer<'static>>, SyslogError> {
    let chain: Vec<_> = CertificateDer::pem_slice_iter(&read(path, tls)?)
        .flatten()
        .collect();
    if chain.is_empty() {
        return Err(SyslogError::Tls {
            listen: tls.listen,
            reason: format!("no certificate in {}", path.display()),
        });
    }
    Ok(chain)
}
