//! ed25519 signatures over deployment documents. The fleet key signs (fogctl); devices hold
//! only public keys. A signature covers a domain tag and the document's canonical encoding,
//! so it cannot be replayed as a signature over anything else.

use std::path::Path;

use ring::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};
use rustls::pki_types::PrivateKeyDer;
use rustls::pki_types::pem::PemObject;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use thiserror::Error;

use super::canonical;
use crate::config::{PublicKey, PublicKeyError};

/// Prefix of every signed message.
const DOMAIN: &[u8] = b"fogd deployment v1\n";

/// A document and the signature over it, as published and as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedDocument {
    pub document: Value,
    pub signature: DocumentSignature,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DocumentSignature {
    /// The signing key's id ([`key_id`]).
    pub key: String,
    /// The 64-byte signature, hex.
    pub ed25519: String,
}

#[derive(Debug, Error)]
pub enum KeyError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path} is not a PKCS#8 PEM private key: {reason}")]
    NotAPrivateKey { path: String, reason: String },
    #[error("{path} is not an Ed25519 private key: {reason}")]
    NotEd25519 { path: String, reason: String },
    #[error(transparent)]
    BadPublicKey(#[from] PublicKeyError),
    #[error("cannot generate a key: {0}")]
    Generate(String),
}

/// Why a signed document was not accepted.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum SignatureError {
    #[error("not a signed deployment document: {0}")]
    Malformed(String),
    #[error("signed by key {0}, which this device does not trust")]
    UnknownKey(String),
    #[error("the signature by key {0} does not match the document")]
    BadSignature(String),
}

impl SignatureError {
    /// Short label for reports and metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            SignatureError::Malformed(_) => "malformed",
            SignatureError::UnknownKey(_) => "unknown_key",
            SignatureError::BadSignature(_) => "bad_signature",
        }
    }
}

/// The fleet's signing key.
pub struct FleetKey {
    pair: Ed25519KeyPair,
}

impl FleetKey {
    /// A new key, as PKCS#8 PEM (for the key file) and the key itself.
    pub fn generate() -> Result<(String, Self), KeyError> {
        let generated = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519)
            .map_err(|error| KeyError::Generate(error.to_string()))?;
        let pair = Ed25519KeyPair::from_pkcs8_maybe_unchecked(&generated.serialize_der())
            .map_err(|error| KeyError::Generate(error.to_string()))?;
        Ok((generated.serialize_pem(), Self { pair }))
    }

    /// Reads a PKCS#8 PEM Ed25519 private key.
    pub fn read(path: &Path) -> Result<Self, KeyError> {
        let shown = path.display().to_string();
        let pem = std::fs::read(path).map_err(|source| KeyError::Read {
            path: shown.clone(),
            source,
        })?;
        let der =
            PrivateKeyDer::from_pem_slice(&pem).map_err(|error| KeyError::NotAPrivateKey {
                path: shown.clone(),
                reason: error.to_string(),
            })?;
        let pair =
            Ed25519KeyPair::from_pkcs8_maybe_unchecked(der.secret_der()).map_err(|error| {
                KeyError::NotEd25519 {
                    path: shown,
                    reason: error.to_string(),
                }
            })?;
        Ok(Self { pair })
    }

    /// The public key, hex: what devices list in `sync.trusted_keys`.
    pub fn public_hex(&self) -> String {
        hex::encode(self.pair.public_key().as_ref())
    }

    /// Signs `document` as it is.
    pub fn sign(&self, document: Value) -> SignedDocument {
        let message = signed_message(&document);
        let signature = self.pair.sign(&message);
        SignedDocument {
            signature: DocumentSignature {
                key: key_id(self.pair.public_key().as_ref()),
                ed25519: hex::encode(signature.as_ref()),
            },
            document,
        }
    }
}

/// The public keys a device accepts documents from.
#[derive(Debug, Clone, Default)]
pub struct TrustedKeys {
    keys: Vec<(String, Vec<u8>)>,
}

impl TrustedKeys {
    /// Trusts `keys` (as `sync.trusted_keys` lists them).
    pub fn new(keys: &[PublicKey]) -> Self {
        let keys = keys
            .iter()
            .map(|key| (key_id(key.bytes()), key.bytes().to_vec()))
            .collect();
        Self { keys }
    }

    /// Parses hex-encoded Ed25519 public keys.
    pub fn from_hex<'a>(keys: impl IntoIterator<Item = &'a str>) -> Result<Self, KeyError> {
        let keys = keys
            .into_iter()
            .map(PublicKey::parse)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self::new(&keys))
    }

    /// Checks the signature of a signed document (`bytes` as received) and returns the
    /// document it covers.
    pub fn open(&self, bytes: &[u8]) -> Result<Value, SignatureError> {
        let signed: SignedDocument = serde_json::from_slice(bytes)
            .map_err(|error| SignatureError::Malformed(error.to_string()))?;
        let key_id = signed.signature.key;
        let Some((_, public)) = self.keys.iter().find(|(id, _)| *id == key_id) else {
            return Err(SignatureError::UnknownKey(key_id));
        };
        let signature = hex::decode(&signed.signature.ed25519)
            .map_err(|_| SignatureError::BadSignature(key_id.clone()))?;
        UnparsedPublicKey::new(&ED25519, public)
            .verify(&signed_message(&signed.document), &signature)
            .map_err(|_| SignatureError::BadSignature(key_id))?;
        Ok(signed.document)
    }
}

/// A short, stable name for a public key: the first 8 bytes of its SHA-256, hex.
pub fn key_id(public: &[u8]) -> String {
    hex::encode(&Sha256::digest(public)[..8])
}

fn signed_message(document: &Value) -> Vec<u8> {
    let mut message = DOMAIN.to_vec();
    message.extend_from_slice(&canonical::encode(document));
    message
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn trusting(key: &FleetKey) -> TrustedKeys {
        TrustedKeys::from_hex([key.public_hex().as_str()]).unwrap()
    }

    #[test]
    fn a_signed_document_opens_with_the_trusted_key_whatever_its_formatting() {
        let (_, key) = FleetKey::generate().unwrap();
        let signed = key.sign(json!({"revision": 3, "function": []}));
        let pretty = serde_json::to_vec_pretty(&signed).unwrap();
        assert_eq!(trusting(&key).open(&pretty).unwrap(), signed.document);
    }

    #[test]
    fn a_changed_document_or_signature_is_refused() {
        let (_, key) = FleetKey::generate().unwrap();
        let mut signed = key.sign(json!({"revision": 3}));
        signed.document["revision"] = json!(4);
        let error = trusting(&key)
            .open(&serde_json::to_vec(&signed).unwrap())
            .unwrap_err();
        assert_eq!(error.reason(), "bad_signature");

        let mut signed = key.sign(json!({"revision": 3}));
        signed.signature.ed25519.replace_range(0..2, "00");
        let error = trusting(&key)
            .open(&serde_json::to_vec(&signed).unwrap())
            .unwrap_err();
        assert_eq!(error.reason(), "bad_signature");
    }

    #[test]
    fn another_key_is_unknown_and_garbage_is_malformed() {
        let (_, fleet) = FleetKey::generate().unwrap();
        let (_, other) = FleetKey::generate().unwrap();
        let signed = other.sign(json!({"revision": 1}));
        let error = trusting(&fleet)
            .open(&serde_json::to_vec(&signed).unwrap())
            .unwrap_err();
        assert_eq!(
            error,
            SignatureError::UnknownKey(signed.signature.key.clone())
        );
        assert_eq!(
            trusting(&fleet)
                .open(b"\xff not json")
                .unwrap_err()
                .reason(),
            "malformed"
        );
    }

    #[test]
    fn the_key_file_round_trips_and_bad_public_keys_are_named() {
        let (pem, key) = FleetKey::generate().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fleet.key");
        std::fs::write(&path, pem).unwrap();
        let read = FleetKey::read(&path).unwrap();
        assert_eq!(read.public_hex(), key.public_hex());
        let signed = read.sign(json!({"revision": 9}));
        assert!(
            trusting(&key)
                .open(&serde_json::to_vec(&signed).unwrap())
                .is_ok()
        );
        assert!(matches!(
            TrustedKeys::from_hex(["abcd"]),
            Err(KeyError::BadPublicKey(PublicKeyError(text))) if text == "abcd"
        ));
    }
}
