//! Fleet public keys in the config file (64 hex digits, as `fogctl keygen` writes them),
//! parsed when the file loads.

use std::fmt;

use serde::{Deserialize, Deserializer, de};
use thiserror::Error;

/// An Ed25519 public key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PublicKey([u8; 32]);

#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{0:?} is not an Ed25519 public key (64 hex digits)")]
pub struct PublicKeyError(pub String);

impl PublicKey {
    pub fn parse(text: &str) -> Result<Self, PublicKeyError> {
        let mut key = [0; 32];
        hex::decode_to_slice(text.trim(), &mut key).map_err(|_| PublicKeyError(text.to_owned()))?;
        Ok(Self(key))
    }

    pub fn bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl<'de> Deserialize<'de> for PublicKey {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        PublicKey::parse(&text).map_err(de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_32_bytes_of_hex_are_a_key() {
        let text = "ab".repeat(32);
        assert_eq!(PublicKey::parse(&text).unwrap().to_string(), text);
        assert!(PublicKey::parse("abcd").is_err());
        assert!(PublicKey::parse(&"zz".repeat(32)).is_err());
        assert!(PublicKey::parse(&"ab".repeat(33)).is_err());
    }
}
