//! Certificates generated per test: a CA, a server certificate for `localhost`/127.0.0.1 and
//! a client certificate, written as PEM files where brokers and fogd read them.

use std::path::{Path, PathBuf};

use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};

#[derive(Clone)]
pub struct Pki {
    pub ca_pem: String,
    server_pem: String,
    server_key: String,
    pub client_pem: String,
    pub client_key: String,
}

/// Paths of a client's TLS files.
pub struct ClientFiles {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Pki {
    pub fn generate(name: &str) -> Self {
        let ca_key = KeyPair::generate().expect("CA key");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, format!("{name} test CA"));
        let ca_cert = ca_params.self_signed(&ca_key).expect("CA certificate");
        let issuer = Issuer::new(ca_params, ca_key);

        let server_key = KeyPair::generate().expect("server key");
        let server_params =
            CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
                .expect("server params");
        let server_cert = server_params
            .signed_by(&server_key, &issuer)
            .expect("server certificate");

        let client_key = KeyPair::generate().expect("client key");
        let mut client_params =
            CertificateParams::new(Vec::<String>::new()).expect("client params");
        client_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "fogd-test-device");
        let client_cert = client_params
            .signed_by(&client_key, &issuer)
            .expect("client certificate");

        Self {
            ca_pem: ca_cert.pem(),
            server_pem: server_cert.pem(),
            server_key: server_key.serialize_pem(),
            client_pem: client_cert.pem(),
            client_key: client_key.serialize_pem(),
        }
    }

    pub fn write_server_files(&self, dir: &Path) {
        std::fs::write(dir.join("ca.pem"), &self.ca_pem).expect("ca written");
        std::fs::write(dir.join("server.pem"), &self.server_pem).expect("server cert written");
        std::fs::write(dir.join("server.key"), &self.server_key).expect("server key written");
    }

    pub fn write_client_files(&self, dir: &Path, prefix: &str) -> ClientFiles {
        let files = ClientFiles {
            ca: dir.join(format!("{prefix}-ca.pem")),
            cert: dir.join(format!("{prefix}-client.pem")),
            key: dir.join(format!("{prefix}-client.key")),
        };
        std::fs::write(&files.ca, &self.ca_pem).expect("ca written");
        std::fs::write(&files.cert, &self.client_pem).expect("client cert written");
        std::fs::write(&files.key, &self.client_key).expect("client key written");
        files
    }
}
